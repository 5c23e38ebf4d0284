#include "boot/hostroot/initramfs.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <set>

#include "boot/hostroot/cpio.h"

// The init's bytes, from the .incbin of the generated init_blob.S (boot/hostroot/CMakeLists.txt).
extern "C" const uint8_t minivmm_hostroot_init_start[];
extern "C" const uint8_t minivmm_hostroot_init_end[];

namespace minivmm::boot {
namespace {

namespace fs = std::filesystem;

constexpr size_t kMaxIndexFile = 64 << 20;  // modules.dep of a full kernel: ~1 MiB
constexpr size_t kMaxModuleFile = 256 << 20;
constexpr size_t kMaxTagLength = 36;  // virtio 1.2 §5.11.4: tag[36]

Result<std::vector<uint8_t>> read_file(const fs::path& path, size_t max) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return Error{"cannot open " + path.string() + ": " + std::strerror(errno)};
  struct stat st {};
  std::vector<uint8_t> data;
  Error error;
  if (::fstat(fd, &st) != 0) {
    error = "cannot stat " + path.string() + ": " + std::strerror(errno);
  } else if (!S_ISREG(st.st_mode)) {
    error = path.string() + " is not a regular file";
  } else if (static_cast<uint64_t>(st.st_size) > max) {
    error = path.string() + " is larger than " + std::to_string(max >> 20) + " MiB";
  } else {
    data.resize(static_cast<size_t>(st.st_size));
    size_t done = 0;
    while (done < data.size()) {
      const ssize_t n = ::read(fd, data.data() + done, data.size() - done);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) {
        error = "cannot read " + path.string() + ": " + (n < 0 ? std::strerror(errno) : "short");
        break;
      }
      done += static_cast<size_t>(n);
    }
  }
  ::close(fd);
  if (!error.empty()) return error;
  return data;
}

std::string_view as_text(const std::vector<uint8_t>& data) {
  return {reinterpret_cast<const char*>(data.data()), data.size()};
}

Result<void> check_line_value(std::string_view what, std::string_view value) {
  if (value.find_first_of(std::string_view("\n\0", 2)) != std::string_view::npos) {
    return Error{"host root: " + std::string(what) + " holds a newline or NUL byte"};
  }
  return {};
}

Result<void> check_options(const HostRootOptions& o) {
  if (o.command.empty()) return Error{"host root: the command is empty"};
  if (o.command.find('\0') != std::string::npos) {
    return Error{"host root: the command holds a NUL byte"};
  }
  if (o.cwd.empty() || o.cwd.front() != '/') {
    return Error{"host root: the working directory must be absolute: '" + o.cwd + "'"};
  }
  if (o.tag.empty() || o.tag.size() > kMaxTagLength) {
    return Error{"host root: the virtio-fs tag must be 1-36 bytes: '" + o.tag + "'"};
  }
  if (o.hostname.empty() || o.hostname.size() > 64) {
    return Error{"host root: the host name must be 1-64 bytes"};
  }
  if (auto ok = check_line_value("the working directory", o.cwd); !ok) return ok;
  if (auto ok = check_line_value("the tag", o.tag); !ok) return ok;
  if (auto ok = check_line_value("the host name", o.hostname); !ok) return ok;
  for (const std::string& e : o.env) {
    if (auto ok = check_line_value("an environment entry", e); !ok) return ok;
    const size_t eq = e.find('=');
    if (eq == 0 || eq == std::string::npos) {
      return Error{"host root: environment entry is not KEY=VALUE: '" + e + "'"};
    }
  }
  return {};
}

// The init's /minivmm/config (keys: boot/hostroot/init/main.c read_config()).
std::string config_text(const HostRootOptions& o) {
  std::string text = "tag=" + o.tag + "\ncwd=" + o.cwd + "\nhostname=" + o.hostname +
                     "\nwait_ms=" + std::to_string(o.fs_wait_ms) + "\n";
  for (const std::string& e : o.env) text += "env=" + e + "\n";
  return text;
}

}  // namespace

std::span<const uint8_t> embedded_host_root_init() {
  return {minivmm_hostroot_init_start,
          static_cast<size_t>(minivmm_hostroot_init_end - minivmm_hostroot_init_start)};
}

std::string module_vermagic_release(std::span<const uint8_t> module) {
  // .modinfo is a run of NUL-terminated "key=value" strings (include/linux/moduleparam.h).
  constexpr std::string_view kKey = std::string_view("\0vermagic=", 10);
  const std::string_view bytes(reinterpret_cast<const char*>(module.data()), module.size());
  const size_t at = bytes.find(kKey);
  if (at == std::string_view::npos) return {};
  const std::string_view rest = bytes.substr(at + kKey.size());
  return std::string(rest.substr(0, rest.find_first_of(std::string_view(" \0", 2))));
}

Result<std::vector<std::string>> host_root_module_list(const fs::path& module_tree) {
  auto dep = read_file(module_tree / "modules.dep", kMaxIndexFile);
  if (!dep) return Error{"--modules: " + dep.error() + " (not a module tree? run depmod)"};
  auto index = parse_modules_dep(as_text(*dep));
  if (!index) return Error{(module_tree / "modules.dep").string() + ": " + index.error()};
  std::set<std::string> builtin;
  std::error_code ec;
  if (fs::exists(module_tree / "modules.builtin", ec)) {
    auto text = read_file(module_tree / "modules.builtin", kMaxIndexFile);
    if (!text) return text.error();
    builtin = parse_modules_builtin(as_text(*text));
  }
  auto order = module_load_order(*index, builtin, kHostRootModules);
  if (!order) return Error{module_tree.string() + ": " + order.error()};
  return order;
}

Result<std::vector<uint8_t>> build_host_root_initramfs(const HostRootOptions& o) {
  if (auto ok = check_options(o); !ok) return ok.error();
  std::vector<uint8_t> init_file;
  std::span<const uint8_t> init = embedded_host_root_init();
  if (!o.init_binary.empty()) {
    auto read = read_file(o.init_binary, kMaxModuleFile);
    if (!read) return read.error();
    init_file = std::move(*read);
    init = init_file;
  }
  CpioWriter cpio;
  Result<void> ok;
  for (const char* dir : {"dev", "proc", "sys", "newroot", "minivmm", "minivmm/modules"}) {
    if (ok = cpio.add_directory(dir); !ok) return ok.error();
  }
  // The kernel opens /dev/console for init's stdio before init runs (init/main.c
  // console_on_rootfs), so the node must be in the archive: 5:1 (devices.txt).
  if (ok = cpio.add_char_device("dev/console", 0600, 5, 1); !ok) return ok.error();
  if (ok = cpio.add_file("init", init, 0755); !ok) return ok.error();
  if (ok = cpio.add_file("minivmm/exec", std::string_view(o.command)); !ok) return ok.error();
  if (ok = cpio.add_file("minivmm/config", config_text(o)); !ok) return ok.error();
  if (!o.module_tree.empty()) {
    auto modules = host_root_module_list(o.module_tree);
    if (!modules) return modules.error();
    std::string load_list;
    std::set<std::string> names;
    for (const std::string& path : *modules) {
      const std::string file = fs::path(path).filename().string();
      if (!names.insert(file).second) {
        return Error{o.module_tree.string() + ": two modules named " + file};
      }
      auto data = read_file(o.module_tree / path, kMaxModuleFile);
      if (!data) return Error{"--modules: " + data.error()};
      if (!o.kernel_version.empty() && !module_is_compressed(path)) {
        const std::string release = module_vermagic_release(*data);
        if (release != o.kernel_version) {
          return Error{"--modules: " + (o.module_tree / path).string() + " is for kernel " +
                       (release.empty() ? std::string("(no vermagic)") : release) + ", not " +
                       o.kernel_version + ": pass the kernel's own module tree"};
        }
      }
      if (ok = cpio.add_file("minivmm/modules/" + file, *data); !ok) return ok.error();
      load_list += file + "\n";
    }
    if (ok = cpio.add_file("minivmm/modules.load", load_list); !ok) return ok.error();
  }
  return cpio.finish();
}

Result<fs::path> find_module_tree(std::string_view kernel_version, const fs::path& modules_option,
                                  const fs::path& lib_modules) {
  std::error_code ec;
  if (!modules_option.empty()) {
    if (!fs::is_directory(modules_option, ec)) {
      return Error{"--modules: " + modules_option.string() + " is not a directory"};
    }
    if (!fs::exists(modules_option / "modules.dep", ec)) {
      return Error{"--modules: " + modules_option.string() +
                   " has no modules.dep (not a module tree? run depmod)"};
    }
    return modules_option;
  }
  if (kernel_version.empty()) {
    return Error{"--modules: the kernel's release is unknown: pass --modules DIR"};
  }
  const fs::path tree = lib_modules / kernel_version;
  if (fs::exists(tree / "modules.dep", ec)) return tree;
  std::vector<std::string> others;
  for (const auto& entry : fs::directory_iterator(lib_modules, ec)) {
    if (fs::exists(entry.path() / "modules.dep", ec)) others.push_back(entry.path().filename());
  }
  std::sort(others.begin(), others.end());
  std::string have;
  for (const std::string& v : others) have += (have.empty() ? "" : ", ") + v;
  return Error{"--modules: no module tree for kernel " + std::string(kernel_version) + " (" +
               tree.string() + "); the host has " + (have.empty() ? "none" : have) +
               ": pass --modules DIR"};
}

}  // namespace minivmm::boot
