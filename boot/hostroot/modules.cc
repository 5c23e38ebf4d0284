#include "boot/hostroot/modules.h"

#include <algorithm>

namespace minivmm::boot {
namespace {

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t' || s.front() == '\r')) {
    s.remove_prefix(1);
  }
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\r')) {
    s.remove_suffix(1);
  }
  return s;
}

template <typename F>
void for_each_line(std::string_view text, F&& f) {
  size_t line_no = 0;
  while (!text.empty()) {
    const size_t end = text.find('\n');
    const std::string_view line = text.substr(0, end);
    ++line_no;
    if (!f(trim(line), line_no)) return;
    if (end == std::string_view::npos) break;
    text.remove_prefix(end + 1);
  }
}

class Walk {
 public:
  Walk(const ModuleIndex& index) : index_(index) {}  // NOLINT

  // Post-order: path's dependencies, then path.
  Result<void> visit(const std::string& path, std::vector<std::string>& stack) {
    auto& state = state_[path];
    if (state == kDone) return {};
    if (state == kActive) {
      std::string cycle;
      auto from = std::find(stack.begin(), stack.end(), path);
      for (auto it = from; it != stack.end(); ++it) cycle += module_name(*it) + " -> ";
      return Error{"modules.dep: dependency cycle: " + cycle + module_name(path)};
    }
    const auto deps = index_.deps_by_path.find(path);
    if (deps == index_.deps_by_path.end()) {
      return Error{"modules.dep: " + module_name(stack.empty() ? path : stack.back()) +
                   " depends on " + path + ", which has no line of its own"};
    }
    state = kActive;
    stack.push_back(path);
    for (const std::string& dep : deps->second) {
      if (auto ok = visit(dep, stack); !ok) return ok;
    }
    stack.pop_back();
    state_[path] = kDone;
    order_.push_back(path);
    return {};
  }

  std::vector<std::string> take() { return std::move(order_); }

 private:
  enum State { kNew, kActive, kDone };
  const ModuleIndex& index_;
  std::map<std::string, State> state_;
  std::vector<std::string> order_;
};

}  // namespace

bool module_is_compressed(std::string_view path) {
  return path.ends_with(".ko.xz") || path.ends_with(".ko.zst") || path.ends_with(".ko.gz");
}

std::string module_name(std::string_view path) {
  const size_t slash = path.rfind('/');
  if (slash != std::string_view::npos) path.remove_prefix(slash + 1);
  for (std::string_view suffix : {".ko.xz", ".ko.zst", ".ko.gz", ".ko"}) {
    if (path.ends_with(suffix)) {
      path.remove_suffix(suffix.size());
      break;
    }
  }
  std::string name(path);
  std::replace(name.begin(), name.end(), '-', '_');
  return name;
}

Result<ModuleIndex> parse_modules_dep(std::string_view text) {
  ModuleIndex index;
  std::string error;
  for_each_line(text, [&](std::string_view line, size_t line_no) {
    if (line.empty() || line.front() == '#') return true;
    const size_t colon = line.find(':');
    const std::string_view path = trim(line.substr(0, colon));
    if (colon == std::string_view::npos || path.empty()) {
      error = "modules.dep line " + std::to_string(line_no) +
              ": not 'PATH: DEPS': " + std::string(line.substr(0, 80));
      return false;
    }
    std::vector<std::string> deps;
    std::string_view rest = line.substr(colon + 1);
    while (!(rest = trim(rest)).empty()) {
      const size_t end = rest.find_first_of(" \t");
      deps.emplace_back(rest.substr(0, end));
      if (end == std::string_view::npos) break;
      rest.remove_prefix(end);
    }
    const std::string name = module_name(path);
    if (!index.path_by_name.emplace(name, std::string(path)).second) {
      error = "modules.dep line " + std::to_string(line_no) + ": a second module named " + name;
      return false;
    }
    index.deps_by_path.emplace(std::string(path), std::move(deps));
    return true;
  });
  if (!error.empty()) return error;
  return index;
}

std::set<std::string> parse_modules_builtin(std::string_view text) {
  std::set<std::string> names;
  for_each_line(text, [&](std::string_view line, size_t) {
    if (!line.empty() && line.front() != '#') names.insert(module_name(line));
    return true;
  });
  return names;
}

Result<std::vector<std::string>> module_load_order(const ModuleIndex& index,
                                                   const std::set<std::string>& builtin,
                                                   std::span<const ModuleRequest> wanted) {
  Walk walk(index);
  for (const ModuleRequest& request : wanted) {
    const std::string name = module_name(request.name);
    if (builtin.contains(name)) continue;
    const auto found = index.path_by_name.find(name);
    if (found == index.path_by_name.end()) {
      if (!request.required) continue;
      return Error{"the module tree has no module " + name +
                   " (neither in modules.dep nor in modules.builtin)"};
    }
    std::vector<std::string> stack;
    if (auto ok = walk.visit(found->second, stack); !ok) return ok.error();
  }
  return walk.take();
}

}  // namespace minivmm::boot
