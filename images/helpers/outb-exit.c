/* outb-exit N [PORT]: write the byte N to I/O port PORT (default 0xf4, minivmm's exit port)
 * from Linux user space, with ioperm(2). Built static into the test initramfs
 * (images/build-initramfs.sh) for the e2e exit-status cases; Debian's cloud kernel has no
 * /dev/port. Under minivmm the VM ends at the write; if it returns, the port did nothing. */
#include <stdio.h>
#include <stdlib.h>
#include <sys/io.h>

int main(int argc, char** argv) {
  if (argc < 2 || argc > 3) {
    fprintf(stderr, "usage: outb-exit N [PORT]\n");
    return 2;
  }
  const unsigned long value = strtoul(argv[1], NULL, 0);
  const unsigned long port = argc == 3 ? strtoul(argv[2], NULL, 0) : 0xf4;
  if (value > 0xff || port > 0xffff) {
    fprintf(stderr, "outb-exit: N must be 0-255 and PORT 0-0xffff\n");
    return 2;
  }
  if (ioperm(port, 1, 1) != 0) {
    perror("outb-exit: ioperm");
    return 1;
  }
  outb((unsigned char)value, (unsigned short)port);
  fprintf(stderr, "outb-exit: wrote %lu to port %#lx and am still running\n", value, port);
  return 1;
}
