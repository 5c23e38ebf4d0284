// Thread classes: every thread that serves the guest belongs to one class ("vcpu", "blk",
// "rng", "console", ...), and the VMM confines each class with its own seccomp filter
// (vmm/seccomp.h). A device thread enters its class once, on itself, before it serves the
// guest; the VMM's hook installs the class's filter there. Without a hook (unit tests,
// fuzzers) entering a class only records its name.
//
// Threads: set_thread_class_hook() on the main thread before any device thread starts;
// enter_thread_class() on the thread that enters.
#pragma once

namespace minivmm::devices {

// Installs the sandbox of `thread_class` on the calling thread; throws when it cannot.
// `own_fd` is the one fd of its kind the thread may use (a blk worker's io_uring ring), or
// -1: the filter pins its calls to it.
using ThreadClassHook = void (*)(const char* thread_class, int own_fd);

void set_thread_class_hook(ThreadClassHook hook);

// The calling thread enters `thread_class` (a string literal): throws what the hook threw.
void enter_thread_class(const char* thread_class, int own_fd = -1);

// The class the calling thread entered, or nullptr.
const char* current_thread_class();

}  // namespace minivmm::devices
