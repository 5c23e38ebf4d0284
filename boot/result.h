// Error values of the boot library. Bad input (a kernel image that is not a bzImage, a command
// line that is too long, a guest too small for the kernel) is a value carrying a one-line
// message for the user, never an exception or an abort (DESIGN.md "Style"). The error is the
// message itself: these failures are reported to a person, not dispatched on.
//
// The Result template is the project's one (virtio/result.h, a dependency-free header: the
// only thing boot/ takes from virtio/).
#pragma once

#include <string>

#include "virtio/result.h"

namespace minivmm::boot {

using Error = std::string;

// A value of type T or a one-line message.
template <typename T>
using Result = ::minivmm::Result<T, Error>;

}  // namespace minivmm::boot
