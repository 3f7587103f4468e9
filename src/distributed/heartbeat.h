#pragma once

// Heartbeats of the ranks of a process group, kept in the group's own store: each rank bumps
// a counter from a thread of its own. When a collective fails, Gloo says only "Connection
// reset by peer"; the counters that stopped moving say which rank ended
// (bittorch::distributed::stopped_ranks). Collectives run through naming_stopped_ranks say so.

#include <bittorch/distributed/process_group.h>

#include <c10/util/Exception.h>

#include <exception>
#include <string>
#include <vector>

namespace bittorch::distributed::detail {

/// Starts this rank's heartbeat in `group`'s store. `store_host` says who hosts the store
/// ("rank 0", "the torchrun agent"), for the message when the store itself is gone.
void start_heartbeat(const c10d::ProcessGroup& group, std::string store_host);

/// Stops this rank's heartbeat and records that it finished normally (a rank that finished is
/// not one that died); stopped_ranks still answers until forget_heartbeat.
void stop_heartbeat(const c10d::ProcessGroup& group);

/// Forgets `group`'s heartbeat (once the group's last collective is over).
void forget_heartbeat(const c10d::ProcessGroup& group);

/// "rank 1", "ranks 1, 2 and 5".
std::string describe_ranks(const std::vector<int>& ranks);

/// An exception's message, without a c10::Error's backtrace.
std::string message_of(const std::exception& error);

/// Runs `collective` (anything that waits on `group`'s collectives); when it throws and some
/// ranks have stopped, the error says which, with the backend's message after it.
template <typename Collective>
void naming_stopped_ranks(const c10d::ProcessGroup& group, Collective&& collective) {
  try {
    collective();
  } catch (const std::exception& error) {
    const auto stopped = stopped_ranks(group);
    if (stopped.empty()) throw;
    TORCH_CHECK(false, "rank ", group.getRank(), " of ", group.getSize(), ": a collective failed: ", stopped, " (",
                message_of(error), ")");
  }
}

/// `tensors` (each rank's, alike in shapes) from rank `root` of `group` to the others, in
/// flattened chunks of up to 250 MB as DDP's first broadcast (c10d::broadcast_coalesced); an
/// error names ranks that stopped.
void broadcast_from(const c10::intrusive_ptr<c10d::ProcessGroup>& group, std::vector<at::Tensor>& tensors, int root);

}  // namespace bittorch::distributed::detail
