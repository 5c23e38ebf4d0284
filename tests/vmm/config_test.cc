// Command-line parsing: sizes, disk specs, serial modes, defaults and bad input (exit 2 with
// one line). No KVM needed.
#include <catch2/catch.hpp>

#include <fcntl.h>
#include <unistd.h>

#include <string>
#include <vector>

#include "vmm/config.h"

using namespace minivmm::vmm;

namespace {

minivmm::Result<VmConfig, ParseExit> parse(std::vector<std::string> args) {
  args.insert(args.begin(), "minivmm");
  std::vector<const char*> argv;
  for (const auto& a : args) argv.push_back(a.c_str());
  return parse_command_line(static_cast<int>(argv.size()), argv.data());
}

ParseExit parse_error(std::vector<std::string> args) {
  auto r = parse(std::move(args));
  REQUIRE_FALSE(r.has_value());
  return r.error();
}

VmConfig parse_ok(std::vector<std::string> args) {
  auto r = parse(std::move(args));
  if (!r) FAIL("unexpected parse exit: " << r.error().output);
  return *r;
}

uint64_t size_of(const char* text) {
  auto r = parse_memory_size(text);
  REQUIRE(r.has_value());
  return *r;
}

bool size_fails(const char* text) {
  return !parse_memory_size(text).has_value();
}

}  // namespace

TEST_CASE("memory sizes take K, M and G suffixes and a bare number is MiB") {
  CHECK(size_of("512M") == 512ULL << 20);
  CHECK(size_of("512m") == 512ULL << 20);
  CHECK(size_of("4096K") == 4ULL << 20);
  CHECK(size_of("2G") == 2ULL << 30);
  CHECK(size_of("256") == 256ULL << 20);
  CHECK(size_of("8192B") == 8192);
}

TEST_CASE("bad memory sizes are rejected") {
  CHECK(size_fails(""));
  CHECK(size_fails("M"));
  CHECK(size_fails("0"));
  CHECK(size_fails("0G"));
  CHECK(size_fails("-1M"));
  CHECK(size_fails("12X"));
  CHECK(size_fails("1.5G"));
  CHECK(size_fails("100B"));                   // not a multiple of 4 KiB
  CHECK(size_fails("99999999999999999999G"));  // does not fit 64 bits
  CHECK(size_fails("17179869184G"));           // 2^34 GiB = 2^64 bytes: overflows
}

TEST_CASE("disk specs") {
  using minivmm::devices::BlockConfig;
  auto r = parse_disk("path=/tmp/a.img");
  REQUIRE(r.has_value());
  BlockConfig d = *r;
  CHECK(d.path == "/tmp/a.img");
  CHECK_FALSE(d.read_only);
  CHECK_FALSE(d.direct);
  CHECK(d.serial.empty());
  CHECK(d.engine == BlockConfig::Engine::kIoUring);
  CHECK(d.num_queues == 1);
  CHECK(d.queue_size == BlockConfig{}.queue_size);
  CHECK(d.poll_us == BlockConfig::kDefaultPollUs);  // not given: the device's default

  r = parse_disk("path=b.img,readonly=on,serial=ROOT-1,direct=on,engine=sync,queues=4,poll_us=0");
  REQUIRE(r.has_value());
  d = *r;
  CHECK(d.path == "b.img");
  CHECK(d.read_only);
  CHECK(d.direct);
  CHECK(d.serial == "ROOT-1");
  CHECK(d.engine == BlockConfig::Engine::kSync);
  CHECK(d.num_queues == 4);
  CHECK(d.poll_us == 0u);

  r = parse_disk("path=c.img,poll_us=10000,serial=12345678901234567890,queues=16");
  REQUIRE(r.has_value());
  CHECK(r->poll_us == 10000u);
  CHECK(r->serial == "12345678901234567890");
  CHECK(r->num_queues == 16);
}

TEST_CASE("bad disk specs say what is wrong") {
  auto message = [](const char* spec) {
    auto r = parse_disk(spec);
    REQUIRE_FALSE(r.has_value());
    return r.error().message;
  };
  CHECK(message("readonly=on") == "--disk: path=FILE is required");
  CHECK(message("path=") == "--disk: path= must not be empty");
  CHECK(message("path=a,readonly=maybe") == "--disk: readonly=maybe is not on or off");
  CHECK(message("path=a,engine=aio") == "--disk: engine=aio is not io_uring or sync");
  CHECK(message("path=a,queues=0") == "--disk: queues=0 is out of range 1-16");
  CHECK(message("path=a,queues=17") == "--disk: queues=17 is out of range 1-16");
  CHECK(message("path=a,queues=x") == "--disk: queues=x is not a number (range 1-16)");
  CHECK(message("path=a,poll_us=10001") == "--disk: poll_us=10001 is out of range 0-10000");
  CHECK(message("path=a,poll_us=-1") == "--disk: poll_us=-1 is not a number (range 0-10000)");
  CHECK(message("path=a,serial=123456789012345678901") ==
        "--disk: serial=123456789012345678901 is longer than 20 characters");
  // A fault-injection build (tests only) also has the fault key.
  const std::string test_keys = MINIVMM_FAULT_INJECTION ? ", fault" : "";
  CHECK(message("path=a,color=red") ==
        "--disk: unknown key 'color' (keys: path, readonly, serial, direct, engine, queues, "
        "poll_us" + test_keys + ")");
  CHECK(message("path=a,path=b") == "--disk: key 'path' given twice");
  CHECK(message("path=a,,readonly=on") == "--disk: expected key=value, got ''");
  CHECK(message("a.img") == "--disk: expected key=value, got 'a.img'");
}

TEST_CASE("serial modes") {
  auto ok = [](const char* text) {
    auto r = parse_serial(text);
    REQUIRE(r.has_value());
    return *r;
  };
  CHECK(ok("stdio").mode == SerialMode::kStdio);
  CHECK(ok("null").mode == SerialMode::kNull);
  CHECK(ok("file=/tmp/x.log") == SerialConfig{SerialMode::kFile, "/tmp/x.log"});
  CHECK_FALSE(parse_serial("file=").has_value());
  CHECK_FALSE(parse_serial("tty").has_value());
}

TEST_CASE("console modes and named ports") {
  auto con = parse_console("off");
  REQUIRE(con.has_value());
  CHECK_FALSE(con->has_value());
  con = parse_console("file=/tmp/c.log");
  REQUIRE(con.has_value());
  CHECK(**con == SerialConfig{SerialMode::kFile, "/tmp/c.log"});
  CHECK(parse_console("tty").error().message ==
        "invalid --console 'tty' (expected stdio, null, file=PATH or off)");

  auto port = parse_port("name=org.test.log,path=/tmp/p.log");
  REQUIRE(port.has_value());
  CHECK(*port == PortConfig{"org.test.log", "/tmp/p.log", ""});
  port = parse_port("name=ctl,socket=/tmp/ctl.sock");
  REQUIRE(port.has_value());
  CHECK(port->socket == "/tmp/ctl.sock");
  CHECK(parse_port("path=/tmp/p").error().message == "--port: name=NAME is required");
  CHECK(parse_port("name=a").error().message == "--port: one of path= or socket= is required");
  CHECK(parse_port("name=a,path=x,socket=y").error().message ==
        "--port: path= and socket= exclude each other (give one of path= or socket=)");
  CHECK(parse_port("name=a/b,path=x").error().message ==
        "--port: name=a/b may use only A-Z a-z 0-9 . _ - (it becomes a file name in the guest)");

  const VmConfig c = parse_ok({"--kernel", "k", "--console", "stdio", "--port", "name=a,path=a.log",
                               "--port", "name=b,socket=b.sock"});
  REQUIRE(c.console.has_value());
  CHECK(c.console->mode == SerialMode::kStdio);
  REQUIRE(c.ports.size() == 2);
  CHECK(c.ports[1].name == "b");
  CHECK(
      parse_error({"--kernel", "k", "--port", "name=a,path=x", "--port", "name=a,path=y"}).output ==
      "--port: name=a is given more than once");
  CHECK(parse_error({"--kernel", "k", "--port", "name=a,socket=s", "--port", "name=b,socket=s"})
            .output == "--port: socket=s is given more than once");
}

TEST_CASE("shared directories (--fs)") {
  auto fs = parse_fs("tag=share,path=/srv/x");
  REQUIRE(fs.has_value());
  CHECK(*fs == FsConfig{"share", "/srv/x", "", false});
  fs = parse_fs("tag=ro,path=/srv/x,readonly=on");
  REQUIRE(fs.has_value());
  CHECK(fs->read_only);
  fs = parse_fs("tag=d,socket=/run/vfs.sock");
  REQUIRE(fs.has_value());
  CHECK(fs->socket == "/run/vfs.sock");
  CHECK(parse_fs("path=/x").error().message == "--fs: tag=TAG is required");
  CHECK(parse_fs("tag=a").error().message == "--fs: one of path= or socket= is required");
  CHECK(parse_fs("tag=a,path=x,socket=y").error().message ==
        "--fs: path= and socket= exclude each other (give one of path= or socket=)");
  CHECK(parse_fs("tag=" + std::string(37, 'x') + ",path=/x").error().message ==
        "--fs: tag=" + std::string(37, 'x') + " is longer than 36 characters");
  CHECK(parse_fs("tag=" + std::string(36, 'x') + ",path=/x").has_value());
  CHECK(parse_fs("tag=a,socket=s,readonly=on").error().message.starts_with(
      "--fs: readonly= goes with path="));

  const VmConfig c =
      parse_ok({"--kernel", "k", "--fs", "tag=a,path=/a", "--fs", "tag=b,socket=/b.sock"});
  REQUIRE(c.filesystems.size() == 2);
  CHECK(c.filesystems[1].tag == "b");
  CHECK(parse_error({"--kernel", "k", "--fs", "tag=a,path=/x", "--fs", "tag=a,path=/y"}).output ==
        "--fs: tag=a is given more than once");
}

TEST_CASE("network devices (--net)") {
  auto n = parse_net("tap=tap0");
  REQUIRE(n.has_value());
  CHECK(n->tap == "tap0");
  CHECK_FALSE(n->mac.has_value());
  n = parse_net("passt");
  REQUIRE(n.has_value());
  CHECK(n->passt);
  CHECK(n->spec == "passt");
  n = parse_net("passt,forward=8080:80+2222,mac=52:54:00:ab:cd:ef");
  REQUIRE(n.has_value());
  CHECK(n->forward == std::vector<std::string>{"8080:80", "2222"});
  REQUIRE(n->mac.has_value());
  CHECK((*n->mac)[3] == 0xab);
  CHECK((*n->mac)[5] == 0xef);
  n = parse_net("socket=/run/passt.sock");
  REQUIRE(n.has_value());
  CHECK(n->socket == "/run/passt.sock");
  CHECK(parse_net("mac=52:54:00:00:00:01").error().message ==
        "--net: one of tap=, passt= or socket= is required");
  CHECK(parse_net("tap=a,socket=b").error().message.starts_with("--net: tap= and socket= exclude"));
  CHECK(parse_net("tap=a,forward=80").error().message.starts_with("--net: forward= goes with passt"));
  CHECK(parse_net("passt=off").error().message.starts_with("--net: passt=off leaves no backend"));
  for (const char* bad : {"passt,forward=80/tcp", "passt,forward=+", "passt,forward=a",
                          "tap=a,mac=52:54:00:00:00", "tap=a,mac=01:00:5e:00:00:01",
                          "tap=a,mac=00:00:00:00:00:00", "tap=a,mac=52-54-00-00-00-01",
                          "tap=0123456789abcdef", "tap=", "passt,unknown=1"}) {
    INFO(bad);
    const auto r = parse_net(bad);
    REQUIRE_FALSE(r.has_value());
    CHECK(r.error().message.starts_with("--net: "));
  }
  const VmConfig c = parse_ok({"--kernel", "k", "--net", "passt", "--net", "tap=t1"});
  REQUIRE(c.networks.size() == 2);
  CHECK(c.networks[1].tap == "t1");
  CHECK(parse_error({"--kernel", "k", "--net", "tap=t", "--net", "tap=t"}).output ==
        "--net: tap=t is given more than once");
  CHECK(parse_error({"--kernel", "k", "--net", "tap=a,mac=52:54:00:00:00:01", "--net",
                     "tap=b,mac=52:54:00:00:00:01"})
            .output.starts_with("--net: two devices with the MAC address"));
}

TEST_CASE("vsock (--vsock): cid and socket, once") {
  auto v = parse_vsock("cid=3,socket=/run/vm.vsock");
  REQUIRE(v.has_value());
  CHECK(*v == VsockConfig{3, "/run/vm.vsock"});
  CHECK(parse_vsock("cid=4294967294,socket=s").has_value());
  CHECK(parse_vsock("socket=s").error().message == "--vsock: cid=N is required");
  CHECK(parse_vsock("cid=3").error().message == "--vsock: socket=PATH is required");
  for (const char* bad : {"cid=2,socket=s", "cid=0,socket=s", "cid=4294967295,socket=s",
                          "cid=x,socket=s", "cid=3,socket=", "cid=3,socket=s,mode=x"}) {
    INFO(bad);
    const auto r = parse_vsock(bad);
    REQUIRE_FALSE(r.has_value());
    CHECK(r.error().message.starts_with("--vsock: "));
  }
  CHECK_FALSE(parse_vsock("cid=3,socket=/" + std::string(96, 'a')).has_value());  // PATH_P
  CHECK(parse_vsock("cid=3,socket=/" + std::string(95, 'a')).has_value());

  CHECK_FALSE(parse_ok({"--kernel", "k"}).vsock.has_value());
  const VmConfig c = parse_ok({"--kernel", "k", "--vsock", "cid=5,socket=v.sock"});
  REQUIRE(c.vsock.has_value());
  CHECK(c.vsock->cid == 5);
  CHECK(c.vsock->socket == "v.sock");
  CHECK(parse_error({"--kernel", "k", "--vsock", "cid=3,socket=a", "--vsock", "cid=4,socket=b"})
            .output == "--vsock: one vsock device at most");
  CHECK(parse_error({"--kernel", "k", "--port", "name=p,socket=s", "--vsock", "cid=3,socket=s"})
            .output == "--vsock: socket=s is a --port's socket too");
  const ParseExit bad = parse_error({"--kernel", "k", "--vsock", "cid=1,socket=s"});
  CHECK(bad.status == 2);
  CHECK(bad.output.find('\n') == std::string::npos);
}

TEST_CASE("host root mode (--host-root --exec): the command, and what it needs of the rest") {
  const VmConfig c = parse_ok({"--kernel", "k", "--host-root", "--exec", "uname -r"});
  REQUIRE(c.host_root.has_value());
  CHECK(*c.host_root == HostRootConfig{"uname -r", "", ""});
  CHECK(c.serial.mode == SerialMode::kNull);  // stdout is the command's
  CHECK(c.cmdline == std::string(kDefaultCmdline) + " quiet");
  CHECK(parse_ok({"--kernel", "k", "--host-root", "--exec", "x", "--cmdline", "console=hvc0"})
            .cmdline == "console=hvc0");
  const VmConfig d = parse_ok({"--kernel", "k", "--host-root", "--exec", "ls", "--cwd", "/srv",
                               "--modules", "/m", "--serial", "file=/tmp/klog"});
  CHECK(*d.host_root == HostRootConfig{"ls", "/srv", "/m"});
  CHECK(d.serial.mode == SerialMode::kFile);  // an explicit --serial stays
  CHECK_FALSE(parse_ok({"--kernel", "k"}).host_root.has_value());

  CHECK(parse_error({"--kernel", "k", "--host-root"}).output ==
        "--host-root: give the command to run there with --exec CMD");
  CHECK(parse_error({"--kernel", "k", "--exec", "true"}).output ==
        "--exec runs a command on the host's root: add --host-root");
  CHECK(parse_error({"--kernel", "k", "--host-root", "--exec", ""}).output ==
        "--exec: the command must not be empty");
  CHECK(parse_error({"--kernel", "k", "--host-root", "--exec", "true", "--initrd", "i"}).output ==
        "--host-root packs its own initramfs (init and modules); leave out --initrd");
  CHECK(parse_error({"--kernel", "k", "--host-root", "--exec", "true", "--fs",
                     "tag=hostroot,path=/x"})
            .output == "--fs: tag=hostroot is the host root's own with --host-root");
  CHECK(parse_error({"--kernel", "k", "--host-root", "--exec", "true", "--port",
                     "name=minivmm.stdout,path=/x"})
            .output == "--port: name=minivmm.stdout is the command's own with --exec");
  CHECK(parse_error({"--kernel", "k", "--host-root", "--exec", "true", "--exit-port", "off"})
            .output.starts_with("--host-root reports the command's status through the exit port"));
  CHECK(parse_error({"--kernel", "k", "--cwd", "/x"}).output ==
        "--cwd goes with --host-root --exec CMD");
  CHECK(parse_error({"--kernel", "k", "--modules", "/x"}).output ==
        "--modules goes with --host-root --exec CMD");
}

TEST_CASE("exit port modes") {
  using minivmm::devices::DebugExit;
  auto dx = parse_debug_exit("minivmm");
  REQUIRE(dx.has_value());
  CHECK(dx->enabled);
  CHECK(dx->iobase == 0xf4);
  dx = parse_debug_exit("qemu");
  REQUIRE(dx.has_value());
  CHECK(dx->formula == DebugExit::Formula::kQemu);
  CHECK(dx->iobase == 0x501);
  CHECK(dx->iosize == 2);
  dx = parse_debug_exit("qemu,iobase=0xf4,iosize=4");
  REQUIRE(dx.has_value());
  CHECK(dx->iobase == 0xf4);
  CHECK(dx->iosize == 4);
  CHECK(parse_debug_exit("qemu,iobase=244")->iobase == 244);
  CHECK_FALSE(parse_debug_exit("off")->enabled);
  CHECK_FALSE(parse_debug_exit("qemu,iosize=3").has_value());
  CHECK_FALSE(parse_debug_exit("qemu,iobase=0x10000").has_value());
  CHECK_FALSE(parse_debug_exit("qemu,iobase=0xffff,iosize=2").has_value());
  CHECK_FALSE(parse_debug_exit("qemu,iobase=").has_value());
  CHECK_FALSE(parse_debug_exit("qemu,port=1").has_value());
  CHECK_FALSE(parse_debug_exit("isa").has_value());
  CHECK(DebugExit::status_of(DebugExit::Formula::kMinivmm, 0x1ff) == 0xff);
  CHECK(DebugExit::status_of(DebugExit::Formula::kQemu, 0) == 1);
  CHECK(DebugExit::status_of(DebugExit::Formula::kQemu, 0x103) == 7);
  CHECK(parse_ok({"--kernel", "k", "--timeout", "60"}).timeout_s == 60u);
  CHECK(parse_error({"--kernel", "k", "--timeout", "0"}).status == 2);
}

TEST_CASE("defaults") {
  const VmConfig c = parse_ok({"--kernel", "bzImage"});
  CHECK(c.kernel == "bzImage");
  CHECK_FALSE(c.initrd.has_value());
  CHECK(c.cmdline == "console=ttyS0 reboot=k panic=-1");
  CHECK(c.memory == 512ULL << 20);
  CHECK(c.cpus == 1);
  CHECK(c.disks.empty());
  CHECK(c.serial.mode == SerialMode::kStdio);
  CHECK_FALSE(c.console.has_value());  // virtio-console off
  CHECK(c.ports.empty());
  CHECK(c.acpi);
  CHECK_FALSE(c.virtio_cmdline);
}

TEST_CASE("every option") {
  const VmConfig c = parse_ok({"--kernel",    "k",
                               "--initrd",    "i",
                               "--cmdline",   "root=/dev/vda",
                               "--memory",    "1G",
                               "--cpus",      "4",
                               "--disk",      "path=a.img",
                               "--disk",      "path=b.img,readonly=on",
                               "--serial",    "null",
                               "--no-acpi",   "--virtio-cmdline",
                               "--log-level", "debug"});
  CHECK(c.initrd == "i");
  CHECK(c.cmdline == "root=/dev/vda");
  CHECK(c.memory == 1ULL << 30);
  CHECK(c.cpus == 4);
  REQUIRE(c.disks.size() == 2);
  CHECK(c.disks[0].path == "a.img");
  CHECK(c.disks[1].read_only);
  CHECK(c.serial.mode == SerialMode::kNull);
  CHECK_FALSE(c.acpi);
  CHECK(c.virtio_cmdline);
  CHECK(c.log_level == "debug");
}

TEST_CASE("bad usage exits with status 2 and one line") {
  const std::vector<std::vector<std::string>> cases = {
      {},                                          // --kernel missing
      {"--kernel", "k", "--bogus"},                // unknown option
      {"--kernel", "k", "--memory", "lots"},       // bad size
      {"--kernel", "k", "--cpus", "0"},            // out of range
      {"--kernel", "k", "--cpus", "many"},         // not a number
      {"--kernel", "k", "--disk", "readonly=on"},  // no path
      {"--kernel", "k", "--serial", "tty"},        // bad serial
      {"--kernel", "k", "--console", "on"},        // bad console
      {"--kernel", "k", "--rng", "maybe"},         // bad on|off
      {"--kernel", "k", "--elf-entry", "32bit"},   // bad entry
      {"--kernel", "k", "--port", "name=x"},       // neither path nor socket
      {"--kernel", "k", "--log-level", "loud"},    // bad level
      {"--kernel", ""},                            // empty path
      {"--kernel", "k", "extra"},                  // stray argument
  };
  for (const auto& args : cases) {
    const ParseExit e = parse_error(args);
    INFO("message: " << e.output);
    CHECK(e.status == 2);
    CHECK_FALSE(e.output.empty());
    CHECK(e.output.find('\n') == std::string::npos);
  }
}

TEST_CASE("help (--help) exits 0 and shows an example") {
  const ParseExit e = parse_error({"--help"});
  CHECK(e.status == 0);
  CHECK_THAT(e.output, Catch::Contains("Example:"));
  CHECK_THAT(e.output, Catch::Contains("--disk"));
  CHECK_THAT(e.output, Catch::Contains("Exit status"));
  CHECK_THAT(e.output, Catch::Contains("stdin goes to hvc0 when this is stdio"));
  CHECK_THAT(e.output, Catch::Contains("name=NAME,path=FILE|socket=PATH"));
}

// (No test name may start with "--": CTest would take it for an option and never run it.)
TEST_CASE("the help documents every disk key from the table that parses them") {
  const std::string help = parse_error({"--help"}).output;
  CHECK_THAT(help, Catch::Contains("--disk SPEC"));
  CHECK_THAT(help, Catch::Contains("path=FILE[,readonly=on|off][,serial=ID][,direct=on|off]"
                                   "[,engine=io_uring|sync][,queues=N][,poll_us=N]"));
  CHECK(disk_help() ==
        "  path=FILE             raw disk image; locked against a second writer (required)\n"
        "  readonly=on|off       read-only disk: the file is opened O_RDONLY (default off)\n"
        "  serial=ID             the serial the guest reads with GET_ID (at most 20 characters)\n"
        "  direct=on|off         O_DIRECT, bypassing the host page cache (default off)\n"
        "  engine=io_uring|sync  backend; io_uring falls back to sync where the kernel refuses it\n"
        "                        (default io_uring)\n"
        "  queues=N              request queues (1-16, default 1)\n"
        "  poll_us=N             the disk's I/O thread keeps polling the queues for N us after\n"
        "                        work before it sleeps; 0 = off, 100 suits busy disks (0-10000,\n"
        "                        default 0)\n" +
            std::string(MINIVMM_FAULT_INJECTION
                            ? "  fault=SPEC            test builds only: inject disk faults,\n"
                              "                        WHAT:OP[:FIRST-LAST][:COUNT] joined by +\n"
                              "                        (devices/fault_backend.h)\n"
                            : ""));
  CHECK_THAT(help, Catch::Contains("Disk keys (--disk, comma-separated):\n" + disk_help()));
}

TEST_CASE("a TOML file given with --config holds the options, the command line overrides it") {
  char path[] = "/tmp/minivmm-config-XXXXXX";
  const int fd = ::mkstemp(path);
  REQUIRE(fd >= 0);
  const std::string text =
      "kernel = \"bzImage\"\n"
      "initrd = \"initrd.img\"\n"
      "memory = \"1G\"\n"
      "cpus = 2\n"
      "disk = [\"path=a.img,serial=root\", \"path=b.img,readonly=on\"]\n"
      "port = [\"name=log,path=guest.log\"]\n"
      "timeout = 60\n"
      "rng = false\n"
      "no-acpi = true\n"
      "cmdline = \"console=ttyS0 root=/dev/vda\"\n";
  REQUIRE(::write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size()));
  ::close(fd);
  const VmConfig c = parse_ok({"--config", path, "--cpus", "4"});
  CHECK(c.kernel == "bzImage");
  CHECK(c.initrd == "initrd.img");
  CHECK(c.memory == 1ULL << 30);
  CHECK(c.cpus == 4);  // the command line wins
  REQUIRE(c.disks.size() == 2);
  CHECK(c.disks[0].serial == "root");
  CHECK(c.disks[1].read_only);
  REQUIRE(c.ports.size() == 1);
  CHECK(c.ports[0].path == "guest.log");
  CHECK(c.timeout_s == 60u);
  CHECK_FALSE(c.rng);
  CHECK_FALSE(c.acpi);
  CHECK(c.cmdline == "console=ttyS0 root=/dev/vda");

  // A key that is no option is an error, as is a file that is not there.
  const int fd2 = ::open(path, O_WRONLY | O_TRUNC);
  REQUIRE(fd2 >= 0);
  const std::string bad = "kernel = \"k\"\nmemroy = \"1G\"\n";
  REQUIRE(::write(fd2, bad.data(), bad.size()) == static_cast<ssize_t>(bad.size()));
  ::close(fd2);
  ParseExit e = parse_error({"--config", path});
  CHECK(e.status == 2);
  CHECK(e.output == "--config: no option is named 'memroy' (see minivmm --help)");
  CHECK(e.output.find('\n') == std::string::npos);
  ::unlink(path);
  e = parse_error({"--config", path});
  CHECK(e.status == 2);
  CHECK(e.output.find('\n') == std::string::npos);
}

TEST_CASE("user ids for --user are UID:GID, numeric and not root's", "[config]") {
  using minivmm::vmm::parse_user;
  auto ok = parse_user("65534:65533");
  REQUIRE(ok);
  CHECK(ok->uid == 65534);
  CHECK(ok->gid == 65533);
  for (const char* bad : {"", "65534", "nobody:nogroup", "1:", ":1", "0:1", "1:0", "-1:1",
                          "4294967295:1", "12345678901:1", "1:2:3"}) {
    INFO(bad);
    auto r = parse_user(bad);
    REQUIRE_FALSE(r);
    CHECK_THAT(r.error().message, Catch::StartsWith("--user: '"));
  }
}

TEST_CASE("disk fault injection is reachable only in a fault-injection build", "[config]") {
  const auto r = minivmm::vmm::parse_disk("path=disk.img,fault=eio:read:0-9:1+delay5:flush");
#if MINIVMM_FAULT_INJECTION
  REQUIRE(r);
  REQUIRE(r->faults.size() == 2);
  CHECK(r->faults[0].count == 1);
  const auto bad = minivmm::vmm::parse_disk("path=disk.img,fault=eio:sideways");
  REQUIRE_FALSE(bad);
  CHECK_THAT(bad.error().message, Catch::StartsWith("--disk: fault 'eio:sideways'"));
#else
  REQUIRE_FALSE(r);
  CHECK_THAT(r.error().message, Catch::Contains("fault"));
#endif
}
