#include "devices/debug_port.h"

#include <algorithm>

namespace minivmm::devices {

DebugPort::DebugPort(std::chrono::steady_clock::time_point start, Callback callback)
    : start_(start), callback_(std::move(callback)) {}

void DebugPort::read(uint64_t, std::span<uint8_t> data) {
  std::fill(data.begin(), data.end(), uint8_t{0});
}

void DebugPort::write(uint64_t offset, std::span<const uint8_t> data) {
  if (offset != 0 || data.empty()) return;
  const Entry entry{data[0], std::chrono::duration_cast<std::chrono::nanoseconds>(
                                 std::chrono::steady_clock::now() - start_)};
  {
    std::lock_guard lock(mutex_);
    if (entries_.size() < kMaxEntries) entries_.push_back(entry);
  }
  if (callback_) callback_(entry);
}

std::vector<DebugPort::Entry> DebugPort::entries() const {
  std::lock_guard lock(mutex_);
  return entries_;
}

}  // namespace minivmm::devices
