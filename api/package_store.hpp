#pragma once

// The controller's compute packages (FEDn's package store and its
// FEDN_COMPUTE_PACKAGE_DIR): each uploaded archive under
// `<data_dir>/packages/<package_id>.tgz`, their metadata in
// `<data_dir>/packages/index.json` (rewritten atomically), at most one
// active; and the active helper set by PUT /api/v1/helpers/active in
// `<data_dir>/active_helper`. Thread-safe (one mutex): the HTTP handlers
// share one store.

#include <caf/expected.hpp>

#include <filesystem>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

namespace rondo::api {

/// One uploaded compute package (FEDn's PackageDTO, plus its checksum).
struct package_info {
  std::string package_id;
  std::string name;
  std::string description;
  /// The file name as uploaded, e.g. "package.tgz".
  std::string file_name;
  /// "numpyhelper", "binaryhelper" or "androidhelper" (FEDn's helpers).
  std::string helper;
  /// The stored file's name under the packages folder: "<id>.tgz".
  std::string storage_file_name;
  /// SHA-256 of the archive, 64 hex digits (FEDn's packages/checksum).
  std::string checksum;
  /// Size of the archive in bytes.
  uint64_t size_bytes = 0;
  /// Unix seconds of the upload.
  double committed_at = 0;
  bool active = false;
};

/// The helpers FEDn accepts for a package (PackageDTO's validate_helper).
bool known_helper(const std::string& helper);

/// The packages folder of one controller.
class package_store {
public:
  /// Opens (and creates) `<data_dir>/packages`; every caller in the
  /// process gets the same store for the same folder, loaded once and
  /// kept until the process ends.
  /// @returns ec::storage_error naming the folder or index that cannot be
  ///          created or read; ec::corrupt for an unreadable index.
  static caf::expected<std::shared_ptr<package_store>>
  open(const std::filesystem::path& data_dir);

  /// Checks `bytes` (client/package_archive.hpp: a .tgz with a valid
  /// fedn.yaml and nothing that unpacks out of its folder), stores it and
  /// makes it the active package (FEDn's set_active_package).
  /// @returns the stored package; ec::invalid_argument naming the field
  ///          (file_name without .tgz/.tar.gz, unknown helper) or the
  ///          archive entry and why it is refused; ec::storage_error.
  caf::expected<package_info> add(const std::string& bytes,
                                  package_info meta);

  /// Every package, in upload order.
  std::vector<package_info> list() const;

  /// The package with this id or storage file name, if any.
  std::optional<package_info> find(const std::string& id_or_file) const;

  /// The active package, if any.
  std::optional<package_info> active() const;

  /// The archive's bytes. @returns ec::storage_error when it cannot be
  ///          read.
  caf::expected<std::string> read(const package_info& pkg) const;

  /// The model helper the controller's clients use (clients/add's
  /// helper_type, GET /api/v1/helpers/active): the active package's
  /// helper when a package is active, else the one stored by
  /// set_active_helper, else none (callers answering a client default to
  /// "numpyhelper", as FEDn's).
  std::optional<std::string> active_helper() const;

  /// Stores `helper` as the active helper for when no package is active
  /// (FEDn's set_active_helper); rewritten atomically.
  /// @returns ec::invalid_argument naming an unknown helper (known_helper);
  ///          ec::storage_error when it cannot be written.
  caf::error set_active_helper(const std::string& helper);

private:
  explicit package_store(std::filesystem::path dir);
  static caf::expected<std::shared_ptr<package_store>>
  load(const std::filesystem::path& dir);
  caf::error save_index() const;
  std::filesystem::path helper_file() const;

  std::filesystem::path dir_;
  mutable std::mutex mtx_;
  std::vector<package_info> packages_;
};

} // namespace rondo::api
