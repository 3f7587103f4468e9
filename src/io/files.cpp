// Reading and writing whole files with POSIX calls: atomic, durable replacement for writers,
// and readers that refuse anything but a regular file before they read a byte.

#include <bittorch/io/files.h>

#include "io/crc32.h"

#include <c10/util/Exception.h>

#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <climits>
#include <cstdlib>
#include <cstring>
#include <random>

// No std::filesystem here: LibTorch's libraries export std::filesystem symbols of their own
// build, which calls from this library would bind to.

namespace bittorch::io {
namespace {

// A file's directory and name.
struct FilePath {
  std::string directory, name;
  std::string full() const { return directory + "/" + name; }
};

std::string error_text(int code) {
  return std::strerror(code);
}

// What kind of file a stat result describes, for messages.
const char* file_kind(mode_t mode) {
  if (S_ISDIR(mode)) return "a directory";
  if (S_ISFIFO(mode)) return "a FIFO";
  if (S_ISCHR(mode)) return "a character device";
  if (S_ISBLK(mode)) return "a block device";
  if (S_ISSOCK(mode)) return "a socket";
  return "not a regular file";
}

// Closes a descriptor when it goes out of scope.
class FileDescriptor {
 public:
  explicit FileDescriptor(int fd) : fd_(fd) {}
  ~FileDescriptor() {
    if (fd_ >= 0) ::close(fd_);
  }
  FileDescriptor(const FileDescriptor&) = delete;
  FileDescriptor& operator=(const FileDescriptor&) = delete;
  int get() const { return fd_; }
  // Closes now, reporting the error close() gives (a delayed write error on some filesystems).
  int close() {
    const int result = ::close(fd_);
    fd_ = -1;
    return result;
  }

 private:
  int fd_;
};

// Writes all of `bytes`; returns 0 or the errno of the failure.
int write_all(int fd, std::string_view bytes) {
  size_t done = 0;
  while (done < bytes.size()) {
    const ssize_t written = ::write(fd, bytes.data() + done, bytes.size() - done);
    if (written < 0) {
      if (errno == EINTR) continue;
      return errno;
    }
    done += static_cast<size_t>(written);
  }
  return ::fsync(fd) == 0 ? 0 : errno;
}

// The prefix of the temporary files written for `target`: ".name.tmp-" beside it (hidden).
std::string temporary_prefix(const FilePath& target) {
  return "." + target.name + ".tmp-";
}

// ".name.tmp-<pid>-<random>" beside `target`: the writer's process id lets a later writer
// recognise a file left by a killed one; the random part keeps threads apart (callers retry).
std::string temporary_name(const FilePath& target) {
  static std::atomic<uint64_t> counter{0};
  thread_local std::mt19937_64 random(std::random_device{}() ^ static_cast<uint64_t>(::getpid()));
  const uint64_t tag = random() ^ (counter++ << 40);
  char suffix[48];
  std::snprintf(suffix, sizeof(suffix), "%ld-%010llx", static_cast<long>(::getpid()),
                static_cast<unsigned long long>(tag & 0xFFFFFFFFFFULL));
  return target.directory + "/" + temporary_prefix(target) + suffix;
}

// Removes the temporary files of `target` whose writer no longer runs: where the filesystem
// has no unnamed files (O_TMPFILE), a writer killed between creating and renaming its file
// (SIGKILL cannot be caught) leaves one behind. Files of running processes, of this process
// and of other names are left alone.
void remove_abandoned_temporaries(const FilePath& target) {
  DIR* directory = ::opendir(target.directory.c_str());
  if (directory == nullptr) return;  // the write that follows reports the problem
  const std::string prefix = temporary_prefix(target);
  while (const dirent* entry = ::readdir(directory)) {
    const std::string_view name(entry->d_name);
    if (name.substr(0, prefix.size()) != prefix) continue;
    char* end = nullptr;
    const long pid = std::strtol(entry->d_name + prefix.size(), &end, 10);
    if (end == entry->d_name + prefix.size() || *end != '-' || pid <= 0 || pid == ::getpid()) continue;
    if (::kill(static_cast<pid_t>(pid), 0) != 0 && errno == ESRCH) ::unlinkat(::dirfd(directory), entry->d_name, 0);
  }
  ::closedir(directory);
}

// Gives the unnamed file `fd` the name `temporary`; false where the system cannot (no /proc).
bool link_unnamed(int fd, const FilePath& target, std::string& temporary) {
  const std::string proc_path = "/proc/self/fd/" + std::to_string(fd);
  for (int attempt = 0; attempt < 100; ++attempt) {
    temporary = temporary_name(target);
    if (::linkat(AT_FDCWD, proc_path.c_str(), AT_FDCWD, temporary.c_str(), AT_SYMLINK_FOLLOW) == 0) return true;
    if (errno != EEXIST) return false;
  }
  return false;
}

// Opens a new, uniquely named file beside `target`; -1 with errno set on failure.
int create_named(const FilePath& target, std::string& temporary) {
  for (int attempt = 0; attempt < 100; ++attempt) {
    temporary = temporary_name(target);
    const int fd = ::open(temporary.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (fd >= 0 || errno != EEXIST) return fd;
  }
  return -1;
}

// Writes `bytes` to an unnamed file in the target's directory (O_TMPFILE: if the process dies
// before the rename, the kernel frees it), then gives it the name `temporary`. False, with
// nothing left behind, where the filesystem has no unnamed files or no /proc names them; a
// failed write (a full disk) calls `fail`, after the file is gone.
template <typename Fail>
bool write_unnamed(const FilePath& target, std::string_view bytes, std::string& temporary, const Fail& fail) {
  FileDescriptor file(::open(target.directory.c_str(), O_TMPFILE | O_WRONLY | O_CLOEXEC, 0644));
  if (file.get() < 0) return false;
  if (const int code = write_all(file.get(), bytes); code != 0) fail(code, "writing");
  if (!link_unnamed(file.get(), target, temporary)) return false;
  if (file.close() != 0) {
    const int code = errno;
    ::unlink(temporary.c_str());
    fail(code, "closing");
  }
  return true;
}

// Writes `bytes` to a new uniquely named file `temporary` in the target's directory; on any
// failure the file is removed and `fail` called.
template <typename Fail>
void write_named(const FilePath& target, std::string_view bytes, std::string& temporary, const Fail& fail) {
  FileDescriptor file(create_named(target, temporary));
  if (file.get() < 0) fail(errno, "creating a temporary file");
  int code = write_all(file.get(), bytes);
  if (file.close() != 0 && code == 0) code = errno;
  if (code != 0) {
    ::unlink(temporary.c_str());
    fail(code, "writing");
  }
}

void sync_directory(const std::string& directory) {
  FileDescriptor fd(::open(directory.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  // A directory that cannot be opened or synced (some network filesystems) has already
  // received the rename; durability is then up to the filesystem.
  if (fd.get() >= 0) ::fsync(fd.get());
}

// The file a path names, following a symbolic link to what it points to.
FilePath resolved(const std::string& path) {
  std::string target = path;
  struct stat info {};
  if (::lstat(path.c_str(), &info) == 0 && S_ISLNK(info.st_mode)) {
    char real[PATH_MAX];
    if (::realpath(path.c_str(), real) != nullptr) target = real;  // a dangling link is replaced itself
  }
  const size_t slash = target.rfind('/');
  if (slash == std::string::npos) return {".", target};
  return {slash == 0 ? "/" : target.substr(0, slash), target.substr(slash + 1)};
}

// Where `path` leads: its chain of symbolic links followed (each relative to its own
// directory), whether or not the last target exists; at most 40 links, as the kernel.
std::string link_target(const std::string& path) {
  std::string target = path;
  for (int hop = 0; hop < 40; ++hop) {
    struct stat info {};
    if (::lstat(target.c_str(), &info) != 0 || !S_ISLNK(info.st_mode)) break;
    std::string link(static_cast<size_t>(PATH_MAX), '\0');
    const ssize_t length = ::readlink(target.c_str(), link.data(), link.size());
    if (length <= 0) break;
    link.resize(static_cast<size_t>(length));
    const size_t slash = target.rfind('/');
    target = link.front() == '/' || slash == std::string::npos ? link : target.substr(0, slash + 1) + link;
  }
  return target;
}

// What identifies the file `path` names: "inode:<device>:<inode>" for an existing file,
// "path:<its directory resolved>/<name>" for one that does not exist yet.
std::string file_identity(const std::string& path) {
  struct stat info {};
  if (::stat(path.c_str(), &info) == 0) {
    return "inode:" + std::to_string(info.st_dev) + ":" + std::to_string(info.st_ino);
  }
  const std::string target = link_target(path);
  const size_t slash = target.rfind('/');
  const std::string directory = slash == std::string::npos ? "." : slash == 0 ? "/" : target.substr(0, slash);
  const std::string name = slash == std::string::npos ? target : target.substr(slash + 1);
  char real[PATH_MAX];
  return "path:" + std::string(::realpath(directory.c_str(), real) != nullptr ? real : directory) + "/" + name;
}

// The checks of check_writable_path on the resolved `target` of `path`.
void check_writable(const FilePath& target, const std::string& path, std::string_view what) {
  TORCH_CHECK(!target.name.empty() && target.name != "." && target.name != "..", what, ": '", path,
              "' names a directory; give the path of a file to write");
  struct stat info {};
  if (::stat(target.full().c_str(), &info) == 0) {
    TORCH_CHECK(S_ISREG(info.st_mode), what, ": '", path, "' is ", file_kind(info.st_mode),
                "; give the path of a file to write");
  }
  const std::string& directory = target.directory;
  struct stat directory_info {};
  TORCH_CHECK(::stat(directory.c_str(), &directory_info) == 0, what, ": the directory '", directory, "' of '", path,
              "' does not exist (", error_text(errno), ")");
  TORCH_CHECK(S_ISDIR(directory_info.st_mode), what, ": '", directory, "' in '", path, "' is not a directory");
  TORCH_CHECK(::access(directory.c_str(), W_OK | X_OK) == 0, what, ": cannot write to the directory '", directory,
              "' of '", path, "' (", error_text(errno), ")");
}

// Opens `path` for reading and checks that it is a regular file; returns the descriptor and
// its size.
std::pair<int, int64_t> open_regular(const std::string& path) {
  // O_NONBLOCK: opening a FIFO with no writer must not hang before the check below.
  const int fd = ::open(path.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC);
  TORCH_CHECK(fd >= 0, "cannot open '", path, "': ", error_text(errno));
  struct stat info {};
  if (::fstat(fd, &info) != 0) {
    const int code = errno;
    ::close(fd);
    TORCH_CHECK(false, "cannot read '", path, "': ", error_text(code));
  }
  if (!S_ISREG(info.st_mode)) {
    ::close(fd);
    TORCH_CHECK(false, "'", path, "' is ", file_kind(info.st_mode), ", not a regular file");
  }
  return {fd, static_cast<int64_t>(info.st_size)};
}

}  // namespace

bool same_file(const std::string& a, const std::string& b) {
  return a == b || file_identity(a) == file_identity(b);
}

void check_writable_path(const std::string& path, std::string_view what) {
  TORCH_CHECK(!path.empty(), what, ": the output path is empty");
  check_writable(resolved(path), path, what);
}

void write_file_atomically(const std::string& path, std::string_view bytes) {
  const char* what = "bittorch::io::write_file_atomically";
  TORCH_CHECK(!path.empty(), what, ": the output path is empty");
  const FilePath target = resolved(path);
  check_writable(target, path, what);
  const auto fail = [&](int code, const char* doing) {
    TORCH_CHECK(false, "cannot write '", path, "': ", doing, " failed: ", error_text(code));
  };
  remove_abandoned_temporaries(target);
  std::string temporary;
  if (!write_unnamed(target, bytes, temporary, fail)) write_named(target, bytes, temporary, fail);
  if (::rename(temporary.c_str(), target.full().c_str()) != 0) {
    const int code = errno;
    ::unlink(temporary.c_str());
    fail(code, "renaming the temporary file");
  }
  sync_directory(target.directory);
}

std::string read_regular_file(const std::string& path) {
  const auto [fd, size] = open_regular(path);
  FileDescriptor file(fd);
  std::string bytes(static_cast<size_t>(size), '\0');
  size_t done = 0;
  while (done < bytes.size()) {
    const ssize_t got = ::read(file.get(), bytes.data() + done, bytes.size() - done);
    if (got < 0 && errno == EINTR) continue;
    TORCH_CHECK(got >= 0, "cannot read '", path, "': ", error_text(errno));
    TORCH_CHECK(got > 0, "'", path, "' became shorter while it was read (", done, " of ", size, " bytes)");
    done += static_cast<size_t>(got);
  }
  return bytes;
}

uint32_t crc32(std::string_view bytes) {
  return crc32_of(bytes);
}

int64_t regular_file_size(const std::string& path) {
  const auto [fd, size] = open_regular(path);
  ::close(fd);
  return size;
}

}  // namespace bittorch::io
