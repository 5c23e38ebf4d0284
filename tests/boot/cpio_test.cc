#include "boot/hostroot/cpio.h"

#include <catch2/catch.hpp>
#include <string>

#include "tests/boot/cpio_reader.h"

using namespace minivmm::boot;
using minivmm::boot::test::read_cpio;

TEST_CASE("cpio newc: entries read back with names, modes, sizes and padding",
          "[boot][hostroot][cpio]") {
  CpioWriter w;
  REQUIRE(w.add_directory("dev"));
  REQUIRE(w.add_char_device("dev/console", 0600, 5, 1));
  REQUIRE(w.add_file("init", std::string_view("#!/bin/sh\n"), 0755));
  // Sizes 0..5 and names of lengths that leave each residue mod 4 exercise both paddings.
  for (size_t n = 0; n < 6; ++n) {
    REQUIRE(w.add_file(std::string("f") + std::string(n, 'x'), std::string(n, 'a')));
  }
  const auto archive = w.finish();
  CHECK(archive.size() % 4 == 0);
  const auto entries = read_cpio(archive);
  REQUIRE(entries.size() == 9);
  CHECK(entries[0].name == "dev");
  CHECK(entries[0].mode == (kCpioDirectory | 0755));
  CHECK(entries[0].nlink == 2);
  CHECK(entries[1].name == "dev/console");
  CHECK(entries[1].mode == (kCpioCharDevice | 0600));
  CHECK(entries[1].rdev_major == 5);
  CHECK(entries[1].rdev_minor == 1);
  CHECK(entries[2].name == "init");
  CHECK(entries[2].mode == (kCpioRegular | 0755));
  CHECK(entries[2].text() == "#!/bin/sh\n");
  for (size_t n = 0; n < 6; ++n) {
    CHECK(entries[3 + n].name == "f" + std::string(n, 'x'));
    CHECK(entries[3 + n].text() == std::string(n, 'a'));
    CHECK(entries[3 + n].mode == (kCpioRegular | 0644));
  }
  for (size_t i = 0; i < entries.size(); ++i) {
    CHECK(entries[i].ino == i + 1);  // distinct inodes: the unpacker links equal ones
    CHECK(entries[i].uid == 0);
    CHECK(entries[i].mtime == 0);
  }
}

TEST_CASE("cpio newc: the first header's exact bytes", "[boot][hostroot][cpio]") {
  CpioWriter w;
  REQUIRE(w.add_file("ab", std::string_view("xyz"), 0644));
  const auto a = w.finish();
  const std::string head(a.begin(), a.begin() + 110);
  CHECK(head ==
        "070701"      // c_magic
        "00000001"    // c_ino
        "000081A4"    // c_mode: regular file 0644
        "00000000"    // c_uid
        "00000000"    // c_gid
        "00000001"    // c_nlink
        "00000000"    // c_mtime
        "00000003"    // c_filesize
        "00000000"    // c_maj
        "00000000"    // c_min
        "00000000"    // c_rmaj
        "00000000"    // c_rmin
        "00000003"    // c_namesize: "ab" and its NUL
        "00000000");  // c_chksum
  // 110 + "ab\0" = 113, padded to 116; data 3 bytes padded to 120; then the trailer.
  CHECK(std::string(a.begin() + 110, a.begin() + 113) == std::string("ab\0", 3));
  CHECK(std::string(a.begin() + 116, a.begin() + 119) == "xyz");
  CHECK(std::string(a.begin() + 120, a.begin() + 126) == "070701");
  CHECK(std::string(a.begin() + 230, a.begin() + 240) == "TRAILER!!!");
}

TEST_CASE("cpio newc: an empty archive is just the trailer", "[boot][hostroot][cpio]") {
  CpioWriter w;
  const auto a = w.finish();
  CHECK(read_cpio(a).empty());
  CHECK(a.size() == 124);  // 110 + 11 name bytes = 121, padded to 124
  // The writer starts over.
  REQUIRE(w.add_directory("x"));
  CHECK(read_cpio(w.finish()).size() == 1);
}

TEST_CASE("cpio newc: names the kernel would misplace are refused", "[boot][hostroot][cpio]") {
  CpioWriter w;
  for (const char* bad : {"", "/init", "a//b", "a/", "../x", "a/./b", "a/.."}) {
    INFO(bad);
    auto r = w.add_file(bad, std::string_view("x"));
    REQUIRE_FALSE(r);
    CHECK(r.error().starts_with("cpio: "));
  }
  CHECK_FALSE(w.add_directory(std::string("a\0b", 3)));
  CHECK(read_cpio(w.finish()).empty());  // nothing half-written
}
