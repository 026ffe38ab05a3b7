#pragma once

// A FEDn compute package: a folder with a `fedn.yaml` naming the entry
// points the client runs (train, validate, and optionally startup, predict).
//
//   entry_points:
//     train:
//       command: python3 train.py
//     validate:
//       command: python3 validate.py
//
// Other top-level keys (e.g. FEDn's `python_env`) are accepted and ignored:
// Rondo runs the commands in the environment it was started in.

#include <caf/expected.hpp>

#include <filesystem>
#include <map>
#include <string>
#include <vector>

namespace rondo::client {

/// Names of the entry points FEDn defines.
namespace entry_point_names {
inline constexpr const char* train = "train";
inline constexpr const char* validate = "validate";
inline constexpr const char* startup = "startup";
inline constexpr const char* predict = "predict";
} // namespace entry_point_names

/// One entry point of fedn.yaml.
struct entry_point {
  /// The shell command, e.g. "python3 train.py"; never empty. The client
  /// appends the (shell-quoted) arguments and runs it with `/bin/sh -c` in
  /// the package folder.
  std::string command;
};

/// A loaded compute package.
struct compute_package {
  /// The package folder (absolute): the working directory of every command.
  std::filesystem::path dir;
  /// Entry points by name ("train", "validate", ...).
  std::map<std::string, entry_point> entry_points;

  /// The entry point `name`, or nullptr if fedn.yaml does not define it.
  const entry_point* find(const std::string& name) const;
};

/// Parses the text of a fedn.yaml. `required` lists entry points that must
/// be present (e.g. {"train"} for a trainer). `dir` is stored as the
/// package folder as given.
/// Errors (`ec::invalid_config`, text prefixed "fedn.yaml: "): YAML syntax
/// errors (with line and column), no `entry_points` map, an entry point
/// that is not a map or has no (or an empty) `command`, a required entry
/// point missing.
caf::expected<compute_package>
parse_fedn_yaml(const std::string& text,
                const std::vector<std::string>& required,
                const std::filesystem::path& dir = {});

/// Loads `<dir>/fedn.yaml` (see `parse_fedn_yaml`); `dir` is made absolute.
/// Errors: `ec::not_found` if `dir` is not a directory or has no fedn.yaml;
/// `ec::invalid_config` for a malformed file.
caf::expected<compute_package>
load_compute_package(const std::filesystem::path& dir,
                     const std::vector<std::string>& required);

} // namespace rondo::client
