#include "boot/hostroot/initramfs.h"

#include <unistd.h>

#include <algorithm>
#include <catch2/catch.hpp>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>

#include "boot/hostroot/cpio.h"
#include "tests/boot/cpio_reader.h"

using namespace minivmm::boot;
using minivmm::boot::test::CpioEntry;
using minivmm::boot::test::find_entry;
using minivmm::boot::test::read_cpio;
namespace fs = std::filesystem;

namespace {

// A module tree in a fresh temporary directory: modules.dep, modules.builtin and fake .ko
// files that carry a .modinfo-like "vermagic=" string.
struct FakeTree {
  fs::path root;
  explicit FakeTree(const std::string& release = "6.1.0-test") {
    char tmpl[] = "/tmp/minivmm-modtree-XXXXXX";
    REQUIRE(mkdtemp(tmpl) != nullptr);
    root = tmpl;
    tree = root / "lib/modules" / release;
    fs::create_directories(tree);
    write(
        "modules.dep",
        "kernel/fs/fuse/fuse.ko:\n"
        "kernel/fs/fuse/virtiofs.ko: kernel/drivers/virtio/virtio_ring.ko kernel/fs/fuse/fuse.ko\n"
        "kernel/drivers/virtio/virtio_ring.ko:\n"
        "kernel/drivers/char/virtio_console.ko: kernel/drivers/virtio/virtio_ring.ko\n"
        "kernel/fs/overlayfs/overlay.ko:\n");
    write("modules.builtin", "kernel/drivers/virtio/virtio_mmio.ko\n");
    for (const char* m :
         {"kernel/fs/fuse/fuse.ko", "kernel/fs/fuse/virtiofs.ko",
          "kernel/drivers/virtio/virtio_ring.ko", "kernel/drivers/char/virtio_console.ko",
          "kernel/fs/overlayfs/overlay.ko"}) {
      module(m, release);
    }
  }
  ~FakeTree() {
    std::error_code ec;
    fs::remove_all(root, ec);
  }
  void write(const std::string& rel, const std::string& text) {
    fs::create_directories((tree / rel).parent_path());
    std::ofstream(tree / rel, std::ios::binary) << text;
  }
  void module(const std::string& rel, const std::string& release) {
    write(rel, std::string("\x7f"
                           "ELF....") +
                   '\0' + "license=GPL" + '\0' + "vermagic=" + release +
                   " SMP preempt mod_unload modversions " + '\0' + "name=" + rel);
  }
  fs::path tree;
};

std::vector<CpioEntry> unpack(const HostRootOptions& options) {
  auto archive = build_host_root_initramfs(options);
  INFO((archive ? std::string() : archive.error()));
  REQUIRE(archive);
  return read_cpio(*archive);
}

}  // namespace

TEST_CASE("host-root initramfs: the layout the init reads", "[boot][hostroot][initramfs]") {
  FakeTree t;
  HostRootOptions o;
  o.command = "uname -r; echo 'a b'";
  o.cwd = "/work";
  o.env = {"TERM=dumb", "A=b=c"};
  o.module_tree = t.tree;
  o.kernel_version = "6.1.0-test";
  const auto entries = unpack(o);
  for (const char* dir : {"dev", "proc", "sys", "newroot", "minivmm", "minivmm/modules"}) {
    const auto* e = find_entry(entries, dir);
    REQUIRE(e);
    CHECK(e->mode == (kCpioDirectory | 0755));
  }
  const auto* console = find_entry(entries, "dev/console");
  REQUIRE(console);
  CHECK(console->mode == (kCpioCharDevice | 0600));
  CHECK((console->rdev_major == 5 && console->rdev_minor == 1));
  const auto* init = find_entry(entries, "init");
  REQUIRE(init);
  CHECK(init->mode == (kCpioRegular | 0755));
  const auto embedded = embedded_host_root_init();
  CHECK(init->data == std::vector<uint8_t>(embedded.begin(), embedded.end()));
  REQUIRE(embedded.size() > 4);
  CHECK(std::memcmp(embedded.data(),
                    "\x7f"
                    "ELF",
                    4) == 0);
  CHECK(find_entry(entries, "minivmm/exec")->text() == o.command);
  CHECK(find_entry(entries, "minivmm/config")->text() ==
        "tag=hostroot\ncwd=/work\nhostname=minivmm\nwait_ms=5000\nenv=TERM=dumb\nenv=A=b=c\n");
  // virtio_mmio is built in; dependencies first.
  CHECK(find_entry(entries, "minivmm/modules.load")->text() ==
        "virtio_ring.ko\nvirtio_console.ko\nfuse.ko\nvirtiofs.ko\noverlay.ko\n");
  const auto* fuse = find_entry(entries, "minivmm/modules/fuse.ko");
  REQUIRE(fuse);
  CHECK(module_vermagic_release(fuse->data) == "6.1.0-test");
}

TEST_CASE("host-root initramfs: no module tree, another init", "[boot][hostroot][initramfs]") {
  char path[] = "/tmp/minivmm-init-XXXXXX";
  const int fd = mkstemp(path);
  REQUIRE(fd >= 0);
  REQUIRE(write(fd, "INIT", 4) == 4);
  close(fd);
  HostRootOptions o;
  o.command = "true";
  o.init_binary = path;
  const auto entries = unpack(o);
  unlink(path);
  CHECK(find_entry(entries, "init")->text() == "INIT");
  CHECK(find_entry(entries, "minivmm/modules.load") == nullptr);
}

TEST_CASE("host-root initramfs: compressed modules are packed as they are",
          "[boot][hostroot][initramfs]") {
  // The init loads them with finit_module's MODULE_INIT_COMPRESSED_FILE (the kernel
  // decompresses: CONFIG_MODULE_DECOMPRESS); their vermagic cannot be read here.
  FakeTree t;
  t.write("modules.dep",
          "kernel/fs/fuse/fuse.ko.xz:\n"
          "kernel/fs/fuse/virtiofs.ko.zst: kernel/fs/fuse/fuse.ko.xz\n"
          "kernel/drivers/char/virtio_console.ko:\n");
  t.write("kernel/fs/fuse/fuse.ko.xz",
          "\xfd"
          "7zXZ compressed");
  t.write("kernel/fs/fuse/virtiofs.ko.zst", "\x28\xb5\x2f\xfd compressed");
  HostRootOptions o;
  o.command = "true";
  o.module_tree = t.tree;
  o.kernel_version = "6.1.0-test";
  const auto entries = unpack(o);
  CHECK(find_entry(entries, "minivmm/modules.load")->text() ==
        "virtio_console.ko\nfuse.ko.xz\nvirtiofs.ko.zst\n");
  REQUIRE(find_entry(entries, "minivmm/modules/fuse.ko.xz"));
  CHECK(find_entry(entries, "minivmm/modules/fuse.ko.xz")->text() ==
        "\xfd"
        "7zXZ compressed");
}

TEST_CASE("host-root initramfs: bad options and trees", "[boot][hostroot][initramfs]") {
  auto error = [](const HostRootOptions& o) {
    auto r = build_host_root_initramfs(o);
    REQUIRE_FALSE(r);
    return r.error();
  };
  HostRootOptions o;
  CHECK(error(o) == "host root: the command is empty");
  o.command = "true";
  o.cwd = "work";
  CHECK(error(o) == "host root: the working directory must be absolute: 'work'");
  o.cwd = "/a\nb";
  CHECK(error(o) == "host root: the working directory holds a newline or NUL byte");
  o.cwd = "/";
  o.tag = std::string(37, 't');
  CHECK(error(o).starts_with("host root: the virtio-fs tag must be 1-36 bytes"));
  o.tag = "hostroot";
  o.env = {"=x"};
  CHECK(error(o) == "host root: environment entry is not KEY=VALUE: '=x'");
  o.env = {};
  o.init_binary = "/nonexistent/init";
  CHECK(error(o) == "cannot open /nonexistent/init: No such file or directory");
  o.init_binary.clear();

  FakeTree t;
  o.module_tree = t.tree;
  o.kernel_version = "6.1.0-other";
  CHECK(error(o) == "--modules: " + (t.tree / "kernel/drivers/virtio/virtio_ring.ko").string() +
                        " is for kernel 6.1.0-test, not 6.1.0-other: pass the kernel's own "
                        "module tree");
  o.kernel_version.clear();
  fs::remove(t.tree / "kernel/fs/fuse/fuse.ko");
  CHECK(error(o) == "--modules: cannot open " + (t.tree / "kernel/fs/fuse/fuse.ko").string() +
                        ": No such file or directory");
  t.write("modules.dep", "kernel/fs/overlayfs/overlay.ko:\n");
  CHECK(error(o) == t.tree.string() +
                        ": the module tree has no module virtio_console (neither "
                        "in modules.dep nor in modules.builtin)");
}

TEST_CASE("find_module_tree: --modules, /lib/modules/<release>, mismatches",
          "[boot][hostroot][initramfs]") {
  FakeTree t("6.1.0-Y");
  const fs::path lib = t.root / "lib/modules";
  auto found = find_module_tree("6.1.0-Y", {}, lib);
  REQUIRE(found);
  CHECK(*found == lib / "6.1.0-Y");
  auto missing = find_module_tree("6.1.0-X", {}, lib);
  REQUIRE_FALSE(missing);
  CHECK(missing.error() == "--modules: no module tree for kernel 6.1.0-X (" +
                               (lib / "6.1.0-X").string() +
                               "); the host has 6.1.0-Y: pass --modules DIR");
  missing = find_module_tree("6.1.0-X", {}, t.root / "none");
  REQUIRE_FALSE(missing);
  CHECK(missing.error().ends_with("; the host has none: pass --modules DIR"));
  // --modules wins, whatever the release, if it is a tree.
  found = find_module_tree("6.1.0-X", lib / "6.1.0-Y", lib);
  REQUIRE(found);
  CHECK(*found == lib / "6.1.0-Y");
  auto bad = find_module_tree("6.1.0-X", lib, lib);
  REQUIRE_FALSE(bad);
  CHECK(bad.error() ==
        "--modules: " + lib.string() + " has no modules.dep (not a module tree? run depmod)");
  bad = find_module_tree("6.1.0-X", t.root / "nope", lib);
  REQUIRE_FALSE(bad);
  CHECK(bad.error() == "--modules: " + (t.root / "nope").string() + " is not a directory");
}

TEST_CASE("host-root initramfs from the cached Debian kernel's module tree",
          "[boot][hostroot][initramfs][real]") {
  const char* cache = std::getenv("MINIVMM_CACHE");
  const char* home = std::getenv("HOME");
  const fs::path cloud =
      (cache ? fs::path(cache) : fs::path(home ? home : "/root") / ".cache/minivmm") /
      "images/cloud/modules";
  std::error_code ec;
  if (!fs::exists(cloud / "modules.dep", ec)) {
    WARN("SKIPPED: no " << cloud.string() << " (images/fetch-kernel.sh cloud unpacks it)");
    return;
  }
  auto order = host_root_module_list(cloud);
  REQUIRE(order);
  std::vector<std::string> names;
  for (const auto& p : *order) names.push_back(module_name(p));
  WARN("cloud kernel modules for host-root: " << Catch::Detail::stringify(names));
  for (const char* must : {"virtio_mmio", "virtio_console", "fuse", "virtiofs"}) {
    CHECK(std::find(names.begin(), names.end(), must) != names.end());
  }
  auto before = [&](const char* a, const char* b) {
    return std::find(names.begin(), names.end(), a) < std::find(names.begin(), names.end(), b);
  };
  CHECK(before("fuse", "virtiofs"));
  CHECK(before("virtio", "virtio_mmio"));
  HostRootOptions o;
  o.command = "true";
  o.module_tree = fs::canonical(cloud);
  o.kernel_version = o.module_tree.filename();
  auto archive = build_host_root_initramfs(o);
  INFO((archive ? std::string() : archive.error()));
  REQUIRE(archive);
  CHECK(read_cpio(*archive).size() > names.size());
}
