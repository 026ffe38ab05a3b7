#include "storage/model_file.hpp"

#include "messages/error.hpp"
#include "tests/test_util.hpp"

#include <doctest/doctest.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <future>
#include <iterator>

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

TEST_CASE("model file: with every buffer on its way to the disk, "
          "wait_for_room calls back once one is free") {
  temp_dir dir;
  // One I/O thread, held by a job until `release`: the writes queue up.
  io_pool pool{1};
  std::promise<void> release;
  auto released = release.get_future().share();
  pool.submit([released] { released.wait(); });
  auto path = dir.sub("m.model");
  auto w = direct_file_writer::create(pool, path);
  REQUIRE(w);
  auto content = random_bytes(direct_file_writer::depth
                                * direct_file_writer::block_bytes
                                + (1 << 20),
                              41);
  // All buffers fill and queue; the last MiB would need a fifth.
  auto full = direct_file_writer::depth * direct_file_writer::block_bytes;
  REQUIRE(!(*w)->append(std::string_view{content}.substr(0, full)));
  std::promise<void> called;
  auto room = called.get_future();
  REQUIRE((*w)->wait_for_room(1 << 20, [&called] { called.set_value(); }));
  CHECK(room.wait_for(std::chrono::milliseconds(50))
        == std::future_status::timeout);
  release.set_value();
  REQUIRE(room.wait_for(std::chrono::seconds(30))
          == std::future_status::ready);
  // Now the append does not wait, and the file is whole.
  CHECK(!(*w)->wait_for_room(1 << 20, [] { FAIL("called without need"); }));
  REQUIRE(!(*w)->append(std::string_view{content}.substr(full)));
  REQUIRE(!(*w)->finish(false));
  std::ifstream in{path, std::ios::binary};
  std::string back{std::istreambuf_iterator<char>{in}, {}};
  CHECK(back == content);
  // A request larger than all buffers together is not waited for.
  auto w2 = direct_file_writer::create(pool, dir.sub("m2.model"));
  REQUIRE(w2);
  CHECK(!(*w2)->wait_for_room(full + (3 << 20), [] {}));
}
