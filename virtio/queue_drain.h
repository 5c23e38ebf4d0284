// drain_queue: the loop every virtio device runs over a queue whose requests it completes
// at once (rng, console, ...), so that a device writes only what it does with one chain.
//
// virtio 1.2 §2.7.13 (processing available buffers) with notification suppression
// (§2.7.10): notifications are off while the ring is drained, back on afterwards, and the
// ring is read once more so that a buffer the driver made available in between -- without
// notifying, since notifications were off -- is not left behind.
//
// Threads: whichever thread owns the queue (a device worker).
#pragma once

#include <cstdint>
#include <functional>

#include "virtio/descriptor_chain.h"
#include "virtio/guest_memory.h"
#include "virtio/queue.h"
#include "virtio/error.h"

namespace minivmm::virtio {

// Handles one valid chain; returns the number of bytes it wrote into the chain's
// device-writable buffers (the used length).
using ChainHandler = std::function<uint32_t(const DescriptorChain& chain)>;

// Hands every available valid chain of `queue` to `handle` and returns it to the used ring;
// a chain the validation refused (a loop, a bad length, ...) is returned with used length 0
// without reaching `handle`. At most `budget` chains are taken (then notifications stay
// off: call again). Returns whether the driver needs an interrupt, or the error that broke
// the queue: the avail index too far ahead, an unusable head, rings outside guest RAM. The
// device must then stop using the queue and ask for a reset (set_needs_reset()).
struct DrainResult {
  bool notify = false;     // interrupt the driver (virtio 1.2 §2.7.10)
  bool exhausted = false;  // the budget ran out: more chains may be waiting
};
Result<DrainResult> drain_queue(Queue& queue, const GuestMemory& mem, const ChainHandler& handle,
                                uint32_t budget = UINT32_MAX);

// As drain_queue, but takes the next chain only while `want()` is true: for a queue the
// device fills from a host source (a receive queue, while host data waits) or empties into
// a host sink that can be full (a socket). When `want()` turns false the device stops and
// notifications are back on; it calls again once it wants more (data arrived, the sink
// drained), so no chain is left behind.
Result<DrainResult> drain_queue_while(Queue& queue, const GuestMemory& mem,
                                      const std::function<bool()>& want,
                                      const ChainHandler& handle, uint32_t budget = UINT32_MAX);

}  // namespace minivmm::virtio
