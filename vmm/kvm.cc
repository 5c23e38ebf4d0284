#include "vmm/kvm.h"

#include <fcntl.h>
#include <sys/ioctl.h>
#include <sys/mman.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <memory>

namespace minivmm::vmm {
namespace {

std::string errno_text(int err) {
  return std::strerror(err);
}

// ioctl that retries on EINTR and throws KvmError naming the request on failure.
template <typename Arg>
int checked_ioctl(int fd, unsigned long request, Arg arg, const char* what) {
  int ret;
  do {
    ret = ::ioctl(fd, request, arg);
  } while (ret < 0 && errno == EINTR);
  if (ret < 0) {
    const int err = errno;
    throw KvmError(std::string(what) + " failed: " + errno_text(err));
  }
  return ret;
}

// The uapi headers declare kvm_cpuid2 and kvm_msrs with __DECLARE_FLEX_ARRAY, which in C++
// adds bytes to the struct and so changes the size encoded in the ioctl numbers (12 and 16
// instead of 8). Use the C layout: an 8-byte header followed by the entries.
struct ArrayHeader {
  uint32_t count;
  uint32_t padding;
};
static_assert(sizeof(ArrayHeader) == 8);
constexpr unsigned long kGetSupportedCpuid = _IOWR(KVMIO, 0x05, ArrayHeader);
constexpr unsigned long kSetCpuid2 = _IOW(KVMIO, 0x90, ArrayHeader);
constexpr unsigned long kSetMsrs = _IOW(KVMIO, 0x89, ArrayHeader);

// A zeroed buffer holding an ArrayHeader and `count` entries of T, 8-byte aligned.
template <typename T>
struct HeaderArray {
  explicit HeaderArray(size_t count)
      : words(std::make_unique<uint64_t[]>((sizeof(ArrayHeader) + count * sizeof(T) + 7) / 8)) {
    header()->count = static_cast<uint32_t>(count);
  }
  ArrayHeader* header() { return reinterpret_cast<ArrayHeader*>(words.get()); }
  T* entries() { return reinterpret_cast<T*>(words.get() + 1); }
  std::unique_ptr<uint64_t[]> words;
};

struct Capability {
  unsigned long cap;
  const char* name;
};

// Everything Vm and Vcpu use; checked once at open so that a host without them fails early
// with a clear message instead of in the middle of setup.
constexpr Capability kRequiredCaps[] = {
    {KVM_CAP_IRQCHIP, "KVM_CAP_IRQCHIP"},
    {KVM_CAP_USER_MEMORY, "KVM_CAP_USER_MEMORY"},
    {KVM_CAP_SET_TSS_ADDR, "KVM_CAP_SET_TSS_ADDR"},
    {KVM_CAP_SET_IDENTITY_MAP_ADDR, "KVM_CAP_SET_IDENTITY_MAP_ADDR"},
    {KVM_CAP_EXT_CPUID, "KVM_CAP_EXT_CPUID"},
    {KVM_CAP_PIT2, "KVM_CAP_PIT2"},
    {KVM_CAP_IOEVENTFD, "KVM_CAP_IOEVENTFD"},
    {KVM_CAP_IRQFD, "KVM_CAP_IRQFD"},
    {KVM_CAP_IMMEDIATE_EXIT, "KVM_CAP_IMMEDIATE_EXIT"},
};

}  // namespace

// ---- Kvm ----------------------------------------------------------------------------------------

Kvm Kvm::open(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDWR | O_CLOEXEC);
  if (fd < 0) {
    const int err = errno;
    std::string hint;
    if (err == ENOENT) hint = " (is the kvm module loaded? does this host support virtualization?)";
    if (err == EACCES || err == EPERM) hint = " (add your user to the 'kvm' group or fix its mode)";
    throw KvmError("cannot open " + path + ": " + errno_text(err) + hint);
  }
  Kvm kvm{UniqueFd(fd)};
  const int version = ::ioctl(fd, KVM_GET_API_VERSION, 0);
  if (version != KVM_API_VERSION) {
    throw KvmError(path + " speaks KVM API version " + std::to_string(version) + ", expected " +
                   std::to_string(KVM_API_VERSION));
  }
  for (const Capability& c : kRequiredCaps) kvm.require_extension(c.cap, c.name);
  kvm.vcpu_mmap_size_ = checked_ioctl(fd, KVM_GET_VCPU_MMAP_SIZE, 0, "KVM_GET_VCPU_MMAP_SIZE");
  return kvm;
}

int Kvm::check_extension(unsigned long cap) const {
  const int ret = ::ioctl(fd_.get(), KVM_CHECK_EXTENSION, cap);
  return ret < 0 ? 0 : ret;
}

void Kvm::require_extension(unsigned long cap, const char* name) const {
  if (check_extension(cap) <= 0) throw KvmError(std::string("host KVM lacks ") + name);
}

int Kvm::max_vcpus() const {
  int n = check_extension(KVM_CAP_MAX_VCPUS);
  if (n <= 0) n = check_extension(KVM_CAP_NR_VCPUS);
  return n <= 0 ? 4 : n;  // KVM API: assume 4 when neither is reported
}

std::vector<kvm_cpuid_entry2> Kvm::supported_cpuid() const {
  // kvm_cpuid2 ends in a flexible array: allocate header + entries, growing on E2BIG.
  for (uint32_t n = 128; n <= 4096; n *= 2) {
    HeaderArray<kvm_cpuid_entry2> cpuid(n);
    if (::ioctl(fd_.get(), kGetSupportedCpuid, cpuid.header()) == 0) {
      const uint32_t got = std::min(cpuid.header()->count, n);
      return std::vector<kvm_cpuid_entry2>(cpuid.entries(), cpuid.entries() + got);
    }
    if (errno != E2BIG) throw KvmError("KVM_GET_SUPPORTED_CPUID failed: " + errno_text(errno));
  }
  throw KvmError("KVM_GET_SUPPORTED_CPUID: too many entries");
}

VmFd Kvm::create_vm() const {
  const int fd = checked_ioctl(fd_.get(), KVM_CREATE_VM, 0UL, "KVM_CREATE_VM");
  return VmFd(UniqueFd(fd), vcpu_mmap_size_);
}

// ---- VmFd ---------------------------------------------------------------------------------------

void VmFd::set_tss_addr(uint64_t addr) const {
  checked_ioctl(fd_.get(), KVM_SET_TSS_ADDR, static_cast<unsigned long>(addr), "KVM_SET_TSS_ADDR");
}

void VmFd::set_identity_map_addr(uint64_t addr) const {
  uint64_t value = addr;
  checked_ioctl(fd_.get(), KVM_SET_IDENTITY_MAP_ADDR, &value, "KVM_SET_IDENTITY_MAP_ADDR");
}

void VmFd::create_irqchip() const {
  checked_ioctl(fd_.get(), KVM_CREATE_IRQCHIP, 0UL, "KVM_CREATE_IRQCHIP");
}

void VmFd::create_pit2() const {
  kvm_pit_config config{};
  // The PIT's speaker port (0x61) is emulated in the kernel too; Linux probes it.
  config.flags = KVM_PIT_SPEAKER_DUMMY;
  checked_ioctl(fd_.get(), KVM_CREATE_PIT2, &config, "KVM_CREATE_PIT2");
}

void VmFd::set_user_memory_region(uint32_t slot, uint64_t guest_addr, uint64_t size,
                                  void* host) const {
  kvm_userspace_memory_region region{};
  region.slot = slot;
  region.guest_phys_addr = guest_addr;
  region.memory_size = size;
  region.userspace_addr = reinterpret_cast<uint64_t>(host);
  checked_ioctl(fd_.get(), KVM_SET_USER_MEMORY_REGION, &region, "KVM_SET_USER_MEMORY_REGION");
}

namespace {
kvm_ioeventfd make_ioeventfd(int event_fd, uint64_t addr, uint32_t len,
                             std::optional<uint64_t> datamatch, bool pio) {
  kvm_ioeventfd io{};
  io.addr = addr;
  io.len = len;
  io.fd = event_fd;
  if (datamatch) {
    io.flags |= KVM_IOEVENTFD_FLAG_DATAMATCH;
    io.datamatch = *datamatch;
  }
  if (pio) io.flags |= KVM_IOEVENTFD_FLAG_PIO;
  return io;
}
}  // namespace

void VmFd::register_ioeventfd(int event_fd, uint64_t addr, uint32_t len,
                              std::optional<uint64_t> datamatch, bool pio) const {
  kvm_ioeventfd io = make_ioeventfd(event_fd, addr, len, datamatch, pio);
  checked_ioctl(fd_.get(), KVM_IOEVENTFD, &io, "KVM_IOEVENTFD");
}

void VmFd::unregister_ioeventfd(int event_fd, uint64_t addr, uint32_t len,
                                std::optional<uint64_t> datamatch, bool pio) const {
  if (closing_) return;
  kvm_ioeventfd io = make_ioeventfd(event_fd, addr, len, datamatch, pio);
  io.flags |= KVM_IOEVENTFD_FLAG_DEASSIGN;
  checked_ioctl(fd_.get(), KVM_IOEVENTFD, &io, "KVM_IOEVENTFD (deassign)");
}

void VmFd::register_irqfd(int event_fd, uint32_t gsi) const {
  kvm_irqfd irqfd{};
  irqfd.fd = static_cast<uint32_t>(event_fd);
  irqfd.gsi = gsi;
  checked_ioctl(fd_.get(), KVM_IRQFD, &irqfd, "KVM_IRQFD");
}

void VmFd::unregister_irqfd(int event_fd, uint32_t gsi) const {
  if (closing_) return;
  kvm_irqfd irqfd{};
  irqfd.fd = static_cast<uint32_t>(event_fd);
  irqfd.gsi = gsi;
  irqfd.flags = KVM_IRQFD_FLAG_DEASSIGN;
  checked_ioctl(fd_.get(), KVM_IRQFD, &irqfd, "KVM_IRQFD (deassign)");
}

VcpuFd VmFd::create_vcpu(uint32_t id) const {
  UniqueFd fd(
      checked_ioctl(fd_.get(), KVM_CREATE_VCPU, static_cast<unsigned long>(id), "KVM_CREATE_VCPU"));
  const auto size = static_cast<size_t>(vcpu_mmap_size_);
  void* run = ::mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd.get(), 0);
  if (run == MAP_FAILED) throw KvmError("mmap of the vCPU run area failed: " + errno_text(errno));
  return VcpuFd(std::move(fd), static_cast<kvm_run*>(run), size);
}

// ---- VcpuFd -------------------------------------------------------------------------------------

VcpuFd::VcpuFd(UniqueFd fd, kvm_run* run, size_t run_size)
    : fd_(std::move(fd)), run_(run), run_size_(run_size) {}

VcpuFd::~VcpuFd() {
  if (run_ != nullptr) ::munmap(run_, run_size_);
}

VcpuFd::VcpuFd(VcpuFd&& other) noexcept
    : fd_(std::move(other.fd_)),
      run_(std::exchange(other.run_, nullptr)),
      run_size_(other.run_size_) {}

RunResult VcpuFd::run() const {
  if (::ioctl(fd_.get(), KVM_RUN, 0) == 0) return RunResult::kExit;
  const int err = errno;
  if (err == EINTR || err == EAGAIN) return RunResult::kInterrupted;
  throw KvmError("KVM_RUN failed: " + errno_text(err));
}

kvm_regs VcpuFd::get_regs() const {
  kvm_regs regs{};
  checked_ioctl(fd_.get(), KVM_GET_REGS, &regs, "KVM_GET_REGS");
  return regs;
}

void VcpuFd::set_regs(const kvm_regs& regs) const {
  checked_ioctl(fd_.get(), KVM_SET_REGS, &regs, "KVM_SET_REGS");
}

kvm_sregs VcpuFd::get_sregs() const {
  kvm_sregs sregs{};
  checked_ioctl(fd_.get(), KVM_GET_SREGS, &sregs, "KVM_GET_SREGS");
  return sregs;
}

void VcpuFd::set_sregs(const kvm_sregs& sregs) const {
  checked_ioctl(fd_.get(), KVM_SET_SREGS, &sregs, "KVM_SET_SREGS");
}

void VcpuFd::set_fpu(const kvm_fpu& fpu) const {
  checked_ioctl(fd_.get(), KVM_SET_FPU, &fpu, "KVM_SET_FPU");
}

void VcpuFd::set_cpuid2(const std::vector<kvm_cpuid_entry2>& entries) const {
  HeaderArray<kvm_cpuid_entry2> cpuid(entries.size());
  std::memcpy(cpuid.entries(), entries.data(), entries.size() * sizeof(kvm_cpuid_entry2));
  checked_ioctl(fd_.get(), kSetCpuid2, cpuid.header(), "KVM_SET_CPUID2");
}

size_t VcpuFd::set_msrs(const std::vector<kvm_msr_entry>& msrs) const {
  HeaderArray<kvm_msr_entry> array(msrs.size());
  std::memcpy(array.entries(), msrs.data(), msrs.size() * sizeof(kvm_msr_entry));
  return static_cast<size_t>(checked_ioctl(fd_.get(), kSetMsrs, array.header(), "KVM_SET_MSRS"));
}

kvm_lapic_state VcpuFd::get_lapic() const {
  kvm_lapic_state lapic{};
  checked_ioctl(fd_.get(), KVM_GET_LAPIC, &lapic, "KVM_GET_LAPIC");
  return lapic;
}

void VcpuFd::set_lapic(const kvm_lapic_state& lapic) const {
  checked_ioctl(fd_.get(), KVM_SET_LAPIC, &lapic, "KVM_SET_LAPIC");
}

}  // namespace minivmm::vmm
