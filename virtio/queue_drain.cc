#include "virtio/queue_drain.h"

namespace minivmm::virtio {

Result<DrainResult> drain_queue(Queue& queue, const GuestMemory& mem, const ChainHandler& handle,
                                uint32_t budget) {
  return drain_queue_while(queue, mem, {}, handle, budget);
}

Result<DrainResult> drain_queue_while(Queue& queue, const GuestMemory& mem,
                                      const std::function<bool()>& want,
                                      const ChainHandler& handle, uint32_t budget) {
  DrainResult result;
  if (!queue.ready()) return result;  // never enabled by the driver: not ours to touch
  uint32_t taken = 0;
  bool used_any = false;
  bool recheck = false;  // this round follows an enable_notification() that saw more
  while (true) {
    if (auto r = queue.disable_notification(mem); !r) return r.error();
    auto it = queue.iter(mem);
    if (!it) return it.error();
    const uint32_t taken_before = taken;
    bool satisfied = false;
    while (true) {
      if (want && !want()) {
        satisfied = true;
        break;
      }
      auto chain = it->next();
      if (!chain) break;
      if (!chain->must_be_used()) return chain->error().value_or(Error::kInvalidHead);
      const uint32_t written = chain->is_valid() ? handle(*chain) : 0;
      if (auto r = queue.add_used(mem, chain->head_index(), written); !r) return r.error();
      used_any = true;
      if (++taken == budget) {
        result.exhausted = true;
        break;
      }
    }
    if (result.exhausted) break;
    if (satisfied) {
      // Nothing to put in (or room for) another chain: the device comes back on its own.
      if (auto r = queue.enable_notification(mem); !r) return r.error();
      break;
    }
    // A driver only moves avail->idx forward, so the round after a re-check that saw more
    // always has a chain. When it has none, the index went back: the device's own writes to
    // the used ring's flags or avail_event change it (the driver made the rings overlap)
    // and re-checking again could go on forever (found by fuzz_rng).
    if (recheck && taken == taken_before) return Error::kAvailIndexMovedBack;
    auto more = queue.enable_notification(mem);
    if (!more) return more.error();
    if (!*more) break;
    recheck = true;
  }
  if (used_any) {
    auto needed = queue.needs_notification(mem);
    if (!needed) return needed.error();
    result.notify = *needed;
  }
  return result;
}

}  // namespace minivmm::virtio
