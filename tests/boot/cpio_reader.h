// Reads back a cpio "newc" archive for the tests, independently of boot/hostroot/cpio.cc
// (Documentation/driver-api/early-userspace/buffer-format.rst), checking every rule the
// kernel's unpacker relies on: the magic, hex fields, 4-byte alignment of names and data,
// and the trailer as the last entry.
#pragma once

#include <catch2/catch.hpp>
#include <cstdint>
#include <string>
#include <vector>

namespace minivmm::boot::test {

struct CpioEntry {
  std::string name;
  uint32_t ino, mode, uid, gid, nlink, mtime, rdev_major, rdev_minor;
  std::vector<uint8_t> data;
  std::string text() const { return {data.begin(), data.end()}; }
};

inline uint32_t cpio_hex(const std::vector<uint8_t>& a, size_t at) {
  uint32_t v = 0;
  for (size_t i = 0; i < 8; ++i) {
    const char c = static_cast<char>(a[at + i]);
    REQUIRE(((c >= '0' && c <= '9') || (c >= 'A' && c <= 'F') || (c >= 'a' && c <= 'f')));
    v = v * 16 + static_cast<uint32_t>(c <= '9' ? c - '0' : (c | 0x20) - 'a' + 10);
  }
  return v;
}

// Every entry before the trailer; REQUIREs that the archive is well formed and ends with it.
inline std::vector<CpioEntry> read_cpio(const std::vector<uint8_t>& a) {
  std::vector<CpioEntry> entries;
  size_t at = 0;
  for (;;) {
    REQUIRE(at % 4 == 0);
    REQUIRE(at + 110 <= a.size());
    REQUIRE(std::string(a.begin() + static_cast<long>(at), a.begin() + static_cast<long>(at) + 6) ==
            "070701");
    CpioEntry e{};
    uint32_t f[13];
    for (size_t i = 0; i < 13; ++i) f[i] = cpio_hex(a, at + 6 + 8 * i);
    e.ino = f[0], e.mode = f[1], e.uid = f[2], e.gid = f[3], e.nlink = f[4], e.mtime = f[5];
    const uint32_t size = f[6], namesize = f[11];
    e.rdev_major = f[9], e.rdev_minor = f[10];
    CHECK(f[12] == 0);  // c_check: 0 in newc
    REQUIRE(namesize >= 1);
    REQUIRE(at + 110 + namesize <= a.size());
    REQUIRE(a[at + 110 + namesize - 1] == 0);  // NUL-terminated, namesize counts it
    e.name.assign(a.begin() + static_cast<long>(at + 110),
                  a.begin() + static_cast<long>(at + 110 + namesize - 1));
    at += 110 + namesize;
    while (at % 4 != 0) REQUIRE(a.at(at++) == 0);  // name padding is zeros
    REQUIRE(at + size <= a.size());
    e.data.assign(a.begin() + static_cast<long>(at), a.begin() + static_cast<long>(at + size));
    at += size;
    while (at % 4 != 0) REQUIRE(a.at(at++) == 0);
    if (e.name == "TRAILER!!!") {
      CHECK(size == 0);
      REQUIRE(at == a.size());  // nothing after the trailer
      return entries;
    }
    entries.push_back(std::move(e));
  }
}

inline const CpioEntry* find_entry(const std::vector<CpioEntry>& entries, const std::string& name) {
  for (const auto& e : entries) {
    if (e.name == name) return &e;
  }
  return nullptr;
}

}  // namespace minivmm::boot::test
