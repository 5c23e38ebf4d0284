#include "vmm/suboptions.h"

#include <algorithm>
#include <charconv>
#include <optional>
#include <set>

namespace minivmm::vmm {
namespace {

template <class... F>
struct Overloaded : F... {
  using F::operator()...;
};
template <class... F>
Overloaded(F...) -> Overloaded<F...>;

std::optional<bool> parse_on_off(std::string_view text) {
  if (text == "on" || text == "true" || text == "yes" || text == "1") return true;
  if (text == "off" || text == "false" || text == "no" || text == "0") return false;
  return std::nullopt;
}

std::string quoted(std::string_view text) {
  // Appended, not "'" + std::string(text) + "'": GCC 12 at -O3 warns a false -Wrestrict on
  // that (GCC PR 105329), which broke the Release build with MINIVMM_WERROR.
  std::string out;
  out.reserve(text.size() + 2);
  out += '\'';
  out += text;
  out += '\'';
  return out;
}

// "a", "a or b", "a, b or c".
std::string alternatives(const std::vector<std::string>& names) {
  std::string out;
  for (size_t i = 0; i < names.size(); ++i) {
    if (i > 0) out += i + 1 == names.size() ? " or " : ", ";
    out += names[i];
  }
  return out;
}

std::vector<std::string> choice_names(const ChoiceSpec& choice) {
  std::vector<std::string> names;
  for (const auto& c : choice.choices) names.push_back(c.first);
  return names;
}

std::string range(uint64_t min, uint64_t max) {
  return std::to_string(min) + "-" + std::to_string(max);
}

std::string hint(const SubOptionKey& key) {
  return std::visit(Overloaded{
                        [](const StringSpec& s) { return s.hint; },
                        [](const BoolSpec&) { return std::string("on|off"); },
                        [](const UnsignedSpec& u) { return u.hint; },
                        [](const ChoiceSpec& c) {
                          std::string out;
                          for (const auto& name : choice_names(c)) {
                            out += (out.empty() ? "" : "|") + name;
                          }
                          return out;
                        },
                    },
                    key.spec);
}

// The limits and default that help() appends to a key's own text, e.g. "1-16, default 1".
std::string annotations(const SubOptionKey& key) {
  std::vector<std::string> parts;
  if (key.required) parts.emplace_back("required");
  if (const auto* s = std::get_if<StringSpec>(&key.spec); s && s->max_length != 0) {
    parts.push_back("at most " + std::to_string(s->max_length) + " characters");
  }
  if (const auto* u = std::get_if<UnsignedSpec>(&key.spec)) parts.push_back(range(u->min, u->max));
  if (!key.default_text.empty()) parts.push_back("default " + key.default_text);
  std::string out;
  for (const auto& p : parts) out += (out.empty() ? "" : ", ") + p;
  return out;
}

// Appends `text` to `out` in lines of at most `width` columns (longer words stay whole), the
// first continuing a line already `column` wide, the others indented by `indent`.
void wrap(std::string& out, std::string_view text, size_t column, size_t indent, size_t width) {
  while (!text.empty()) {
    const size_t room = width > column ? width - column : 1;
    size_t cut = text.size();
    if (cut > room) {
      cut = text.rfind(' ', room);
      if (cut == std::string_view::npos || cut == 0) cut = std::min(text.find(' '), text.size());
    }
    out.append(text.substr(0, cut));
    out += '\n';
    text.remove_prefix(cut);
    while (!text.empty() && text.front() == ' ') text.remove_prefix(1);
    if (!text.empty()) out.append(indent, ' ');
    column = indent;
  }
}

}  // namespace

std::optional<uint64_t> parse_u64(std::string_view text) {
  uint64_t value = 0;
  if (text.empty()) return std::nullopt;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc() || end != text.data() + text.size()) return std::nullopt;
  return value;
}

SubOptionTable::SubOptionTable(std::string option, std::vector<SubOptionKey> keys,
                               std::vector<std::vector<std::string>> exactly_one)
    : option_(std::move(option)), keys_(std::move(keys)) {
  std::set<std::string, std::less<>> names;
  for (const SubOptionKey& k : keys_) {
    if (k.name.empty() || !names.insert(k.name).second) {
      throw std::logic_error(option_ + ": sub-option key '" + k.name + "' is empty or repeated");
    }
    if (const auto* u = std::get_if<UnsignedSpec>(&k.spec); u && u->min > u->max) {
      throw std::logic_error(option_ + ": sub-option '" + k.name + "' has min > max");
    }
  }
  for (const auto& group : exactly_one) {
    std::vector<size_t> indices;
    for (const std::string& name : group) {
      const auto it = std::find_if(keys_.begin(), keys_.end(),
                                   [&](const SubOptionKey& k) { return k.name == name; });
      if (it == keys_.end() || it->required) {
        throw std::logic_error(option_ + ": exactly-one group names unknown or required key '" +
                               name + "'");
      }
      indices.push_back(static_cast<size_t>(it - keys_.begin()));
    }
    if (indices.size() < 2) throw std::logic_error(option_ + ": exactly-one group of < 2 keys");
    exactly_one_.push_back(std::move(indices));
  }
}

std::string SubOptionTable::key_list() const {
  std::string out;
  for (const SubOptionKey& k : keys_) out += (out.empty() ? "" : ", ") + k.name;
  return out;
}

std::string SubOptionTable::check(const SubOptionKey& key, std::string_view value,
                                  SubOptionValue& out) const {
  const std::string item = option_ + ": " + key.name + "=" + std::string(value);
  return std::visit(Overloaded{
                        [&](const StringSpec& s) -> std::string {
                          if (value.empty() && !s.allow_empty) {
                            return option_ + ": " + key.name + "= must not be empty";
                          }
                          if (s.max_length != 0 && value.size() > s.max_length) {
                            return item + " is longer than " + std::to_string(s.max_length) +
                                   " characters";
                          }
                          out = std::string(value);
                          return {};
                        },
                        [&](const BoolSpec&) -> std::string {
                          const std::optional<bool> on = parse_on_off(value);
                          if (!on) return item + " is not on or off";
                          out = *on;
                          return {};
                        },
                        [&](const UnsignedSpec& u) -> std::string {
                          const std::optional<uint64_t> n = parse_u64(value);
                          if (!n)
                            return item + " is not a number (range " + range(u.min, u.max) + ")";
                          if (*n < u.min || *n > u.max)
                            return item + " is out of range " + range(u.min, u.max);
                          out = *n;
                          return {};
                        },
                        [&](const ChoiceSpec& c) -> std::string {
                          for (const auto& [name, number] : c.choices) {
                            if (name == value) {
                              out = number;
                              return {};
                            }
                          }
                          return item + " is not " + alternatives(choice_names(c));
                        },
                    },
                    key.spec);
}

Result<std::vector<SubOptionSetting>, std::string> SubOptionTable::parse(
    std::string_view spec) const {
  std::vector<SubOptionSetting> settings;
  std::vector<bool> given(keys_.size(), false);
  std::string_view rest = spec;
  while (true) {
    const size_t comma = rest.find(',');
    const std::string_view item = rest.substr(0, comma);
    const size_t eq = item.find('=');
    if (eq == std::string_view::npos || eq == 0) {
      return option_ + ": expected key=value, got " + quoted(item);
    }
    const std::string_view name = item.substr(0, eq);
    const auto it = std::find_if(keys_.begin(), keys_.end(),
                                 [&](const SubOptionKey& k) { return k.name == name; });
    if (it == keys_.end()) {
      return option_ + ": unknown key " + quoted(name) + " (keys: " + key_list() + ")";
    }
    const auto index = static_cast<size_t>(it - keys_.begin());
    if (given[index]) return option_ + ": key " + quoted(name) + " given twice";
    given[index] = true;
    SubOptionValue value;
    if (std::string error = check(*it, item.substr(eq + 1), value); !error.empty()) return error;
    settings.push_back({index, std::move(value)});
    if (comma == std::string_view::npos) break;
    rest.remove_prefix(comma + 1);
  }
  for (size_t i = 0; i < keys_.size(); ++i) {
    if (keys_[i].required && !given[i]) {
      return option_ + ": " + keys_[i].name + "=" + hint(keys_[i]) + " is required";
    }
  }
  for (const auto& group : exactly_one_) {
    std::vector<std::string> names;
    size_t count = 0;
    for (size_t i : group) {
      names.push_back(keys_[i].name + "=");
      if (given[i]) ++count;
    }
    if (count == 0) return option_ + ": one of " + alternatives(names) + " is required";
    if (count > 1) {
      std::string both;
      for (size_t i : group) {
        if (given[i]) both += (both.empty() ? "" : " and ") + keys_[i].name + "=";
      }
      return option_ + ": " + both + " exclude each other (give one of " + alternatives(names) +
             ")";
    }
  }
  return settings;
}

std::string SubOptionTable::synopsis() const {
  std::vector<std::string> required;
  std::string optional;
  std::vector<bool> in_group(keys_.size(), false);
  for (const auto& group : exactly_one_) {
    for (size_t i : group) in_group[i] = true;
  }
  for (size_t i = 0; i < keys_.size(); ++i) {
    const std::string item = keys_[i].name + "=" + hint(keys_[i]);
    if (keys_[i].required) {
      required.push_back(item);
    } else if (in_group[i]) {
      // A group appears once, where its first key is.
      for (const auto& group : exactly_one_) {
        if (group.front() != i) continue;
        std::string alternatives_text;
        for (size_t g : group) {
          alternatives_text +=
              (alternatives_text.empty() ? "" : "|") + keys_[g].name + "=" + hint(keys_[g]);
        }
        required.push_back(alternatives_text);
      }
    } else {
      optional += "[," + item + "]";
    }
  }
  std::string out;
  for (const auto& r : required) out += (out.empty() ? "" : ",") + r;
  if (out.empty() && !optional.empty()) optional.erase(1, 1);  // "[,a=N]" -> "[a=N]"
  return out + optional;
}

std::string SubOptionTable::help(size_t width) const {
  size_t column = 0;
  for (const SubOptionKey& k : keys_) column = std::max(column, k.name.size() + 1 + hint(k).size());
  column += 2 + 2;  // indent, then at least two spaces
  std::string out;
  for (const SubOptionKey& k : keys_) {
    std::string entry = "  " + k.name + "=" + hint(k);
    entry.append(column - entry.size(), ' ');
    std::string text = k.help;
    if (const std::string notes = annotations(k); !notes.empty()) text += " (" + notes + ")";
    out += entry;
    wrap(out, text, column, column, width);
  }
  for (const auto& group : exactly_one_) {
    std::vector<std::string> names;
    for (size_t i : group) names.push_back(keys_[i].name + "=");
    out += "  exactly one of " + alternatives(names) + " is required\n";
  }
  return out;
}

}  // namespace minivmm::vmm
