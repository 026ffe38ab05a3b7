#include "client/compute_package.hpp"

#include "messages/error.hpp"

#include <yaml-cpp/yaml.h>

#include <fstream>
#include <sstream>

namespace rondo::client {

namespace {

caf::error bad(const std::string& what) {
  return caf::make_error(ec::invalid_config, "fedn.yaml: " + what);
}

} // namespace

const entry_point* compute_package::find(const std::string& name) const {
  auto i = entry_points.find(name);
  return i == entry_points.end() ? nullptr : &i->second;
}

caf::expected<compute_package>
parse_fedn_yaml(const std::string& text,
                const std::vector<std::string>& required,
                const std::filesystem::path& dir) {
  compute_package pkg;
  pkg.dir = dir;
  try {
    auto root = YAML::Load(text);
    if (!root.IsMap())
      return bad("expected a map with 'entry_points' at the top level");
    auto eps = root["entry_points"];
    if (!eps)
      return bad("no 'entry_points'");
    if (!eps.IsMap())
      return bad("'entry_points' must be a map of name -> {command: ...}");
    for (const auto& kv : eps) {
      auto name = kv.first.as<std::string>();
      const auto& node = kv.second;
      if (!node.IsMap())
        return bad("entry point '" + name + "' must be a map with 'command'");
      auto cmd = node["command"];
      if (!cmd || !cmd.IsScalar() || cmd.Scalar().empty())
        return bad("entry point '" + name + "' has no command");
      pkg.entry_points.emplace(name, entry_point{cmd.Scalar()});
    }
  } catch (const YAML::Exception& e) {
    // YAML::Exception::what() already carries "yaml-cpp: error at line L,
    // column C: ..." for parser errors.
    return bad(e.what());
  }
  for (const auto& name : required)
    if (pkg.find(name) == nullptr)
      return bad("entry point '" + name + "' is missing");
  return pkg;
}

caf::expected<compute_package>
load_compute_package(const std::filesystem::path& dir,
                     const std::vector<std::string>& required) {
  std::error_code err;
  auto abs = std::filesystem::absolute(dir, err);
  if (err || !std::filesystem::is_directory(abs, err))
    return caf::make_error(ec::not_found, "compute package directory '" +
                                            dir.string() +
                                            "' does not exist");
  auto file = abs / "fedn.yaml";
  std::ifstream in{file};
  if (!in)
    return caf::make_error(ec::not_found, "compute package '" + dir.string() +
                                            "' has no fedn.yaml");
  std::stringstream text;
  text << in.rdbuf();
  return parse_fedn_yaml(text.str(), required, abs.lexically_normal());
}

} // namespace rondo::client
