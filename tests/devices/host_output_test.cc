// HostOutput: guest console output to a slow, stuck or vanished reader never blocks the
// writer; what waits is flushed in order, what does not fit is dropped and counted.
#include <catch2/catch.hpp>

#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <string>
#include <system_error>
#include <thread>

#include "devices/host_output.h"

using minivmm::devices::HostOutput;

namespace {

struct Pipe {
  Pipe() {
    int fds[2];
    REQUIRE(::pipe2(fds, O_NONBLOCK | O_CLOEXEC) == 0);
    read_fd = fds[0];
    write_fd = fds[1];
    pipe_size = static_cast<size_t>(::fcntl(write_fd, F_GETPIPE_SZ));
  }
  ~Pipe() {
    if (read_fd >= 0) ::close(read_fd);
  }
  std::string read_all() {
    std::string out;
    char buf[65536];
    ssize_t n;
    while ((n = ::read(read_fd, buf, sizeof(buf))) > 0) out.append(buf, static_cast<size_t>(n));
    return out;
  }
  int read_fd;
  int write_fd;  // owned by the HostOutput
  size_t pipe_size;
};

std::span<const uint8_t> bytes(const std::string& s) {
  return {reinterpret_cast<const uint8_t*>(s.data()), s.size()};
}

}  // namespace

TEST_CASE("host output: a full pipe never blocks, the rest waits, then drops, counted") {
  Pipe pipe;
  HostOutput out(pipe.write_fd, true, "pipe", 4096);
  std::string data;
  for (size_t i = 0; data.size() < pipe.pipe_size + 8192; ++i) data += std::to_string(i) + "\n";
  const auto start = std::chrono::steady_clock::now();
  out.write(bytes(data));  // nobody reads
  CHECK(std::chrono::steady_clock::now() - start < std::chrono::seconds(1));
  CHECK(out.buffered() == 4096);
  CHECK(out.bytes_dropped() == data.size() - pipe.pipe_size - 4096);
  CHECK(out.pending_event().consume() == 1);  // the main loop is told to flush

  // The reader catches up: the buffered bytes follow in order, nothing in between is lost.
  std::string got = pipe.read_all();
  CHECK(out.flush());
  got += pipe.read_all();
  CHECK(got == data.substr(0, pipe.pipe_size + 4096));
  CHECK(out.bytes_written() == pipe.pipe_size + 4096);

  // While the reader keeps up, nothing is dropped.
  const uint64_t dropped = out.bytes_dropped();
  for (int i = 0; i < 100; ++i) {
    out.write(bytes(std::string(1000, 'y')));
    got = pipe.read_all();
    out.flush();
  }
  CHECK(out.bytes_dropped() == dropped);
}

TEST_CASE("host output: a reader that goes away costs output, never the writer") {
  ::signal(SIGPIPE, SIG_IGN);
  Pipe pipe;
  HostOutput out(pipe.write_fd, true, "pipe", 4096);
  ::close(pipe.read_fd);
  pipe.read_fd = -1;
  out.write(bytes("lost"));
  out.write(bytes("also lost"));
  CHECK(out.bytes_dropped() == 13);
  CHECK(out.buffered() == 0);
}

TEST_CASE("host output: drain waits for a slow reader and gives up on a stuck one") {
  Pipe pipe;
  auto out = std::make_shared<HostOutput>(pipe.write_fd, true, "pipe", 1 << 20);
  const std::string data(pipe.pipe_size + 100000, 'z');
  out->write(bytes(data));
  std::string got;
  std::thread reader([&] {
    while (got.size() < data.size()) {
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
      got += pipe.read_all();
    }
  });
  out->drain(std::chrono::milliseconds(2000));
  reader.join();
  CHECK(got == data);
  CHECK(out->bytes_dropped() == 0);

  out->write(bytes(std::string(pipe.pipe_size + 10, 'q')));  // nobody reads any more
  const auto start = std::chrono::steady_clock::now();
  out->drain(std::chrono::milliseconds(50));
  CHECK(std::chrono::steady_clock::now() - start < std::chrono::seconds(2));
  CHECK(out->bytes_dropped() == 10);
}

TEST_CASE("host output: files are truncated and written through, a FIFO needs a reader") {
  char dir[] = "/tmp/minivmm-output-XXXXXX";
  REQUIRE(::mkdtemp(dir) != nullptr);
  const std::string file = std::string(dir) + "/out.txt";
  { std::ofstream(file) << "old contents that must go"; }
  {
    auto out = HostOutput::open_path(file);
    CHECK_FALSE(out->pollable());
    out->write(bytes("new\n"));
  }
  std::ifstream in(file);
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  CHECK(text == "new\n");

  const std::string fifo = std::string(dir) + "/fifo";
  REQUIRE(::mkfifo(fifo.c_str(), 0600) == 0);
  CHECK_THROWS_AS(HostOutput::open_path(fifo), std::system_error);  // ENXIO, not a hang
  CHECK_THROWS_AS(HostOutput::open_path(std::string(dir) + "/no/such/dir/x"), std::system_error);
  ::unlink(fifo.c_str());
  ::unlink(file.c_str());
  ::rmdir(dir);
}
