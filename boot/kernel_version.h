// The release string of a kernel image ("6.1.0-57-cloud-amd64", what `uname -r` says once it
// runs), to find its module tree (/lib/modules/<release>). Pure functions over the image's
// bytes, which are untrusted user input: every failure is a one-line Error.
#pragma once

#include <cstdint>
#include <span>
#include <string>

#include "boot/result.h"

namespace minivmm::boot {

// A kernel's release (boot::Result cannot hold a bare string: its error is one).
struct KernelVersion {
  std::string release;  // "6.1.0-57-cloud-amd64"
};

// A bzImage's: the setup header's kernel_version field (boot protocol 2.00+, boot.rst "Details
// of Header Fields") points, less 0x200, to a NUL-terminated string inside the setup sectors,
// "6.1.0-57-cloud-amd64 (debian-kernel@lists.debian.org) #1 SMP ..."; its first word.
Result<KernelVersion> bzimage_kernel_version(std::span<const uint8_t> image);

// An uncompressed kernel's (an ELF vmlinux): its linux_banner, "Linux version <release> (".
Result<KernelVersion> vmlinux_kernel_version(std::span<const uint8_t> image);

// Either, by the image's magic (ELF or not).
Result<KernelVersion> kernel_version(std::span<const uint8_t> image);

}  // namespace minivmm::boot
