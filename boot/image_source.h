// Random access to a kernel file: bytes already in memory, or a reader that copies a range
// of the file out (the VMM's pread), so that a large vmlinux is read straight into guest RAM
// segment by segment instead of into a buffer first. The file is untrusted and may change
// under us; a range that is not all there reads as false, never as zeroes.
#pragma once

#include <cstdint>
#include <cstring>
#include <functional>
#include <span>
#include <utility>
#include <vector>

namespace minivmm::boot {

class ImageSource {
 public:
  // Copies file bytes [offset, offset + out.size()) into out; false when it cannot.
  using Reader = std::function<bool(uint64_t offset, std::span<uint8_t> out)>;

  ImageSource() = default;
  // A span is a source (implicit, so that `config.kernel = bytes;` reads naturally). The bytes
  // must outlive the source.
  ImageSource(std::span<const uint8_t> bytes)  // NOLINT(google-explicit-constructor)
      : size_(bytes.size()), bytes_(bytes) {}
  ImageSource(const std::vector<uint8_t>& bytes)  // NOLINT(google-explicit-constructor)
      : ImageSource(std::span<const uint8_t>(bytes)) {}
  ImageSource(std::vector<uint8_t>&&) = delete;  // it would dangle: name the vector
  ImageSource(uint64_t size, Reader reader) : size_(size), reader_(std::move(reader)) {}

  uint64_t size() const { return size_; }
  bool empty() const { return size_ == 0; }

  // The whole image when it is in memory; empty for a reader.
  std::span<const uint8_t> bytes() const { return bytes_; }

  bool read(uint64_t offset, std::span<uint8_t> out) const {
    if (offset > size_ || out.size() > size_ - offset) return false;
    if (out.empty()) return true;
    if (reader_) return reader_(offset, out);
    std::memcpy(out.data(), bytes_.data() + offset, out.size());
    return true;
  }

 private:
  uint64_t size_ = 0;
  std::span<const uint8_t> bytes_;
  Reader reader_;
};

}  // namespace minivmm::boot
