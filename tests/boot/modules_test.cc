#include "boot/hostroot/modules.h"

#include <catch2/catch.hpp>
#include <string>
#include <vector>

using namespace minivmm::boot;

namespace {

// The shape of Debian 12's cloud kernel's modules.dep for what host-root mode needs.
constexpr const char* kDep =
    "kernel/fs/fuse/fuse.ko:\n"
    "kernel/fs/fuse/virtiofs.ko: kernel/drivers/virtio/virtio.ko "
    "kernel/drivers/virtio/virtio_ring.ko kernel/fs/fuse/fuse.ko\n"
    "kernel/drivers/virtio/virtio_ring.ko:\n"
    "kernel/drivers/virtio/virtio.ko:\n"
    "kernel/drivers/virtio/virtio_mmio.ko: kernel/drivers/virtio/virtio.ko "
    "kernel/drivers/virtio/virtio_ring.ko\n"
    "kernel/drivers/char/virtio_console.ko: kernel/drivers/virtio/virtio.ko "
    "kernel/drivers/virtio/virtio_ring.ko\n"
    "kernel/fs/overlayfs/overlay.ko:\n"
    "kernel/drivers/misc/pvpanic/pvpanic.ko:\n"
    "kernel/drivers/misc/pvpanic/pvpanic-mmio.ko: kernel/drivers/misc/pvpanic/pvpanic.ko\n";

std::vector<std::string> names(const std::vector<std::string>& paths) {
  std::vector<std::string> out;
  for (const auto& p : paths) out.push_back(module_name(p));
  return out;
}

std::vector<std::string> order(std::string_view dep, const std::vector<ModuleRequest>& wanted,
                               const std::set<std::string>& builtin = {}) {
  auto index = parse_modules_dep(dep);
  REQUIRE(index);
  auto result = module_load_order(*index, builtin, wanted);
  REQUIRE(result);
  return names(*result);
}

std::string order_error(std::string_view dep, const std::vector<ModuleRequest>& wanted) {
  auto index = parse_modules_dep(dep);
  REQUIRE(index);
  auto result = module_load_order(*index, {}, wanted);
  REQUIRE_FALSE(result);
  return result.error();
}

}  // namespace

TEST_CASE("module_name: the kernel's spelling of a module file", "[boot][hostroot][modules]") {
  CHECK(module_name("kernel/drivers/misc/pvpanic/pvpanic-mmio.ko") == "pvpanic_mmio");
  CHECK(module_name("kernel/fs/fuse/fuse.ko.xz") == "fuse");
  CHECK(module_name("virtio_mmio.ko.zst") == "virtio_mmio");
  CHECK(module_name("pvpanic-mmio") == "pvpanic_mmio");
  CHECK(module_is_compressed("a/b.ko.xz"));
  CHECK_FALSE(module_is_compressed("a/b.ko"));
}

TEST_CASE("module_load_order: dependencies first, each once", "[boot][hostroot][modules]") {
  const auto got = order(kDep, {{"virtio_mmio", true},
                                {"virtio_console", true},
                                {"virtiofs", true},
                                {"overlay", false},
                                {"pvpanic-mmio", false}});
  CHECK(got == std::vector<std::string>{"virtio", "virtio_ring", "virtio_mmio", "virtio_console",
                                        "fuse", "virtiofs", "overlay", "pvpanic", "pvpanic_mmio"});
}

TEST_CASE("module_load_order: a deep chain loads leaf first", "[boot][hostroot][modules]") {
  const auto got = order("a.ko: b.ko c.ko\nb.ko: c.ko d.ko\nc.ko: d.ko\nd.ko:\n", {{"a", true}});
  CHECK(got == std::vector<std::string>{"d", "c", "b", "a"});
}

TEST_CASE("module_load_order: built-in modules are skipped", "[boot][hostroot][modules]") {
  const auto builtin = parse_modules_builtin(
      "kernel/drivers/virtio/virtio.ko\nkernel/drivers/virtio/virtio_ring.ko\n"
      "kernel/drivers/virtio/virtio_mmio.ko\nkernel/fs/fuse/virtiofs.ko\n");
  CHECK(builtin.contains("virtio_mmio"));
  // virtiofs built in, though the test's modules.dep also names it: not packed. Its
  // dependencies then are not wanted either.
  const auto got =
      order(kDep, {{"virtio_mmio", true}, {"virtiofs", true}, {"overlay", false}}, builtin);
  CHECK(got == std::vector<std::string>{"overlay"});
}

TEST_CASE("module_load_order: missing modules", "[boot][hostroot][modules]") {
  // An optional one is skipped, a required one is an error.
  CHECK(order("a.ko:\n", {{"a", true}, {"nope", false}}) == std::vector<std::string>{"a"});
  CHECK(order_error("a.ko:\n", {{"virtiofs", true}}) ==
        "the module tree has no module virtiofs (neither in modules.dep nor in modules.builtin)");
  // A dependency without a line of its own (a broken or foreign modules.dep).
  CHECK(order_error("a.ko: b.ko\n", {{"a", true}}) ==
        "modules.dep: a depends on b.ko, which has no line of its own");
}

TEST_CASE("module_load_order: a dependency cycle is an error", "[boot][hostroot][modules]") {
  CHECK(order_error("a.ko: b.ko\nb.ko: c.ko\nc.ko: a.ko\n", {{"a", true}}) ==
        "modules.dep: dependency cycle: a -> b -> c -> a");
  CHECK(order_error("a.ko: a.ko\n", {{"a", true}}) == "modules.dep: dependency cycle: a -> a");
}

TEST_CASE("parse_modules_dep: malformed files", "[boot][hostroot][modules]") {
  auto r = parse_modules_dep("a.ko:\nno colon here\n");
  REQUIRE_FALSE(r);
  CHECK(r.error() == "modules.dep line 2: not 'PATH: DEPS': no colon here");
  r = parse_modules_dep("x/a.ko:\ny/a.ko:\n");
  REQUIRE_FALSE(r);
  CHECK(r.error() == "modules.dep line 2: a second module named a");
  r = parse_modules_dep(": a.ko\n");
  CHECK_FALSE(r);
  // Blank lines, CRLF and extra spaces are fine.
  r = parse_modules_dep("\r\n a.ko :  b.ko\t c.ko \r\nb.ko:\nc.ko:\n\n");
  REQUIRE(r);
  CHECK(r->deps_by_path.at("a.ko") == std::vector<std::string>{"b.ko", "c.ko"});
}
