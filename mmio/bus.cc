#include "mmio/bus.h"

#include <algorithm>
#include <iterator>
#include <utility>

namespace minivmm::mmio {

bool Bus::insert(uint64_t base, uint64_t len, std::shared_ptr<BusDevice> device) {
  if (len == 0 || device == nullptr) return false;
  const uint64_t last = base + (len - 1);
  if (last < base) return false;  // wraps past 2^64
  // The first range starting after `base` must start after `last` ...
  auto next = ranges_.upper_bound(base);
  if (next != ranges_.end() && next->first <= last) return false;
  // ... and the range starting at or before `base` must end before it.
  if (next != ranges_.begin() && std::prev(next)->second.last >= base) return false;
  ranges_.emplace_hint(next, base, Range{last, std::move(device)});
  return true;
}

Bus::Hit Bus::lookup(uint64_t addr, uint64_t size) const {
  if (size == 0) return {nullptr, 0};
  auto it = ranges_.upper_bound(addr);
  if (it == ranges_.begin()) return {nullptr, 0};
  --it;
  const uint64_t offset = addr - it->first;
  const uint64_t span_last = it->second.last - it->first;  // range length - 1
  // Overflow-safe form of `offset + size - 1 <= span_last`.
  if (offset > span_last || size - 1 > span_last - offset) return {nullptr, 0};
  return {it->second.device.get(), offset};
}

bool Bus::read(uint64_t addr, std::span<uint8_t> data) const {
  const Hit hit = lookup(addr, data.size());
  if (hit.device == nullptr) {
    std::fill(data.begin(), data.end(), uint8_t{0xff});
    return false;
  }
  hit.device->read(hit.offset, data);
  return true;
}

bool Bus::write(uint64_t addr, std::span<const uint8_t> data) const {
  const Hit hit = lookup(addr, data.size());
  if (hit.device == nullptr) return false;
  hit.device->write(hit.offset, data);
  return true;
}

}  // namespace minivmm::mmio
