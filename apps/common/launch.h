#pragma once

// The apps under torchrun (or any launcher that sets RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR
// and MASTER_PORT): one process per GPU (or CPU process with Gloo), each training its part of
// every batch through bittorch::distributed::DataParallel.

#include <bittorch/distributed/process_group.h>

#include <torch/types.h>
#include <cxxopts.hpp>

#include <cstdint>

namespace bittorch::apps {

struct ProcessRanks {
  c10::intrusive_ptr<c10d::ProcessGroup> group;  // null: this process trains alone
  int64_t rank = 0, count = 1;
  torch::Device device = torch::kCPU;  // the group's device
  /// Rank 0 logs, writes metrics, checkpoints and exports.
  bool leader() const { return rank == 0; }
  /// Every rank, at the end of a run: waits for the others' collectives to complete
  /// (bittorch::distributed::finish_process_group); nothing when training alone.
  void finish() const;
};

/// Adds --rendezvous-timeout (seconds; default: BITTORCH_RENDEZVOUS_TIMEOUT, else 60).
void add_launch_options(cxxopts::Options& options);

/// Joins the launch this process is part of, if any, within --rendezvous-timeout: a CUDA
/// `device` becomes cuda:LOCAL_RANK, and the ranks other than 0 log warnings and errors only.
ProcessRanks join_launch(torch::Device& device, const cxxopts::ParseResult& args);

}  // namespace bittorch::apps
