// libFuzzer target: the sub-option parser (vmm/suboptions.h) and the option values built on it
// or beside it (vmm/config.h: parse_disk, parse_port, parse_debug_exit, parse_serial,
// parse_console, parse_memory_size, and parse_u64). The first input byte picks the parser,
// the rest is the value as a user would type it. Checks, against what the headers document:
//   SubOptionTable::parse on a table with every value type (strings with and without limits,
//     on|off, numbers with a range, a choice, a required key, an exactly-one group): a success
//     has one setting per comma-separated item, in order, each key once, of its key's type and
//     within its limits, with the required key and exactly one key of the group; a failure is
//     one line naming the option ("--fuzz: ..."), bounded by the input's size;
//   parse_u64 and parse_memory_size agree with a reference computed here in 128 bits;
//   parse_disk / parse_port / parse_debug_exit results lie within their keys' documented
//     limits (queue count, poll time, serial length, port name characters, one of path= and
//     socket=, the exit port range inside the 64 Ki port space);
//   help() of the table wraps at the width asked for except where one word is longer.
// No crash, no sanitizer report.
#include <algorithm>
#include <cctype>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <initializer_list>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "devices/virtio_console.h"
#include "vmm/config.h"
#include "vmm/suboptions.h"

using namespace minivmm;
using namespace minivmm::vmm;

namespace {
void check_at(bool ok, const char* what, int line) {
  if (ok) return;
  std::fprintf(stderr, "fuzz_suboptions.cc:%d: check failed: %s\n", line, what);
  __builtin_trap();
}
#define check(cond) check_at((cond), #cond, __LINE__)

const SubOptionTable& table() {
  static const SubOptionTable t(
      "--fuzz",
      {
          {.name = "path",
           .spec = StringSpec{.hint = "FILE", .allow_empty = false},
           .help = "a required string",
           .required = true},
          {.name = "id", .spec = StringSpec{.hint = "ID", .max_length = 8}, .help = "short"},
          {.name = "on", .spec = BoolSpec{}, .help = "a switch", .default_text = "off"},
          {.name = "n", .spec = UnsignedSpec{.min = 3, .max = 300}, .help = "a number"},
          {.name = "big", .spec = UnsignedSpec{}, .help = "any 64-bit number"},
          {.name = "mode", .spec = ChoiceSpec{{{"a", 7}, {"bb", 9}, {"", 11}}}, .help = "one"},
          {.name = "x", .spec = StringSpec{}, .help = "one of x= and y="},
          {.name = "y", .spec = UnsignedSpec{.max = 1}, .help = "or this"},
      },
      {{"x", "y"}});
  return t;
}

// A whole decimal number below 2^64, or nullopt: what parse_u64 documents.
std::optional<uint64_t> reference_u64(std::string_view text) {
  if (text.empty()) return std::nullopt;
  unsigned __int128 v = 0;
  for (char c : text) {
    if (c < '0' || c > '9') return std::nullopt;
    v = v * 10 + static_cast<unsigned>(c - '0');
    if (v > UINT64_MAX) return std::nullopt;
  }
  return static_cast<uint64_t>(v);
}

void check_error(const std::string& error, std::string_view input,
                 std::initializer_list<std::string_view> prefixes) {
  check(std::any_of(prefixes.begin(), prefixes.end(),
                    [&](std::string_view p) { return error.starts_with(p); }));
  check(error.size() <= 512 + 2 * input.size());
  // One line, unless the input's own newline is echoed back.
  if (input.find_first_of("\r\n") == std::string_view::npos) {
    check(error.find_first_of("\r\n") == std::string::npos);
  }
}

void fuzz_table(std::string_view spec) {
  const SubOptionTable& t = table();
  auto parsed = t.parse(spec);
  if (!parsed) {
    check_error(parsed.error(), spec, {"--fuzz: "});
    return;
  }
  std::vector<std::string_view> items;
  for (std::string_view rest = spec;;) {
    const size_t comma = rest.find(',');
    items.push_back(rest.substr(0, comma));
    if (comma == std::string_view::npos) break;
    rest.remove_prefix(comma + 1);
  }
  const std::vector<SubOptionSetting>& settings = *parsed;
  check(settings.size() == items.size());
  std::vector<bool> given(t.keys().size(), false);
  for (size_t i = 0; i < settings.size(); ++i) {
    const SubOptionSetting& s = settings[i];
    check(s.key < t.keys().size());
    check(!given[s.key]);
    given[s.key] = true;
    const SubOptionKey& key = t.keys()[s.key];
    check(items[i].starts_with(key.name + "="));
    const std::string_view text = items[i].substr(key.name.size() + 1);
    if (const auto* str = std::get_if<StringSpec>(&key.spec)) {
      const auto* v = std::get_if<std::string>(&s.value);
      check(v && *v == text);
      check(str->allow_empty || !v->empty());
      check(str->max_length == 0 || v->size() <= str->max_length);
    } else if (std::holds_alternative<BoolSpec>(key.spec)) {
      const auto* v = std::get_if<bool>(&s.value);
      check(v != nullptr);
      const bool on = text == "on" || text == "true" || text == "yes" || text == "1";
      const bool off = text == "off" || text == "false" || text == "no" || text == "0";
      check(*v ? on : off);
    } else if (const auto* u = std::get_if<UnsignedSpec>(&key.spec)) {
      const auto* v = std::get_if<uint64_t>(&s.value);
      check(v && *v >= u->min && *v <= u->max);
      check(reference_u64(text) == *v);
    } else {
      const auto& choice = std::get<ChoiceSpec>(key.spec);
      const auto* v = std::get_if<uint64_t>(&s.value);
      check(v != nullptr);
      const auto it = std::find_if(choice.choices.begin(), choice.choices.end(),
                                   [&](const auto& c) { return c.first == text; });
      check(it != choice.choices.end() && it->second == *v);
    }
  }
  check(given[0]);              // path= is required
  check(given[6] != given[7]);  // exactly one of x= and y=
}

void fuzz_help(std::string_view text) {
  const size_t width = text.empty() ? 88 : static_cast<uint8_t>(text[0]);
  const std::string help = table().help(width);
  check(!help.empty() && help.back() == '\n');
  for (size_t start = 0; start < help.size();) {
    const size_t end = help.find('\n', start);
    const std::string_view line(help.data() + start, end - start);
    // Longer than the width only where one word after the key column is (the column: the
    // longest "key=HINT", mode=a|bb|, plus 4); the group lines are not wrapped.
    constexpr size_t kColumn = 14;
    check(line.size() <= width || line.starts_with("  exactly one of") ||
          line.substr(kColumn).find(' ') == std::string_view::npos);
    start = end + 1;
  }
}

void fuzz_config_values(uint8_t which, std::string_view text) {
  switch (which % 7) {
    case 0: {
      auto d = parse_disk(text);
      if (!d) return check_error(d.error().message, text, {"--disk: "});
      check(!d->path.empty());
      check(d->num_queues >= 1 && d->num_queues <= kMaxDiskQueues);
      check(d->poll_us <= kMaxDiskPollUs);
      check(d->serial.size() <= devices::kBlkIdBytes);
      break;
    }
    case 1: {
      auto p = parse_port(text);
      if (!p) return check_error(p.error().message, text, {"--port: "});
      check(!p->name.empty() && p->name.size() <= devices::VirtioConsole::kMaxNameLength);
      check(p->name != "." && p->name != "..");
      check(std::all_of(p->name.begin(), p->name.end(), [](char c) {
        return std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '_' || c == '-';
      }));
      check(p->path.empty() != p->socket.empty());
      break;
    }
    case 2: {
      auto dx = parse_debug_exit(text);
      if (!dx)
        return check_error(dx.error().message, text, {"--debug-exit: ", "invalid --debug-exit "});
      check(dx->enabled == (text != "off"));
      check((dx->formula == devices::DebugExit::Formula::kQemu) == text.starts_with("qemu"));
      check(dx->iosize == 1 || dx->iosize == 2 || dx->iosize == 4);
      check(uint32_t{dx->iobase} + dx->iosize <= 0x10000);
      break;
    }
    case 3: {
      auto s = parse_serial(text);
      if (!s) return check_error(s.error().message, text, {"invalid --serial "});
      check((s->mode == SerialMode::kFile) == !s->path.empty());
      if (s->mode == SerialMode::kFile) check("file=" + s->path == text);
      auto c = parse_console(text);
      check(c && *c && **c == *s);
      break;
    }
    case 4: {
      auto c = parse_console(text);
      if (!c) return check_error(c.error().message, text, {"invalid --console "});
      check(c->has_value() == (text != "off"));
      break;
    }
    case 5: {
      // parse_memory_size: digits with an optional K/M/G/B suffix (bare: MiB), nonzero, a
      // multiple of 4 KiB, below 2^64.
      auto m = parse_memory_size(text);
      std::string_view digits = text;
      unsigned shift = 20;
      if (!digits.empty()) {
        switch (std::tolower(static_cast<unsigned char>(digits.back()))) {
          case 'k':
            shift = 10;
            digits.remove_suffix(1);
            break;
          case 'm':
            shift = 20;
            digits.remove_suffix(1);
            break;
          case 'g':
            shift = 30;
            digits.remove_suffix(1);
            break;
          case 'b':
            shift = 0;
            digits.remove_suffix(1);
            break;
        }
      }
      const std::optional<uint64_t> n = reference_u64(digits);
      const unsigned __int128 bytes = n ? static_cast<unsigned __int128>(*n) << shift : 0;
      const bool valid = n && *n != 0 && bytes <= UINT64_MAX && bytes % 4096 == 0;
      check(static_cast<bool>(m) == valid);
      if (!m) return check_error(m.error().message, text, {"invalid memory size ", "memory size "});
      check(*m == bytes);
      break;
    }
    case 6:
      check(parse_u64(text) == reference_u64(text));
      break;
  }
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const std::string_view text(reinterpret_cast<const char*>(data + 1), size - 1);
  const uint8_t which = data[0];
  if (which < 0x80) {
    fuzz_table(text);
  } else if (which < 0x88) {
    fuzz_help(text);
  } else {
    fuzz_config_values(which, text);
  }
  return 0;
}
