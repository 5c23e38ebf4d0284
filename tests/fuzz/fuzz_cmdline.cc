// libFuzzer target: the command line parser (vmm/config.h, parse_command_line) with the
// --config TOML file. The input is split at NUL bytes: the first piece is the content of a
// TOML file, the others are argv[1..] (at most 64; argv[0] is "minivmm").
//
// parse_command_line opens no file of its own and writes none, but CLI11 reads the file
// --config names. So that a fuzz-chosen path cannot make it read /dev/zero, a FIFO or stdin,
// the fuzzer constrains the option: the value of every "--config" / "--config=..." argument
// is replaced by the path of an in-memory file (memfd) holding the first piece. A "config"
// key inside that file is refused by CLI11 ("not allowed in a configuration file"), so no
// other file is ever read. Nothing else is constrained.
//
// Checks: the parse returns a config or a ParseExit, never crashes or calls exit() (an atexit
// handler reports it); it prints nothing to stdout or stderr (both point at a memfd during
// the call; sanitizer reports still go to the real stderr); a ParseExit is help text (status
// 0, bounded) or a one-line error (status 2, bounded by the input's size, without a newline
// unless the input had one to echo); and a config holds only what the options document:
// non-empty kernel path, memory a nonzero multiple of 4 KiB, 1 <= cpus <= kMaxCpus, disks and
// ports within their keys' limits, unique port names, the exit port inside the port space, the
// timeout in range, a known log level. Parsing is deterministic: a second parse agrees.
#include <fcntl.h>
#include <sanitizer/common_interface_defs.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

#include "boot/layout.h"
#include "devices/virtio_console.h"
#include "vmm/config.h"

using namespace minivmm;

namespace {
constexpr size_t kMaxArgs = 64;
constexpr size_t kMaxHelp = 64 * 1024;

int real_stdout = -1;  // copies of fds 1 and 2 from before the parse
int real_stderr = -1;  // where checks and sanitizer reports go
int capture = -1;      // memfd that fds 1 and 2 point at during the parse
int toml = -1;         // memfd holding the --config file
bool parsing = false;

void restore_fds() {
  std::fflush(stdout);
  std::fflush(stderr);
  ::dup2(real_stdout, 1);
  ::dup2(real_stderr, 2);
}

void check_at(bool ok, const char* what, int line) {
  if (ok) return;
  restore_fds();
  ::dprintf(real_stderr, "fuzz_cmdline.cc:%d: check failed: %s\n", line, what);
  __builtin_trap();
}
#define check(cond) check_at((cond), #cond, __LINE__)

void exit_during_parse() {
  if (!parsing) return;
  restore_fds();
  ::dprintf(real_stderr, "fuzz_cmdline: exit() called inside parse_command_line\n");
  std::abort();
}

struct Parsed {
  vmm::VmConfig config;
  bool ok;
  int status;
  std::string output;
  off_t printed;  // bytes written to stdout and stderr during the call
};

Parsed parse(const std::vector<const char*>& argv) {
  ::ftruncate(capture, 0);
  ::lseek(capture, 0, SEEK_SET);
  ::dup2(capture, 1);
  ::dup2(capture, 2);
  parsing = true;
  auto result = vmm::parse_command_line(static_cast<int>(argv.size()), argv.data());
  parsing = false;
  std::fflush(stdout);
  std::fflush(stderr);
  Parsed p{};
  p.printed = ::lseek(capture, 0, SEEK_END);
  restore_fds();
  p.ok = static_cast<bool>(result);
  if (result) {
    p.config = std::move(result).value();
  } else {
    p.status = result.error().status;
    p.output = result.error().output;
  }
  return p;
}

bool valid_port_name(const std::string& name) {
  return !name.empty() && name.size() <= devices::VirtioConsole::kMaxNameLength && name != "." &&
         name != ".." && std::all_of(name.begin(), name.end(), [](char c) {
           return std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '_' || c == '-';
         });
}

void check_config(const vmm::VmConfig& c) {
  check(!c.kernel.empty());
  check(!c.initrd || !c.initrd->empty());
  check(c.memory != 0 && c.memory % 4096 == 0);
  check(c.cpus >= 1 && c.cpus <= boot::kMaxCpus);
  for (const devices::BlockConfig& d : c.disks) {
    check(!d.path.empty());
    check(d.num_queues >= 1 && d.num_queues <= vmm::kMaxDiskQueues);
    check(d.poll_us <= vmm::kMaxDiskPollUs);
    check(d.serial.size() <= devices::kBlkIdBytes);
  }
  for (const vmm::SerialConfig* s : {&c.serial, c.console ? &*c.console : nullptr}) {
    if (s) check((s->mode == vmm::SerialMode::kFile) == !s->path.empty());
  }
  check(c.ports.size() + 1 <= devices::VirtioConsole::kMaxNamedPorts);
  for (size_t i = 0; i < c.ports.size(); ++i) {
    const vmm::PortConfig& p = c.ports[i];
    check(valid_port_name(p.name) && p.name != vmm::kExitPortName);
    check(p.path.empty() != p.socket.empty());
    for (size_t j = 0; j < i; ++j) {
      check(c.ports[j].name != p.name);
      check(p.socket.empty() || c.ports[j].socket != p.socket);
    }
  }
  const vmm::DebugExitConfig& dx = c.debug_exit;
  if (dx.enabled) {
    check(dx.iosize == 1 || dx.iosize == 2 || dx.iosize == 4);
    check(uint32_t{dx.iobase} + dx.iosize <= 0x10000);
  }
  check(!c.timeout_s || (*c.timeout_s >= 1 && *c.timeout_s <= vmm::kMaxTimeoutSeconds));
  static const std::vector<std::string> levels = {"trace", "debug",    "info", "warn",
                                                  "error", "critical", "off"};
  check(std::find(levels.begin(), levels.end(), c.log_level) != levels.end());
}
}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  real_stdout = ::fcntl(1, F_DUPFD_CLOEXEC, 10);
  real_stderr = ::fcntl(2, F_DUPFD_CLOEXEC, 10);
  capture = ::memfd_create("fuzz_cmdline.out", MFD_CLOEXEC);
  toml = ::memfd_create("fuzz_cmdline.toml", MFD_CLOEXEC);
  if (real_stdout < 0 || real_stderr < 0 || capture < 0 || toml < 0) std::abort();
  // Sanitizer reports from inside the parse must not vanish into the capture.
  __sanitizer_set_report_fd(reinterpret_cast<void*>(static_cast<intptr_t>(real_stderr)));
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  // Registered on the first run, after libFuzzer's own handler, so that it runs first.
  static const bool registered = std::atexit(exit_during_parse) == 0;
  check(registered);

  std::vector<std::string> pieces(1);
  for (size_t i = 0; i < size; ++i) {
    if (data[i] == 0) {
      if (pieces.size() > kMaxArgs) break;
      pieces.emplace_back();
    } else {
      pieces.back().push_back(static_cast<char>(data[i]));
    }
  }
  const std::string toml_path = "/proc/self/fd/" + std::to_string(toml);
  ::ftruncate(toml, 0);
  ::pwrite(toml, pieces[0].data(), pieces[0].size(), 0);
  std::vector<std::string> args{"minivmm"};
  bool newline = pieces[0].find_first_of("\r\n") != std::string::npos;
  for (size_t i = 1; i < pieces.size(); ++i) {
    std::string arg = pieces[i];
    if (arg.starts_with("--config=")) arg = "--config=" + toml_path;
    if (args.back() == "--config") arg = toml_path;
    newline |= arg.find_first_of("\r\n") != std::string::npos;
    args.push_back(std::move(arg));
  }
  std::vector<const char*> argv;
  for (const std::string& a : args) argv.push_back(a.c_str());

  const Parsed p = parse(argv);
  // For triage: FUZZ_CMDLINE_VERBOSE=1 shows what each input parsed to.
  static const bool verbose = std::getenv("FUZZ_CMDLINE_VERBOSE") != nullptr;
  if (verbose) {
    ::dprintf(
        real_stderr, "fuzz_cmdline: %zu args: %s\n", args.size() - 1,
        p.ok ? ("ok, kernel " + p.config.kernel + ", cpus " + std::to_string(p.config.cpus)).c_str()
             : ("status " + std::to_string(p.status) + ": " + p.output.substr(0, 200)).c_str());
  }
  check(p.printed == 0);
  if (p.ok) {
    check_config(p.config);
  } else if (p.status == 0) {
    check(!p.output.empty() && p.output.size() <= kMaxHelp);
  } else {
    check(p.status == 2);
    check(!p.output.empty());
    check(p.output.size() <= 1024 + 2 * size);
    check(newline || p.output.find_first_of("\r\n") == std::string::npos);
  }
  const Parsed again = parse(argv);
  check(again.ok == p.ok && again.status == p.status && again.output == p.output);
  if (p.ok) {
    check(again.config.kernel == p.config.kernel && again.config.memory == p.config.memory &&
          again.config.cmdline == p.config.cmdline && again.config.ports == p.config.ports &&
          again.config.debug_exit == p.config.debug_exit);
  }
  return 0;
}
