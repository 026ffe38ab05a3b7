#include "api/package_store.hpp"

#include "client/package_archive.hpp"
#include "messages/error.hpp"
#include "messages/ids.hpp"

#include <nlohmann/json.hpp>

#include <fstream>
#include <map>
#include <sstream>

namespace rondo::api {

namespace {

constexpr const char* index_name = "index.json";

caf::error storage_error(const std::string& what) {
  return caf::make_error(ec::storage_error, what);
}

nlohmann::json to_json(const package_info& p) {
  return {{"package_id", p.package_id},   {"name", p.name},
          {"description", p.description}, {"file_name", p.file_name},
          {"helper", p.helper},           {"storage_file_name",
                                           p.storage_file_name},
          {"checksum", p.checksum},       {"size_bytes", p.size_bytes},
          {"committed_at", p.committed_at}, {"active", p.active}};
}

package_info from_json(const nlohmann::json& j) {
  package_info p;
  p.package_id = j.at("package_id").get<std::string>();
  p.name = j.value("name", "");
  p.description = j.value("description", "");
  p.file_name = j.value("file_name", "");
  p.helper = j.value("helper", "");
  p.storage_file_name = j.at("storage_file_name").get<std::string>();
  p.checksum = j.value("checksum", "");
  p.size_bytes = j.value("size_bytes", uint64_t{0});
  p.committed_at = j.value("committed_at", 0.0);
  p.active = j.value("active", false);
  return p;
}

/// Writes `data` to `path` through a temporary file renamed over it.
caf::error write_atomically(const std::filesystem::path& path,
                            const std::string& data) {
  auto tmp = path;
  tmp += ".tmp";
  {
    std::ofstream out{tmp, std::ios::binary | std::ios::trunc};
    out.write(data.data(), static_cast<std::streamsize>(data.size()));
    out.flush();
    if (!out)
      return storage_error("cannot write " + tmp.string());
  }
  std::error_code err;
  std::filesystem::rename(tmp, path, err);
  if (err)
    return storage_error("cannot rename " + tmp.string() + " to "
                         + path.string() + ": " + err.message());
  return caf::none;
}

caf::error check_helper(const std::string& helper) {
  if (known_helper(helper))
    return caf::none;
  return caf::make_error(ec::invalid_argument,
                         "helper: '" + helper
                           + "' is not one of numpyhelper, binaryhelper, "
                             "androidhelper");
}

bool ends_with(const std::string& s, const std::string& tail) {
  return s.size() >= tail.size()
         && s.compare(s.size() - tail.size(), tail.size(), tail) == 0;
}

} // namespace

bool known_helper(const std::string& helper) {
  return helper == "numpyhelper" || helper == "binaryhelper"
         || helper == "androidhelper";
}

package_store::package_store(std::filesystem::path dir)
  : dir_(std::move(dir)) {
  // nop
}

caf::expected<std::shared_ptr<package_store>>
package_store::open(const std::filesystem::path& data_dir) {
  // One store per folder for the life of the process: the client, model
  // and package routes share it, and its index is read from disk once,
  // not per request (a weak reference would let it go after each one).
  static std::mutex registry_mtx;
  static std::map<std::filesystem::path, std::shared_ptr<package_store>>
    registry;
  auto dir = (data_dir / "packages").lexically_normal();
  std::lock_guard<std::mutex> registry_guard{registry_mtx};
  if (auto& open = registry[dir])
    return open;
  auto made = load(dir);
  if (made)
    registry[dir] = *made;
  return made;
}

caf::expected<std::shared_ptr<package_store>>
package_store::load(const std::filesystem::path& dir) {
  std::error_code err;
  std::filesystem::create_directories(dir, err);
  if (err)
    return storage_error("cannot create " + dir.string() + ": "
                         + err.message());
  std::shared_ptr<package_store> out{new package_store(dir)};
  auto index = dir / index_name;
  if (!std::filesystem::exists(index))
    return out;
  std::ifstream in{index};
  std::stringstream text;
  text << in.rdbuf();
  if (!in)
    return storage_error("cannot read " + index.string());
  try {
    auto j = nlohmann::json::parse(text.str());
    for (auto& p : j.at("packages"))
      out->packages_.push_back(from_json(p));
  } catch (const nlohmann::json::exception& e) {
    return caf::make_error(ec::corrupt, "package index " + index.string()
                                          + " is corrupt: " + e.what());
  }
  return out;
}

caf::error package_store::save_index() const {
  auto j = nlohmann::json::object();
  j["packages"] = nlohmann::json::array();
  for (auto& p : packages_)
    j["packages"].push_back(to_json(p));
  return write_atomically(dir_ / index_name, j.dump(1));
}

caf::expected<package_info> package_store::add(const std::string& bytes,
                                               package_info meta) {
  if (!ends_with(meta.file_name, ".tgz")
      && !ends_with(meta.file_name, ".tar.gz"))
    return caf::make_error(ec::invalid_argument,
                           "file: '" + meta.file_name
                             + "' must be a .tgz or .tar.gz archive");
  if (auto err = check_helper(meta.helper))
    return err;
  if (auto contents = client::check_package_archive(bytes); !contents)
    return contents.error();
  meta.package_id = new_id();
  meta.storage_file_name = meta.package_id + ".tgz";
  meta.checksum = client::sha256_hex(bytes);
  meta.size_bytes = bytes.size();
  meta.committed_at = unix_now();
  meta.active = true;
  std::lock_guard<std::mutex> guard{mtx_};
  if (auto err = write_atomically(dir_ / meta.storage_file_name, bytes))
    return err;
  auto before = packages_;
  for (auto& p : packages_)
    p.active = false;
  packages_.push_back(meta);
  if (auto err = save_index()) {
    packages_ = std::move(before);
    std::error_code ignored;
    std::filesystem::remove(dir_ / meta.storage_file_name, ignored);
    return err;
  }
  return meta;
}

std::vector<package_info> package_store::list() const {
  std::lock_guard<std::mutex> guard{mtx_};
  return packages_;
}

std::optional<package_info>
package_store::find(const std::string& id_or_file) const {
  std::lock_guard<std::mutex> guard{mtx_};
  for (auto& p : packages_)
    if (p.package_id == id_or_file || p.storage_file_name == id_or_file)
      return p;
  return std::nullopt;
}

std::optional<package_info> package_store::active() const {
  std::lock_guard<std::mutex> guard{mtx_};
  for (auto& p : packages_)
    if (p.active)
      return p;
  return std::nullopt;
}

std::filesystem::path package_store::helper_file() const {
  return dir_.parent_path() / "active_helper";
}

std::optional<std::string> package_store::active_helper() const {
  std::lock_guard<std::mutex> guard{mtx_};
  for (auto& p : packages_)
    if (p.active && !p.helper.empty())
      return p.helper;
  std::ifstream in{helper_file()};
  std::string name;
  if (in && std::getline(in, name) && !name.empty())
    return name;
  return std::nullopt;
}

caf::error package_store::set_active_helper(const std::string& helper) {
  if (auto err = check_helper(helper))
    return err;
  std::lock_guard<std::mutex> guard{mtx_};
  return write_atomically(helper_file(), helper + "\n");
}

caf::expected<std::string>
package_store::read(const package_info& pkg) const {
  auto path = dir_ / pkg.storage_file_name;
  std::ifstream in{path, std::ios::binary};
  std::stringstream data;
  data << in.rdbuf();
  if (!in)
    return storage_error("cannot read compute package " + path.string());
  return data.str();
}

} // namespace rondo::api
