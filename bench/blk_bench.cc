// virtio-blk benchmark: an in-process synthetic driver against the real device.
//
// The driver (this process's main thread) plays the guest: it builds requests in fake guest
// memory, publishes them on a split virtqueue with EVENT_IDX (notifying through the
// device's queue eventfd only when avail_event asks for it, as Linux does), and sleeps on
// an eventfd that the device's interrupt writes (what KVM_IRQFD would be). The device is
// the real VirtioBlock with its I/O thread and the io_uring backend, O_DIRECT. Each
// pattern is then run with `fio --ioengine=io_uring --direct=1` on the same file with the
// same block size and depth, and the two are printed side by side. Both sides' buffers are
// on transparent huge pages (minivmm's guest RAM is).
//
// Each pattern runs `--reps` times, alternating which of the two goes first (so that
// neither always profits from caches the other warmed), and the median run is printed.
//
// Usage: bench_blk [--file PATH] [--size-gib N] [--seconds S] [--reps N] [--no-fio]
//                  [--only SUBSTRING]   (run the patterns whose name contains it)
//                  [--poll-us N]        (the device's poll_us; default 100, 0 = off)
//                  [--cpu N]            (both sides on CPU N: this process, with the device's
//                                        I/O thread and the driver, and fio)
//                  [--seccomp on|off]   (on: minivmm's seccomp setup, vmm::init_confinement(),
//                                        before any device, so that the device's `blk` worker
//                                        runs under minivmm's blk filter; the driver, the main
//                                        thread, stays unfiltered. Checked in /proc: a blk
//                                        thread without `Seccomp: 2` ends the bench. Default off)
// Prints figures; it is not a test.
#include <sched.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <unistd.h>

#include <dirent.h>
#include <fcntl.h>
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include "devices/virtio_blk.h"
#include "tests/support/fake_guest.h"
#include "virtio/spec.h"
#include "vmm/jail.h"
#include "vmm/seccomp.h"

using namespace minivmm;

namespace {

struct Pattern {
  const char* name;
  const char* fio_rw;
  bool write;
  bool random;
  uint32_t block;
  uint32_t depth;
};

struct Figures {
  double iops = 0;
  double mbps = 0;
  double cpu_us_per_io = 0;  // the device side: I/O thread + kernel work on its behalf
  bool ok = false;
};

class EventFdInterrupt final : public virtio::VirtioInterrupt {
 public:
  EventFdInterrupt() : fd_(::eventfd(0, EFD_CLOEXEC)) {}
  ~EventFdInterrupt() override { ::close(fd_); }
  void signal(uint32_t) override {
    const uint64_t one = 1;
    (void)!::write(fd_, &one, sizeof(one));
  }
  void wait() const {
    uint64_t v;
    (void)!::read(fd_, &v, sizeof(v));
  }

 private:
  int fd_;
};

double cpu_seconds(clockid_t clock) {
  timespec ts{};
  clock_gettime(clock, &ts);
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) * 1e-9;
}

double process_cpu_seconds() {
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  auto tv = [](const timeval& t) {
    return static_cast<double>(t.tv_sec) + static_cast<double>(t.tv_usec) * 1e-6;
  };
  return tv(ru.ru_utime) + tv(ru.ru_stime);
}

uint64_t xorshift(uint64_t& s) {
  s ^= s << 13;
  s ^= s >> 7;
  s ^= s << 17;
  return s;
}

// The `Seccomp:` field (0 none, 2 filter) of every thread of this process named `name`,
// from /proc/self/task/*/status.
std::vector<int> seccomp_of_threads(const char* name) {
  std::vector<int> modes;
  DIR* d = ::opendir("/proc/self/task");
  if (d == nullptr) return modes;
  while (const dirent* e = ::readdir(d)) {
    if (e->d_name[0] == '.') continue;
    std::ifstream status(std::string("/proc/self/task/") + e->d_name + "/status");
    std::string line, comm;
    int mode = -1;
    while (std::getline(status, line)) {
      if (line.rfind("Name:\t", 0) == 0) comm = line.substr(6);
      if (line.rfind("Seccomp:\t", 0) == 0) mode = std::atoi(line.c_str() + 9);
    }
    if (comm == name) modes.push_back(mode);
  }
  ::closedir(d);
  return modes;
}

// The device's worker and this (the driver's) thread must be as --seccomp says: the blk
// thread filtered (2) when on, nothing (0) when off; the driver never. Exits otherwise.
void check_seccomp(bool on, bool print) {
  const std::vector<int> blk = seccomp_of_threads("blk");
  std::ifstream self("/proc/thread-self/status");
  std::string line;
  int driver = -1;
  while (std::getline(self, line))
    if (line.rfind("Seccomp:\t", 0) == 0) driver = std::atoi(line.c_str() + 9);
  const int want = on ? 2 : 0;
  const bool ok = blk.size() == 1 && blk[0] == want && driver == 0;
  if (print || !ok) {
    std::fprintf(stderr, "bench_blk: seccomp %s: blk thread Seccomp: %s, driver thread Seccomp: %d\n",
                 on ? "on" : "off",
                 blk.size() == 1 ? std::to_string(blk[0]).c_str()
                                 : (std::to_string(blk.size()) + " blk threads").c_str(),
                 driver);
  }
  if (!ok) {
    std::fprintf(stderr, "bench_blk: error: expected one blk thread with Seccomp: %d and the "
                         "driver with 0\n", want);
    std::exit(1);
  }
}

Figures run_device(const std::string& path, uint64_t file_size, const Pattern& p, double seconds,
                   uint32_t poll_us, bool seccomp) {
  constexpr uint16_t kQueueSize = 256;
  constexpr uint64_t kRings = 0x1000;
  constexpr uint64_t kHeaders = 0x100000;
  constexpr uint64_t kData = 0x200000;
  // Whole 2 MiB pages, so that the data buffers are on huge pages even for 4 KiB patterns.
  const uint64_t ram = (kData + uint64_t{p.depth} * p.block + (3 << 20)) & ~uint64_t{(2 << 20) - 1};
  // Huge pages, as minivmm's guest RAM: a 1 MiB buffer is then a few physical segments
  // instead of 256, which the host disk's segment limit makes worth up to 2x at 1 MiB.
  test::FakeGuestMemory guest(ram, std::nullopt, /*huge_pages=*/true);
  test::DriverQueue dq(guest, kQueueSize, kRings);
  std::vector<virtio::Queue> queues(1, virtio::Queue(kQueueSize));
  std::vector<virtio::EventFd> events(1);  // the transport's queue event
  EventFdInterrupt irq;

  devices::BlockConfig cfg;
  cfg.path = path;
  cfg.direct = true;
  cfg.engine = devices::BlockConfig::Engine::kIoUring;
  cfg.queue_size = kQueueSize;
  cfg.poll_us = poll_us;
  devices::VirtioBlock dev(cfg);  // spawns the `blk` worker, which enters its class
  static bool printed = false;
  check_seccomp(seccomp, !printed);
  printed = true;
  dq.configure(queues[0], /*event_idx=*/true, /*indirect=*/true);
  dev.set_acked_features(dev.device_features());
  if (auto err = dev.activate(virtio::ActivateContext{guest.mem(), queues, events, irq})) {
    std::fprintf(stderr, "activate: %s\n", err->message.c_str());
    return {};
  }
  if (std::string(dev.backend_name()) != "io_uring") {
    std::fprintf(stderr, "io_uring unavailable: the figures would be for the sync backend\n");
  }

  const uint64_t blocks = file_size / p.block;
  // A fresh sequence every run, like fio's --randrepeat=0: repeating the same offsets
  // would let a cache below the file (the host's, under a virtual disk) favour us.
  uint64_t rng = std::random_device{}() | (uint64_t{std::random_device{}()} << 32) | 1;
  uint64_t seq = 0;
  auto publish = [&](uint32_t slot) {
    const uint64_t block = p.random ? xorshift(rng) % blocks : (seq++ % blocks);
    const uint64_t hdr = kHeaders + uint64_t{slot} * 32;
    devices::VirtioBlkReqHeader h{p.write ? devices::kBlkTOut : devices::kBlkTIn, 0,
                                  block * p.block / 512};
    std::memcpy(guest.host(hdr), &h, sizeof(h));
    const auto first = static_cast<uint16_t>(slot * 3);
    const uint64_t buf = kData + uint64_t{slot} * p.block;
    dq.write_desc(first, {hdr, 16, virtio::kVirtqDescFNext, static_cast<uint16_t>(first + 1)});
    dq.write_desc(
        static_cast<uint16_t>(first + 1),
        {buf, p.block,
         static_cast<uint16_t>(virtio::kVirtqDescFNext | (p.write ? 0 : virtio::kVirtqDescFWrite)),
         static_cast<uint16_t>(first + 2)});
    dq.write_desc(static_cast<uint16_t>(first + 2), {hdr + 16, 1, virtio::kVirtqDescFWrite, 0});
    dq.publish(first);
  };
  // virtio 1.2 §2.7.10: notify only if avail_event lies in [old, new).
  auto maybe_notify = [&](uint16_t old_idx) {
    std::atomic_thread_fence(std::memory_order_seq_cst);
    const uint16_t new_idx = dq.avail_idx();
    const uint16_t event = dq.avail_event();
    if (static_cast<uint16_t>(new_idx - event - 1) < static_cast<uint16_t>(new_idx - old_idx)) {
      events[0].signal();
    }
  };

  for (uint32_t s = 0; s < p.depth; ++s)
    std::memset(guest.host(kData + uint64_t{s} * p.block), 0x5a, p.block);
  const auto start = std::chrono::steady_clock::now();
  const double cpu0 = process_cpu_seconds();
  const double drv0 = cpu_seconds(CLOCK_THREAD_CPUTIME_ID);
  uint16_t old = dq.avail_idx();
  for (uint32_t s = 0; s < p.depth; ++s) publish(s);
  dq.set_used_event(dq.used_idx());
  maybe_notify(old);
  uint64_t completed = 0;
  uint64_t errors = 0;
  const auto deadline = start + std::chrono::duration<double>(seconds);
  bool stopping = false;
  uint64_t outstanding = p.depth;
  while (outstanding > 0) {
    auto used = dq.take_used();
    if (used.empty()) {
      // Like Linux's virtqueue_enable_cb: ask for an interrupt at the next completion,
      // then re-check to close the race.
      dq.set_used_event(dq.used_idx());
      std::atomic_thread_fence(std::memory_order_seq_cst);
      used = dq.take_used();
      if (used.empty()) {
        irq.wait();
        continue;
      }
    }
    old = dq.avail_idx();
    for (const auto& u : used) {
      const uint32_t slot = u.id / 3;
      if (*guest.host(kHeaders + uint64_t{slot} * 32 + 16) != devices::kBlkSOk) ++errors;
      ++completed;
      --outstanding;
      if (!stopping) {
        publish(slot);
        ++outstanding;
      }
    }
    if (!stopping && std::chrono::steady_clock::now() >= deadline) stopping = true;
    maybe_notify(old);
  }
  const double elapsed =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  const double driver_cpu = cpu_seconds(CLOCK_THREAD_CPUTIME_ID) - drv0;
  const double total_cpu = process_cpu_seconds() - cpu0;
  dev.reset();
  if (errors > 0)
    std::fprintf(stderr, "%s: %llu requests failed\n", p.name,
                 static_cast<unsigned long long>(errors));
  Figures f;
  f.iops = static_cast<double>(completed) / elapsed;
  f.mbps = f.iops * p.block / 1e6;
  f.cpu_us_per_io = (total_cpu - driver_cpu) / static_cast<double>(completed) * 1e6;
  f.ok = errors == 0;
  return f;
}

double json_number(const std::string& json, size_t from, const char* key) {
  const std::string k = std::string("\"") + key + "\" : ";
  const size_t pos = json.find(k, from);
  if (pos == std::string::npos) return 0;
  return std::strtod(json.c_str() + pos + k.size(), nullptr);
}

Figures run_fio(const std::string& path, uint64_t file_size, const Pattern& p, double seconds,
                int cpu) {
  // fio's buffers on transparent huge pages as well, for the same reason: glibc's malloc
  // advises them with this tunable (glibc >= 2.35), aligned to 2 MiB.
  std::string cmd = "GLIBC_TUNABLES=glibc.malloc.hugetlb=1 fio --iomem_align=2m --name=blk";
  cmd += " --filename='" + path + "' --ioengine=io_uring --direct=1";
  cmd += std::string(" --rw=") + p.fio_rw + " --bs=" + std::to_string(p.block);
  cmd += " --iodepth=" + std::to_string(p.depth) + " --numjobs=1";
  cmd += " --size=" + std::to_string(file_size);
  cmd += " --runtime=" + std::to_string(static_cast<int>(seconds + 0.5)) + " --time_based";
  cmd += " --randrepeat=0 --output-format=json";
  if (cpu >= 0) cmd += " --cpus_allowed=" + std::to_string(cpu);
  cmd += " 2>/dev/null";
  FILE* f = ::popen(cmd.c_str(), "r");
  if (f == nullptr) return {};
  std::string out;
  char buf[4096];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof(buf), f)) > 0) out.append(buf, n);
  if (::pclose(f) != 0) return {};
  const size_t sec = out.find(p.write ? "\"write\" : {" : "\"read\" : {");
  if (sec == std::string::npos) return {};
  Figures r;
  r.iops = json_number(out, sec, "iops");
  r.mbps = json_number(out, sec, "bw_bytes") / 1e6;
  const double ios = json_number(out, sec, "total_ios");
  const double runtime_s = json_number(out, sec, "runtime") / 1000.0;
  const double cpu_pct = json_number(out, 0, "usr_cpu") + json_number(out, 0, "sys_cpu");
  if (ios > 0) r.cpu_us_per_io = cpu_pct / 100.0 * runtime_s / ios * 1e6;
  r.ok = r.iops > 0;
  return r;
}

Figures median(std::vector<Figures> runs) {
  std::sort(runs.begin(), runs.end(),
            [](const Figures& a, const Figures& b) { return a.iops < b.iops; });
  return runs[runs.size() / 2];
}

void ensure_file(const std::string& path, uint64_t size) {
  const int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (fd < 0) {
    std::perror("open bench file");
    std::exit(1);
  }
  const off_t cur = ::lseek(fd, 0, SEEK_END);
  if (cur != static_cast<off_t>(size)) {
    std::fprintf(stderr, "writing %llu MiB of data to %s ...\n",
                 static_cast<unsigned long long>(size >> 20), path.c_str());
    if (::ftruncate(fd, static_cast<off_t>(size)) != 0) std::exit(1);
    std::vector<uint8_t> chunk(1 << 20);
    uint64_t s = 12345;
    for (auto& b : chunk) b = static_cast<uint8_t>(xorshift(s));
    for (uint64_t off = 0; off < size; off += chunk.size()) {
      if (::pwrite(fd, chunk.data(), chunk.size(), static_cast<off_t>(off)) < 0) std::exit(1);
    }
    ::fdatasync(fd);
  }
  ::close(fd);
}

}  // namespace

// A decimal number of at most 6 digits (CPU numbers, microseconds).
static bool number(const char* s) {
  const size_t n = std::strlen(s);
  return n > 0 && n <= 6 && std::strspn(s, "0123456789") == n;
}

int main(int argc, char** argv) {
  std::string path = "/tmp/minivmm-blk-bench.img";
  double size_gib = 1;
  double seconds = 5;
  bool fio = true;
  int reps = 3;
  std::string only;
  // Polling on, at the value suggested for busy disks (the device's default is off).
  uint32_t poll_us = devices::BlockConfig::kSuggestedPollUs;
  int cpu = -1;
  bool seccomp = false;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--file" && i + 1 < argc)
      path = argv[++i];
    else if (a == "--size-gib" && i + 1 < argc)
      size_gib = std::atof(argv[++i]);
    else if (a == "--seconds" && i + 1 < argc)
      seconds = std::atof(argv[++i]);
    else if (a == "--reps" && i + 1 < argc)
      reps = std::max(1, std::atoi(argv[++i]));
    else if (a == "--no-fio")
      fio = false;
    else if (a == "--only" && i + 1 < argc)
      only = argv[++i];
    else if (a == "--poll-us" && i + 1 < argc && number(argv[i + 1]))
      poll_us = static_cast<uint32_t>(std::strtoul(argv[++i], nullptr, 10));
    else if (a == "--cpu" && i + 1 < argc && number(argv[i + 1]))
      cpu = std::atoi(argv[++i]);
    else if (a == "--seccomp" && i + 1 < argc &&
             (std::string(argv[i + 1]) == "on" || std::string(argv[i + 1]) == "off"))
      seccomp = std::string(argv[++i]) == "on";
    else {
      std::fprintf(stderr,
                   "usage: %s [--file PATH] [--size-gib N] [--seconds S] [--reps N] [--no-fio] "
                   "[--only SUBSTRING] [--poll-us N] [--cpu N] [--seccomp on|off]\n",
                   argv[0]);
      return 2;
    }
  }
  if (cpu >= 0) {
    // Threads made later (the device's I/O thread) inherit this.
    cpu_set_t set;
    CPU_ZERO(&set);
    if (cpu < CPU_SETSIZE) CPU_SET(static_cast<size_t>(cpu), &set);
    if (cpu >= CPU_SETSIZE || sched_setaffinity(0, sizeof(set), &set) != 0) {
      std::fprintf(stderr, "bench_blk: cannot run on CPU %d\n", cpu);
      return 2;
    }
  }
  if (path.find('\'') != std::string::npos) {
    std::fprintf(stderr, "bench_blk: the file name may not contain a quote\n");
    return 2;
  }
  const auto size = static_cast<uint64_t>(size_gib * (1ull << 30)) & ~uint64_t{(1 << 20) - 1};
  ensure_file(path, size);
  // minivmm's own order: the mode, the SIGSYS reporter and the device workers' hook before
  // any device exists. Only threads that enter a class get a filter; this one does not.
  if (seccomp) {
    // minivmm's own confinement of device workers: seccomp on, Landlock where there is one.
    vmm::init_confinement(vmm::ConfinementOptions{});
  }

  const Pattern patterns[] = {
      {"4k randread QD32", "randread", false, true, 4096, 32},
      {"4k randwrite QD32", "randwrite", true, true, 4096, 32},
      {"1M seqread QD8", "read", false, false, 1 << 20, 8},
      {"1M seqwrite QD8", "write", true, false, 1 << 20, 8},
  };
  std::printf("file %s, %.2f GiB, %.0f s per run, median of %d, O_DIRECT, io_uring, "
              "buffers on huge pages, device polls %u us, %s, seccomp %s\n",
              path.c_str(), static_cast<double>(size) / (1ull << 30), seconds, reps, poll_us,
              cpu >= 0 ? ("both on CPU " + std::to_string(cpu)).c_str() : "any CPU",
              seccomp ? "on (blk worker)" : "off");
  std::printf("%-18s | %10s %9s %8s | %10s %9s %8s | %7s\n", "pattern", "dev IOPS", "dev MB/s",
              "dev us/IO", "fio IOPS", "fio MB/s", "fio us/IO", "dev/fio");
  for (const Pattern& p : patterns) {
    if (std::string(p.name).find(only) == std::string::npos) continue;
    std::vector<Figures> dev_runs, fio_runs;
    for (int r = 0; r < reps; ++r) {
      if (fio && r % 2 == 1) fio_runs.push_back(run_fio(path, size, p, seconds, cpu));
      dev_runs.push_back(run_device(path, size, p, seconds, poll_us, seccomp));
      if (fio && r % 2 == 0) fio_runs.push_back(run_fio(path, size, p, seconds, cpu));
      std::fprintf(stderr, "  %s run %d: device %.0f IOPS, fio %.0f IOPS\n", p.name, r,
                   dev_runs.back().iops, fio ? fio_runs.back().iops : 0.0);
    }
    const Figures d = median(dev_runs);
    const Figures f = fio ? median(fio_runs) : Figures{};
    std::printf("%-18s | %10.0f %9.1f %8.2f | %10.0f %9.1f %8.2f | %6.1f%%\n", p.name, d.iops,
                d.mbps, d.cpu_us_per_io, f.iops, f.mbps, f.cpu_us_per_io,
                f.ok ? 100.0 * d.iops / f.iops : 0.0);
    std::fflush(stdout);
  }
  return 0;
}
