// pack-hostroot: the host-root initramfs packer as a command, for booting minivmm's guest init
// by hand or under QEMU (tests/boot/hostroot-qemu.sh) before minivmm's --host-root exists.
//
//   pack-hostroot --out FILE --exec CMD [--kernel IMAGE] [--modules DIR] [--cwd DIR]
//                 [--env KEY=VALUE]... [--tag TAG] [--init FILE] [--list]
//
// --kernel: read its release (bzImage header or vmlinux banner), pick /lib/modules/<release>
// when --modules is not given, and check every module's vermagic against it.
#include <cstdio>
#include <fstream>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>

#include "boot/hostroot/initramfs.h"
#include "boot/kernel_version.h"

namespace {

std::vector<uint8_t> slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error("cannot read " + path);
  return {std::istreambuf_iterator<char>(in), {}};
}

}  // namespace

int main(int argc, char** argv) try {
  using namespace minivmm::boot;
  CLI::App app{"Pack minivmm's host-root initramfs"};
  HostRootOptions options;
  std::string out, kernel, modules, init;
  bool list = false, no_modules = false;
  app.add_option("--out", out, "the initramfs to write")->required();
  app.add_option("--exec", options.command, "the command (/bin/sh -c CMD)")->required();
  app.add_option("--kernel", kernel, "the kernel image whose release picks the module tree");
  app.add_option("--modules", modules, "the module tree (default /lib/modules/<release>)");
  app.add_flag("--no-modules", no_modules, "pack no modules (everything built in)");
  app.add_option("--cwd", options.cwd, "the command's working directory");
  app.add_option("--env", options.env, "KEY=VALUE for the command (repeatable)");
  app.add_option("--tag", options.tag, "the virtio-fs tag of the root");
  app.add_option("--wait-ms", options.fs_wait_ms, "how long to wait for the virtio-fs device");
  app.add_option("--init", init, "the init binary (default: the embedded one)");
  app.add_flag("--list", list, "print the modules packed, in load order");
  CLI11_PARSE(app, argc, argv);

  if (!kernel.empty()) {
    auto release = kernel_version(slurp(kernel));
    if (!release) {
      std::fprintf(stderr, "pack-hostroot: error: %s: %s\n", kernel.c_str(),
                   release.error().c_str());
      return 1;
    }
    options.kernel_version = release->release;
  }
  if (!no_modules) {
    auto tree = find_module_tree(options.kernel_version, modules);
    if (!tree) {
      std::fprintf(stderr, "pack-hostroot: error: %s\n", tree.error().c_str());
      return 1;
    }
    options.module_tree = *tree;
    if (list) {
      auto order = host_root_module_list(*tree);
      if (order) {
        for (const auto& m : *order) std::printf("%s\n", m.c_str());
      }
    }
  }
  options.init_binary = init;
  auto archive = build_host_root_initramfs(options);
  if (!archive) {
    std::fprintf(stderr, "pack-hostroot: error: %s\n", archive.error().c_str());
    return 1;
  }
  std::ofstream file(out, std::ios::binary | std::ios::trunc);
  file.write(reinterpret_cast<const char*>(archive->data()),
             static_cast<std::streamsize>(archive->size()));
  if (!file.flush()) {
    std::fprintf(stderr, "pack-hostroot: error: cannot write %s\n", out.c_str());
    return 1;
  }
  std::fprintf(stderr, "pack-hostroot: %s: %zu bytes%s%s\n", out.c_str(), archive->size(),
               options.kernel_version.empty() ? "" : ", kernel ", options.kernel_version.c_str());
  return 0;
} catch (const std::exception& e) {
  std::fprintf(stderr, "pack-hostroot: error: %s\n", e.what());
  return 1;
}
