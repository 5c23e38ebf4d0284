#include "devices/thread_class.h"

#include <atomic>

namespace minivmm::devices {
namespace {
std::atomic<ThreadClassHook> g_hook{nullptr};
thread_local const char* t_class = nullptr;
}  // namespace

void set_thread_class_hook(ThreadClassHook hook) {
  g_hook.store(hook, std::memory_order_release);
}

void enter_thread_class(const char* thread_class, int own_fd) {
  t_class = thread_class;
  if (ThreadClassHook hook = g_hook.load(std::memory_order_acquire)) hook(thread_class, own_fd);
}

const char* current_thread_class() {
  return t_class;
}

}  // namespace minivmm::devices
