#include "devices/virtio_worker.h"

#include <signal.h>
#include <spdlog/spdlog.h>

#include <exception>
#include <stdexcept>
#include <utility>

#include "devices/thread_class.h"

namespace minivmm::devices {

VirtioWorker::~VirtioWorker() {
  stop();
  if (!thread_.joinable()) return;
  {
    std::lock_guard lock(mutex_);
    exit_ = true;
  }
  cv_.notify_all();
  thread_.join();
}

void VirtioWorker::spawn(const char* thread_class, const std::function<int()>& on_spawn) {
  if (thread_.joinable()) return;
  error_ = nullptr;
  spawned_ = false;
  // The thread takes no asynchronous signal (SIGINT and SIGTERM are the main thread's, read
  // from its signalfd): it starts with them blocked. The synchronous ones stay open, SIGSYS
  // among them, whose handler reports a seccomp violation.
  sigset_t blocked;
  sigset_t old;
  sigfillset(&blocked);
  for (int sig : {SIGSYS, SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGTRAP, SIGABRT}) {
    sigdelset(&blocked, sig);
  }
  ::pthread_sigmask(SIG_BLOCK, &blocked, &old);
  try {
    thread_ = std::thread([this, thread_class, &on_spawn] { thread_main(thread_class, on_spawn); });
  } catch (...) {
    ::pthread_sigmask(SIG_SETMASK, &old, nullptr);
    throw;
  }
  ::pthread_sigmask(SIG_SETMASK, &old, nullptr);
  std::unique_lock lock(mutex_);
  cv_.wait(lock, [this] { return spawned_ || error_; });
  if (error_) {
    lock.unlock();
    thread_.join();
    std::rethrow_exception(std::exchange(error_, nullptr));
  }
}

void VirtioWorker::thread_main(const char* thread_class, const std::function<int()>& on_spawn) {
  ::pthread_setname_np(::pthread_self(), std::string(thread_class).substr(0, 15).c_str());
  try {
    loop_ = std::make_unique<EventLoop>();
    // `on_spawn` belongs to spawn(), which waits for this.
    const int own_fd = on_spawn ? on_spawn() : -1;
    enter_thread_class(thread_class, own_fd);
  } catch (...) {
    std::lock_guard lock(mutex_);
    error_ = std::current_exception();
    cv_.notify_all();
    return;
  }
  std::unique_lock lock(mutex_);
  spawned_ = true;
  cv_.notify_all();
  while (true) {
    cv_.wait(lock, [this] { return exit_ || state_ == State::kStarting; });
    if (exit_) return;
    lock.unlock();
    serve_activation();
    lock.lock();
    state_ = State::kIdle;
    cv_.notify_all();
  }
}

// One activation, from start() to stop(), on the worker thread.
void VirtioWorker::serve_activation() {
  const virtio::ActivateContext& ctx = *ctx_;
  // A stop() that came after the loop had ended by itself (a worker failure) left its
  // wake-up pending: it belonged to the last activation, not this one.
  loop_->clear();
  try {
    if (hooks_.poller != nullptr) loop_->set_poller(hooks_.poller, hooks_.poll_budget);
    for (uint16_t q = 0; hooks_.watch_queues && q < ctx.queue_events.size(); ++q) {
      const virtio::EventFd& event = ctx.queue_events[q];
      loop_->add(event.fd(), EventLoop::kIn, [this, &event, q](uint32_t) {
        event.consume();
        if (!broken_[q]) hooks_.on_queue(q);
      });
    }
    if (hooks_.on_start) hooks_.on_start(*loop_);
  } catch (...) {
    loop_->clear();
    std::lock_guard lock(mutex_);
    error_ = std::current_exception();
    return;  // thread_main reports kIdle; start() finds error_
  }
  {
    std::lock_guard lock(mutex_);
    state_ = State::kRunning;
  }
  cv_.notify_all();
  try {
    for (uint16_t q = 0; hooks_.watch_queues && q < broken_.size(); ++q) {
      if (!broken_[q]) hooks_.on_queue(q);
    }
    loop_->run();
  } catch (const std::exception& e) {
    spdlog::error("{}: worker failed: {}", name_, e.what());
    ctx.interrupt.set_needs_reset();
  }
  try {
    if (hooks_.on_stop) hooks_.on_stop();
  } catch (const std::exception& e) {
    spdlog::error("{}: worker failed while stopping: {}", name_, e.what());
  }
  loop_->clear();
}

void VirtioWorker::start(const std::string& name, const virtio::ActivateContext& ctx, Hooks hooks) {
  stop();
  if (!thread_.joinable()) throw std::logic_error("VirtioWorker::start before spawn");
  std::unique_lock lock(mutex_);
  name_ = name;
  ctx_.emplace(ctx);
  hooks_ = std::move(hooks);
  broken_.assign(ctx.queues.size(), 0);
  error_ = nullptr;
  state_ = State::kStarting;
  cv_.notify_all();
  cv_.wait(lock, [this] { return state_ != State::kStarting; });
  if (error_) {
    // on_start failed: the thread is idle again.
    cv_.wait(lock, [this] { return state_ == State::kIdle; });
    ctx_.reset();
    hooks_ = {};
    std::rethrow_exception(std::exchange(error_, nullptr));
  }
  active_ = true;
}

void VirtioWorker::stop() {
  if (!active_) return;
  loop_->stop();
  std::unique_lock lock(mutex_);
  cv_.wait(lock, [this] { return state_ == State::kIdle; });
  active_ = false;
  ctx_.reset();
  hooks_ = {};
}

bool VirtioWorker::serve(uint16_t q, const virtio::ChainHandler& handle, uint32_t budget) {
  return serve_while(q, {}, handle, budget);
}

bool VirtioWorker::serve_while(uint16_t q, const std::function<bool()>& want,
                               const virtio::ChainHandler& handle, uint32_t budget) {
  if (broken_[q]) return false;
  auto r = virtio::drain_queue_while(ctx_->queues[q], ctx_->mem, want, handle, budget);
  if (!r) {
    mark_broken(q, virtio::to_string(r.error()));
    return false;
  }
  if (r->notify) ctx_->interrupt.signal(virtio::kInterruptUsedBuffer);
  return r->exhausted;
}

void VirtioWorker::mark_broken(uint16_t q, const char* why) {
  if (broken_[q]) return;
  broken_[q] = 1;
  spdlog::warn("{}: queue {} is broken ({}); the device needs a reset", name_, q, why);
  ctx_->interrupt.set_needs_reset();
}

}  // namespace minivmm::devices
