/*
 * kvm_floor: the machine's limit for VMM start-up — the fewest KVM calls that run a guest
 * instruction (figures, not a test). Opens /dev/kvm, creates a VM with one memory slot of the
 * given size (default 128 MiB, like the start-up benchmark) and one vCPU in real mode, runs
 * a 14-byte guest that writes 'k' to the UART port 0x3f8 (forwarded to stdout), 0x10 to port
 * 0x80 and 0xfe to port 0x64 (the i8042 reset, which ends the run), then closes everything.
 * No irqchip, no threads, no libraries but libc. Logs like minivmm: "boot progress 0x10 at
 * X ms" (since main), plus the time at which each step ended.
 *
 * KVM_FLOOR_IRQCHIP=before|after also creates the in-kernel irqchip and PIT (as minivmm does)
 * before or after the memory slot, to see what they cost.
 *
 * Built by bench/run-all.sh: cc -O2 -o kvm_floor kvm_floor.c. Usage: kvm_floor [MiB]
 */
#include <fcntl.h>
#include <linux/kvm.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

static struct timespec t0;

static double ms_since_start(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)(t.tv_sec - t0.tv_sec) * 1e3 + (double)(t.tv_nsec - t0.tv_nsec) / 1e6;
}

static void die(const char* what) {
  perror(what);
  exit(1);
}

static void create_irqchip(int vm) {
  struct kvm_pit_config pit = {0};
  if (ioctl(vm, KVM_CREATE_IRQCHIP, 0) < 0) die("KVM_CREATE_IRQCHIP");
  if (ioctl(vm, KVM_CREATE_PIT2, &pit) < 0) die("KVM_CREATE_PIT2");
}

int main(int argc, char** argv) {
  clock_gettime(CLOCK_MONOTONIC, &t0);
  const size_t mem = (size_t)(argc > 1 ? atoi(argv[1]) : 128) << 20;
  const char* irqchip = getenv("KVM_FLOOR_IRQCHIP");
  /* mov dx,0x3f8; mov al,'k'; out dx,al; mov al,0x10; out 0x80,al; mov al,0xfe; out 0x64,al */
  static const unsigned char code[] = {0xba, 0xf8, 0x03, 0xb0, 'k',  0xee, 0xb0,
                                       0x10, 0xe6, 0x80, 0xb0, 0xfe, 0xe6, 0x64};
  int kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC);
  if (kvm < 0) die("/dev/kvm");
  int vm = ioctl(kvm, KVM_CREATE_VM, 0);
  if (vm < 0) die("KVM_CREATE_VM");
  double t_vm = ms_since_start();
  if (ioctl(vm, KVM_SET_TSS_ADDR, 0xfffbd000UL) < 0) die("KVM_SET_TSS_ADDR");
  if (irqchip && strcmp(irqchip, "before") == 0) create_irqchip(vm);
  void* ram = mmap(NULL, mem, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (ram == MAP_FAILED) die("mmap");
  memcpy((char*)ram + 0x1000, code, sizeof(code));
  struct kvm_userspace_memory_region region = {
      .slot = 0, .guest_phys_addr = 0, .memory_size = mem, .userspace_addr = (unsigned long)ram};
  if (ioctl(vm, KVM_SET_USER_MEMORY_REGION, &region) < 0) die("KVM_SET_USER_MEMORY_REGION");
  double t_mem = ms_since_start();
  if (irqchip && strcmp(irqchip, "after") == 0) create_irqchip(vm);
  int vcpu = ioctl(vm, KVM_CREATE_VCPU, 0);
  if (vcpu < 0) die("KVM_CREATE_VCPU");
  int run_size = ioctl(kvm, KVM_GET_VCPU_MMAP_SIZE, 0);
  struct kvm_run* run =
      mmap(NULL, (size_t)run_size, PROT_READ | PROT_WRITE, MAP_SHARED, vcpu, 0);
  if (run == MAP_FAILED) die("mmap kvm_run");
  struct kvm_sregs sregs;
  if (ioctl(vcpu, KVM_GET_SREGS, &sregs) < 0) die("KVM_GET_SREGS");
  sregs.cs.base = 0;
  sregs.cs.selector = 0;
  if (ioctl(vcpu, KVM_SET_SREGS, &sregs) < 0) die("KVM_SET_SREGS");
  struct kvm_regs regs = {.rip = 0x1000, .rflags = 0x2};
  if (ioctl(vcpu, KVM_SET_REGS, &regs) < 0) die("KVM_SET_REGS");
  double t_vcpu = ms_since_start(), t_first = 0;
  for (;;) {
    if (ioctl(vcpu, KVM_RUN, 0) < 0) die("KVM_RUN");
    if (run->exit_reason == KVM_EXIT_IO && run->io.direction == KVM_EXIT_IO_OUT) {
      unsigned char v = *((unsigned char*)run + run->io.data_offset);
      if (t_first == 0) t_first = ms_since_start();
      if (run->io.port == 0x64) break;
      if (run->io.port == 0x3f8) {
        (void)!write(1, &v, 1);
      } else if (run->io.port == 0x80) {
        fprintf(stderr, "kvm_floor: info: boot progress %#04x at %.3f ms\n", v, ms_since_start());
      }
      continue;
    }
    fprintf(stderr, "kvm_floor: unexpected exit %u\n", run->exit_reason);
    return 1;
  }
  double t_halt = ms_since_start();
  munmap(run, (size_t)run_size);
  close(vcpu);
  close(vm);
  double t_close_vm = ms_since_start();
  munmap(ram, mem);
  close(kvm);
  fprintf(stderr,
          "kvm_floor: info: create VM %.3f ms, memory slot %.3f ms, vCPU %.3f ms, first guest "
          "exit %.3f ms, halt %.3f ms, close VM %.3f ms (since main)\n",
          t_vm, t_mem, t_vcpu, t_first, t_halt, t_close_vm);
  return 0;
}
