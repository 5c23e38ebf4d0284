#include "boot/aml.h"

#include <cstring>

namespace minivmm::boot::aml {
namespace {

constexpr uint8_t kNullName = 0x00;
constexpr size_t kNameSegSize = 4;
constexpr uint8_t kEndTag = 0x79;  // small item 0x0f, length 1 (§6.4.2.9)

// resize + memcpy rather than vector::insert: g++ 12 at -O3 reports false array-bounds
// and stringop-overflow warnings for the inlined insert.
void append(Bytes& out, std::span<const uint8_t> bytes) {
  if (bytes.empty()) return;
  const size_t old = out.size();
  out.resize(old + bytes.size());
  std::memcpy(out.data() + old, bytes.data(), bytes.size());
}

template <typename T>
void append_le(Bytes& out, T value) {
  for (size_t i = 0; i < sizeof(T); ++i) {
    out.push_back(static_cast<uint8_t>(static_cast<uint64_t>(value) >> (8 * i)));
  }
}

bool is_lead_name_char(char c) {
  return (c >= 'A' && c <= 'Z') || c == '_';
}
bool is_name_char(char c) {
  return is_lead_name_char(c) || (c >= '0' && c <= '9');
}

// §20.2.2 NameSeg: 4 characters, a short segment padded with '_'.
bool append_name_seg(Bytes& out, std::string_view seg) {
  if (seg.empty() || seg.size() > kNameSegSize || !is_lead_name_char(seg[0])) return false;
  for (char c : seg) {
    if (!is_name_char(c)) return false;
    out.push_back(static_cast<uint8_t>(c));
  }
  out.insert(out.end(), kNameSegSize - seg.size(), '_');
  return true;
}

// Op [ExtOp] PkgLength NameString TermList, shared by Scope and Device.
Bytes named_block(std::span<const uint8_t> opcode, std::string_view block_name,
                  std::span<const Bytes> terms) {
  Bytes body = name_string(block_name);
  if (body.empty()) return {};
  for (const Bytes& term : terms) append(body, term);
  Bytes pkg = with_pkg_length(body);
  if (pkg.empty()) return {};
  Bytes out(opcode.begin(), opcode.end());
  append(out, pkg);
  return out;
}

int hex_digit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

}  // namespace

Bytes pkg_length(uint32_t value) {
  if (value > kMaxPkgLength) return {};
  if (value < 64) return {static_cast<uint8_t>(value)};
  // Lead byte: bits 7:6 = number of following bytes, bits 3:0 = low nibble of the length.
  const uint32_t follow = value < (1u << 12) ? 1 : value < (1u << 20) ? 2 : 3;
  Bytes out{static_cast<uint8_t>((follow << 6) | (value & 0xf))};
  for (uint32_t i = 0; i < follow; ++i) out.push_back(static_cast<uint8_t>(value >> (4 + 8 * i)));
  return out;
}

Bytes with_pkg_length(std::span<const uint8_t> payload) {
  // The length includes the PkgLength bytes: pick the smallest encoding that still fits.
  for (uint64_t size = 1; size <= 4; ++size) {
    const uint64_t total = payload.size() + size;
    if (total > kMaxPkgLength) return {};
    Bytes out = pkg_length(static_cast<uint32_t>(total));
    if (out.size() == size) {
      append(out, payload);
      return out;
    }
  }
  return {};
}

Bytes name_string(std::string_view name) {
  Bytes out;
  size_t pos = 0;
  if (!name.empty() && name[0] == '\\') {
    out.push_back(kRootChar);
    pos = 1;
  } else {
    while (pos < name.size() && name[pos] == '^') {
      out.push_back(kParentPrefix);
      ++pos;
    }
  }
  std::vector<std::string_view> segs;
  std::string_view rest = name.substr(pos);
  while (!rest.empty()) {
    const size_t dot = rest.find('.');
    segs.push_back(rest.substr(0, dot));
    if (dot == std::string_view::npos) break;
    rest.remove_prefix(dot + 1);
    if (rest.empty()) return {};  // trailing dot
  }
  if (segs.size() > 255) return {};
  if (segs.empty()) {
    out.push_back(kNullName);
    return out;
  }
  if (segs.size() == 2) out.push_back(kDualNamePrefix);
  if (segs.size() > 2) {
    out.push_back(kMultiNamePrefix);
    out.push_back(static_cast<uint8_t>(segs.size()));
  }
  for (std::string_view seg : segs) {
    if (!append_name_seg(out, seg)) return {};
  }
  return out;
}

Bytes integer(uint64_t value) {
  if (value == 0) return {kZeroOp};
  if (value == 1) return {kOneOp};
  Bytes out;
  if (value <= 0xff) {
    out.push_back(kBytePrefix);
    append_le(out, static_cast<uint8_t>(value));
  } else if (value <= 0xffff) {
    out.push_back(kWordPrefix);
    append_le(out, static_cast<uint16_t>(value));
  } else if (value <= 0xffff'ffff) {
    out.push_back(kDWordPrefix);
    append_le(out, static_cast<uint32_t>(value));
  } else {
    out.push_back(kQWordPrefix);
    append_le(out, value);
  }
  return out;
}

Bytes string(std::string_view value) {
  Bytes out{kStringPrefix};
  for (char c : value) {
    if (c <= 0 || static_cast<unsigned char>(c) > 0x7f) return {};
    out.push_back(static_cast<uint8_t>(c));
  }
  out.push_back(0);
  return out;
}

Bytes buffer(std::span<const uint8_t> bytes) {
  Bytes body = integer(bytes.size());
  append(body, bytes);
  Bytes pkg = with_pkg_length(body);
  if (pkg.empty()) return {};
  Bytes out{kBufferOp};
  append(out, pkg);
  return out;
}

Bytes package(std::initializer_list<Bytes> elements) {
  return package(std::span<const Bytes>(elements.begin(), elements.size()));
}

Bytes package(std::span<const Bytes> elements) {
  if (elements.size() > 255) return {};
  Bytes body{static_cast<uint8_t>(elements.size())};
  for (const Bytes& element : elements) append(body, element);
  Bytes pkg = with_pkg_length(body);
  if (pkg.empty()) return {};
  Bytes out{kPackageOp};
  append(out, pkg);
  return out;
}

Bytes name(std::string_view object_name, const Bytes& value) {
  Bytes encoded = name_string(object_name);
  if (encoded.empty() || value.empty()) return {};
  Bytes out{kNameOp};
  append(out, encoded);
  append(out, value);
  return out;
}

Bytes scope(std::string_view scope_name, std::span<const Bytes> terms) {
  const uint8_t op[] = {kScopeOp};
  return named_block(op, scope_name, terms);
}

Bytes device(std::string_view device_name, std::span<const Bytes> terms) {
  const uint8_t op[] = {kExtOpPrefix, kDeviceOp};
  return named_block(op, device_name, terms);
}

uint32_t eisa_id_value(std::string_view id) {
  if (id.size() != 7) return 0;
  uint8_t bytes[4];
  for (size_t i = 0; i < 3; ++i) {
    if (id[i] < 'A' || id[i] > 'Z') return 0;
  }
  // Letters are stored as (c - 0x40) in 5 bits: byte 0 = c1 << 2 | c2 >> 3, byte 1 = c2 << 5 | c3.
  const auto letter = [&](size_t i) { return static_cast<uint32_t>(id[i] - 0x40); };
  bytes[0] = static_cast<uint8_t>((letter(0) << 2) | (letter(1) >> 3));
  bytes[1] = static_cast<uint8_t>(((letter(1) & 0x7) << 5) | letter(2));
  for (size_t i = 0; i < 2; ++i) {
    const int hi = hex_digit(id[3 + 2 * i]);
    const int lo = hex_digit(id[4 + 2 * i]);
    if (hi < 0 || lo < 0) return 0;
    bytes[2 + i] = static_cast<uint8_t>((hi << 4) | lo);
  }
  uint32_t value;
  std::memcpy(&value, bytes, sizeof value);  // byte 0 first in memory: x86 is little-endian
  return value;
}

Bytes eisa_id(std::string_view id) {
  const uint32_t value = eisa_id_value(id);
  if (value == 0) return {};
  Bytes out{kDWordPrefix};
  append_le(out, value);
  return out;
}

Bytes io_port(bool decode16, uint16_t min, uint16_t max, uint8_t alignment, uint8_t length) {
  Bytes out{0x47, static_cast<uint8_t>(decode16 ? 1 : 0)};  // item 0x08, length 7
  append_le(out, min);
  append_le(out, max);
  out.push_back(alignment);
  out.push_back(length);
  return out;
}

Bytes irq_no_flags(uint8_t irq) {
  if (irq > 15) return {};
  Bytes out{0x22};  // item 0x04, length 2: mask only
  append_le(out, static_cast<uint16_t>(1u << irq));
  return out;
}

Bytes memory32_fixed(bool writable, uint32_t base, uint32_t length) {
  Bytes out{0x86};  // large item 0x06
  append_le(out, uint16_t{9});
  out.push_back(writable ? 1 : 0);
  append_le(out, base);
  append_le(out, length);
  return out;
}

Bytes extended_interrupt(InterruptFlags flags, uint32_t irq) {
  Bytes out{0x89};              // large item 0x09
  append_le(out, uint16_t{6});  // flags, count, one 32-bit interrupt number
  out.push_back(static_cast<uint8_t>((flags.consumer ? 1 : 0) | (flags.edge ? 2 : 0) |
                                     (flags.active_low ? 4 : 0) | (flags.shared ? 8 : 0)));
  out.push_back(1);
  append_le(out, irq);
  return out;
}

Bytes resource_template(std::initializer_list<Bytes> descriptors) {
  Bytes data;
  for (const Bytes& d : descriptors) append(data, d);
  data.push_back(kEndTag);
  uint8_t sum = 0;
  for (uint8_t b : data) sum = static_cast<uint8_t>(sum + b);
  data.push_back(static_cast<uint8_t>(0x100 - sum));
  return buffer(data);
}

}  // namespace minivmm::boot::aml
