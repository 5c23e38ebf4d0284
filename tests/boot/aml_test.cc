#include "boot/aml.h"

#include <catch2/catch.hpp>
#include <string>
#include <vector>

using namespace minivmm::boot;
using aml::Bytes;

namespace {

Bytes chars(const std::string& s) {
  return Bytes(s.begin(), s.end());
}

Bytes concat(std::initializer_list<Bytes> parts) {
  Bytes out;
  for (const Bytes& p : parts) out.insert(out.end(), p.begin(), p.end());
  return out;
}

}  // namespace

TEST_CASE("PkgLength encodes each size class at its boundaries", "[boot][aml]") {
  CHECK(aml::pkg_length(0) == Bytes{0x00});
  CHECK(aml::pkg_length(63) == Bytes{0x3f});
  CHECK(aml::pkg_length(64) == Bytes{0x40, 0x04});
  CHECK(aml::pkg_length(0x123) == Bytes{0x43, 0x12});
  CHECK(aml::pkg_length(4095) == Bytes{0x4f, 0xff});
  CHECK(aml::pkg_length(4096) == Bytes{0x80, 0x00, 0x01});
  CHECK(aml::pkg_length((1u << 20) - 1) == Bytes{0x8f, 0xff, 0xff});
  CHECK(aml::pkg_length(1u << 20) == Bytes{0xc0, 0x00, 0x00, 0x01});
  CHECK(aml::pkg_length(aml::kMaxPkgLength) == Bytes{0xcf, 0xff, 0xff, 0xff});
  CHECK(aml::pkg_length(aml::kMaxPkgLength + 1).empty());
}

TEST_CASE("with_pkg_length counts its own bytes", "[boot][aml]") {
  auto encoded_length = [](size_t payload) {
    const Bytes out = aml::with_pkg_length(Bytes(payload, 0xab));
    REQUIRE(out.size() > payload);
    return out.size() - payload;
  };
  CHECK(aml::with_pkg_length(Bytes(62, 0))[0] == 63);  // 62 + 1 = 63 fits one byte
  CHECK(encoded_length(62) == 1);
  CHECK(aml::with_pkg_length(Bytes(63, 0))[0] == 0x41);  // 63 + 2 = 65 = 0x41
  CHECK(encoded_length(63) == 2);
  CHECK(encoded_length(4093) == 2);  // 4093 + 2 = 4095
  CHECK(encoded_length(4094) == 3);  // 4094 + 2 = 4096 does not fit 12 bits
  const Bytes at_4094 = aml::with_pkg_length(Bytes(4094, 0));
  CHECK(Bytes(at_4094.begin(), at_4094.begin() + 3) == Bytes{0x81, 0x00, 0x01});  // 4097
  CHECK(encoded_length((1u << 20) - 4) == 3);
  CHECK(encoded_length((1u << 20) - 3) == 4);
}

TEST_CASE("integers use the smallest encoding", "[boot][aml]") {
  CHECK(aml::integer(0) == Bytes{0x00});
  CHECK(aml::integer(1) == Bytes{0x01});
  CHECK(aml::integer(2) == Bytes{0x0a, 0x02});
  CHECK(aml::integer(0xff) == Bytes{0x0a, 0xff});
  CHECK(aml::integer(0x100) == Bytes{0x0b, 0x00, 0x01});
  CHECK(aml::integer(0xffff) == Bytes{0x0b, 0xff, 0xff});
  CHECK(aml::integer(0x10000) == Bytes{0x0c, 0x00, 0x00, 0x01, 0x00});
  CHECK(aml::integer(0xd000'0000) == Bytes{0x0c, 0x00, 0x00, 0x00, 0xd0});
  CHECK(aml::integer(0x1'0000'0000) == Bytes{0x0e, 0x00, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00});
  CHECK(aml::integer(UINT64_MAX) == Bytes{0x0e, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff});
}

TEST_CASE("name strings", "[boot][aml]") {
  CHECK(aml::name_string("_SB_") == chars("_SB_"));
  CHECK(aml::name_string("_SB") == chars("_SB_"));  // padded with '_'
  CHECK(aml::name_string("\\_SB_") == concat({{0x5c}, chars("_SB_")}));
  CHECK(aml::name_string("_SB_.COM1") == concat({{0x2e}, chars("_SB_COM1")}));
  CHECK(aml::name_string("\\_SB_.PCI0.ISA") == concat({{0x5c, 0x2f, 0x03}, chars("_SB_PCI0ISA_")}));
  CHECK(aml::name_string("^^FOO") == concat({{0x5e, 0x5e}, chars("FOO_")}));
  CHECK(aml::name_string("\\") == Bytes{0x5c, 0x00});
  CHECK(aml::name_string("V012") == chars("V012"));
  CHECK(aml::name_string("1ABC").empty());   // digits cannot lead
  CHECK(aml::name_string("ABCDE").empty());  // longer than 4
  CHECK(aml::name_string("abcd").empty());   // lower case
  CHECK(aml::name_string("_SB_.").empty());
  CHECK(aml::name_string("_SB_..X").empty());
}

TEST_CASE("strings, buffers and packages", "[boot][aml]") {
  CHECK(aml::string("LNRO0005") == concat({{0x0d}, chars("LNRO0005"), {0x00}}));
  CHECK(aml::string("") == Bytes{0x0d, 0x00});
  CHECK(aml::string("\xc3").empty());
  CHECK(aml::buffer(Bytes{1, 2, 3}) == Bytes{0x11, 0x06, 0x0a, 0x03, 1, 2, 3});
  CHECK(aml::buffer(Bytes{}) == Bytes{0x11, 0x02, 0x00});
  CHECK(aml::package({aml::integer(5), aml::integer(0)}) ==
        Bytes{0x12, 0x05, 0x02, 0x0a, 0x05, 0x00});
  CHECK(aml::package(std::vector<Bytes>(256, aml::integer(0))).empty());
}

TEST_CASE("name, scope and device", "[boot][aml]") {
  CHECK(aml::name("_UID", aml::integer(0)) == concat({{0x08}, chars("_UID"), {0x00}}));
  CHECK(aml::name("bad!", aml::integer(0)).empty());
  CHECK(aml::scope("\\_SB_", {}) == concat({{0x10, 0x06, 0x5c}, chars("_SB_")}));
  const Bytes uid = aml::name("_UID", aml::integer(1));
  const Bytes terms[] = {uid};
  CHECK(aml::device("COM1", terms) ==
        concat({{0x5b, 0x82, 0x0b}, chars("COM1"), uid}));  // 1 + 4 + 6 = 11
  // A device large enough to need a 2-byte PkgLength.
  std::vector<Bytes> many(20, aml::name("_UID", aml::integer(0x1234)));  // 8 bytes each
  const Bytes big = aml::device("BIG0", many);
  REQUIRE(big.size() == 2 + 2 + 4 + 160);
  CHECK(big[2] == (0x40 | ((2 + 4 + 160) & 0xf)));
  CHECK(big[3] == ((2 + 4 + 160) >> 4));
}

TEST_CASE("EISAID compression", "[boot][aml]") {
  CHECK(aml::eisa_id_value("PNP0501") == 0x0105'd041);
  CHECK(aml::eisa_id_value("PNP0A03") == 0x030a'd041);
  CHECK(aml::eisa_id("PNP0501") == Bytes{0x0c, 0x41, 0xd0, 0x05, 0x01});
  CHECK(aml::eisa_id_value("PNP050") == 0);
  CHECK(aml::eisa_id_value("pnp0501") == 0);
  CHECK(aml::eisa_id_value("PNP05G1") == 0);
  CHECK(aml::eisa_id("XYZ").empty());
}

TEST_CASE("resource descriptors", "[boot][aml]") {
  CHECK(aml::io_port(true, 0x3f8, 0x3f8, 0, 8) ==
        Bytes{0x47, 0x01, 0xf8, 0x03, 0xf8, 0x03, 0x00, 0x08});
  CHECK(aml::irq_no_flags(4) == Bytes{0x22, 0x10, 0x00});
  CHECK(aml::irq_no_flags(16).empty());
  CHECK(aml::memory32_fixed(true, 0xd000'0000, 0x1000) ==
        Bytes{0x86, 0x09, 0x00, 0x01, 0x00, 0x00, 0x00, 0xd0, 0x00, 0x10, 0x00, 0x00});
  CHECK(aml::extended_interrupt({}, 5) == Bytes{0x89, 0x06, 0x00, 0x03, 0x01, 5, 0, 0, 0});
  CHECK(aml::extended_interrupt(
            {.consumer = true, .edge = false, .active_low = true, .shared = true}, 33)[3] == 0x0d);
}

TEST_CASE("resource template ends with a checksummed End Tag", "[boot][aml]") {
  const Bytes rt = aml::resource_template(
      {aml::memory32_fixed(true, 0xd000'0000, 0x1000), aml::extended_interrupt({}, 5)});
  // BufferOp, PkgLength 26, BufferSize 23, 12 + 9 descriptor bytes, End Tag.
  REQUIRE(rt.size() == 2 + 2 + 23);
  CHECK(Bytes(rt.begin(), rt.begin() + 4) == Bytes{0x11, 0x1a, 0x0a, 0x17});
  CHECK(rt[rt.size() - 2] == 0x79);
  uint8_t sum = 0;
  for (size_t i = 4; i < rt.size(); ++i) sum = static_cast<uint8_t>(sum + rt[i]);
  CHECK(sum == 0);
  const Bytes empty = aml::resource_template({});
  CHECK(empty == Bytes{0x11, 0x05, 0x0a, 0x02, 0x79, 0x87});
}
