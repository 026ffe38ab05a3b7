#include "storage/update_cache.hpp"

#include "messages/error.hpp"
#include "model/npz.hpp"
#include "storage/model_store.hpp"
#include "tests/test_util.hpp"

#include <doctest/doctest.h>

#include <filesystem>

using namespace rondo;
using namespace rondo::storage;
using rondo::test::temp_dir;

namespace {

struct fixture {
  temp_dir dir;
  std::shared_ptr<model_store> store;
  std::shared_ptr<update_cache> cache;

  explicit fixture(uint64_t memory = uint64_t{64} << 20, double ttl = 3600) {
    auto db = database::open(dir.sub("db"));
    REQUIRE_MESSAGE(db, (db ? "" : render(db.error())));
    auto s = model_store::open(*db);
    REQUIRE(s);
    store = *s;
    update_cache_options opts;
    opts.memory_bytes = memory;
    opts.spill_dir = dir.sub("spill");
    opts.ttl_seconds = ttl;
    auto c = update_cache::make(opts);
    REQUIRE_MESSAGE(c, (c ? "" : render(c.error())));
    cache = *c;
    store->attach_update_cache(cache);
  }

  /// Uploads `m` into the cache as the edge does: reserve, decode, complete.
  void upload(const std::string& id, const model& m) {
    REQUIRE(!cache->reserve(id));
    auto bytes = write_npz_bytes(m, npz_options{});
    REQUIRE(bytes);
    npz_stream_decoder dec{cache->decoder_options()};
    REQUIRE(!dec.feed(*bytes));
    cache->complete(id, dec.finish());
  }

  size_t spill_files() {
    size_t n = 0;
    for ([[maybe_unused]] auto& f :
         std::filesystem::directory_iterator{dir.sub("spill")})
      ++n;
    return n;
  }
};

model make_model(double value, size_t n = 1000) {
  auto t = make_tensor("0", dtype::f32, {n}, std::vector<double>(n, value));
  REQUIRE(t);
  model m;
  m.push_back(std::move(*t));
  return m;
}

} // namespace

TEST_CASE("update_cache: an upload is held from reserve to remove") {
  fixture f;
  f.upload("u1", make_model(2.0));
  CHECK(f.cache->size() == 1);
  CHECK(f.cache->memory_used() == 4000);
  auto d = f.cache->find("u1");
  REQUIRE(d);
  CHECK((*d)->data_bytes() == 4000);
  // Held ids are taken: a second upload or store write is refused.
  CHECK(f.cache->reserve("u1") == ec::already_exists);
  CHECK(f.store->exists("u1") == true);
  CHECK(f.cache->remove("u1"));
  d = {caf::error{}};
  CHECK(f.cache->memory_used() == 0);
  CHECK(f.cache->find("u1").error() == ec::not_found);
  CHECK_FALSE(f.cache->remove("u1"));
}

TEST_CASE("update_cache: an upload in progress is neither found nor "
          "removed; release drops it") {
  fixture f;
  REQUIRE(!f.cache->reserve("u1"));
  CHECK(f.cache->reserve("u1") == ec::already_exists);
  CHECK(f.cache->find("u1").error() == ec::invalid_state);
  CHECK_FALSE(f.cache->remove("u1"));
  f.cache->release("u1");
  CHECK_FALSE(f.cache->contains("u1"));
  CHECK(!f.cache->reserve("u1"));
}

TEST_CASE("update_cache: a decode error is kept and given back by find") {
  fixture f;
  REQUIRE(!f.cache->reserve("bad"));
  npz_stream_decoder dec{f.cache->decoder_options()};
  auto err = dec.feed("PK\x03\x04 this is not a zip archive at all");
  caf::expected<std::shared_ptr<decoded_update>> result{caf::error{}};
  if (err)
    result = std::move(err);
  else
    result = dec.finish();
  REQUIRE_FALSE(result);
  f.cache->complete("bad", std::move(result));
  auto found = f.cache->find("bad");
  REQUIRE_FALSE(found);
  CHECK(found.error() == ec::malformed_model);
  CHECK(f.cache->memory_used() == 0);
  // The upload happened: the round rejects it with the reason.
  CHECK(f.store->exists("bad") == true);
  // The store cannot serve it either, and says it does not exist.
  CHECK(f.store->open_read("bad").error() == ec::not_found);
}

TEST_CASE("update_cache: a reader of the store gets a held update written "
          "into the store as a STORED npz") {
  fixture f;
  f.upload("seed", make_model(1.5));
  auto bytes = f.store->get("seed");
  REQUIRE_MESSAGE(bytes, (bytes ? "" : render(bytes.error())));
  auto m = read_npz_bytes(*bytes);
  REQUIRE(m);
  REQUIRE(m->size() == 1);
  CHECK((*m)[0].name == "0");
  CHECK((*m)[0].at(999) == 1.5);
  // Now in the store, no longer in the cache; its memory is free.
  CHECK(f.cache->size() == 0);
  CHECK(f.cache->memory_used() == 0);
  CHECK(f.store->info("seed"));
}

TEST_CASE("update_cache: remove_many drops held updates and stored models") {
  fixture f;
  f.upload("a", make_model(1));
  f.upload("b", make_model(2));
  auto stored = write_npz_bytes(make_model(3));
  REQUIRE(stored);
  REQUIRE(f.store->put("c", *stored));
  auto n = f.store->remove_many({"a", "b", "c", "missing"});
  REQUIRE(n);
  CHECK(*n == 3);
  CHECK(f.cache->size() == 0);
  CHECK(f.store->exists("c") == false);
  CHECK(f.store->remove("a") == ec::not_found);
}

TEST_CASE("update_cache: past the memory budget updates spill to files, "
          "removed with them") {
  fixture f{6000};
  f.upload("a", make_model(1)); // 4000 bytes: in memory
  f.upload("b", make_model(2)); // would pass 6000: spilled
  auto a = f.cache->find("a");
  auto b = f.cache->find("b");
  REQUIRE(a);
  REQUIRE(b);
  CHECK((*a)->in_memory());
  CHECK_FALSE((*b)->in_memory());
  CHECK(f.spill_files() == 1);
  auto m = (*b)->to_model();
  REQUIRE(m);
  CHECK((*m)[0].at(0) == 2.0);
  a = b = {caf::error{}};
  f.cache->remove("a");
  f.cache->remove("b");
  CHECK(f.cache->memory_used() == 0);
  CHECK(f.spill_files() == 0);
}

TEST_CASE("update_cache: completed updates older than the ttl expire when "
          "the next upload completes") {
  fixture f{uint64_t{64} << 20, 1e-12};
  f.upload("old", make_model(1));
  f.upload("new", make_model(2));
  CHECK_FALSE(f.cache->contains("old"));
  CHECK(f.cache->contains("new"));
}

TEST_CASE("update_cache: a bad ttl or folder is refused, naming it") {
  temp_dir dir;
  update_cache_options opts;
  opts.spill_dir = dir.sub("spill");
  opts.ttl_seconds = 0;
  auto c = update_cache::make(opts);
  REQUIRE_FALSE(c);
  CHECK(c.error() == ec::invalid_config);
  CHECK(render(c.error()).find("ttl") != std::string::npos);
}

TEST_CASE("read_decoded: a stored model decodes chunk by chunk to the "
          "values npz_reader reads") {
  temp_dir dir;
  auto db = database::open(dir.sub("db"));
  REQUIRE(db);
  // Small chunks: the archive arrives in many pieces.
  auto store = model_store::open(*db, 4096);
  REQUIRE(store);
  for (auto compression : {npz_compression::stored, npz_compression::deflate}) {
    npz_options o;
    o.compression = compression;
    auto m = make_model(0.25, 50000);
    auto bytes = write_npz_bytes(m, o);
    REQUIRE(bytes);
    auto id = compression == npz_compression::stored ? "s" : "d";
    REQUIRE((*store)->put(id, *bytes));
    auto d = read_decoded(**store, id);
    REQUIRE_MESSAGE(d, (d ? "" : render(d.error())));
    auto back = (*d)->to_model();
    REQUIRE(back);
    auto direct = read_npz_bytes(*bytes);
    REQUIRE(direct);
    REQUIRE(back->size() == 1);
    CHECK((*back)[0].nbytes() == (*direct)[0].nbytes());
    CHECK(std::memcmp((*back)[0].data.data(), (*direct)[0].data.data(),
                      (*direct)[0].nbytes())
          == 0);
  }
  CHECK(read_decoded(**store, "nope").error() == ec::not_found);
}
