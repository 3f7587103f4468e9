// bittorch::io: atomic, durable writes and readers that refuse non-regular files.

#include <bittorch/bittorch.h>

#include <gtest/gtest.h>

#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <thread>

#include "reference.h"
#include "temp_dir.h"

namespace {

using bittorch::io::check_writable_path;
using bittorch::io::read_regular_file;
using bittorch::io::write_file_atomically;
using bittorch::testing::TempDir;
using bittorch::testing::throws_error_mentioning;

TEST(Files, WriteReplacesTheFileWholeAndLeavesNothingElse) {
  TempDir dir;
  const auto path = dir.file("out.bin");
  write_file_atomically(path, "first version");
  EXPECT_EQ(read_regular_file(path), "first version");
  const std::string second(3 << 20, 'x');
  write_file_atomically(path, second);
  EXPECT_EQ(read_regular_file(path), second);
  write_file_atomically(path, "");
  EXPECT_EQ(read_regular_file(path), "");
  EXPECT_EQ(dir.entries(), std::vector<std::string>{"out.bin"});
  // A relative path writes into the working directory.
  char cwd[4096];
  ASSERT_NE(::getcwd(cwd, sizeof(cwd)), nullptr);
  ASSERT_EQ(::chdir(dir.path().c_str()), 0);
  write_file_atomically("relative.bin", "here");
  ASSERT_EQ(::chdir(cwd), 0);
  EXPECT_EQ(read_regular_file(dir.file("relative.bin")), "here");
}

TEST(Files, WriteFollowsASymbolicLink) {
  TempDir dir;
  write_file_atomically(dir.file("target.bin"), "old");
  ASSERT_EQ(::symlink(dir.file("target.bin").c_str(), dir.file("link.bin").c_str()), 0);
  write_file_atomically(dir.file("link.bin"), "new");
  EXPECT_EQ(read_regular_file(dir.file("target.bin")), "new");
  struct stat info {};
  ASSERT_EQ(::lstat(dir.file("link.bin").c_str(), &info), 0);
  EXPECT_TRUE(S_ISLNK(info.st_mode));
  EXPECT_EQ(dir.entries(), (std::vector<std::string>{"link.bin", "target.bin"}));
}

TEST(Files, BadOutputPathsAreRefusedUpFront) {
  TempDir dir;
  ASSERT_EQ(::mkdir(dir.file("sub").c_str(), 0755), 0);
  ASSERT_EQ(::mkfifo(dir.file("fifo").c_str(), 0644), 0);
  EXPECT_TRUE(
      throws_error_mentioning([&] { check_writable_path(dir.file("sub"), "--save"); }, {"--save", "is a directory"}));
  EXPECT_TRUE(
      throws_error_mentioning([&] { check_writable_path(dir.file("sub") + "/", "--save"); }, {"--save", "directory"}));
  EXPECT_TRUE(throws_error_mentioning([&] { check_writable_path(dir.file("missing/out.pt"), "--export"); },
                                      {"--export", "missing", "does not exist"}));
  EXPECT_TRUE(throws_error_mentioning([&] { check_writable_path(dir.file("fifo"), "--metrics-json"); },
                                      {"--metrics-json", "FIFO"}));
  EXPECT_TRUE(throws_error_mentioning([&] { check_writable_path("/dev/null", "--save"); }, {"character device"}));
  EXPECT_TRUE(throws_error_mentioning([&] { check_writable_path("", "--save"); }, {"--save", "empty"}));
  // write_file_atomically makes the same checks: a device is never replaced by a rename.
  EXPECT_TRUE(throws_error_mentioning([&] { write_file_atomically(dir.file("fifo"), "x"); }, {"FIFO"}));
  EXPECT_EQ(dir.entries(), (std::vector<std::string>{"fifo", "sub"}));
  check_writable_path(dir.file("new.bin"), "--save");  // a file to be created is fine
  ::rmdir(dir.file("sub").c_str());
}

TEST(Files, ReadersRefuseWhatIsNotARegularFile) {
  TempDir dir;
  ASSERT_EQ(::mkfifo(dir.file("fifo").c_str(), 0644), 0);
  // A FIFO without a writer: refused at once, not waited on.
  EXPECT_TRUE(throws_error_mentioning([&] { read_regular_file(dir.file("fifo")); }, {"fifo", "a FIFO"}));
  EXPECT_TRUE(throws_error_mentioning([&] { read_regular_file(dir.path()); }, {dir.path(), "a directory"}));
  EXPECT_TRUE(throws_error_mentioning([&] { read_regular_file("/dev/zero"); }, {"/dev/zero", "character device"}));
  EXPECT_TRUE(throws_error_mentioning([&] { read_regular_file(dir.file("missing")); }, {"cannot open", "missing"}));
  EXPECT_TRUE(throws_error_mentioning([&] { bittorch::io::regular_file_size("/dev/zero"); }, {"character device"}));
}

// Writers racing on one path, a reader beside them: every read sees one writer's whole file,
// and no temporary file outlives the writes.
TEST(Files, ConcurrentWritersNeverShowAPartialFile) {
  TempDir dir;
  const auto path = dir.file("shared.bin");
  std::vector<std::string> versions;
  for (char c : {'a', 'b', 'c'}) versions.emplace_back(1 << 20, c);
  write_file_atomically(path, versions[0]);
  std::atomic<bool> done{false};
  std::atomic<int> partial{0}, reads{0};
  std::thread reader([&] {
    while (!done) {
      const auto bytes = read_regular_file(path);
      if (std::find(versions.begin(), versions.end(), bytes) == versions.end()) ++partial;
      ++reads;
    }
  });
  std::vector<std::thread> writers;
  for (const auto& version : versions) {
    writers.emplace_back([&] {
      for (int i = 0; i < 30; ++i) write_file_atomically(path, version);
    });
  }
  for (auto& writer : writers) writer.join();
  done = true;
  reader.join();
  EXPECT_EQ(partial, 0) << "of " << reads << " reads";
  EXPECT_EQ(dir.entries(), std::vector<std::string>{"shared.bin"});
}

// Where the filesystem has no unnamed files, a writer killed mid-write leaves its named
// temporary file; the next write to the same path removes it, and only it.
TEST(Files, WritesRemoveTemporariesOfKilledWriters) {
  TempDir dir;
  const pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) ::_exit(0);
  ASSERT_EQ(::waitpid(child, nullptr, 0), child);  // `child` names no running process now
  const auto touch = [&](const std::string& name) { write_file_atomically(dir.file(name), "x"); };
  const std::string abandoned = ".out.bin.tmp-" + std::to_string(child) + "-00000000ab";
  const std::string running = ".out.bin.tmp-" + std::to_string(::getppid()) + "-00000000cd";
  const std::string other_target = ".other.bin.tmp-" + std::to_string(child) + "-00000000ef";
  for (const auto& name : {abandoned, running, other_target}) touch(name);
  write_file_atomically(dir.file("out.bin"), "new");
  EXPECT_EQ(read_regular_file(dir.file("out.bin")), "new");
  EXPECT_EQ(dir.entries(), (std::vector<std::string>{other_target, running, "out.bin"}));
}

}  // namespace
