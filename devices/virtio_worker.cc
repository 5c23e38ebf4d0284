#include "devices/virtio_worker.h"

#include <spdlog/spdlog.h>

#include <exception>
#include <utility>

namespace minivmm::devices {

void VirtioWorker::start(const char* thread_class, const std::string& name,
                         const virtio::ActivateContext& ctx, Hooks hooks) {
  stop();
  thread_class_ = thread_class;
  name_ = name;
  ctx_.emplace(ctx);
  hooks_ = std::move(hooks);
  broken_.assign(ctx.queues.size(), 0);
  loop_ = std::make_unique<EventLoop>();
  if (hooks_.poller != nullptr) loop_->set_poller(hooks_.poller, hooks_.poll_budget);
  for (uint16_t q = 0; q < ctx.queue_events.size(); ++q) {
    const virtio::EventFd& event = ctx.queue_events[q];
    loop_->add(event.fd(), EventLoop::kIn, [this, &event, q](uint32_t) {
      event.consume();
      if (!broken_[q]) hooks_.on_queue(q);
    });
  }
  std::promise<void> started;
  auto ready = started.get_future();
  thread_ = std::thread([this, &started] { run(started); });
  try {
    ready.get();
  } catch (...) {
    thread_.join();
    loop_.reset();
    ctx_.reset();
    throw;
  }
}

void VirtioWorker::run(std::promise<void>& started) {
  ::pthread_setname_np(::pthread_self(), thread_class_.substr(0, 15).c_str());
  try {
    if (hooks_.on_start) hooks_.on_start(*loop_);
  } catch (...) {
    started.set_exception(std::current_exception());
    return;
  }
  started.set_value();  // `started` is gone after this
  try {
    for (uint16_t q = 0; q < broken_.size(); ++q) {
      if (!broken_[q]) hooks_.on_queue(q);
    }
    loop_->run();
  } catch (const std::exception& e) {
    spdlog::error("{}: worker failed: {}", name_, e.what());
    ctx_->interrupt.set_needs_reset();
  }
  try {
    if (hooks_.on_stop) hooks_.on_stop();
  } catch (const std::exception& e) {
    spdlog::error("{}: worker failed while stopping: {}", name_, e.what());
  }
}

void VirtioWorker::stop() {
  if (!thread_.joinable()) return;
  loop_->stop();
  thread_.join();
  loop_.reset();
  ctx_.reset();
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
