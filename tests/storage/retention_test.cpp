// Retention: deleted models give their disk back; the controller's trail
// is pruned to the newest N plus the protected models; a combiner's models
// and records stay bounded.

#include "storage/trail.hpp"

#include "messages/error.hpp"
#include "messages/records.hpp"
#include "storage/model_store.hpp"
#include "storage/state_store.hpp"
#include "tests/test_util.hpp"

#include <doctest/doctest.h>

#include <algorithm>
#include <filesystem>

using namespace rondo;
using namespace rondo::storage;
using rondo::test::random_bytes;
using rondo::test::temp_dir;

namespace {

struct stores {
  std::shared_ptr<database> db;
  std::shared_ptr<model_store> models;
  std::shared_ptr<state_store> state;
};

stores open_stores(const temp_dir& dir) {
  auto db = database::open(dir.sub("db"));
  REQUIRE_MESSAGE(db, (db ? "" : render(db.error())));
  auto models = model_store::open(*db);
  REQUIRE_MESSAGE(models, (models ? "" : render(models.error())));
  auto state = state_store::open(*db);
  REQUIRE_MESSAGE(state, (state ? "" : render(state.error())));
  return {*db, *models, *state};
}

/// Bytes of every file under `path` whose name ends in `suffix` (all
/// files for "").
uint64_t disk_bytes(const std::string& path, const std::string& suffix = "") {
  uint64_t total = 0;
  for (auto& e : std::filesystem::recursive_directory_iterator{path}) {
    auto name = e.path().filename().string();
    if (e.is_regular_file() && name.size() >= suffix.size()
        && name.compare(name.size() - suffix.size(), suffix.size(), suffix)
             == 0)
      total += e.file_size();
  }
  return total;
}

constexpr uint64_t mib = 1 << 20;

} // namespace

TEST_CASE("retention.compaction_gives_disk_back") {
  // A combiner's pattern: each round stages a 4 MB global model and writes
  // a 4 MB aggregate; after the commit the older ones are deleted.
  temp_dir dir;
  auto s = open_stores(dir);
  auto db_path = dir.sub("db");
  std::vector<std::string> live;
  uint64_t peak = 0;
  for (int round = 0; round < 40; ++round) {
    for (auto kind : {"global-", "aggregate-"}) {
      auto id = kind + std::to_string(round);
      auto bytes = random_bytes(4'000'000, round * 2 + (kind[0] == 'g'));
      REQUIRE(s.models->put(id, bytes));
      live.push_back(id);
    }
    // Keep this round's two models.
    std::vector<std::string> doomed(live.begin(), live.end() - 2);
    live.erase(live.begin(), live.end() - 2);
    auto n = s.models->remove_many(doomed);
    REQUIRE(n);
    CHECK(*n == doomed.size());
    peak = std::max(peak, disk_bytes(db_path));
  }
  REQUIRE(s.models->last_compaction_error() == caf::none);
  CHECK(s.models->compactions() == 39);
  auto after = disk_bytes(db_path);
  MESSAGE("80 models of 4 MB written, 78 deleted: database peak "
          << peak / mib << " MiB, after " << after / mib << " MiB (sst "
          << disk_bytes(db_path, ".sst") / mib << " MiB, log "
          << disk_bytes(db_path, ".log") / mib << " MiB)");
  // Two live models are 8 MB. Measured: peak 23 MiB, after 8 MiB; without
  // the compaction and the log bound, peak 351 MiB, after 343 MiB (log
  // 305 MiB, sst 38 MiB); the compaction alone leaves the log, the bound
  // alone 38 MiB of sst.
  CHECK(after < 16 * mib);
  CHECK(peak < 40 * mib);
  // The kept models read back whole.
  for (auto& id : live)
    CHECK(s.models->get(id));
}

namespace {

model_record trail_entry(const std::string& id, double at,
                         const std::string& parent = {}) {
  model_record m;
  m.model_id = id;
  m.parent_id = parent;
  m.committed_at = at;
  return m;
}

// A trail of `n` models m0 (oldest) .. m<n-1>, bytes in the store.
void make_trail(stores& s, int n) {
  for (int i = 0; i < n; ++i) {
    auto id = "m" + std::to_string(i);
    REQUIRE(s.models->put(id, random_bytes(1000, i)));
    REQUIRE(s.state->put(trail_entry(id, 1000 + i,
                                     i ? "m" + std::to_string(i - 1) : ""))
            == caf::none);
  }
}

} // namespace

TEST_CASE("retention.prune_keeps_newest_and_protected") {
  temp_dir dir;
  auto s = open_stores(dir);
  make_trail(s, 10);
  // m2: a finished session's current global model; m1: a pending session's
  // seed; m0: a finished session's seed (not protected); m4: the model a
  // running round started from (the caller's).
  session_record done;
  done.session_id = "s-done";
  done.status = session_status::finished;
  done.seed_model_id = "m0";
  done.global_model_id = "m2";
  REQUIRE(s.state->put(done) == caf::none);
  session_record pending;
  pending.session_id = "s-pending";
  pending.status = session_status::pending;
  pending.seed_model_id = "m1";
  REQUIRE(s.state->put(pending) == caf::none);
  auto removed = prune_trail(*s.state, *s.models, 3, {"m4"});
  REQUIRE_MESSAGE(removed, (removed ? "" : render(removed.error())));
  CHECK(*removed == std::vector<std::string>{"m0", "m3", "m5", "m6"});
  for (auto id : {"m1", "m2", "m4", "m7", "m8", "m9"})
    CHECK_MESSAGE(s.models->get(id), id);
  for (auto id : {"m0", "m3", "m5", "m6"}) {
    auto gone = s.models->get(id);
    REQUIRE_FALSE(gone);
    CHECK(gone.error() == ec::not_found);
  }
  // The trail records stay.
  auto trail = s.state->list<model_record>();
  REQUIRE(trail);
  CHECK(trail->size() == 10);
  // Pruning again removes nothing more.
  auto again = prune_trail(*s.state, *s.models, 3, {"m4"});
  REQUIRE(again);
  CHECK(again->empty());
}

TEST_CASE("retention.prune_refuses_keep_zero") {
  temp_dir dir;
  auto s = open_stores(dir);
  make_trail(s, 3);
  auto removed = prune_trail(*s.state, *s.models, 0, {});
  REQUIRE_FALSE(removed);
  CHECK(removed.error() == ec::invalid_argument);
  CHECK(render(removed.error()).find("keep must be at least 1")
        != std::string::npos);
  for (auto id : {"m0", "m1", "m2"})
    CHECK(s.models->get(id));
}

TEST_CASE("retention.combiner_models_bounded") {
  temp_dir dir;
  auto s = open_stores(dir);
  // A queued job starts from "g-queued"; the controller committed "g-new".
  job_record queued;
  queued.job_id = "j-queued";
  queued.seq = 7;
  queued.config.model_id = "g-queued";
  REQUIRE(s.state->put(queued) == caf::none);
  job_record done;
  done.job_id = "j-done";
  done.seq = 6;
  done.status = job_status::success;
  done.config.model_id = "g-old";
  REQUIRE(s.state->put(done) == caf::none);
  for (auto id : {"g-old", "agg-1", "g-queued", "g-new", "agg-2"})
    REQUIRE(s.models->put(id, random_bytes(1000)));
  auto removed = drop_combiner_models(*s.state, *s.models, {"g-new"}, false);
  REQUIRE(removed);
  CHECK(*removed == std::vector<std::string>{"agg-1", "agg-2", "g-old"});
  auto left = s.models->list();
  REQUIRE(left);
  REQUIRE(left->size() == 2);
  CHECK((*left)[0].model_id == "g-new");
  CHECK((*left)[1].model_id == "g-queued");
}

TEST_CASE("retention.standalone_combiner_keeps_newest") {
  temp_dir dir;
  auto s = open_stores(dir);
  combiner_retention cfg;
  cfg.standalone_models = 2;
  for (int i = 0; i < 6; ++i) {
    REQUIRE(s.models->put("agg-" + std::to_string(i), random_bytes(100, i)));
    auto removed = drop_combiner_models(*s.state, *s.models, {}, true, cfg);
    REQUIRE(removed);
  }
  auto left = s.models->list();
  REQUIRE(left);
  REQUIRE(left->size() == 2);
  // committed_at has a clock's resolution: the newest two by time are the
  // last two written.
  CHECK((*left)[0].model_id == "agg-4");
  CHECK((*left)[1].model_id == "agg-5");
}

TEST_CASE("retention.combiner_records_bounded") {
  temp_dir dir;
  auto s = open_stores(dir);
  combiner_retention cfg;
  cfg.max_finished_jobs = 10;
  for (uint64_t i = 0; i < 50; ++i) {
    auto rid = "r" + std::to_string(i);
    job_record j;
    j.job_id = "j" + std::to_string(i);
    j.seq = i;
    j.status = i == 49 ? job_status::running : job_status::success;
    j.config.round_id = rid;
    round_record r;
    r.round_id = rid;
    validation_record v;
    v.validation_id = "v" + std::to_string(i);
    v.round_id = rid;
    metric_record m;
    m.metric_id = "x" + std::to_string(i);
    m.round_id = rid;
    state_batch b;
    b.put(j);
    b.put(r);
    b.put(v);
    b.put(m);
    REQUIRE(s.state->commit(b) == caf::none);
    auto trimmed = trim_combiner_records(*s.state, cfg);
    REQUIRE(trimmed);
  }
  auto jobs = s.state->list<job_record>();
  auto rounds = s.state->list<round_record>();
  auto vals = s.state->list<validation_record>();
  auto metrics = s.state->list<metric_record>();
  REQUIRE((jobs && rounds && vals && metrics));
  // At most max + a tenth finished, plus the running one.
  CHECK(jobs->size() <= 12);
  CHECK(jobs->size() >= 11);
  CHECK(rounds->size() == jobs->size());
  CHECK(vals->size() == jobs->size());
  CHECK(metrics->size() == jobs->size());
  // The newest survive, the running one among them.
  CHECK(s.state->get<job_record>("j49"));
  CHECK(s.state->get<round_record>("r48"));
  CHECK_FALSE(s.state->get<job_record>("j0"));
}
