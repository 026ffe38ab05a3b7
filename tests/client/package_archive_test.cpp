// Compute package archives: what the controller refuses at upload and the
// client refuses to unpack, and a good package unpacked. Archives are built
// here with libarchive's writer.

#include "client/package_archive.hpp"

#include "messages/error.hpp"
#include "tests/test_util.hpp"

#include <archive.h>
#include <archive_entry.h>
#include <doctest/doctest.h>

#include <fstream>
#include <sstream>
#include <vector>

using namespace rondo;
using namespace rondo::client;

namespace {

const char* good_yaml = "entry_points:\n"
                        "  train:\n"
                        "    command: python3 train.py\n"
                        "  validate:\n"
                        "    command: python3 validate.py\n";

/// One entry of a test archive.
struct entry {
  std::string path;
  /// Regular file content; ignored for links and folders.
  std::string content;
  enum kind { file, dir, symlink, hardlink } type = file;
  /// Link target.
  std::string target;
};

la_ssize_t append(archive*, void* out, const void* buf, size_t n) {
  static_cast<std::string*>(out)->append(static_cast<const char*>(buf), n);
  return static_cast<la_ssize_t>(n);
}

/// A tar archive of `entries`, gzip-compressed unless `gzip` is false.
std::string make_archive(const std::vector<entry>& entries, bool gzip = true) {
  std::string out;
  auto* a = archive_write_new();
  if (gzip)
    archive_write_add_filter_gzip(a);
  archive_write_set_format_pax_restricted(a);
  REQUIRE(archive_write_open(a, &out, nullptr, append, nullptr) == ARCHIVE_OK);
  for (auto& x : entries) {
    auto* e = archive_entry_new();
    archive_entry_set_pathname(e, x.path.c_str());
    switch (x.type) {
      case entry::file:
        archive_entry_set_filetype(e, AE_IFREG);
        archive_entry_set_perm(e, 0644);
        archive_entry_set_size(e, static_cast<la_int64_t>(x.content.size()));
        break;
      case entry::dir:
        archive_entry_set_filetype(e, AE_IFDIR);
        archive_entry_set_perm(e, 0755);
        break;
      case entry::symlink:
        archive_entry_set_filetype(e, AE_IFLNK);
        archive_entry_set_perm(e, 0777);
        archive_entry_set_symlink(e, x.target.c_str());
        break;
      case entry::hardlink:
        archive_entry_set_filetype(e, AE_IFREG);
        archive_entry_set_perm(e, 0644);
        archive_entry_set_hardlink(e, x.target.c_str());
        break;
    }
    REQUIRE(archive_write_header(a, e) == ARCHIVE_OK);
    if (x.type == entry::file && !x.content.empty())
      archive_write_data(a, x.content.data(), x.content.size());
    archive_entry_free(e);
  }
  archive_write_close(a);
  archive_write_free(a);
  return out;
}

std::string refusal(const std::string& bytes) {
  auto got = check_package_archive(bytes);
  REQUIRE_FALSE(got);
  CHECK(got.error() == ec::invalid_argument);
  return error_detail(got.error());
}

std::string read_file(const std::filesystem::path& p) {
  std::ifstream in{p};
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

} // namespace

TEST_CASE("package archive: a '..' entry is refused, naming it") {
  auto bytes = make_archive({{"fedn.yaml", good_yaml},
                             {"../evil.sh", "echo owned"}});
  auto why = refusal(bytes);
  CHECK(why.find("'../evil.sh'") != std::string::npos);
  CHECK(why.find("'..'") != std::string::npos);
  // Nor is it unpacked: nothing is written next to the destination.
  test::temp_dir dir;
  CHECK_FALSE(unpack_package_archive(bytes, dir.path() / "pkg"));
  CHECK_FALSE(std::filesystem::exists(dir.path() / "evil.sh"));
}

TEST_CASE("package archive: an absolute path is refused, naming it") {
  auto why = refusal(make_archive({{"fedn.yaml", good_yaml},
                                   {"/tmp/rondo-evil", "x"}}));
  CHECK(why.find("'/tmp/rondo-evil' is an absolute path")
        != std::string::npos);
}

TEST_CASE("package archive: a symbolic link out of the folder is refused") {
  auto why = refusal(make_archive(
    {{"fedn.yaml", good_yaml},
     {"pkg", "", entry::dir},
     {"pkg/data", "", entry::symlink, "../../etc"}}));
  CHECK(why.find("symbolic link 'pkg/data' points to '../../etc', out of "
                 "the package folder")
        != std::string::npos);
  why = refusal(make_archive(
    {{"fedn.yaml", good_yaml}, {"passwd", "", entry::symlink, "/etc/passwd"}}));
  CHECK(why.find("symbolic link 'passwd' points to the absolute path "
                 "'/etc/passwd'")
        != std::string::npos);
  // A link that stays inside is fine.
  CHECK(check_package_archive(make_archive(
    {{"fedn.yaml", good_yaml},
     {"pkg", "", entry::dir},
     {"pkg/yaml", "", entry::symlink, "../fedn.yaml"}})));
}

TEST_CASE("package archive: a hard link out of the folder is refused") {
  auto why = refusal(make_archive(
    {{"fedn.yaml", good_yaml}, {"shadow", "", entry::hardlink, "../shadow"}}));
  CHECK(why.find("hard link 'shadow' target '../shadow'") != std::string::npos);
}

TEST_CASE("package archive: no fedn.yaml is refused") {
  auto why = refusal(make_archive({{"train.py", "print(1)"}}));
  CHECK(why.find("no fedn.yaml at the archive root or under one top folder")
        != std::string::npos);
  // Two levels down is not where FEDn's client looks first either.
  why = refusal(make_archive({{"a/b/fedn.yaml", good_yaml}}));
  CHECK(why.find("no fedn.yaml") != std::string::npos);
}

TEST_CASE("package archive: a fedn.yaml the client parser rejects") {
  auto why = refusal(make_archive({{"pkg/fedn.yaml", "entry_points: 3\n"}}));
  CHECK(why.find("pkg/fedn.yaml: 'entry_points' must be a map")
        != std::string::npos);
}

TEST_CASE("package archive: not gzip, not tar") {
  auto why = refusal(make_archive({{"fedn.yaml", good_yaml}}, false));
  CHECK(why.find("not gzip-compressed") != std::string::npos);
  why = refusal("this is plainly not an archive");
  CHECK(why.find("not a gzip-compressed tar archive") != std::string::npos);
}

TEST_CASE("package archive: a good package is accepted and unpacked") {
  auto bytes = make_archive({{"mnist", "", entry::dir},
                             {"mnist/fedn.yaml", good_yaml},
                             {"mnist/train.py", "print('train')\n"},
                             {"mnist/lib", "", entry::dir},
                             {"mnist/lib/util.py", "X = 1\n"},
                             {"mnist/util.py", "", entry::symlink,
                              "lib/util.py"}});
  auto contents = check_package_archive(bytes);
  REQUIRE(contents);
  CHECK(contents->package_root == "mnist");
  CHECK(contents->fedn_yaml == good_yaml);
  CHECK(contents->entries == 6);
  test::temp_dir dir;
  auto root = unpack_package_archive(bytes, dir.path() / "pkg");
  REQUIRE(root);
  CHECK(*root == dir.path() / "pkg" / "mnist");
  CHECK(read_file(*root / "fedn.yaml") == good_yaml);
  CHECK(read_file(*root / "train.py") == "print('train')\n");
  CHECK(read_file(*root / "util.py") == "X = 1\n");
  // Unpacking twice into the same folder is refused, not merged.
  auto again = unpack_package_archive(bytes, dir.path() / "pkg");
  REQUIRE_FALSE(again);
  CHECK(error_detail(again.error()).find("not empty") != std::string::npos);
}

TEST_CASE("package checksum: sha256 as FEDn's checksum.sha") {
  CHECK(sha256_hex("abc")
        == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  CHECK(sha256_hex("")
        == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
}
