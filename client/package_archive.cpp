#include "client/package_archive.hpp"

#include "client/compute_package.hpp"
#include "messages/error.hpp"

#include <archive.h>
#include <archive_entry.h>
#include <openssl/evp.h>

#include <memory>
#include <vector>

namespace rondo::client {

namespace {

/// Largest fedn.yaml read from an archive, bytes.
constexpr size_t max_yaml_bytes = size_t{1} << 20;

caf::error refuse(const std::string& why) {
  return caf::make_error(ec::invalid_argument,
                         "compute package refused: " + why);
}

struct archive_closer {
  void operator()(archive* a) const {
    archive_read_free(a);
  }
};
using reader_ptr = std::unique_ptr<archive, archive_closer>;

struct writer_closer {
  void operator()(archive* a) const {
    archive_write_free(a);
  }
};
using writer_ptr = std::unique_ptr<archive, writer_closer>;

caf::expected<reader_ptr> open_reader(std::string_view bytes) {
  reader_ptr a{archive_read_new()};
  if (!a)
    return caf::make_error(ec::unspecified, "libarchive: out of memory");
  archive_read_support_filter_gzip(a.get());
  archive_read_support_format_tar(a.get());
  if (archive_read_open_memory(a.get(), bytes.data(), bytes.size())
      != ARCHIVE_OK)
    return refuse("not a gzip-compressed tar archive: "
                  + std::string{archive_error_string(a.get())});
  return a;
}

/// The path's components without "." and empty ones, or an error naming
/// the entry when it is absolute or has a ".." component.
caf::expected<std::vector<std::string>>
safe_components(const std::string& path, const std::string& what) {
  if (path.empty())
    return refuse(what + " has an empty path");
  if (path.front() == '/')
    return refuse(what + " '" + path + "' is an absolute path");
  std::vector<std::string> out;
  size_t start = 0;
  while (start <= path.size()) {
    auto end = path.find('/', start);
    if (end == std::string::npos)
      end = path.size();
    auto part = path.substr(start, end - start);
    if (part == "..")
      return refuse(what + " '" + path + "' has a '..' component");
    if (!part.empty() && part != ".")
      out.push_back(std::move(part));
    start = end + 1;
  }
  return out;
}

/// Checks that symlink `target`, relative to the folder of the entry with
/// components `entry`, stays inside the archive's folder.
caf::error check_symlink(const std::vector<std::string>& entry,
                         const std::string& name, const std::string& target) {
  if (target.empty())
    return refuse("symbolic link '" + name + "' has an empty target");
  if (target.front() == '/')
    return refuse("symbolic link '" + name + "' points to the absolute path '"
                  + target + "'");
  // Depth of the link's folder below the root, then walk the target.
  auto depth = static_cast<long>(entry.size()) - 1;
  size_t start = 0;
  while (start <= target.size()) {
    auto end = target.find('/', start);
    if (end == std::string::npos)
      end = target.size();
    auto part = target.substr(start, end - start);
    if (part == "..") {
      if (--depth < 0)
        return refuse("symbolic link '" + name + "' points to '" + target
                      + "', out of the package folder");
    } else if (!part.empty() && part != ".") {
      ++depth;
    }
    start = end + 1;
  }
  return caf::none;
}

std::string join(const std::vector<std::string>& parts) {
  std::string out;
  for (auto& p : parts)
    out += (out.empty() ? "" : "/") + p;
  return out;
}

/// Walks every entry of the archive, checking it; `each` is called with
/// the entry after it passed, its path components and, for a fedn.yaml
/// whose data the check consumed, that data (else nullptr).
template <class F>
caf::expected<package_contents> walk(archive* a, F each) {
  package_contents out;
  // fedn.yaml found at the root, and under each top folder.
  bool root_yaml = false;
  std::string top_yaml_dir;
  std::string top_yaml_text;
  size_t top_yamls = 0;
  for (;;) {
    archive_entry* e = nullptr;
    auto rc = archive_read_next_header(a, &e);
    if (rc == ARCHIVE_EOF)
      break;
    if (rc != ARCHIVE_OK && rc != ARCHIVE_WARN)
      return refuse((out.entries == 0 ? "not a gzip-compressed tar archive: "
                                      : "the archive is damaged after entry "
                                          + std::to_string(out.entries)
                                          + ": ")
                    + std::string{archive_error_string(a)});
    if (out.entries == 0 && archive_filter_code(a, 0) != ARCHIVE_FILTER_GZIP)
      return refuse("not gzip-compressed (FEDn packages are .tgz: a tar "
                    "archive compressed with gzip)");
    ++out.entries;
    const char* raw = archive_entry_pathname(e);
    std::string name = raw != nullptr ? raw : "";
    auto parts = safe_components(name, "entry");
    if (!parts)
      return parts.error();
    auto type = archive_entry_filetype(e);
    const char* hard = archive_entry_hardlink(e);
    if (hard != nullptr) {
      auto target = safe_components(hard, "hard link '" + name + "' target");
      if (!target)
        return target.error();
    } else if (type == AE_IFLNK) {
      const char* target = archive_entry_symlink(e);
      if (auto err = check_symlink(*parts, name,
                                   target != nullptr ? target : ""))
        return err;
    } else if (type != AE_IFREG && type != AE_IFDIR) {
      return refuse("entry '" + name
                    + "' is neither a file, a folder nor a link");
    }
    auto is_yaml = !parts->empty() && parts->back() == "fedn.yaml"
                   && parts->size() <= 2;
    std::string text;
    if (is_yaml) {
      if (type != AE_IFREG || hard != nullptr)
        return refuse("'" + name + "' must be a regular file");
      auto size = archive_entry_size(e);
      if (size < 0 || static_cast<size_t>(size) > max_yaml_bytes)
        return refuse("'" + name + "' is larger than 1 MiB");
      text.resize(static_cast<size_t>(size));
      auto got = archive_read_data(a, text.data(), text.size());
      if (got < 0 || static_cast<size_t>(got) != text.size())
        return refuse("cannot read '" + name + "': "
                      + std::string{archive_error_string(a)});
      if (parts->size() == 1) {
        root_yaml = true;
        out.fedn_yaml = text;
      } else {
        ++top_yamls;
        top_yaml_dir = parts->front();
        top_yaml_text = text;
      }
    }
    if (auto err = each(e, *parts, is_yaml ? &text : nullptr))
      return err;
  }
  if (out.entries == 0)
    return refuse("the archive is empty");
  if (!root_yaml) {
    if (top_yamls == 0)
      return refuse("no fedn.yaml at the archive root or under one top "
                    "folder");
    if (top_yamls > 1)
      return refuse("several top folders hold a fedn.yaml and none is at "
                    "the root: which one is the package is ambiguous");
    out.package_root = top_yaml_dir;
    out.fedn_yaml = std::move(top_yaml_text);
  }
  auto parsed = parse_fedn_yaml(out.fedn_yaml, {});
  if (!parsed)
    return refuse(
      (out.package_root.empty() ? "" : out.package_root + "/")
      + error_detail(parsed.error()));
  return out;
}

} // namespace

caf::expected<package_contents> check_package_archive(std::string_view bytes) {
  auto a = open_reader(bytes);
  if (!a)
    return a.error();
  return walk(a->get(), [](archive_entry*, const std::vector<std::string>&,
                           const std::string*) { return caf::error{}; });
}

caf::expected<std::filesystem::path>
unpack_package_archive(std::string_view bytes,
                       const std::filesystem::path& dest) {
  // Check everything first: nothing is written for a refused archive.
  auto contents = check_package_archive(bytes);
  if (!contents)
    return contents.error();
  std::error_code fs_err;
  if (std::filesystem::exists(dest, fs_err)
      && !std::filesystem::is_empty(dest, fs_err))
    return caf::make_error(ec::invalid_argument,
                           "cannot unpack the compute package into "
                             + dest.string() + ": the folder is not empty");
  std::filesystem::create_directories(dest, fs_err);
  if (fs_err)
    return caf::make_error(ec::storage_error, "cannot create "
                                                + dest.string() + ": "
                                                + fs_err.message());
  auto root = std::filesystem::absolute(dest, fs_err).lexically_normal();
  auto a = open_reader(bytes);
  if (!a)
    return a.error();
  writer_ptr w{archive_write_disk_new()};
  // Entries are written to absolute paths under `root` (their names were
  // checked: relative, no ".."), so libarchive's no-absolute-paths guard
  // cannot be used; its guards against writing through a symlink and
  // against ".." stay on as a second line.
  archive_write_disk_set_options(w.get(),
                                 ARCHIVE_EXTRACT_PERM
                                   | ARCHIVE_EXTRACT_SECURE_SYMLINKS
                                   | ARCHIVE_EXTRACT_SECURE_NODOTDOT);
  caf::error write_err;
  auto walked = walk(
    a->get(),
    [&](archive_entry* e, const std::vector<std::string>& parts,
        const std::string* already_read) -> caf::error {
      auto name = join(parts);
      if (parts.empty())
        return caf::none; // "./": the root folder itself
      archive_entry_set_pathname(e, (root / name).c_str());
      if (const char* hard = archive_entry_hardlink(e); hard != nullptr) {
        auto target = safe_components(hard, "hard link");
        archive_entry_set_hardlink(e, (root / join(*target)).c_str());
      }
      // No set-id bits, whatever the archive says.
      archive_entry_set_perm(e, archive_entry_perm(e) & 0777);
      auto fail = [&](const std::string& what) {
        return caf::make_error(ec::storage_error,
                               "cannot unpack '" + name + "': " + what + ": "
                                 + archive_error_string(w.get()));
      };
      if (archive_write_header(w.get(), e) < ARCHIVE_WARN)
        return fail("refused");
      if (archive_entry_size(e) > 0 && archive_entry_hardlink(e) == nullptr) {
        if (already_read != nullptr) {
          // walk() consumed fedn.yaml's data to check it; write it here.
          if (archive_write_data(w.get(), already_read->data(),
                                 already_read->size())
              < 0)
            return fail("write");
        } else {
          const void* buf = nullptr;
          size_t size = 0;
          la_int64_t offset = 0;
          for (;;) {
            auto rc = archive_read_data_block(a->get(), &buf, &size, &offset);
            if (rc == ARCHIVE_EOF)
              break;
            if (rc < ARCHIVE_WARN)
              return caf::make_error(ec::invalid_argument,
                                     "compute package refused: cannot read '"
                                       + name + "': "
                                       + archive_error_string(a->get()));
            if (archive_write_data_block(w.get(), buf, size, offset)
                < ARCHIVE_WARN)
              return fail("write");
          }
        }
      }
      if (archive_write_finish_entry(w.get()) < ARCHIVE_WARN)
        return fail("finish");
      return caf::none;
    });
  if (!walked)
    return walked.error();
  if (archive_write_close(w.get()) != ARCHIVE_OK)
    return caf::make_error(ec::storage_error,
                           "cannot unpack into " + dest.string() + ": "
                             + archive_error_string(w.get()));
  return contents->package_root.empty() ? root : root / contents->package_root;
}

std::string sha256_hex(std::string_view bytes) {
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  if (EVP_Digest(bytes.data(), bytes.size(), digest, &len, EVP_sha256(),
                 nullptr)
      != 1)
    return {}; // only when OpenSSL cannot allocate: no checksum matches ""
  static constexpr char hex[] = "0123456789abcdef";
  std::string out;
  out.reserve(len * 2);
  for (unsigned int i = 0; i < len; ++i) {
    out += hex[digest[i] >> 4];
    out += hex[digest[i] & 0xf];
  }
  return out;
}

} // namespace rondo::client
