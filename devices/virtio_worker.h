// VirtioWorker: the thread of one virtio device, and the loop it runs. The thread is made
// once, before the guest runs (spawn(), from the device's constructor), enters its thread
// class there (devices/thread_class.h: the VMM's seccomp filter for that class) and then
// serves one activation after another: start() in the device's activate(), stop() in its
// reset(). Between the two the worker alone touches the device's queues, its backend and
// guest memory. No thread is created or ended while the guest runs, so that the filters can
// forbid it.
//
// The worker waits on the queues' events (ActivateContext::queue_events, signalled by KVM's
// ioeventfds or the transport) and on whatever fds the device adds to its loop (a backend's
// completions, a host socket), and calls the device's hooks:
//   on_start(loop)  first, on the worker thread: add the device's fds;
//   on_queue(q)     after every notification of queue q, and once per queue at start
//                   (buffers made available before activation, or during a previous stop);
//   on_stop()       last, on the worker thread, after the loop ended: finish in-flight work.
// A device whose requests complete at once implements on_queue with serve(), which drains
// the queue through the device's chain handler (virtio::drain_queue), interrupts the
// driver when needed and, when the driver broke the queue, stops using it and asks for a
// reset -- so that the device writes only what it does with one request.
//
// Threads: spawn() on the thread that makes the device (the VMM's main thread). start()/
// stop() on the thread that activates and resets the device (a vCPU, under the transport's
// lock, or the VMM's main thread). The hooks, serve() and loop() on the worker thread;
// loop() also in on_start.
#pragma once

#include <pthread.h>

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <exception>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "devices/event_loop.h"
#include "virtio/queue_drain.h"
#include "virtio/spec.h"
#include "virtio/virtio_device.h"

namespace minivmm::devices {

class VirtioWorker {
 public:
  struct Hooks {
    std::function<void(EventLoop& loop)> on_start;  // may throw: start() fails with it
    std::function<void(uint16_t queue)> on_queue;   // required when watch_queues
    std::function<void()> on_stop;
    // false: the queues' events are not waited on and on_queue is never called -- another
    // process (a vhost-user backend) reads the events and serves the rings; the worker only
    // runs the device's own fds.
    bool watch_queues = true;
    Poller* poller = nullptr;  // busy polling (EventLoop::set_poller), off when null
    std::chrono::microseconds poll_budget{0};
  };

  VirtioWorker() = default;
  ~VirtioWorker();  // stops, then ends the thread
  VirtioWorker(const VirtioWorker&) = delete;
  VirtioWorker& operator=(const VirtioWorker&) = delete;

  // Makes the thread, which names itself `thread_class` (a string literal of at most 15
  // characters: "blk", "rng", ...; what ps shows and what the seccomp filter is chosen by),
  // runs `on_spawn` (what must happen on this thread before its filter: an io_uring ring;
  // it returns the fd the filter pins the thread's calls to, the ring's, or -1), enters its
  // thread class and waits for start(). Returns when it waits. Throws what
  // on_spawn or entering the class threw, or std::system_error; nothing when spawned.
  void spawn(const char* thread_class, const std::function<int()>& on_spawn = {});
  // Serves one activation on the thread; returns once on_start ran. `name` is the device in
  // log lines ("virtio-blk disk.img"). What `ctx` refers to (memory, queues, events,
  // interrupt) must stay valid until stop(); `ctx` itself is copied. Throws what on_start
  // threw (the worker is then stopped), or std::logic_error when spawn() was not called.
  void start(const std::string& name, const virtio::ActivateContext& ctx, Hooks hooks);
  // Ends the loop after the current handler, runs on_stop and waits for it. Nothing when
  // stopped.
  void stop();
  bool running() const { return active_; }

  // Drains queue `q` with `handle` (see the file comment); a queue found broken is not
  // touched again until the next start(). At most `budget` chains per call; true when the
  // budget ran out (call again later, e.g. after the loop's other fds were served).
  bool serve(uint16_t q, const virtio::ChainHandler& handle, uint32_t budget = UINT32_MAX);
  // As serve(), but takes a chain only while `want()` is true (virtio::drain_queue_while): a
  // receive queue while host data waits, a transmit queue while its host sink has room.
  bool serve_while(uint16_t q, const std::function<bool()>& want,
                   const virtio::ChainHandler& handle, uint32_t budget = UINT32_MAX);
  // Stops using queue `q` and asks the driver for a reset (virtio 1.2 §2.1.2), with `why`
  // in the log once.
  void mark_broken(uint16_t q, const char* why);
  bool broken(uint16_t q) const { return q < broken_.size() && broken_[q] != 0; }

  EventLoop& loop() { return *loop_; }
  const virtio::ActivateContext& context() const { return *ctx_; }
  const std::string& name() const { return name_; }

 private:
  enum class State { kIdle, kStarting, kRunning };
  void thread_main(const char* thread_class, const std::function<int()>& on_spawn);
  void serve_activation();

  std::string name_;
  std::optional<virtio::ActivateContext> ctx_;
  Hooks hooks_;
  std::unique_ptr<EventLoop> loop_;  // made on the thread, kept across activations
  std::vector<uint8_t> broken_;
  // The hand-over between start()/stop() and the thread.
  std::mutex mutex_;
  std::condition_variable cv_;
  State state_ = State::kIdle;
  bool exit_ = false;         // the destructor ends the thread
  bool spawned_ = false;      // the thread entered its class and waits
  std::exception_ptr error_;  // what spawning or on_start threw
  bool active_ = false;       // between a successful start() and stop()
  std::thread thread_;
};

}  // namespace minivmm::devices
