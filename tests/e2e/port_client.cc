// port-client SOCKET LINE TIMEOUT_S: the host end of the e2e named-port round trip. Connects
// to minivmm's unix socket for a virtio-console port (retrying until minivmm has made it),
// sends LINE and a newline, and prints the first line that comes back. Exit 0 with the line
// printed, 1 on a timeout or error (with a one-line reason on stderr).
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>

int main(int argc, char** argv) {
  if (argc != 4) {
    std::fprintf(stderr, "usage: port-client SOCKET LINE TIMEOUT_S\n");
    return 2;
  }
  const std::string path = argv[1];
  const std::string line = std::string(argv[2]) + "\n";
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(std::atoi(argv[3]));
  sockaddr_un addr{};
  if (path.size() >= sizeof(addr.sun_path)) {
    std::fprintf(stderr, "port-client: socket path too long\n");
    return 1;
  }
  addr.sun_family = AF_UNIX;
  std::memcpy(addr.sun_path, path.c_str(), path.size());
  int fd = -1;
  while (true) {
    fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd >= 0 && ::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0) break;
    if (fd >= 0) ::close(fd);
    if (std::chrono::steady_clock::now() > deadline) {
      std::fprintf(stderr, "port-client: cannot connect to %s: %s\n", path.c_str(),
                   std::strerror(errno));
      return 1;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  if (::send(fd, line.data(), line.size(), MSG_NOSIGNAL) != static_cast<ssize_t>(line.size())) {
    std::fprintf(stderr, "port-client: send: %s\n", std::strerror(errno));
    return 1;
  }
  std::string got;
  while (got.find('\n') == std::string::npos) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    pollfd p{fd, POLLIN, 0};
    if (left.count() <= 0 || ::poll(&p, 1, static_cast<int>(left.count())) <= 0) {
      std::fprintf(stderr, "port-client: no reply line within the timeout (got '%s')\n",
                   got.c_str());
      return 1;
    }
    char buf[512];
    const ssize_t n = ::recv(fd, buf, sizeof(buf), 0);
    if (n <= 0) {
      std::fprintf(stderr, "port-client: the port closed before a reply line (got '%s')\n",
                   got.c_str());
      return 1;
    }
    got.append(buf, static_cast<size_t>(n));
  }
  std::printf("%s\n", got.substr(0, got.find('\n')).c_str());
  ::close(fd);
  return 0;
}
