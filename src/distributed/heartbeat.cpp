#include "distributed/heartbeat.h"

#include <torch/csrc/distributed/c10d/comm.hpp>

#include <condition_variable>
#include <memory>
#include <mutex>
#include <thread>
#include <unordered_map>
#include <utility>

namespace bittorch::distributed {
namespace detail {
namespace {

// A beat every half second; a rank whose counter did not move in three seconds has stopped (a
// loaded machine still runs a sleeping thread that often).
constexpr std::chrono::milliseconds kInterval{500};
constexpr std::chrono::milliseconds kWindow{3000};
// How long a store request may wait when the machine hosting the store vanished without
// closing its connections.
constexpr std::chrono::seconds kStoreTimeout{10};

std::string beat_key(int rank) {
  return "bittorch/heartbeat/rank_" + std::to_string(rank);
}
std::string finished_key(int rank) {
  return "bittorch/heartbeat/finished_" + std::to_string(rank);
}

struct Heartbeat {
  c10::intrusive_ptr<c10d::Store> store;
  int rank = 0;
  std::string store_host;
  std::mutex mutex;
  std::condition_variable wake;
  bool stopping = false;
  std::thread thread;
};

// The heartbeats of live groups. Never destroyed: a process that ends without finishing its
// group still has a thread beating, which the exit ends. An entry leaves it only with its
// thread joined (forget_heartbeat, or a new group at the same address), never running.
std::mutex registry_mutex;
std::unordered_map<const c10d::ProcessGroup*, std::shared_ptr<Heartbeat>>& registry() {
  static auto* beats = new std::unordered_map<const c10d::ProcessGroup*, std::shared_ptr<Heartbeat>>();
  return *beats;
}

// Ends `beat`'s thread (once); false if it had ended already.
bool stop_thread(Heartbeat& beat) {
  {
    std::lock_guard<std::mutex> lock(beat.mutex);
    if (beat.stopping) return false;
    beat.stopping = true;
  }
  beat.wake.notify_all();
  beat.thread.join();
  return true;
}

std::shared_ptr<Heartbeat> find(const c10d::ProcessGroup& group) {
  std::lock_guard<std::mutex> lock(registry_mutex);
  const auto found = registry().find(&group);
  return found == registry().end() ? nullptr : found->second;
}

}  // namespace

std::string describe_ranks(const std::vector<int>& ranks) {
  std::string text = ranks.size() == 1 ? "rank " : "ranks ";
  for (size_t i = 0; i < ranks.size(); ++i) {
    if (i > 0) text += i + 1 == ranks.size() ? " and " : ", ";
    text += std::to_string(ranks[i]);
  }
  return text;
}

std::string message_of(const std::exception& error) {
  const auto* c10_error = dynamic_cast<const c10::Error*>(&error);
  return c10_error != nullptr ? c10_error->what_without_backtrace() : error.what();
}

void start_heartbeat(const c10d::ProcessGroup& group, std::string store_host) {
  auto beat = std::make_shared<Heartbeat>();
  beat->store = group.getStore()->clone();  // a client of its own, beside the backends'
  beat->store->setTimeout(kStoreTimeout);
  beat->rank = group.getRank();
  beat->store_host = std::move(store_host);
  beat->store->add(beat_key(beat->rank), 1);
  beat->thread = std::thread([beat = beat.get()] {
    for (;;) {
      {
        std::unique_lock<std::mutex> lock(beat->mutex);
        if (beat->wake.wait_for(lock, kInterval, [beat] { return beat->stopping; })) return;
      }
      try {
        beat->store->add(beat_key(beat->rank), 1);
      } catch (const std::exception&) {
        return;  // the store is gone; the survivors' stopped_ranks will say so
      }
    }
  });
  std::shared_ptr<Heartbeat> replaced;
  {
    std::lock_guard<std::mutex> lock(registry_mutex);
    // A group that was never finished may have left its entry at this address.
    replaced = std::exchange(registry()[&group], std::move(beat));
  }
  if (replaced != nullptr) stop_thread(*replaced);
}

void stop_heartbeat(const c10d::ProcessGroup& group) {
  const auto beat = find(group);
  if (beat == nullptr || !stop_thread(*beat)) return;
  try {
    beat->store->set(finished_key(beat->rank), std::vector<uint8_t>{1});
  } catch (const std::exception&) {
  }
}

void forget_heartbeat(const c10d::ProcessGroup& group) {
  stop_heartbeat(group);
  std::lock_guard<std::mutex> lock(registry_mutex);
  registry().erase(&group);
}

void broadcast_from(const c10::intrusive_ptr<c10d::ProcessGroup>& group, std::vector<at::Tensor>& tensors, int root) {
  constexpr int64_t kBucketBytes = 250 * 1024 * 1024;
  naming_stopped_ranks(*group, [&] { c10d::broadcast_coalesced(group, tensors, kBucketBytes, root); });
}

}  // namespace detail

std::string stopped_ranks(const c10d::ProcessGroup& group) {
  const auto beat = detail::find(group);
  if (beat == nullptr) return "";
  const int size = group.getSize(), rank = group.getRank();
  std::vector<int> stopped, finished;
  try {
    // The heartbeat's client (its requests are serialized with the thread's): a new one would
    // retry connecting to a store that is gone for the whole store timeout.
    const auto& store = beat->store;
    const auto beats = [&] {
      std::vector<int64_t> counts;
      for (int r = 0; r < size; ++r) counts.push_back(store->add(detail::beat_key(r), 0));
      return counts;
    };
    const auto before = beats();
    std::this_thread::sleep_for(detail::kWindow);
    const auto after = beats();
    for (int r = 0; r < size; ++r) {
      if (r == rank || after[r] != before[r]) continue;
      (store->check({detail::finished_key(r)}) ? finished : stopped).push_back(r);
    }
  } catch (const std::exception&) {
    return "the store no longer answers: " + beat->store_host + ", which hosts it, ended";
  }
  // Ranks that finished are expected at the last barrier; they matter only where none ended.
  if (!stopped.empty()) {
    return detail::describe_ranks(stopped) +
           (stopped.size() == 1 ? " ended (its heartbeat stopped)" : " ended (their heartbeats stopped)");
  }
  if (!finished.empty()) {
    return detail::describe_ranks(finished) + " had finished (the ranks did not run the same collectives)";
  }
  return "";
}

}  // namespace bittorch::distributed
