// EventLoop: interest masks and the events handlers are told of, modify(), hangups, and
// adding and removing entries from inside handlers.
#include <catch2/catch.hpp>

#include <unistd.h>

#include <memory>
#include <string>

#include "devices/event_loop.h"

using minivmm::devices::EventLoop;
using minivmm::virtio::EventFd;

namespace {

struct Pipe {
  int r = -1, w = -1;
  Pipe() { REQUIRE(::pipe(&r) == 0); }
  ~Pipe() {
    close_read();
    close_write();
  }
  void close_read() {
    if (r >= 0) ::close(r);
    r = -1;
  }
  void close_write() {
    if (w >= 0) ::close(w);
    w = -1;
  }
};

}  // namespace

TEST_CASE("event loop: handlers are told which of their events fired") {
  EventLoop loop;
  EventFd a;
  uint32_t got = 0;
  int calls = 0;
  loop.add(a.fd(), EventLoop::kIn, [&](uint32_t events) {
    got = events;
    ++calls;
    a.consume();
  });
  CHECK(loop.size() == 1);
  CHECK(loop.run_once(0) == 0);
  a.signal();
  CHECK(loop.run_once(1000) == 1);
  CHECK(calls == 1);
  CHECK(got == EventLoop::kIn);

  Pipe p;
  loop.add(p.w, EventLoop::kOut, [&](uint32_t events) {
    got = events;
    ++calls;
  });
  CHECK(loop.run_once(1000) == 1);  // an empty pipe is writable
  CHECK(got == EventLoop::kOut);
}

TEST_CASE("event loop: modify() changes the interest, hangups are reported regardless") {
  EventLoop loop;
  Pipe p;
  uint32_t got = 0;
  int calls = 0;
  loop.add(p.w, EventLoop::kOut, [&](uint32_t events) {
    got = events;
    ++calls;
  });
  CHECK(loop.run_once(0) == 1);
  loop.modify(p.w, 0);  // e.g. a console with nothing to send
  CHECK(loop.run_once(0) == 0);
  loop.modify(p.w, EventLoop::kOut);
  CHECK(loop.run_once(0) == 1);
  CHECK(calls == 2);

  Pipe q;
  loop.add(q.r, 0, [&](uint32_t events) { got = events; });
  CHECK(loop.run_once(0) == 1);  // p.w is still writable
  got = 0;
  loop.remove(p.w);
  q.close_write();  // the peer goes away
  CHECK(loop.run_once(1000) == 1);
  CHECK((got & EventLoop::kHangup) != 0);
  CHECK((got & EventLoop::kIn) == 0);  // not asked for
}

TEST_CASE("event loop: an entry removed from inside its own handler is not called again") {
  EventLoop loop;
  EventFd a;
  auto capture = std::make_shared<std::string>("still alive");
  std::string seen;
  int calls = 0;
  loop.add(a.fd(), EventLoop::kIn, [&, capture](uint32_t) {
    ++calls;
    loop.remove(a.fd());
    seen = *capture;  // the handler's captures outlive its removal for this dispatch
  });
  a.signal();
  CHECK(loop.run_once(1000) == 1);
  CHECK(seen == "still alive");
  CHECK(loop.size() == 0);
  CHECK(loop.run_once(0) == 0);  // still readable, but removed
  CHECK(calls == 1);
  loop.remove(a.fd());  // removing what is gone: nothing
}

TEST_CASE("event loop: an entry removed by another handler misses events already fetched") {
  EventLoop loop;
  EventFd a, b, c;
  int a_calls = 0, b_calls = 0, c_calls = 0;
  // Whichever of a and b runs first removes the other; both were ready in one wake-up.
  loop.add(a.fd(), EventLoop::kIn, [&](uint32_t) {
    ++a_calls;
    loop.remove(b.fd());
    // Likely reuses b's slot: c must not receive b's event from this wake-up.
    loop.add(c.fd(), EventLoop::kIn, [&](uint32_t) {
      ++c_calls;
      c.consume();
    });
    a.consume();
  });
  loop.add(b.fd(), EventLoop::kIn, [&](uint32_t) {
    ++b_calls;
    loop.remove(a.fd());
    b.consume();
  });
  a.signal();
  b.signal();
  c.signal();
  loop.run_once(1000);
  CHECK(a_calls + b_calls == 1);
  if (a_calls == 1) {
    CHECK(c_calls == 0);  // added after epoll_wait returned: its turn comes next
    CHECK(loop.run_once(1000) == 1);
    CHECK(c_calls == 1);
    CHECK(b_calls == 0);
  }
}

TEST_CASE("event loop: stop() ends run() from another handler") {
  EventLoop loop;
  EventFd a;
  int calls = 0;
  loop.add(a.fd(), EventLoop::kIn, [&](uint32_t) {
    a.consume();
    if (++calls == 3) loop.stop();
    a.signal();
  });
  a.signal();
  loop.run();
  // run() returns after the wake-up that saw the stop: the one with the 3rd call, or the
  // next one when the stop event came in after that wake-up's epoll_wait.
  CHECK(calls >= 3);
  CHECK(calls <= 4);
  CHECK(loop.stop_requested());
}
