#include "storage/model_file.hpp"

#include "messages/error.hpp"
#include "tests/test_util.hpp"

#include <doctest/doctest.h>

#include <filesystem>

using namespace rondo;
using namespace rondo::storage::detail;
using rondo::test::random_bytes;
using rondo::test::temp_dir;

TEST_CASE("model file: read ahead serves chunks read in order and out of "
          "order alike") {
  temp_dir dir;
  io_pool pool{2};
  auto path = dir.sub("m.model");
  // 40 chunks of 64 KiB + 100 bytes: most start off the 4 KiB blocks.
  constexpr uint32_t chunk = (64 << 10) + 100;
  auto content = random_bytes(40 * uint64_t{chunk} - 17, 31);
  {
    auto w = direct_file_writer::create(pool, path);
    REQUIRE(w);
    // Pieces of 3 MiB - 1: across the writer's 2 MiB blocks.
    for (size_t at = 0; at < content.size(); at += (3 << 20) - 1)
      REQUIRE(!(*w)->append(std::string_view{content}.substr(at, (3 << 20)
                                                                   - 1)));
    CHECK((*w)->size() == content.size());
    REQUIRE(!(*w)->finish(true));
  }
  REQUIRE(std::filesystem::file_size(path) == content.size());
  auto r = direct_file_reader::open(&pool, path, content.size(), chunk);
  REQUIRE(r);
  auto expect = [&](uint64_t i) {
    return content.substr(i * chunk, chunk);
  };
  std::string out;
  // In order (fetched ahead), then jumps that leave fetches unused.
  for (uint64_t i : {0, 1, 2, 3, 30, 4, 5, 39, 38, 10, 11, 12, 13, 14}) {
    CAPTURE(i);
    REQUIRE(!(*r)->read(i, out));
    CHECK(out == expect(i));
  }
  // A chunk past the end of a shorter file is cut short.
  auto short_reader = direct_file_reader::open(nullptr, path,
                                               content.size() + 5000, chunk);
  REQUIRE(short_reader);
  auto err = (*short_reader)->read(39, out);
  CHECK(err == ec::corrupt);
  CHECK(render(err).find("chunk 39 of " + path + " is cut short")
        != std::string::npos);
}

TEST_CASE("model file: creation errors name the path; a discarded file is "
          "gone") {
  temp_dir dir;
  io_pool pool{1};
  auto missing = direct_file_writer::create(pool, dir.sub("no/such/m"));
  REQUIRE(!missing);
  CHECK(missing.error() == ec::storage_error);
  CHECK(render(missing.error()).find(dir.sub("no/such/m"))
        != std::string::npos);
  auto path = dir.sub("m");
  auto w = direct_file_writer::create(pool, path);
  REQUIRE(w);
  auto again = direct_file_writer::create(pool, path);
  REQUIRE(!again);
  CHECK(again.error() == ec::already_exists);
  REQUIRE(!(*w)->append(random_bytes(5 << 20, 1)));
  (*w)->discard();
  CHECK(!std::filesystem::exists(path));
  // An unfinished writer removes its file when destroyed.
  {
    auto w2 = direct_file_writer::create(pool, path);
    REQUIRE(w2);
    REQUIRE(!(*w2)->append("abc"));
  }
  CHECK(!std::filesystem::exists(path));
  CHECK(direct_file_reader::open(nullptr, path, 3, 1).error()
        == ec::not_found);
}
