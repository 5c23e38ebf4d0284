#include "devices/virtio_blk_request.h"

#include <algorithm>
#include <array>
#include <cstring>

namespace minivmm::devices {

using virtio::Descriptor;
using virtio::DescriptorChain;
using virtio::GuestMemory;

namespace {

// Appends host iovecs for bytes [skip, skip + len) of the buffer stream `bufs`. False when a
// piece does not translate (a buffer outside guest RAM) or there are more than `max` pieces.
bool collect_iovecs(const GuestMemory& mem, std::span<const Descriptor> bufs, uint64_t skip,
                    uint64_t len, uint32_t max, std::vector<iovec>& out) {
  for (const Descriptor& d : bufs) {
    if (len == 0) break;
    if (skip >= d.len) {
      skip -= d.len;
      continue;
    }
    const uint64_t piece = std::min<uint64_t>(d.len - skip, len);
    uint8_t* host = mem.translate(d.addr + skip, piece);
    if (host == nullptr) return false;
    if (out.size() >= max) return false;
    out.push_back(iovec{host, static_cast<size_t>(piece)});
    len -= piece;
    skip = 0;
  }
  return len == 0;
}

// virtio 1.2 §5.2.6: the status byte is the last byte of the device-writable part.
uint8_t* find_status(const GuestMemory& mem, const DescriptorChain& chain) {
  const auto writable = chain.writable();
  for (auto it = writable.rbegin(); it != writable.rend(); ++it) {
    if (it->len == 0) continue;
    return mem.translate(it->addr + it->len - 1, 1);
  }
  return nullptr;
}

// `sector + sectors` within capacity, without overflow.
bool in_range(uint64_t sector, uint64_t sectors, uint64_t capacity) {
  return sector <= capacity && sectors <= capacity - sector;
}

ParseOutcome fail(uint8_t status, uint8_t* status_ptr) {
  return ParseOutcome{status, status_ptr};
}

ParseOutcome parse_segments(const DescriptorChain& chain, const GuestMemory& mem,
                            const DiskProperties& props, bool is_discard, Request& out) {
  uint8_t* const st = out.status;
  const bool negotiated = is_discard ? props.discard : props.write_zeroes;
  if (!negotiated) return fail(kBlkSUnsupp, st);
  if (chain.writable_bytes() != 1) return fail(kBlkSIoErr, st);
  const uint64_t data = chain.readable_bytes() - sizeof(VirtioBlkReqHeader);
  constexpr uint64_t kSeg = sizeof(VirtioBlkDiscardWriteZeroes);
  if (data == 0 || data % kSeg != 0) return fail(kBlkSIoErr, st);
  const uint64_t count = data / kSeg;
  const uint32_t max_seg = is_discard ? props.max_discard_seg : props.max_write_zeroes_seg;
  const uint32_t max_sectors =
      is_discard ? props.max_discard_sectors : props.max_write_zeroes_sectors;
  // virtio 1.2 §5.2.6.2: more segments than advertised is an error.
  if (count > max_seg) return fail(kBlkSIoErr, st);
  if (props.read_only) return fail(kBlkSIoErr, st);

  virtio::ChainReader reader(mem, chain);
  if (!reader.skip(sizeof(VirtioBlkReqHeader))) return fail(kBlkSIoErr, st);
  for (uint64_t i = 0; i < count; ++i) {
    // Copied once: the guest may change the bytes afterwards (no double fetch).
    auto seg = reader.read_obj<VirtioBlkDiscardWriteZeroes>();
    if (!seg) return fail(kBlkSIoErr, st);
    // virtio 1.2 §5.2.6.2: reserved flags, or unmap on a discard, are UNSUPP.
    if ((seg->flags & ~kBlkDwzFUnmap) != 0) return fail(kBlkSUnsupp, st);
    if (is_discard && (seg->flags & kBlkDwzFUnmap) != 0) return fail(kBlkSUnsupp, st);
    if (seg->num_sectors > max_sectors) return fail(kBlkSIoErr, st);
    if (!in_range(seg->sector, seg->num_sectors, props.capacity_sectors)) {
      return fail(kBlkSIoErr, st);
    }
    if (seg->num_sectors == 0) continue;
    out.segments.push_back(
        Segment{seg->sector, seg->num_sectors, (seg->flags & kBlkDwzFUnmap) != 0});
  }
  return fail(kBlkSOk, st);
}

}  // namespace

// virtio 1.2 §5.2.6 "Device Operation", §5.2.6.2 "Device Requirements".
ParseOutcome parse_into(const DescriptorChain& chain, const GuestMemory& mem,
                        const DiskProperties& props, Request& out) {
  out.iov.clear();
  out.segments.clear();
  out.data_len = 0;
  out.sector = 0;
  out.status = nullptr;
  if (!chain.is_valid()) return fail(kBlkSIoErr, nullptr);

  uint8_t* const st = find_status(mem, chain);
  out.status = st;
  if (st == nullptr) return fail(kBlkSIoErr, nullptr);

  constexpr uint64_t kHeader = sizeof(VirtioBlkReqHeader);
  if (chain.readable_bytes() < kHeader) return fail(kBlkSIoErr, st);
  virtio::ChainReader reader(mem, chain);
  auto header = reader.read_obj<VirtioBlkReqHeader>();
  if (!header) return fail(kBlkSIoErr, st);
  out.sector = header->sector;

  const uint64_t readable_data = chain.readable_bytes() - kHeader;
  const uint64_t writable_data = chain.writable_bytes() - 1;  // >= 1: the status exists

  switch (header->type) {
    case kBlkTIn: {
      out.type = RequestType::kIn;
      if (readable_data != 0) return fail(kBlkSIoErr, st);
      if (writable_data == 0 || writable_data % kSectorSize != 0) return fail(kBlkSIoErr, st);
      if (!in_range(header->sector, writable_data >> kSectorShift, props.capacity_sectors)) {
        return fail(kBlkSIoErr, st);
      }
      if (!collect_iovecs(mem, chain.writable(), 0, writable_data, props.max_iovecs, out.iov)) {
        return fail(kBlkSIoErr, st);
      }
      out.data_len = writable_data;
      return fail(kBlkSOk, st);
    }
    case kBlkTOut: {
      out.type = RequestType::kOut;
      if (writable_data != 0) return fail(kBlkSIoErr, st);
      if (readable_data == 0 || readable_data % kSectorSize != 0) return fail(kBlkSIoErr, st);
      if (props.read_only) return fail(kBlkSIoErr, st);
      if (!in_range(header->sector, readable_data >> kSectorShift, props.capacity_sectors)) {
        return fail(kBlkSIoErr, st);
      }
      if (!collect_iovecs(mem, chain.readable(), kHeader, readable_data, props.max_iovecs,
                          out.iov)) {
        return fail(kBlkSIoErr, st);
      }
      out.data_len = readable_data;
      return fail(kBlkSOk, st);
    }
    case kBlkTFlush:
      out.type = RequestType::kFlush;
      // virtio 1.2 §5.2.6.1: a flush carries sector 0 and no data.
      if (header->sector != 0 || readable_data != 0 || writable_data != 0) {
        return fail(kBlkSIoErr, st);
      }
      return fail(kBlkSOk, st);
    case kBlkTGetId:
      out.type = RequestType::kGetId;
      if (readable_data != 0 || writable_data < kBlkIdBytes) return fail(kBlkSIoErr, st);
      if (!collect_iovecs(mem, chain.writable(), 0, kBlkIdBytes, props.max_iovecs, out.iov)) {
        return fail(kBlkSIoErr, st);
      }
      out.data_len = kBlkIdBytes;
      return fail(kBlkSOk, st);
    case kBlkTDiscard:
      out.type = RequestType::kDiscard;
      return parse_segments(chain, mem, props, true, out);
    case kBlkTWriteZeroes:
      out.type = RequestType::kWriteZeroes;
      return parse_segments(chain, mem, props, false, out);
    default:
      // GET_LIFETIME, SECURE_ERASE and anything unknown (virtio 1.2 §5.2.6.2).
      return fail(kBlkSUnsupp, st);
  }
}

ParseResult parse(const DescriptorChain& chain, const GuestMemory& mem,
                  const DiskProperties& props) {
  ParseResult result;
  result.outcome = parse_into(chain, mem, props, result.request);
  return result;
}

uint32_t write_serial(const std::vector<iovec>& iov, const char* serial, size_t serial_len) {
  std::array<uint8_t, kBlkIdBytes> id{};
  std::memcpy(id.data(), serial, std::min<size_t>(serial_len, kBlkIdBytes));
  size_t done = 0;
  for (const iovec& v : iov) {
    const size_t n = std::min(v.iov_len, kBlkIdBytes - done);
    std::memcpy(v.iov_base, id.data() + done, n);
    done += n;
    if (done == kBlkIdBytes) break;
  }
  return static_cast<uint32_t>(done);
}

}  // namespace minivmm::devices
