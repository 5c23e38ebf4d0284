// A kernel module tree's index files, and which module files to load in which order.
// modules.dep (depmod(8), modules.dep(5)): one line per module, "PATH: DEP DEP ...", paths
// relative to the tree (kernel/fs/fuse/virtiofs.ko); modules.builtin: the paths of modules
// built into the kernel, one a line. Pure functions over the files' text.
#pragma once

#include <map>
#include <set>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "boot/result.h"

namespace minivmm::boot {

struct ModuleIndex {
  std::map<std::string, std::vector<std::string>> deps_by_path;  // each module's direct deps
  std::map<std::string, std::string> path_by_name;               // "fuse" -> its path
};

// A module's name as the kernel knows it: the file name without .ko (.ko.xz, .ko.zst,
// .ko.gz), '-' as '_' ("kernel/drivers/misc/pvpanic/pvpanic-mmio.ko" -> "pvpanic_mmio").
std::string module_name(std::string_view path_or_name);
bool module_is_compressed(std::string_view path);

Result<ModuleIndex> parse_modules_dep(std::string_view text);
// The names of the built-in modules.
std::set<std::string> parse_modules_builtin(std::string_view text);

struct ModuleRequest {
  std::string_view name;  // either spelling: "pvpanic-mmio" or "pvpanic_mmio"
  bool required;          // an error when neither a module nor built in; else skipped
};

// The module paths to load for `wanted`, each after every module it depends on (a
// depth-first walk of modules.dep, dependencies in their listed order), none twice. A
// built-in module is skipped. Errors: a required module the tree lacks, a dependency with no
// line of its own, a dependency cycle.
Result<std::vector<std::string>> module_load_order(const ModuleIndex& index,
                                                   const std::set<std::string>& builtin,
                                                   std::span<const ModuleRequest> wanted);

}  // namespace minivmm::boot
