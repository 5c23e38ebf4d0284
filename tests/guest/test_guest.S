/*
 * minivmm test guest: a tiny image in bzImage format (Linux boot protocol 2.15, 64-bit entry)
 * that minivmm loads and boots like a kernel. It proves the load path (setup header, zero
 * page, command line, page tables, long-mode entry) and then exercises the devices:
 *
 *   1. prints "minivmm-test-guest: hello" and the kernel command line on the UART (0x3f8),
 *   2. finds the first virtio-mmio device on the command line ("...@0x<base>:<irq>", which
 *      minivmm's --virtio-cmdline appends) and prints its MagicValue, Version, DeviceID and,
 *      for a block device, the capacity from the config space,
 *   3. writes 0x10, 0x20, 0x30 to the boot-progress port 0x80,
 *   4. resets through the i8042 (0xFE to port 0x64), which ends the VM as a reboot.
 *
 * Words on the command line change step 4, so that tests can reach other exits:
 *   minivmm-test=poweroff  ACPI S5: SLP_TYP=5 | SLP_EN (0x34) to the sleep control port 0x3c0
 *   minivmm-test=spin      loop forever (the VMM must stop it on SIGTERM / SIGINT)
 *   minivmm-test=crash     load an empty IDT and execute ud2: a triple fault
 *   minivmm-test=int3      execute int3, which PVM's instruction emulator cannot (an
 *                          emulation failure there; a triple fault elsewhere)
 *   minivmm-test=exit      write the byte 42 to the exit port 0xf4 (status 42)
 *   minivmm-test=exitw     write the 16-bit word 0x0103 to port 0xf4 (minivmm: status 3;
 *                          QEMU's formula: (0x103 << 1 | 1) & 0xff = 7)
 *   minivmm-test=flood     write 128 KiB to the UART first (lines of 63 'x' and a newline,
 *                          no LSR wait: the UART's transmitter is always empty), then
 *                          "minivmm-test-guest: flood done", then reset as usual
 *   minivmm-test=hostile   10^6 accesses where nothing is (250000 times: a 32-bit MMIO
 *                          write and read at 0xf0000000 in the MMIO gap, an 8-bit port
 *                          write and read at 0x2f8, COM2's); then, with a virtio-mmio
 *                          device, 10^5 InterruptACK writes of all ones and every status
 *                          transition the spec forbids (DRIVER_OK first, FEATURES_OK with
 *                          features nobody offered, bits cleared without a reset, FAILED,
 *                          queue registers with no queue set up, 10^4 notifications of
 *                          queues that are not ready); prints "hostile done mmio=0x...
 *                          pio=0x.. status=0x..", and exits through port 0xf4 with 0 when
 *                          the holes read as all ones (else 1)
 *   minivmm-test=blkio     drive the virtio-blk device at the first virtio-mmio window
 *                          (VERSION_1 and FLUSH negotiated, one queue of 8, no interrupts:
 *                          the used ring is polled): write 1 KiB of 0x5a to sector 0, read
 *                          it back, flush, write 1 KiB of 0xa5 to sector 8, read it back,
 *                          flush; print "blkio w0=SS r0=SS d0=V f0=SS w8=SS r8=SS d8=V
 *                          f1=SS" (SS: each request's status byte in hex, ee if it never
 *                          completed; V: y when the read buffer holds the pattern, n when
 *                          not), then power off
 *   minivmm-test=blkio-spin  the same, then loop forever instead (a device left active)
 *
 * Loaders that start a bzImage in real mode (QEMU's firmware on -M microvm; used by
 * bench/vmm_bench.py to run this same image under QEMU) land on a separate 16-bit path in the
 * setup sector instead: one line on the UART, the same three progress writes, then exit
 * through isa-debug-exit (port 0xf4) or the i8042. It ignores the command line.
 *
 * Entered in 64-bit mode with RSI = zero page, identity paging and interrupts disabled.
 * All code is position independent (RIP-relative data).
 */

#define COM1 0x3f8
#define COM1_LSR (COM1 + 5)
#define LSR_THRE 0x20
#define ZP_EXT_CMD_LINE_PTR 0x0c8
#define ZP_CMD_LINE_PTR 0x228

/* ---- Real-mode setup part: one 512-byte boot sector plus setup_sects (1) sectors ----- */
        .section .setup, "a"
        .code16
setup_start:
        .org 0x1f1
setup_sects:    .byte 1
root_flags:     .word 0
syssize:        .long minivmm_guest_syssize   /* protected-mode size in 16-byte units */
ram_size:       .word 0
vid_mode:       .word 0xffff
root_dev:       .word 0
boot_flag:      .word 0xaa55
                .byte 0xeb                    /* jump over the header */
                .byte setup_header_end - 0x202 - setup_start
header:         .ascii "HdrS"
version:        .word 0x020f
realmode_swtch: .long 0
start_sys_seg:  .word 0
kernel_version: .word 0
type_of_loader: .byte 0
loadflags:      .byte 0x01                    /* LOADED_HIGH */
setup_move_size: .word 0
code32_start:   .long 0x100000
ramdisk_image:  .long 0
ramdisk_size:   .long 0
bootsect_kludge: .long 0
heap_end_ptr:   .word 0
ext_loader_ver: .byte 0
ext_loader_type: .byte 0
cmd_line_ptr:   .long 0
initrd_addr_max: .long 0x7fffffff
kernel_alignment: .long 0x100000
relocatable_kernel: .byte 0
min_alignment:  .byte 12
xloadflags:     .word 0x0001                  /* XLF_KERNEL_64: 64-bit entry at +0x200 */
cmdline_size:   .long 4095
hardware_subarch: .long 0
hardware_subarch_data: .quad 0
payload_offset: .long 0
payload_length: .long 0
setup_data:     .quad 0
pref_address:   .quad 0x100000
init_size:      .long 0x20000
handover_offset: .long 0
kernel_info_offset: .long 0
setup_header_end:
/* 16-bit real-mode entry (the jump at 0x200 lands here), used only by loaders that start a
 * bzImage in real mode, such as QEMU's firmware (qboot / linuxboot option ROM) on
 * -M microvm, so that benchmarks can run the same image there. minivmm never enters it.
 * Entered with DS = the setup segment. Prints a line, writes the same 0x10, 0x20, 0x30 to
 * the boot-progress port 0x80, then exits: isa-debug-exit (port 0xf4, QEMU's
 * -device isa-debug-exit) and the i8042 reset as a fallback; with neither it halts. */
        cli
        lea msg16_hello, %si
1:      lodsb
        test %al, %al
        jz 3f
        mov %al, %ah
        mov $COM1_LSR, %dx
2:      in %dx, %al
        test $LSR_THRE, %al
        jz 2b
        mov $COM1, %dx
        mov %ah, %al
        out %al, %dx
        jmp 1b
3:      mov $0x10, %al
        out %al, $0x80
        mov $0x20, %al
        out %al, $0x80
        mov $0x30, %al
        out %al, $0x80
        xor %al, %al
        out %al, $0xf4                        /* isa-debug-exit: QEMU exits with status 1 */
        mov $0xfe, %al
        out %al, $0x64                        /* i8042 reset */
4:      hlt
        jmp 4b
msg16_hello:    .asciz "minivmm-test-guest: hello (16-bit entry), progress written, exiting\n"
        .org 1024                             /* (setup_sects + 1) * 512 */

/* ---- Protected-mode part, loaded at 1 MiB ------------------------------------------ */
        .section .pmtext, "ax"
        .code32
startup_32:                                   /* not supported: 64-bit boot only */
        ud2
        .org 0x200
        .code64
        .globl startup_64
startup_64:
        cli
        mov %rsi, %r15                        /* r15 = zero page */

        lea msg_hello(%rip), %rsi
        call puts

        /* rdi = command line (cmd_line_ptr | ext_cmd_line_ptr << 32) */
        mov ZP_CMD_LINE_PTR(%r15), %edi
        mov ZP_EXT_CMD_LINE_PTR(%r15), %eax
        shl $32, %rax
        or %rax, %rdi
        mov %rdi, %r14
        lea msg_cmdline(%rip), %rsi
        call puts
        mov %r14, %rsi
        call puts
        mov $'\n', %al
        call putc

        mov %r14, %rdi
        call find_mmio_base
        test %rax, %rax
        jz no_virtio
        mov %rax, %rbx

        lea msg_virtio(%rip), %rsi
        call puts
        mov %rbx, %rax
        call put_hex64
        lea msg_magic(%rip), %rsi
        call puts
        mov 0x000(%rbx), %eax                 /* MagicValue */
        call put_hex32
        lea msg_version(%rip), %rsi
        call puts
        mov 0x004(%rbx), %eax                 /* Version */
        call put_hex32
        lea msg_device(%rip), %rsi
        call puts
        mov 0x008(%rbx), %eax                 /* DeviceID */
        mov %eax, %r13d
        call put_hex32
        cmp $2, %r13d                         /* virtio-blk: capacity at config offset 0 */
        jne 1f
        lea msg_capacity(%rip), %rsi
        call puts
        mov 0x104(%rbx), %eax
        shl $32, %rax
        mov 0x100(%rbx), %ecx
        or %rcx, %rax
        call put_hex64
1:      mov $'\n', %al
        call putc
        jmp progress

no_virtio:
        lea msg_no_virtio(%rip), %rsi
        call puts

progress:
        mov %r14, %rdi
        lea word_flood(%rip), %rsi
        call contains
        test %eax, %eax
        jz 2f
        mov $COM1, %dx
        xor %ecx, %ecx
1:      mov $'x', %al
        mov %ecx, %r8d
        and $63, %r8d
        cmp $63, %r8d
        jne 3f
        mov $'\n', %al
3:      out %al, %dx
        inc %ecx
        cmp $(128 * 1024), %ecx
        jne 1b
        lea msg_flood(%rip), %rsi
        call puts
2:
        mov $0x10, %al
        out %al, $0x80
        mov $0x20, %al
        out %al, $0x80
        mov $0x30, %al
        out %al, $0x80

        mov %r14, %rdi
        lea word_exitw(%rip), %rsi
        call contains
        test %eax, %eax
        jnz exit_word
        mov %r14, %rdi
        lea word_exit(%rip), %rsi
        call contains
        test %eax, %eax
        jnz exit_byte
        mov %r14, %rdi
        lea word_poweroff(%rip), %rsi
        call contains
        test %eax, %eax
        jnz poweroff
        mov %r14, %rdi
        lea word_spin(%rip), %rsi
        call contains
        test %eax, %eax
        jnz spin
        mov %r14, %rdi
        lea word_crash(%rip), %rsi
        call contains
        test %eax, %eax
        jnz crash
        mov %r14, %rdi
        lea word_int3(%rip), %rsi
        call contains
        test %eax, %eax
        jnz breakpoint
        mov %r14, %rdi
        lea word_hostile(%rip), %rsi
        call contains
        test %eax, %eax
        jnz hostile
        mov %r14, %rdi
        lea word_blkio(%rip), %rsi
        call contains
        test %eax, %eax
        jnz blkio

        lea msg_reset(%rip), %rsi
        call puts
        mov $0xfe, %al
        out %al, $0x64                        /* i8042: pulse the reset line */
2:      hlt
        jmp 2b

exit_byte:
        mov $42, %al
        out %al, $0xf4
7:      hlt
        jmp 7b

exit_word:
        mov $0x0103, %ax
        out %ax, $0xf4
8:      hlt
        jmp 8b

poweroff:
        lea msg_poweroff(%rip), %rsi
        call puts
        mov $0x34, %al                        /* SLP_TYP = 5 (S5) << 2 | SLP_EN */
        mov $0x3c0, %dx
        out %al, %dx
3:      hlt
        jmp 3b

spin:
        lea msg_spin(%rip), %rsi
        call puts
4:      pause
        jmp 4b

crash:
        lea msg_crash(%rip), %rsi
        call puts
        lidt empty_idt(%rip)
        ud2                                   /* #UD -> #GP -> #DF -> shutdown */
5:      jmp 5b

breakpoint:
        lea msg_int3(%rip), %rsi
        call puts
        lidt empty_idt(%rip)
        int3
6:      jmp 6b

/* hostile: see the file comment. %rbx = the virtio-mmio base found above, or 0. */
hostile:
        mov $0xf0000000, %rdi                 /* nothing there: the MMIO gap above the devices */
        mov $250000, %ecx
1:      movl $0xdeadbeef, (%rdi)
        mov (%rdi), %r9d
        mov $0x2f8, %dx
        mov $0x5a, %al
        out %al, %dx
        in %dx, %al
        mov %al, %r10b
        dec %ecx
        jnz 1b
        xor %r11d, %r11d                      /* the device's status at the end */
        test %rbx, %rbx
        jz 4f
        mov $100000, %ecx
2:      movl $0xffffffff, 0x064(%rbx)         /* InterruptACK */
        dec %ecx
        jnz 2b
        movl $0x4, 0x070(%rbx)                /* DRIVER_OK before ACKNOWLEDGE / DRIVER */
        movl $0x0, 0x070(%rbx)                /* reset */
        movl $0x1, 0x070(%rbx)                /* ACKNOWLEDGE */
        movl $0x3, 0x070(%rbx)                /* | DRIVER */
        movl $1, 0x024(%rbx)                  /* DriverFeaturesSel = 1 */
        movl $0xffffffff, 0x020(%rbx)         /* features 32-63 nobody offered */
        movl $0, 0x024(%rbx)
        movl $0xffffffff, 0x020(%rbx)
        movl $0xb, 0x070(%rbx)                /* | FEATURES_OK: must not stick */
        movl $0x1, 0x070(%rbx)                /* clearing DRIVER without a reset */
        movl $0x7, 0x070(%rbx)                /* DRIVER_OK without FEATURES_OK */
        movl $7, 0x030(%rbx)                  /* QueueSel: a queue that does not exist */
        movl $1, 0x044(%rbx)                  /* QueueReady on it */
        movl $0, 0x030(%rbx)
        movl $1, 0x044(%rbx)                  /* QueueReady with no rings set up */
        mov $10000, %ecx
3:      movl $0, 0x050(%rbx)                  /* QueueNotify */
        movl $0x1234, 0x050(%rbx)
        dec %ecx
        jnz 3b
        movl $0x80, 0x070(%rbx)               /* FAILED */
        mov 0x070(%rbx), %r11d
        movl $0x0, 0x070(%rbx)                /* reset at the end */
4:      lea msg_hostile(%rip), %rsi
        call puts
        mov %r9d, %eax
        call put_hex32
        lea msg_pio(%rip), %rsi
        call puts
        movzbl %r10b, %eax
        shl $24, %eax
        mov $2, %ecx
        shl $32, %rax
        call put_hex
        lea msg_status(%rip), %rsi
        call puts
        mov %r11d, %eax
        call put_hex32
        mov $'\n', %al
        call putc
        xor %eax, %eax
        cmp $0xffffffff, %r9d
        setne %al
        cmp $0xff, %r10b
        je 5f
        mov $1, %al
5:      out %al, $0xf4
6:      hlt
        jmp 6b

/* blkio: see the file comment. %rbx = the virtio-mmio base found above, or 0. Guest RAM at
 * BLK_MEM (identity mapped, above this image) holds the queue and the request. */
#define BLK_MEM 0x200000
#define BLK_DESC (BLK_MEM)
#define BLK_AVAIL (BLK_MEM + 0x1000)
#define BLK_USED (BLK_MEM + 0x2000)
#define BLK_HDR (BLK_MEM + 0x3000)
#define BLK_DATA (BLK_MEM + 0x4000)
#define BLK_STATUS (BLK_MEM + 0x5000)
#define BLK_LEN 1024
#define BLK_T_IN 0
#define BLK_T_OUT 1
#define BLK_T_FLUSH 4
blkio:
        test %rbx, %rbx
        jz 9f
        cmpl $2, 0x008(%rbx)                  /* DeviceID: block */
        jne 9f
        mov $BLK_MEM, %rdi                    /* rings, header, data, status: all zero */
        mov $0x6000, %ecx
        xor %eax, %eax
        rep stosb
        movl $0, 0x070(%rbx)                  /* reset */
        movl $1, 0x070(%rbx)                  /* ACKNOWLEDGE */
        movl $3, 0x070(%rbx)                  /* | DRIVER */
        movl $1, 0x024(%rbx)                  /* DriverFeaturesSel = 1 */
        movl $1, 0x020(%rbx)                  /* VERSION_1 (bit 32) */
        movl $0, 0x024(%rbx)
        movl $0x200, 0x020(%rbx)              /* BLK_F_FLUSH (bit 9) */
        movl $0xb, 0x070(%rbx)                /* | FEATURES_OK */
        testl $8, 0x070(%rbx)
        jz 9f
        movl $0, 0x030(%rbx)                  /* QueueSel 0 */
        movl $8, 0x038(%rbx)                  /* QueueNum */
        movl $BLK_DESC, 0x080(%rbx)
        movl $0, 0x084(%rbx)
        movl $BLK_AVAIL, 0x090(%rbx)
        movl $0, 0x094(%rbx)
        movl $BLK_USED, 0x0a0(%rbx)
        movl $0, 0x0a4(%rbx)
        movl $1, 0x044(%rbx)                  /* QueueReady */
        movl $0xf, 0x070(%rbx)                /* | DRIVER_OK */
        xor %r12d, %r12d                      /* the next avail index */
        lea msg_blkio(%rip), %rsi
        call puts

        mov $0x5a, %al
        call blk_fill
        mov $BLK_T_OUT, %edi
        xor %esi, %esi
        mov $2, %edx
        call blk_req
        lea msg_w0(%rip), %rsi
        call blk_report
        xor %eax, %eax
        call blk_fill
        mov $BLK_T_IN, %edi
        xor %esi, %esi
        mov $1, %edx
        call blk_req
        lea msg_r0(%rip), %rsi
        call blk_report
        lea msg_d0(%rip), %rsi
        call puts
        mov $0x5a, %al
        call blk_check
        call putc
        mov $BLK_T_FLUSH, %edi
        xor %esi, %esi
        xor %edx, %edx
        call blk_req
        lea msg_f0(%rip), %rsi
        call blk_report

        mov $0xa5, %al
        call blk_fill
        mov $BLK_T_OUT, %edi
        mov $8, %esi
        mov $2, %edx
        call blk_req
        lea msg_w8(%rip), %rsi
        call blk_report
        xor %eax, %eax
        call blk_fill
        mov $BLK_T_IN, %edi
        mov $8, %esi
        mov $1, %edx
        call blk_req
        lea msg_r8(%rip), %rsi
        call blk_report
        lea msg_d8(%rip), %rsi
        call puts
        mov $0xa5, %al
        call blk_check
        call putc
        mov $BLK_T_FLUSH, %edi
        xor %esi, %esi
        xor %edx, %edx
        call blk_req
        lea msg_f1(%rip), %rsi
        call blk_report
        mov $'\n', %al
        call putc
        mov %r14, %rdi
        lea word_blkio_spin(%rip), %rsi
        call contains
        test %eax, %eax
        jnz spin
        jmp poweroff
9:      lea msg_no_blk(%rip), %rsi
        call puts
        mov $1, %al
        out %al, $0xf4
8:      hlt
        jmp 8b

/* blk_req: one request, type %edi, sector %rsi, data: %edx 0 none, 1 the device writes it
 * (a read), 2 the device reads it (a write); waits for it and returns its status byte in
 * %al (0xee if it never completed). Clobbers %rax, %rcx, %r8-%r10. */
blk_req:
        mov $BLK_HDR, %r8
        mov %edi, (%r8)
        movl $0, 4(%r8)
        mov %rsi, 8(%r8)
        mov $BLK_STATUS, %r8
        movb $0xff, (%r8)
        mov $BLK_DESC, %r9
        movq $BLK_HDR, 0(%r9)
        movl $16, 8(%r9)
        movw $1, 12(%r9)                      /* VIRTQ_DESC_F_NEXT */
        movw $1, 14(%r9)
        lea 16(%r9), %r10
        test %edx, %edx
        jz 1f
        movq $BLK_DATA, 0(%r10)
        movl $BLK_LEN, 8(%r10)
        mov $1, %eax
        cmp $1, %edx
        jne 2f
        or $2, %eax                           /* VIRTQ_DESC_F_WRITE */
2:      mov %ax, 12(%r10)
        movw $2, 14(%r10)
        add $16, %r10
1:      movq $BLK_STATUS, 0(%r10)
        movl $1, 8(%r10)
        movw $2, 12(%r10)                     /* WRITE, the last */
        movw $0, 14(%r10)
        mov $BLK_AVAIL, %r9
        mov %r12d, %eax
        and $7, %eax
        movw $0, 4(%r9,%rax,2)                /* ring[idx % 8] = head 0 */
        inc %r12d
        mfence
        mov %r12w, 2(%r9)                     /* avail idx */
        mfence
        movl $0, 0x050(%rbx)                  /* QueueNotify */
        mov $BLK_USED, %r9
        mov $200000000, %ecx
3:      cmp %r12w, 2(%r9)                     /* used idx */
        je 4f
        pause
        dec %ecx
        jnz 3b
        mov $0xee, %al
        ret
4:      mov 0x060(%rbx), %eax                 /* InterruptStatus, acknowledged */
        mov %eax, 0x064(%rbx)
        movzbl (%r8), %eax
        ret

/* blk_fill: the data buffer filled with %al. blk_check: %al = 'y' when the buffer holds only
 * %al, else 'n'. Both clobber %rdi, %rcx. */
blk_fill:
        mov $BLK_DATA, %rdi
        mov $BLK_LEN, %ecx
        rep stosb
        ret
blk_check:
        mov $BLK_DATA, %rdi
        mov $BLK_LEN, %ecx
        repe scasb
        mov $'y', %al
        je 1f
        mov $'n', %al
1:      ret

/* blk_report: the string at %rsi, then %al as two hex digits. */
blk_report:
        movzbl %al, %eax
        push %rax
        call puts
        pop %rax
        shl $56, %rax
        mov $2, %ecx
        jmp put_hex

/* contains: %eax = 1 when the string at %rdi contains the string at %rsi, else 0. */
contains:
1:      xor %ecx, %ecx
2:      movb (%rsi,%rcx), %al
        test %al, %al
        jz 4f                                 /* needle exhausted: found */
        cmpb (%rdi,%rcx), %al
        jne 3f
        inc %rcx
        jmp 2b
3:      cmpb $0, (%rdi)
        je 5f
        inc %rdi
        jmp 1b
4:      mov $1, %eax
        ret
5:      xor %eax, %eax
        ret

/* putc: writes %al to COM1 once THR is empty. Clobbers %dx, %ah. */
putc:
        mov %al, %ah
        mov $COM1_LSR, %dx
1:      in %dx, %al
        test $LSR_THRE, %al
        jz 1b
        mov $COM1, %dx
        mov %ah, %al
        out %al, %dx
        ret

/* puts: writes the NUL-terminated string at %rsi. Clobbers %rsi, %rax, %dx. */
puts:
1:      lodsb
        test %al, %al
        jz 2f
        call putc
        jmp 1b
2:      ret

/* put_hex64 / put_hex32: %rax / %eax as 16 / 8 hex digits. Clobbers %rcx, %r8, %rdx. */
put_hex64:
        mov $16, %ecx
        jmp put_hex
put_hex32:
        mov %eax, %eax
        shl $32, %rax
        mov $8, %ecx
put_hex:
        mov %rax, %r8
1:      rol $4, %r8
        mov %r8d, %eax
        and $0xf, %eax
        add $'0', %al
        cmp $'9', %al
        jbe 2f
        add $('a' - '9' - 1), %al
2:      push %rcx
        call putc
        pop %rcx
        dec %ecx
        jnz 1b
        ret

/* find_mmio_base: the hex number after the first "@0x" in the string at %rdi, or 0. */
find_mmio_base:
1:      movb (%rdi), %al
        test %al, %al
        jz 9f
        cmpb $'@', %al
        jne 2f
        cmpb $'0', 1(%rdi)
        jne 2f
        cmpb $'x', 2(%rdi)
        je 3f
2:      inc %rdi
        jmp 1b
3:      add $3, %rdi
        xor %eax, %eax
4:      movzbl (%rdi), %ecx
        sub $'0', %ecx
        cmp $9, %ecx
        jbe 5f
        movzbl (%rdi), %ecx
        or $0x20, %ecx                        /* lower case */
        sub $'a', %ecx
        cmp $5, %ecx
        ja 8f
        add $10, %ecx
5:      shl $4, %rax
        or %rcx, %rax
        inc %rdi
        jmp 4b
8:      ret
9:      xor %eax, %eax
        ret

msg_hello:      .asciz "minivmm-test-guest: hello\n"
msg_cmdline:    .asciz "minivmm-test-guest: cmdline: "
msg_virtio:     .asciz "minivmm-test-guest: virtio-mmio at 0x"
msg_magic:      .asciz " magic=0x"
msg_version:    .asciz " version=0x"
msg_device:     .asciz " device-id=0x"
msg_capacity:   .asciz " capacity=0x"
msg_no_virtio:  .asciz "minivmm-test-guest: no virtio-mmio device on the command line\n"
msg_reset:      .asciz "minivmm-test-guest: progress written, resetting\n"
msg_poweroff:   .asciz "minivmm-test-guest: progress written, powering off\n"
msg_spin:       .asciz "minivmm-test-guest: progress written, spinning\n"
msg_crash:      .asciz "minivmm-test-guest: progress written, crashing\n"
word_poweroff:  .asciz "minivmm-test=poweroff"
word_spin:      .asciz "minivmm-test=spin"
word_crash:     .asciz "minivmm-test=crash"
word_int3:      .asciz "minivmm-test=int3"
word_flood:     .asciz "minivmm-test=flood"
word_exit:      .asciz "minivmm-test=exit"
word_exitw:     .asciz "minivmm-test=exitw"
word_hostile:   .asciz "minivmm-test=hostile"
word_blkio:     .asciz "minivmm-test=blkio"
word_blkio_spin: .asciz "minivmm-test=blkio-spin"
msg_blkio:      .asciz "minivmm-test-guest: blkio"
msg_no_blk:     .asciz "minivmm-test-guest: blkio: no virtio-blk device to drive\n"
msg_w0:         .asciz " w0="
msg_r0:         .asciz " r0="
msg_d0:         .asciz " d0="
msg_f0:         .asciz " f0="
msg_w8:         .asciz " w8="
msg_r8:         .asciz " r8="
msg_d8:         .asciz " d8="
msg_f1:         .asciz " f1="
msg_hostile:    .asciz "minivmm-test-guest: hostile done mmio=0x"
msg_pio:        .asciz " pio=0x"
msg_status:     .asciz " status=0x"
msg_flood:      .asciz "minivmm-test-guest: flood done\n"
msg_int3:       .asciz "minivmm-test-guest: progress written, int3\n"
        .balign 8
empty_idt:      .word 0
                .quad 0
        .balign 16
	.section .note.GNU-stack,"",@progbits
