// The launch variables torchrun sets, parsed (and refused with the variable named), and the
// split of a step's batch among ranks.

#include "reference.h"

#include <bittorch/distributed/data_parallel.h>
#include <bittorch/distributed/process_group.h>
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cstdlib>
#include <map>
#include <optional>
#include <string>

namespace {

using bittorch::testing::throws_error_mentioning;

// Sets the launch variables for its lifetime (unset: nullopt), restoring them after.
class ScopedLaunchVariables {
 public:
  explicit ScopedLaunchVariables(const std::map<std::string, std::optional<std::string>>& values) {
    for (const auto& name : {"WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT",
                             "TORCHELASTIC_USE_AGENT_STORE", "TORCHELASTIC_RESTART_COUNT"}) {
      const char* old = std::getenv(name);
      saved_[name] = old ? std::optional<std::string>(old) : std::nullopt;
      const auto it = values.find(name);
      set(name, it == values.end() ? std::nullopt : it->second);
    }
  }
  ~ScopedLaunchVariables() {
    for (const auto& [name, value] : saved_) set(name, value);
  }

 private:
  static void set(const std::string& name, const std::optional<std::string>& value) {
    if (value) {
      setenv(name.c_str(), value->c_str(), 1);
    } else {
      unsetenv(name.c_str());
    }
  }
  std::map<std::string, std::optional<std::string>> saved_;
};

TEST(Distributed, LaunchVariablesAreParsedAndCheckedByName) {
  {
    const ScopedLaunchVariables none({});
    EXPECT_FALSE(bittorch::distributed::launch_environment_from_env().has_value());
  }
  {
    const ScopedLaunchVariables torchrun({{"WORLD_SIZE", "4"},
                                          {"RANK", "3"},
                                          {"LOCAL_RANK", "1"},
                                          {"MASTER_ADDR", "node0"},
                                          {"MASTER_PORT", "29500"},
                                          {"TORCHELASTIC_USE_AGENT_STORE", "True"},
                                          {"TORCHELASTIC_RESTART_COUNT", "2"}});
    const auto launch = bittorch::distributed::launch_environment_from_env();
    ASSERT_TRUE(launch.has_value());
    EXPECT_EQ(launch->world_size, 4);
    EXPECT_EQ(launch->rank, 3);
    EXPECT_EQ(launch->local_rank, 1);
    EXPECT_EQ(launch->master_addr, "node0");
    EXPECT_EQ(launch->master_port, 29500);
    EXPECT_TRUE(launch->agent_store);
    EXPECT_EQ(launch->restart_count, 2);
  }
  {
    const ScopedLaunchVariables no_local_rank(
        {{"WORLD_SIZE", "2"}, {"RANK", "1"}, {"MASTER_ADDR", "127.0.0.1"}, {"MASTER_PORT", "1234"}});
    const auto launch = bittorch::distributed::launch_environment_from_env();
    ASSERT_TRUE(launch.has_value());
    EXPECT_EQ(launch->local_rank, 1);
    EXPECT_FALSE(launch->agent_store);
  }
  const std::map<std::string, std::optional<std::string>> good = {
      {"WORLD_SIZE", "2"}, {"RANK", "0"}, {"MASTER_ADDR", "127.0.0.1"}, {"MASTER_PORT", "1234"}};
  const std::vector<std::pair<std::pair<std::string, std::optional<std::string>>, std::vector<std::string>>> bad = {
      {{"RANK", std::nullopt}, {"RANK is not"}},
      {{"RANK", "2"}, {"RANK='2'", "[0, 1]"}},
      {{"RANK", "1x"}, {"RANK='1x'"}},
      {{"WORLD_SIZE", "0"}, {"WORLD_SIZE='0'"}},
      {{"MASTER_ADDR", std::nullopt}, {"MASTER_ADDR is not"}},
      {{"MASTER_PORT", "70000"}, {"MASTER_PORT='70000'", "65535"}},
      {{"LOCAL_RANK", "-1"}, {"LOCAL_RANK='-1'"}},
  };
  for (const auto& [change, needles] : bad) {
    auto values = good;
    values[change.first] = change.second;
    const ScopedLaunchVariables scoped(values);
    EXPECT_TRUE(throws_error_mentioning([] { bittorch::distributed::launch_environment_from_env(); }, needles))
        << change.first;
  }
}

TEST(Distributed, ShardsSplitABatchEvenlyAndPadLikeDistributedSampler) {
  const auto batch = torch::arange(10);
  // Two ranks: halves, in order; together the whole batch.
  EXPECT_TRUE(torch::equal(bittorch::distributed::shard_of_batch(batch, 0, 2), torch::arange(0, 5)));
  EXPECT_TRUE(torch::equal(bittorch::distributed::shard_of_batch(batch, 1, 2), torch::arange(5, 10)));
  // Three ranks: 4 each, the batch padded with its first two elements.
  EXPECT_TRUE(torch::equal(bittorch::distributed::shard_of_batch(batch, 2, 3), torch::tensor({8, 9, 0, 1})));
  // More ranks than elements: every rank still gets one.
  const auto three = torch::arange(3);
  for (int64_t rank = 0; rank < 8; ++rank) {
    EXPECT_EQ(bittorch::distributed::shard_of_batch(three, rank, 8).item<int64_t>(), rank % 3);
  }
  EXPECT_TRUE(torch::equal(bittorch::distributed::shard_of_batch(batch, 0, 1), batch));
  EXPECT_TRUE(throws_error_mentioning([&] { bittorch::distributed::shard_of_batch(batch, 2, 2); }, {"rank 2 of 2"}));
  EXPECT_TRUE(
      throws_error_mentioning([&] { bittorch::distributed::shard_of_batch(torch::arange(0), 0, 1); }, {"non-empty"}));
}

}  // namespace
