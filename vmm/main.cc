// minivmm's entry point: command line (CLI11) to VmConfig, spdlog on stderr, signal setup,
// one Vm, and the exit status (vmm/exit_status.h). Every failure ends here as one line on
// stderr; exceptions stop at this function.
//
// Signals: SIGINT and SIGTERM (and SIGWINCH, for hvc0's size) are blocked in every thread
// once setup is done, before any thread starts, and read from a signalfd by the main thread's
// loop (no work in signal handlers); during setup they keep their default action. SIGPIPE is
// ignored so that a closed stdout only loses guest output. The vCPU kick signal has an empty
// handler.
#include <fcntl.h>
#include <malloc.h>
#include <signal.h>
#include <spdlog/sinks/stdout_sinks.h>
#include <spdlog/spdlog.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <exception>

#include "vmm/config.h"
#include "vmm/exit_status.h"
#include "vmm/fd.h"
#include "vmm/jail.h"
#include "vmm/kvm.h"
#include "vmm/seccomp.h"
#include "vmm/terminal.h"
#include "vmm/vm.h"

namespace {

using minivmm::vmm::ExitStatus;

// --status-file: one line "<status> <reason> <message>", so that a CI script can tell the
// guest's own status from minivmm's outcomes (`read -r status reason message < FILE`). The
// file is opened (and emptied) at the start: no file is opened once the guest runs, and the
// seccomp reporter writes its line there too.
class StatusFile {
 public:
  explicit StatusFile(const std::string& path) : path_(path) {
    if (path.empty()) return;
    fd_ = minivmm::vmm::UniqueFd(
        ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOCTTY, 0644));
    if (!fd_.valid()) error_ = std::strerror(errno);
  }
  int fd() const { return fd_.get(); }
  // Why the file could not be opened, or empty.
  const std::string& error() const { return error_; }

  void write(int status, const std::string& reason, const std::string& message) const {
    if (!fd_.valid()) return;
    const std::string line = std::to_string(status) + " " + reason + " " + message + "\n";
    if (::pwrite(fd_.get(), line.data(), line.size(), 0) != static_cast<ssize_t>(line.size())) {
      spdlog::error("cannot write --status-file {}: {}", path_, std::strerror(errno));
    }
  }

 private:
  std::string path_;
  minivmm::vmm::UniqueFd fd_;
  std::string error_;
};

void setup_logging(const std::string& level) {
  auto logger = spdlog::stderr_logger_mt("minivmm");
  logger->set_pattern("minivmm: %l: %v");
  logger->set_level(spdlog::level::from_str(level));
  logger->flush_on(spdlog::level::trace);
  spdlog::set_default_logger(logger);
}

int run(int argc, char** argv, std::chrono::steady_clock::time_point start) {
  auto parsed = minivmm::vmm::parse_command_line(argc, argv);
  if (!parsed) {
    const minivmm::vmm::ParseExit& exit = parsed.error();
    if (exit.status == 0) {
      std::fputs(exit.output.c_str(), stdout);
    } else {
      std::fprintf(stderr, "minivmm: error: %s\n", exit.output.c_str());
    }
    return exit.status;
  }
  const minivmm::vmm::VmConfig& config = *parsed;
  setup_logging(config.log_level);

  signal(SIGPIPE, SIG_IGN);
  const StatusFile status_file(config.status_file);
  if (!status_file.error().empty()) {
    spdlog::error("cannot open --status-file {}: {}", config.status_file, status_file.error());
    return minivmm::vmm::kExitVmmError;
  }
  // Before the Vm: its device workers are spawned, and confined, as it is made.
  minivmm::vmm::ConfinementOptions confinement;
  confinement.seccomp = config.seccomp;
  confinement.status_fd = status_file.fd();
  confinement.user = config.user;
  std::vector<std::string> sockets;  // removed at exit
  for (const auto& port : config.ports) {
    if (!port.socket.empty()) sockets.push_back(port.socket);
  }
  if (config.vsock) sockets.push_back(config.vsock->socket);
  for (const std::string& socket : sockets) {
    // The socket's directory (std::filesystem would cost the static binary 100s of KiB).
    const size_t slash = socket.rfind('/');
    confinement.removable_dirs.push_back(slash == std::string::npos ? "."
                                         : slash == 0               ? "/"
                                                                    : socket.substr(0, slash));
  }
  try {
    minivmm::vmm::init_confinement(confinement);
  } catch (const std::exception& e) {
    spdlog::error("cannot set up the jail: {}", e.what());
    return minivmm::vmm::kExitVmmError;
  }
  try {
    // Setup starts no thread. SIGINT / SIGTERM keep their default action until it is done,
    // so that a VMM stuck opening a file (say, on a hung network filesystem) still dies.
    minivmm::vmm::Vm vm(config, start);
    sigset_t stop_signals;
    sigemptyset(&stop_signals);
    sigaddset(&stop_signals, SIGINT);
    sigaddset(&stop_signals, SIGTERM);
    sigaddset(&stop_signals, SIGWINCH);  // not a stop: the terminal's new size for hvc0
    pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);
    minivmm::vmm::UniqueFd signal_fd(signalfd(-1, &stop_signals, SFD_CLOEXEC | SFD_NONBLOCK));
    std::optional<minivmm::vmm::RawTerminal> terminal;
    using minivmm::vmm::SerialMode;
    if (config.serial.mode == SerialMode::kStdio ||
        (config.console && config.console->mode == SerialMode::kStdio)) {
      terminal.emplace();
    }
    const int status = vm.run(signal_fd.get());
    terminal.reset();
    const auto outcome = vm.outcome();
    status_file.write(status, outcome.reason, outcome.message);
    return status;
  } catch (const minivmm::vmm::VmError& e) {
    spdlog::error("{}", e.what());
    status_file.write(e.status(), e.status() == minivmm::vmm::kExitUsage ? "usage" : "error",
                      e.what());
    return e.status();
  } catch (const minivmm::vmm::KvmError& e) {
    spdlog::error("{}", e.what());
    status_file.write(minivmm::vmm::kExitVmmError, "error", e.what());
    return minivmm::vmm::kExitVmmError;
  }
}

}  // namespace

int main(int argc, char** argv) {
  const auto start = std::chrono::steady_clock::now();
  minivmm::vmm::jail_at_start();
  // One malloc arena for all threads: the device workers allocate little, and an arena of
  // their own each cost ~50 KiB of resident memory (measured: 112 KiB for rng + console).
  ::mallopt(M_ARENA_MAX, 1);
  try {
    return run(argc, argv, start);
  } catch (const std::bad_alloc&) {
    std::fputs("minivmm: error: out of memory\n", stderr);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "minivmm: error: %s\n", e.what());
  } catch (...) {
    std::fputs("minivmm: error: unexpected failure\n", stderr);
  }
  return minivmm::vmm::kExitVmmError;
}
