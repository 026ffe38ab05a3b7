#include "storage/model_store.hpp"

#include "messages/error.hpp"
#include "tests/test_util.hpp"

#include <doctest/doctest.h>

#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <functional>
#include <iterator>
#include <tuple>

using namespace rondo;
using namespace rondo::storage;
using rondo::test::random_bytes;
using rondo::test::temp_dir;

namespace {

std::shared_ptr<model_store> open_store(const temp_dir& dir) {
  auto db = database::open(dir.sub("db"));
  REQUIRE_MESSAGE(db, (db ? "" : render(db.error())));
  auto store = model_store::open(*db);
  REQUIRE_MESSAGE(store, (store ? "" : render(store.error())));
  return *store;
}

/// Runs `work` in a child process on a store opened over `dir`'s database;
/// the child then exits without closing or flushing anything, as a crash
/// leaves a process. Requires the store to open and `work` to return true.
/// A writer `work` leaves uncommitted must be leaked (`release()`), or its
/// destructor aborts the write, which a crash would not.
void crash_after(const temp_dir& dir,
                 const std::function<bool(model_store&)>& work) {
  auto pid = fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    auto db = database::open(dir.sub("db"));
    if (!db)
      _exit(2);
    auto store = model_store::open(*db);
    if (!store)
      _exit(3);
    _exit(work(**store) ? 0 : 4);
  }
  int status = 0;
  REQUIRE(waitpid(pid, &status, 0) == pid);
  REQUIRE(WIFEXITED(status));
  REQUIRE(WEXITSTATUS(status) == 0);
}

// Deterministic content of piece `i` of a streamed model.
std::string piece(size_t i, size_t bytes) {
  return random_bytes(bytes, 1000 + i);
}

} // namespace

TEST_CASE("model store: 200 MB model streamed in and out with its checksum verified") {
  temp_dir dir;
  auto store = open_store(dir);
  // Pieces of 777 KiB do not line up with the 1 MiB chunks.
  constexpr size_t piece_bytes = 777 * 1024;
  constexpr size_t total = 200u * 1000 * 1000;
  constexpr size_t pieces = (total + piece_bytes - 1) / piece_bytes;
  auto writer = store->begin_write("global-200mb");
  REQUIRE(writer);
  size_t written = 0;
  for (size_t i = 0; i < pieces; ++i) {
    auto n = std::min(piece_bytes, total - written);
    REQUIRE(!(*writer)->write(piece(i, n)));
    written += n;
  }
  auto info = (*writer)->commit();
  REQUIRE_MESSAGE(info, (info ? "" : render(info.error())));
  CHECK(info->size_bytes == total);
  // Read back chunk by chunk and compare with the regenerated pieces.
  auto reader = store->open_read("global-200mb");
  REQUIRE(reader);
  CHECK(reader->info().size_bytes == total);
  std::string expected;
  size_t next_piece = 0;
  size_t compared = 0;
  std::string chunk;
  bool equal = true;
  for (;;) {
    auto more = reader->next(chunk);
    REQUIRE_MESSAGE(more, (more ? "" : render(more.error())));
    if (!*more)
      break;
    CHECK(chunk.size() <= model_store::default_chunk_bytes);
    size_t pos = 0;
    while (pos < chunk.size()) {
      if (expected.empty()) {
        auto n = std::min(piece_bytes, total - next_piece * piece_bytes);
        expected = piece(next_piece++, n);
      }
      auto n = std::min(expected.size(), chunk.size() - pos);
      equal = equal && chunk.compare(pos, n, expected, 0, n) == 0;
      expected.erase(0, n);
      pos += n;
      compared += n;
    }
  }
  CHECK(equal);
  CHECK(compared == total);
}

TEST_CASE("model store: put get exists list remove and reopen") {
  temp_dir dir;
  auto small = random_bytes(3 * (1 << 20) + 5, 7);
  {
    auto store = open_store(dir);
    REQUIRE(store->put("m1", small));
    REQUIRE(store->put("m0", "tiny"));
    REQUIRE(store->put("empty", ""));
    CHECK(*store->exists("m1"));
    CHECK(!*store->exists("nope"));
    auto all = store->list();
    REQUIRE(all);
    REQUIRE(all->size() == 3);
    CHECK((*all)[0].model_id == "empty");
    CHECK((*all)[1].model_id == "m0");
    CHECK((*all)[2].model_id == "m1");
    CHECK((*all)[2].size_bytes == small.size());
  }
  // Everything committed survives closing and reopening the database.
  auto store = open_store(dir);
  auto got = store->get("m1");
  REQUIRE(got);
  CHECK(*got == small);
  CHECK(*store->get("m0") == "tiny");
  CHECK(*store->get("empty") == "");
  REQUIRE(!store->remove("m1"));
  CHECK(!*store->exists("m1"));
  auto gone = store->get("m1");
  REQUIRE(!gone);
  CHECK(render(gone.error()) == "rondo.not_found: model m1 does not exist");
  CHECK(render(store->remove("m1"))
        == "rondo.not_found: model m1 does not exist");
  // The id is free again and takes new content.
  REQUIRE(store->put("m1", "new"));
  CHECK(*store->get("m1") == "new");
}

TEST_CASE("model store: existing ids and bad ids are refused and data is kept") {
  temp_dir dir;
  auto store = open_store(dir);
  REQUIRE(store->put("m", "original"));
  auto again = store->put("m", "overwrite");
  REQUIRE(!again);
  CHECK(render(again.error()) == "rondo.already_exists: model m already "
                                 "exists");
  CHECK(*store->get("m") == "original");
  auto w1 = store->begin_write("busy");
  REQUIRE(w1);
  auto w2 = store->begin_write("busy");
  REQUIRE(!w2);
  CHECK(render(w2.error()) == "rondo.already_exists: model busy is being "
                              "written");
  auto p2 = store->put("busy", "racing");
  REQUIRE(!p2);
  CHECK(render(p2.error()) == "rondo.already_exists: model busy is being "
                              "written");
  CHECK(store->put("", "x").error() == ec::invalid_argument);
  auto empty = store->begin_write("");
  REQUIRE(!empty);
  CHECK(render(empty.error()) == "rondo.invalid_argument: model id is empty");
  auto ctrl = store->begin_write(std::string{"a\0b", 3});
  REQUIRE(!ctrl);
  CHECK(ctrl.error() == ec::invalid_argument);
  CHECK(!store->begin_write(std::string(300, 'x')));
}

TEST_CASE("model store: a model is invisible until committed and abort cleans up") {
  temp_dir dir;
  auto store = open_store(dir);
  auto writer = store->begin_write("pending");
  REQUIRE(writer);
  REQUIRE(!(*writer)->write(random_bytes(5 << 20)));
  CHECK(!*store->exists("pending"));
  CHECK(store->list()->empty());
  CHECK(store->get("pending").error() == ec::not_found);
  (*writer)->abort();
  CHECK(!*store->exists("pending"));
  // The id can be written again after the abort.
  REQUIRE(store->put("pending", "done"));
  CHECK(*store->get("pending") == "done");
  // A destroyed, uncommitted writer aborts as well.
  {
    auto w = store->begin_write("dropped");
    REQUIRE(w);
    REQUIRE(!(*w)->write("partial"));
  }
  CHECK(!*store->exists("dropped"));
  REQUIRE(store->put("dropped", "ok"));
}

TEST_CASE("model store: a write interrupted by a crash is cleaned on open") {
  temp_dir dir;
  // Start a write and die without committing or aborting.
  crash_after(dir, [](model_store& store) {
    auto w = store.begin_write("crashed");
    return w && !(*w)->write(random_bytes(3 << 20)) && (*w).release();
  });
  auto store = open_store(dir);
  CHECK(store->recovered_on_open() == 1);
  CHECK(!*store->exists("crashed"));
  REQUIRE(store->put("crashed", "complete"));
  CHECK(*store->get("crashed") == "complete");
}

TEST_CASE("model store: a large model committed just before a crash is "
          "kept whole") {
  // Past 16 MiB a model is a file of its own, written with O_DIRECT past
  // the WAL; commit must sync the file (and its name in its folder) before
  // the metadata makes it visible, or a crash right after commit would
  // lose it.
  temp_dir dir;
  constexpr size_t big = 100u << 20;
  crash_after(dir, [](model_store& store) {
    auto w = store.begin_write("big-committed");
    return w && !(*w)->write(random_bytes(big, 7)) && (*w)->commit();
  });
  auto store = open_store(dir);
  auto bytes = store->get("big-committed");
  REQUIRE_MESSAGE(bytes, (bytes ? "" : render(bytes.error())));
  CHECK(bytes->size() == big);
  CHECK(*bytes == random_bytes(big, 7));
}

TEST_CASE("model store: an unsynced model (a client upload) survives the "
          "process's crash whole") {
  // durability::unsynced writes a large model past the page cache without
  // fdatasync and its metadata to the WAL without sync: a process that dies
  // right after commit must still leave the whole model, small or large.
  temp_dir dir;
  constexpr size_t big = 40u << 20;
  crash_after(dir, [&](model_store& store) {
    for (auto [id, n, seed] : {std::tuple{"upload-big", big, 9},
                               std::tuple{"upload-small", size_t{3} << 20,
                                          10}}) {
      auto w = store.begin_write(id, durability::unsynced);
      if (!w || (*w)->write(random_bytes(n, seed)) || !(*w)->commit())
        return false;
    }
    return true;
  });
  auto store = open_store(dir);
  CHECK(store->recovered_on_open() == 0);
  CHECK(store->orphan_files_removed_on_open() == 0);
  auto bytes = store->get("upload-big");
  REQUIRE_MESSAGE(bytes, (bytes ? "" : render(bytes.error())));
  CHECK(*bytes == random_bytes(big, 9));
  CHECK(*store->get("upload-small") == random_bytes(size_t{3} << 20, 10));
}

TEST_CASE("model store: a large write aborted or interrupted leaves no file "
          "behind") {
  // 40 MiB: past the point where a model becomes a file of its own.
  constexpr size_t big = 40u << 20;
  temp_dir dir;
  auto uploads = std::filesystem::path{dir.sub("db")} / "model-files";
  auto files_left = [&] {
    size_t n = 0;
    for ([[maybe_unused]] auto& entry :
         std::filesystem::directory_iterator(uploads))
      ++n;
    return n;
  };
  {
    auto store = open_store(dir);
    auto writer = store->begin_write("aborted");
    REQUIRE(writer);
    REQUIRE(!(*writer)->write(random_bytes(big, 5)));
    CHECK(files_left() == 1);
    (*writer)->abort();
    CHECK(files_left() == 0);
    CHECK(!*store->exists("aborted"));
    // A committed large model is its one file, and reads back.
    REQUIRE(store->put("aborted", random_bytes(big, 6)));
    CHECK(files_left() == 1);
    CHECK(*store->get("aborted") == random_bytes(big, 6));
  }
  // No commit, no abort: as a crash.
  crash_after(dir, [](model_store& store) {
    auto w = store.begin_write("crashed-big");
    return w && !(*w)->write(random_bytes(big, 8)) && (*w).release();
  });
  // "aborted"'s file and the crashed write's.
  CHECK(files_left() == 2);
  auto store = open_store(dir);
  CHECK(store->recovered_on_open() == 1);
  CHECK(store->orphan_files_removed_on_open() == 1);
  CHECK(files_left() == 1);
  CHECK(!*store->exists("crashed-big"));
  CHECK(*store->get("aborted") == random_bytes(big, 6));
  REQUIRE(store->put("crashed-big", "small now"));
  CHECK(*store->get("crashed-big") == "small now");
}

TEST_CASE("model store: a flipped byte on disk is detected and named") {
  temp_dir dir;
  auto content = random_bytes(4 << 20, 99);
  // 16 bytes from the middle of the third chunk locate it on disk.
  auto needle = content.substr((2 << 20) + 12345, 16);
  {
    auto store = open_store(dir);
    REQUIRE(store->put("victim", content));
    REQUIRE(store->put("bystander", "intact"));
    REQUIRE(!store->db().flush());
  }
  size_t flipped = 0;
  for (auto& entry : std::filesystem::directory_iterator(dir.sub("db"))) {
    if (!entry.is_regular_file())
      continue;
    std::ifstream in{entry.path(), std::ios::binary};
    std::string bytes{std::istreambuf_iterator<char>{in}, {}};
    auto pos = bytes.find(needle);
    if (pos == std::string::npos)
      continue;
    bytes[pos + 3] = static_cast<char>(bytes[pos + 3] ^ 0x10);
    std::ofstream out{entry.path(), std::ios::binary | std::ios::trunc};
    out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
    ++flipped;
  }
  REQUIRE(flipped == 1);
  auto store = open_store(dir);
  auto got = store->get("victim");
  REQUIRE(!got);
  CHECK(got.error() == ec::corrupt);
  auto text = render(got.error());
  CHECK(text.find("model victim is corrupt") != std::string::npos);
  CHECK(text.find("chunk 2") != std::string::npos);
  // Other models are unaffected.
  CHECK(*store->get("bystander") == "intact");
}

TEST_CASE("model store: chunks read by index concatenate to the model") {
  temp_dir dir;
  auto store = open_store(dir);
  auto content = random_bytes(3 * (1 << 20) + 5, 3);
  REQUIRE(store->put("m", content));
  auto info = store->info("m");
  REQUIRE(info);
  CHECK(info->chunk_count == 4);
  CHECK(info->chunk_bytes == model_store::default_chunk_bytes);
  std::string joined;
  for (uint64_t i = 0; i < info->chunk_count; ++i) {
    auto chunk = store->read_chunk("m", i);
    REQUIRE(chunk);
    joined += *chunk;
  }
  CHECK(joined == content);
  auto past = store->read_chunk("m", 4);
  REQUIRE(!past);
  CHECK(render(past.error()) == "rondo.invalid_argument: model m has 4 "
                                "chunks, no chunk 4");
  CHECK(store->read_chunk("nope", 0).error() == ec::not_found);
  // put (one batch) and a streamed writer lay a model out alike.
  auto w = store->begin_write("streamed");
  REQUIRE(w);
  REQUIRE(!(*w)->write(content));
  auto streamed = (*w)->commit();
  REQUIRE(streamed);
  CHECK(streamed->checksum == info->checksum);
  CHECK(streamed->chunk_count == info->chunk_count);
  CHECK(streamed->size_bytes == info->size_bytes);
  for (uint64_t i = 0; i < info->chunk_count; ++i)
    CHECK(*store->read_chunk("streamed", i) == *store->read_chunk("m", i));
}

TEST_CASE("model store: remove_many deletes the listed models at once") {
  temp_dir dir;
  auto store = open_store(dir);
  for (auto id : {"u1", "u2", "u3", "keep"})
    REQUIRE(store->put(id, std::string{"bytes of "} + id));
  auto n = store->remove_many({"u1", "u2", "missing", "u3", ""});
  REQUIRE(n);
  CHECK(*n == 3);
  CHECK(!*store->exists("u1"));
  CHECK(!*store->exists("u3"));
  CHECK(*store->get("keep") == "bytes of keep");
}

namespace {

/// The files in the store's model-files/ folder.
std::vector<std::filesystem::path> model_files(const temp_dir& dir) {
  std::vector<std::filesystem::path> out;
  for (auto& entry : std::filesystem::directory_iterator(
         std::filesystem::path{dir.sub("db")} / "model-files"))
    out.push_back(entry.path());
  return out;
}

/// Overwrites `n` bytes of `path` at `offset` with `bytes`, or cuts the
/// file to `offset` bytes when `bytes` is empty.
void damage(const std::filesystem::path& path, uint64_t offset,
            const std::string& bytes) {
  if (bytes.empty()) {
    std::filesystem::resize_file(path, offset);
    return;
  }
  std::fstream f{path, std::ios::in | std::ios::out | std::ios::binary};
  f.seekp(static_cast<std::streamoff>(offset));
  f.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

} // namespace

TEST_CASE("model store: a model past 16 MiB is one file, read back in any "
          "order and removed with its model") {
  temp_dir dir;
  auto store = open_store(dir);
  // 17 MiB + 3 bytes in 1 MiB chunks: 18 chunks, the last of 3 bytes. The
  // first 16 MiB go to RocksDB, then move to the file.
  auto content = random_bytes((17u << 20) + 3, 21);
  auto w = store->begin_write("big");
  REQUIRE(w);
  for (size_t at = 0; at < content.size(); at += 1 << 20)
    REQUIRE(!(*w)->write(std::string_view{content}.substr(at, 1 << 20)));
  auto info = (*w)->commit();
  REQUIRE_MESSAGE(info, (info ? "" : render(info.error())));
  CHECK(info->chunk_count == 18);
  CHECK(info->size_bytes == content.size());
  REQUIRE(model_files(dir).size() == 1);
  CHECK(std::filesystem::file_size(model_files(dir)[0]) == content.size());
  CHECK(*store->get("big") == content);
  // Random access, backwards.
  for (uint64_t i = 18; i-- > 0;)
    CHECK(*store->read_chunk("big", i)
          == content.substr(i << 20, std::min<size_t>(1 << 20,
                                                      content.size()
                                                        - (i << 20))));
  // A reader opened before the removal reads the whole model; afterwards
  // the model and its file are gone.
  auto reader = store->open_read("big");
  REQUIRE(reader);
  REQUIRE(!store->remove("big"));
  CHECK(model_files(dir).empty());
  std::string joined, chunk;
  while (*reader->next(chunk))
    joined += chunk;
  CHECK(joined == content);
  CHECK(store->get("big").error() == ec::not_found);
  // remove_many removes the files of the models it deletes.
  REQUIRE(store->put("a", content));
  REQUIRE(store->put("b", content.substr(0, 5)));
  REQUIRE(model_files(dir).size() == 1);
  CHECK(*store->remove_many({"a", "b"}) == 2);
  CHECK(model_files(dir).empty());
}

TEST_CASE("model store: chunks that do not align with the disk's blocks "
          "read back from a model's file") {
  temp_dir dir;
  auto db = database::open(dir.sub("db"));
  REQUIRE(db);
  // 1,000,003-byte chunks: every chunk but the first starts mid-block.
  auto store = model_store::open(*db, 1000003);
  REQUIRE(store);
  auto content = random_bytes(20u << 20, 22);
  REQUIRE((*store)->put("odd", content));
  REQUIRE(model_files(dir).size() == 1);
  CHECK(*(*store)->get("odd") == content);
  CHECK(*(*store)->read_chunk("odd", 7) == content.substr(7 * 1000003,
                                                           1000003));
  auto last = (*store)->info("odd")->chunk_count - 1;
  CHECK(*(*store)->read_chunk("odd", last)
        == content.substr(last * 1000003));
}

TEST_CASE("model store: a damaged model file is named as corrupt, and other "
          "models stay readable") {
  temp_dir dir;
  auto content = random_bytes(20u << 20, 23);
  {
    auto store = open_store(dir);
    REQUIRE(store->put("victim", content));
    REQUIRE(store->put("bystander", "intact"));
  }
  REQUIRE(model_files(dir).size() == 1);
  auto file = model_files(dir)[0];
  SUBCASE("a flipped byte") {
    auto at = (5u << 20) + 4321;
    damage(file, at, std::string(1, static_cast<char>(content[at] ^ 0x10)));
    auto store = open_store(dir);
    auto got = store->get("victim");
    REQUIRE(!got);
    CHECK(render(got.error())
          == "rondo.corrupt: model victim is corrupt: chunk 5: checksum "
             "mismatch");
    CHECK(store->read_chunk("victim", 5).error() == ec::corrupt);
    CHECK(*store->read_chunk("victim", 4) == content.substr(4u << 20, 1 << 20));
    CHECK(*store->get("bystander") == "intact");
  }
  SUBCASE("a file cut short") {
    damage(file, (12u << 20) + 5, "");
    auto store = open_store(dir);
    auto got = store->get("victim");
    REQUIRE(!got);
    CHECK(got.error() == ec::corrupt);
    CHECK(render(got.error()).find("chunk 12 of") != std::string::npos);
    CHECK(render(got.error()).find("cut short") != std::string::npos);
    CHECK(render(got.error()).rfind("rondo.corrupt: model victim is corrupt: "
                                    "chunk 12 of ",
                                    0)
          == 0);
  }
  SUBCASE("a missing file") {
    std::filesystem::remove(file);
    auto store = open_store(dir);
    auto got = store->open_read("victim");
    REQUIRE(!got);
    CHECK(got.error() == ec::corrupt);
    CHECK(render(got.error()).find("model victim is corrupt: its file")
          != std::string::npos);
    CHECK(*store->get("bystander") == "intact");
  }
}

TEST_CASE("model store: a model file no metadata names is removed on open, "
          "the others are kept") {
  temp_dir dir;
  auto content = random_bytes(17u << 20, 24);
  {
    auto store = open_store(dir);
    REQUIRE(store->put("kept", content));
  }
  // As a crash between deleting a model's metadata and its file leaves it.
  auto stray = std::filesystem::path{dir.sub("db")} / "model-files"
               / "0123456789abcdef.model";
  std::ofstream{stray} << "left behind";
  REQUIRE(model_files(dir).size() == 2);
  auto store = open_store(dir);
  CHECK(store->orphan_files_removed_on_open() == 1);
  CHECK(store->recovered_on_open() == 0);
  CHECK(!std::filesystem::exists(stray));
  CHECK(*store->get("kept") == content);
}
