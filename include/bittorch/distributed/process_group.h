#pragma once

// Process groups of PyTorch's own distributed engine (c10d) set up from the variables that
// torchrun sets (and Slurm or MPI launch scripts can set the same way): a TCPStore
// rendezvous, then ProcessGroupNCCL for CUDA devices and ProcessGroupGloo for the CPU.

#include <bittorch/train/export.h>

#include <c10/core/Device.h>
#include <torch/arg.h>
#include <torch/csrc/distributed/c10d/ProcessGroup.hpp>

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>

namespace bittorch::distributed {

/// Where this process is in a multi-process launch.
struct BITTORCH_TRAIN_API LaunchEnvironment {
  int64_t rank = 0;
  int64_t world_size = 1;
  int64_t local_rank = 0;  // the GPU index on this machine
  std::string master_addr;
  int64_t master_port = 0;
  /// Under torchrun the launcher's agent already hosts the store (TORCHELASTIC_USE_AGENT_STORE);
  /// rank 0 then joins it instead of starting one, under the restart's key prefix.
  bool agent_store = false;
  int64_t restart_count = 0;
};

/// The launch described by RANK, WORLD_SIZE, LOCAL_RANK (default: RANK), MASTER_ADDR and
/// MASTER_PORT, or nullopt when WORLD_SIZE is not set (one process, as without a launcher). A
/// missing or malformed variable is a c10::Error naming it.
BITTORCH_TRAIN_API std::optional<LaunchEnvironment> launch_environment_from_env();

struct BITTORCH_TRAIN_API ProcessGroupOptions {
  /// How long every collective may wait (a rank that died) before the job ends with an error.
  TORCH_ARG(std::chrono::milliseconds, timeout) = std::chrono::minutes(5);
  /// How long the rendezvous may take (reaching the store at MASTER_ADDR:MASTER_PORT, every
  /// rank checking in) before it ends with an error; while it waits, what it waits for is
  /// logged every few seconds.
  TORCH_ARG(std::chrono::milliseconds, rendezvous_timeout) = std::chrono::seconds(60);
};

/// The rendezvous timeout the BITTORCH_RENDEZVOUS_TIMEOUT variable gives (seconds, > 0), else
/// `fallback`; a malformed value is a c10::Error naming the variable.
BITTORCH_TRAIN_API std::chrono::milliseconds rendezvous_timeout_from_env(std::chrono::milliseconds fallback);

/// The process group of `launch`: NCCL when `device` is CUDA (which becomes the current CUDA
/// device), Gloo when it is the CPU. First the rendezvous: the store reached, then a roll call
/// in which every rank checks in with its WORLD_SIZE. A rendezvous that does not complete
/// within the rendezvous timeout (a wrong MASTER_PORT or MASTER_ADDR, a rank that never
/// comes) is a c10::Error naming the address, the port and the ranks seen; ranks that
/// disagree on WORLD_SIZE, one naming the ranks and their sizes.
BITTORCH_TRAIN_API c10::intrusive_ptr<c10d::ProcessGroup> init_process_group(const LaunchEnvironment& launch,
                                                                             c10::Device device,
                                                                             const ProcessGroupOptions& options = {});

/// Ends this process's part in `group` on a normal exit; call it on every rank once its last
/// collective is issued. NCCL runs collectives on its own streams, behind the host: a rank that
/// exited with some still queued would take its half of them away, and the others would read a
/// partial sum or wait until the timeout. A barrier (which completes only after every rank's
/// earlier collectives) then the group's shutdown. `device` is the one the group was made for.
BITTORCH_TRAIN_API void finish_process_group(c10d::ProcessGroup& group, c10::Device device);

/// Which ranks of `group` (made by init_process_group) have ended, for the message of a
/// collective that failed: every rank beats a counter in the group's store every half second
/// from a thread of its own, and this watches the counters for three seconds. "rank 1 ended
/// (its heartbeat stopped)"; "the store no longer answers: rank 0, which hosts it, ended"; a
/// rank that had already finished its group is named as such; "" when every rank still beats.
/// DataParallel and finish_process_group put it in front of the backend's own message (Gloo
/// says only "Connection reset by peer"); call it where other collectives fail.
BITTORCH_TRAIN_API std::string stopped_ranks(const c10d::ProcessGroup& group);

/// Whether this build has the backend for `device` (Gloo needs its headers at build time,
/// NCCL a CUDA build).
BITTORCH_TRAIN_API bool backend_available(c10::Device device);

}  // namespace bittorch::distributed
