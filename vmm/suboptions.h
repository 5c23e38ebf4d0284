// Sub-options: the "key=value,key=value" values of --disk (and of the device options to come),
// parsed from one table of keys that also generates their --help text, so that the keys, their
// checks and their documentation cannot drift apart.
//
// SubOptionTable owns the key descriptions (name, value type with its limits, synopsis hint,
// one-line help, required, default shown in help) and "exactly one of these keys" groups; it
// splits and checks a spec and returns the checked values, or a one-line error naming the
// option and the key ("--disk: queues=0 is out of range 1-16"). SubOptions<Config> adds one
// setter per key and fills a Config from the values. Neither knows any particular option.
//
// A malformed table (duplicate key, a group naming an unknown key) is a programming error and
// throws std::logic_error at construction; a malformed spec is a user error and is a value.
//
// Threads: main thread only (command-line parsing); tables are immutable after construction.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <limits>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <variant>
#include <vector>

#include "virtio/result.h"

namespace minivmm::vmm {

// A whole decimal number that fits 64 bits, nothing else (no sign, no spaces); nullopt
// otherwise. What every numeric option value goes through.
std::optional<uint64_t> parse_u64(std::string_view text);

// A string; `max_length` 0 means no limit.
struct StringSpec {
  std::string hint{};  // synopsis placeholder: FILE, ID, PATH
  size_t max_length = 0;
  bool allow_empty = true;
};
// on|off (also accepted: true/false, yes/no, 1/0).
struct BoolSpec {};
// An unsigned decimal integer in [min, max].
struct UnsignedSpec {
  std::string hint = "N";
  uint64_t min = 0;
  uint64_t max = std::numeric_limits<uint64_t>::max();
};
// One of a list of names, each mapped to a number (an enum's value).
struct ChoiceSpec {
  std::vector<std::pair<std::string, uint64_t>> choices{};
};
using ValueSpec = std::variant<StringSpec, BoolSpec, UnsignedSpec, ChoiceSpec>;

// A checked value: std::string for StringSpec, bool for BoolSpec, uint64_t for UnsignedSpec
// and for ChoiceSpec (the chosen name's number).
using SubOptionValue = std::variant<std::string, bool, uint64_t>;

struct SubOptionKey {
  std::string name{};
  ValueSpec spec{};
  std::string help{};  // one line; limits, "required" and the default are appended by help()
  bool required = false;
  std::string default_text{};  // shown as "default X" in help(); empty: none shown
};

struct SubOptionSetting {
  size_t key;  // index into the table's keys
  SubOptionValue value;
};

class SubOptionTable {
 public:
  // `option` names the option in messages ("--disk"). Each group of `exactly_one` lists keys
  // of which a spec must give exactly one (their own `required` must be false).
  SubOptionTable(std::string option, std::vector<SubOptionKey> keys,
                 std::vector<std::vector<std::string>> exactly_one = {});

  // The settings of `spec` in the order given, or a one-line error.
  Result<std::vector<SubOptionSetting>, std::string> parse(std::string_view spec) const;
  // "path=FILE[,readonly=on|off][,serial=ID]": required keys and groups first, in table order.
  std::string synopsis() const;
  // One aligned entry per key ("  queues=N   request queues (1-16, default 1)"), wrapped at
  // `width` columns, then one line per exactly-one group; every line ends with '\n'.
  std::string help(size_t width = 88) const;

  const std::string& option() const { return option_; }
  const std::vector<SubOptionKey>& keys() const { return keys_; }

 private:
  std::string check(const SubOptionKey& key, std::string_view value,
                    SubOptionValue& out) const;  // empty: ok; else the error
  std::string key_list() const;

  std::string option_;
  std::vector<SubOptionKey> keys_;
  std::vector<std::vector<size_t>> exactly_one_;
};

// A SubOptionTable whose keys each set part of a Config.
template <typename Config>
class SubOptions {
 public:
  using Setter = std::function<void(Config&, const SubOptionValue&)>;
  struct Key {
    SubOptionKey key;
    Setter set;
  };

  SubOptions(std::string option, std::vector<Key> keys,
             std::vector<std::vector<std::string>> exactly_one = {})
      : table_(std::move(option), key_descriptions(keys), std::move(exactly_one)) {
    for (Key& k : keys) setters_.push_back(std::move(k.set));
  }

  // `initial` with every setting of `spec` applied, or the one-line error.
  Result<Config, std::string> parse(std::string_view spec, Config initial = {}) const {
    auto settings = table_.parse(spec);
    if (!settings) return std::move(settings).error();
    for (const SubOptionSetting& s : *settings) setters_[s.key](initial, s.value);
    return initial;
  }
  std::string synopsis() const { return table_.synopsis(); }
  std::string help(size_t width = 88) const { return table_.help(width); }
  const SubOptionTable& table() const { return table_; }

 private:
  static std::vector<SubOptionKey> key_descriptions(const std::vector<Key>& keys) {
    std::vector<SubOptionKey> out;
    for (const Key& k : keys) {
      if (!k.set) throw std::logic_error("sub-option '" + k.key.name + "' has no setter");
      out.push_back(k.key);
    }
    return out;
  }

  SubOptionTable table_;
  std::vector<Setter> setters_;
};

// The Key that stores its checked value into `field` of a Config. The spec must suit the
// field's type (StringSpec: std::string, BoolSpec: bool, UnsignedSpec: an unsigned integer
// whose range holds max, ChoiceSpec: an enum holding every choice's number), else
// std::logic_error: narrowing casts below are then exact.
template <typename Config, typename Field>
typename SubOptions<Config>::Key bind(SubOptionKey key, Field Config::*field) {
  const auto mismatch = [&key] {
    return std::logic_error("sub-option '" + key.name + "': value type does not suit its field");
  };
  if constexpr (std::is_same_v<Field, std::string>) {
    if (!std::holds_alternative<StringSpec>(key.spec)) throw mismatch();
  } else if constexpr (std::is_same_v<Field, bool>) {
    if (!std::holds_alternative<BoolSpec>(key.spec)) throw mismatch();
  } else if constexpr (std::is_enum_v<Field>) {
    const auto* choice = std::get_if<ChoiceSpec>(&key.spec);
    if (!choice) throw mismatch();
    using Underlying = std::make_unsigned_t<std::underlying_type_t<Field>>;
    for (const auto& c : choice->choices) {
      if (c.second > std::numeric_limits<Underlying>::max()) throw mismatch();
    }
  } else {
    static_assert(std::is_integral_v<Field> && std::is_unsigned_v<Field>,
                  "a sub-option sets a std::string, a bool, an unsigned integer or an enum");
    const auto* number = std::get_if<UnsignedSpec>(&key.spec);
    if (!number || number->max > std::numeric_limits<Field>::max()) throw mismatch();
  }
  auto set = [field](Config& config, const SubOptionValue& value) {
    if constexpr (std::is_same_v<Field, std::string> || std::is_same_v<Field, bool>) {
      config.*field = std::get<Field>(value);
    } else {
      config.*field = static_cast<Field>(std::get<uint64_t>(value));
    }
  };
  return {std::move(key), std::move(set)};
}

}  // namespace minivmm::vmm
