// The sub-option parser (vmm/suboptions.h) on tables built here, none of which the parser knows:
// every value type, the errors, the "exactly one of" constraint, the synopsis and the help.
#include <catch2/catch.hpp>

#include <stdexcept>
#include <string>

#include "vmm/suboptions.h"

using namespace minivmm::vmm;

namespace {

// A --port option as the coming virtio-console ports will have it: a name, and a file or a
// socket but not both.
struct PortConfig {
  std::string name;
  std::string path;
  std::string socket;
  bool operator==(const PortConfig&) const = default;
};

SubOptions<PortConfig> port_options() {
  return SubOptions<PortConfig>(
      "--port",
      {
          bind({.name = "name",
                .spec = StringSpec{.hint = "NAME", .max_length = 8, .allow_empty = false},
                .help = "port name the guest sees",
                .required = true},
               &PortConfig::name),
          bind({.name = "path", .spec = StringSpec{.hint = "FILE"}, .help = "a file"},
               &PortConfig::path),
          bind({.name = "socket", .spec = StringSpec{.hint = "PATH"}, .help = "a Unix socket"},
               &PortConfig::socket),
      },
      {{"path", "socket"}});
}

enum class Mode : uint8_t { kFast, kSlow };

struct Everything {
  std::string label;
  bool on = false;
  uint16_t count = 3;
  Mode mode = Mode::kFast;
};

SubOptions<Everything> everything_options() {
  return SubOptions<Everything>(
      "--thing",
      {
          bind({.name = "label", .spec = StringSpec{.hint = "TEXT"}, .help = "a label"},
               &Everything::label),
          bind({.name = "on", .spec = BoolSpec{}, .help = "a switch", .default_text = "off"},
               &Everything::on),
          bind({.name = "count",
                .spec = UnsignedSpec{.min = 1, .max = 300},
                .help = "how many",
                .default_text = "3"},
               &Everything::count),
          bind({.name = "mode",
                .spec = ChoiceSpec{{{"fast", 0}, {"slow", 1}}},
                .help = "speed",
                .default_text = "fast"},
               &Everything::mode),
      });
}

template <typename Config>
std::string error_of(const SubOptions<Config>& options, const char* spec) {
  auto r = options.parse(spec);
  REQUIRE_FALSE(r.has_value());
  return r.error();
}

}  // namespace

TEST_CASE("sub-options: every value type, in any order, defaults kept") {
  const auto options = everything_options();
  auto r = options.parse("mode=slow,count=300,on=yes,label=");
  REQUIRE(r);
  CHECK(r->label.empty());
  CHECK(r->on);
  CHECK(r->count == 300);
  CHECK(r->mode == Mode::kSlow);

  r = options.parse("label=x");
  REQUIRE(r);
  CHECK(r->label == "x");
  CHECK_FALSE(r->on);
  CHECK(r->count == 3);
  CHECK(r->mode == Mode::kFast);
}

TEST_CASE("sub-options: errors name the option and the key") {
  const auto options = everything_options();
  CHECK(error_of(options, "count=0") == "--thing: count=0 is out of range 1-300");
  CHECK(error_of(options, "count=301") == "--thing: count=301 is out of range 1-300");
  CHECK(error_of(options, "count=-1") == "--thing: count=-1 is not a number (range 1-300)");
  CHECK(error_of(options, "on=maybe") == "--thing: on=maybe is not on or off");
  CHECK(error_of(options, "mode=warp") == "--thing: mode=warp is not fast or slow");
  CHECK(error_of(options, "colour=red") ==
        "--thing: unknown key 'colour' (keys: label, on, count, mode)");
  CHECK(error_of(options, "on=1,on=0") == "--thing: key 'on' given twice");
  CHECK(error_of(options, "on") == "--thing: expected key=value, got 'on'");
  CHECK(error_of(options, "=on") == "--thing: expected key=value, got '=on'");
  CHECK(error_of(options, "on=1,") == "--thing: expected key=value, got ''");
}

TEST_CASE("sub-options: a second table with required and exactly-one keys") {
  const auto port = port_options();
  auto r = port.parse("name=log,path=/tmp/log");
  REQUIRE(r);
  CHECK(*r == PortConfig{"log", "/tmp/log", ""});
  r = port.parse("socket=/run/s,name=sh");
  REQUIRE(r);
  CHECK(*r == PortConfig{"sh", "", "/run/s"});

  CHECK(error_of(port, "path=a") == "--port: name=NAME is required");
  CHECK(error_of(port, "name=") == "--port: name= must not be empty");
  CHECK(error_of(port, "name=123456789") == "--port: name=123456789 is longer than 8 characters");
  CHECK(error_of(port, "name=a") == "--port: one of path= or socket= is required");
  CHECK(error_of(port, "name=a,path=f,socket=s") ==
        "--port: path= and socket= exclude each other (give one of path= or socket=)");
}

TEST_CASE("sub-options: synopsis and help come from the table") {
  CHECK(port_options().synopsis() == "name=NAME,path=FILE|socket=PATH");
  CHECK(everything_options().synopsis() == "[label=TEXT][,on=on|off][,count=N][,mode=fast|slow]");
  CHECK(port_options().help() ==
        "  name=NAME    port name the guest sees (required, at most 8 characters)\n"
        "  path=FILE    a file\n"
        "  socket=PATH  a Unix socket\n"
        "  exactly one of path= or socket= is required\n");
  CHECK(everything_options().help(40) ==
        "  label=TEXT      a label\n"
        "  on=on|off       a switch (default off)\n"
        "  count=N         how many (1-300,\n"
        "                  default 3)\n"
        "  mode=fast|slow  speed (default fast)\n");
}

TEST_CASE("sub-options: a malformed table is a programming error") {
  using Key = SubOptions<PortConfig>::Key;
  const Key name = bind({.name = "name", .spec = StringSpec{}}, &PortConfig::name);
  CHECK_THROWS_AS(SubOptions<PortConfig>("--x", {name, name}), std::logic_error);
  CHECK_THROWS_AS(SubOptions<PortConfig>("--x", {name}, {{"name", "nope"}}), std::logic_error);
  CHECK_THROWS_AS(bind({.name = "count", .spec = UnsignedSpec{.max = 70000}}, &Everything::count),
                  std::logic_error);  // does not fit uint16_t
  CHECK_THROWS_AS(bind({.name = "on", .spec = StringSpec{}}, &Everything::on), std::logic_error);
}
