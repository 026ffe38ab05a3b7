// The model fetcher (actors/model_transfer.hpp): several chunk requests in
// flight, chunks written in order whatever order their replies come in,
// and a model whose checksum fails is not stored.

#include "actors/model_transfer.hpp"

#include "messages/error.hpp"
#include "storage/database.hpp"
#include "storage/model_store.hpp"
#include "tests/caf_fixture.hpp"
#include "tests/test_util.hpp"

#include <algorithm>
#include <memory>
#include <vector>

using namespace rondo;
using rondo::test::random_bytes;
using rondo::test::temp_dir;

namespace {

std::shared_ptr<storage::model_store> open_store(const temp_dir& dir,
                                                 const std::string& name,
                                                 uint32_t chunk_bytes) {
  auto db = storage::database::open(dir.sub(name));
  REQUIRE_MESSAGE(db, (db ? "" : render(db.error())));
  auto store = storage::model_store::open(*db, chunk_bytes);
  REQUIRE_MESSAGE(store, (store ? "" : render(store.error())));
  return *store;
}

/// A chunk source that holds every request until the test answers them,
/// so that the test sees how many are in flight and picks the order.
struct held_requests {
  std::shared_ptr<storage::model_store> store;
  std::vector<std::pair<uint64_t, caf::typed_response_promise<model_chunk>>>
    pending;
  /// The model being served.
  std::string model_id;
  /// Flips a byte of this chunk's bytes (none: -1).
  int64_t corrupt_index = -1;
};

/// The holding source's interface: a chunk source that also takes
/// (ok): answer every held request, newest first (a promise is delivered
/// from within its actor).
using holding_source_actor
  = chunk_source_actor::extend<caf::reacts_to<caf::ok_atom>>;

holding_source_actor::behavior_type
holding_source(holding_source_actor::pointer self,
               std::shared_ptr<held_requests> held) {
  return {
    [self, held](caf::get_atom, const std::string&, uint64_t index) {
      auto rp = self->make_response_promise<model_chunk>();
      held->pending.emplace_back(index, rp);
      return rp;
    },
    [held](caf::ok_atom) {
      auto batch = std::move(held->pending);
      held->pending.clear();
      std::reverse(batch.begin(), batch.end());
      for (auto& [index, rp] : batch) {
        auto c = read_model_chunk(*held->store, held->model_id, index);
        REQUIRE(c);
        if (static_cast<int64_t>(index) == held->corrupt_index)
          c->bytes[0] = static_cast<char>(c->bytes[0] ^ 0x5a);
        rp.deliver(std::move(*c));
      }
    },
  };
}

struct fetch_fixture : test::actor_fixture {
  temp_dir dir;
  std::shared_ptr<held_requests> held = std::make_shared<held_requests>();
  std::shared_ptr<storage::model_store> local;
  size_t max_in_flight = 0;

  fetch_fixture() {
    // 1 KiB chunks: an 11 KiB model is 11 chunks.
    held->store = open_store(dir, "source", 1024);
    local = open_store(dir, "local", 1024);
  }

  /// Fetches `id` from the holding source, answering the requests held at
  /// each step newest first; @returns the fetcher's answer.
  caf::expected<std::string> fetch(const std::string& id) {
    held->model_id = id;
    auto source = sys.spawn(holding_source, held);
    auto fetcher = sys.spawn(model_fetcher,
                             caf::actor_cast<chunk_source_actor>(source), id,
                             local, caf::timespan{std::chrono::seconds(30)});
    for (int step = 0; step < 1000; ++step) {
      sched.run();
      if (held->pending.empty())
        break;
      max_in_flight = std::max(max_in_flight, held->pending.size());
      self->send(source, caf::ok_atom::value);
    }
    caf::expected<std::string> out = caf::make_error(caf::sec::none);
    auto rh = self->request(fetcher, caf::infinite, caf::get_atom::value);
    sched.run();
    rh.receive([&](std::string& got) { out = std::move(got); },
               [&](caf::error& err) { out = std::move(err); });
    return out;
  }
};

} // namespace

TEST_CASE_FIXTURE(fetch_fixture,
                  "model fetcher: keeps fetch_window chunk requests in "
                  "flight and writes the chunks in order") {
  auto bytes = random_bytes(11 * 1024 + 300);
  REQUIRE(held->store->put("m", bytes));
  auto got = fetch("m");
  REQUIRE_MESSAGE(got, (got ? "" : render(got.error())));
  CHECK(*got == "m");
  // Chunk 0 alone first (its reply gives the count), then a full window.
  CHECK(max_in_flight == fetch_window);
  auto stored = local->get("m");
  REQUIRE(stored);
  CHECK(*stored == bytes); // replies newest first, written in order
}

TEST_CASE_FIXTURE(fetch_fixture,
                  "model fetcher: a chunk altered in transit fails the "
                  "checksum and nothing is stored") {
  auto bytes = random_bytes(11 * 1024 + 300, 7);
  REQUIRE(held->store->put("m", bytes));
  held->corrupt_index = 6;
  auto got = fetch("m");
  REQUIRE_FALSE(got);
  CHECK(got.error() == ec::corrupt);
  CHECK(render(got.error()).find("fails its checksum") != std::string::npos);
  auto have = local->exists("m");
  REQUIRE(have);
  CHECK_FALSE(*have);
}

TEST_CASE_FIXTURE(fetch_fixture,
                  "model fetcher: an empty model and a one-chunk model") {
  REQUIRE(held->store->put("empty", ""));
  REQUIRE(held->store->put("small", "abc"));
  auto e = fetch("empty");
  REQUIRE_MESSAGE(e, (e ? "" : render(e.error())));
  CHECK(local->get("empty").value() == "");
  auto s = fetch("small");
  REQUIRE_MESSAGE(s, (s ? "" : render(s.error())));
  CHECK(local->get("small").value() == "abc");
  CHECK(max_in_flight == 1);
}
