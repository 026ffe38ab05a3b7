#pragma once

// A compute package as it travels: a gzip-compressed tar archive (FEDn's
// `.tgz`) holding fedn.yaml at its root or under one top folder. The
// controller checks an archive when it is uploaded; a client unpacks the
// archive it downloaded. Both use the same checks (libarchive reads; only
// package_archive.cpp includes archive.h), so an archive the controller
// accepted unpacks, and nothing in an archive can write outside the folder
// it is unpacked into.

#include <caf/expected.hpp>

#include <filesystem>
#include <string>
#include <string_view>

namespace rondo::client {

/// What an accepted archive holds.
struct package_contents {
  /// Where fedn.yaml is, relative to the archive root: "" (at the root) or
  /// the one top folder holding it, e.g. "mnist-keras".
  std::string package_root;
  /// The text of fedn.yaml.
  std::string fedn_yaml;
  /// Number of entries (files, folders, links).
  size_t entries = 0;
};

/// Checks a package archive held in memory. Refused, with
/// `ec::invalid_argument` and a reason naming the entry:
/// - bytes that are not a gzip-compressed tar archive;
/// - an entry with an absolute path or a `..` component;
/// - a symbolic link whose target is absolute or leads out of the folder;
/// - a hard link to an absolute path or out of the folder;
/// - an entry that is neither a file, a folder nor a link (a device, a
///   FIFO);
/// - no fedn.yaml at the root or under one top folder (FEDn's client looks
///   for it there), or a fedn.yaml that is not a regular file or is larger
///   than 1 MiB;
/// - a fedn.yaml that `parse_fedn_yaml` rejects (its reason).
caf::expected<package_contents> check_package_archive(std::string_view bytes);

/// Checks the archive (as `check_package_archive`) and unpacks it into
/// `dest`, which must not exist or be an empty folder; regular files keep
/// their permission bits (never set-id bits), ownership is not restored.
/// @returns the folder holding fedn.yaml (`dest` or `dest/<top folder>`);
///          the errors of `check_package_archive`; `ec::storage_error` naming
///          the path that could not be written (then `dest` may hold part
///          of the package).
caf::expected<std::filesystem::path>
unpack_package_archive(std::string_view bytes,
                       const std::filesystem::path& dest);

/// SHA-256 of `bytes` as 64 lower-case hex digits (FEDn's package
/// checksum, fedn/utils/checksum.py), through OpenSSL's EVP.
std::string sha256_hex(std::string_view bytes);

} // namespace rondo::client
