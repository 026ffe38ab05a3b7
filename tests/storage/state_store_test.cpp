#include "storage/state_store.hpp"

#include "messages/error.hpp"
#include "tests/test_util.hpp"

#include <doctest/doctest.h>

using namespace rondo;
using namespace rondo::storage;
using rondo::test::temp_dir;

namespace {

std::shared_ptr<state_store> open_state(const temp_dir& dir) {
  auto db = database::open(dir.sub("db"));
  REQUIRE_MESSAGE(db, (db ? "" : render(db.error())));
  auto store = state_store::open(*db);
  REQUIRE(store);
  return *store;
}

job_record job(const std::string& id, uint64_t seq) {
  job_record j;
  j.job_id = id;
  j.seq = seq;
  j.config.round_id = id;
  j.config.round_timeout = 30;
  j.enqueued_at = 100.0 + seq;
  return j;
}

} // namespace

TEST_CASE("state store: every record kind survives close and reopen") {
  temp_dir dir;
  round_record round;
  round.round_id = "r1";
  round.status = round_status::failed;
  round.reason = "too few clients: 0 active trainers, 2 required";
  round.clients_rejected = {{"c3", "stale"}};
  session_record session{"s1", "{}", session_status::running, "", "seed",
                         {"r1"}, 5.0, 0, "named"};
  model_record model{"m2", "m1", "s1", "r1", 7.0};
  validation_record validation{"v1", "m2", "c1", "corr", "s1", "r1",
                               R"({"test_accuracy":0.9})", 8.0};
  client_record client{"c1", "alice", true, true, "online", 9.0};
  metric_record metric{"x1", "c1", "m2", "r1", "s1", 2, {{"loss", 0.25}},
                       10.0};
  {
    auto st = open_state(dir);
    REQUIRE(!st->put(job("j1", 1)));
    REQUIRE(!st->put(round));
    REQUIRE(!st->put(session));
    REQUIRE(!st->put(model));
    REQUIRE(!st->put(validation));
    REQUIRE(!st->put(client));
    REQUIRE(!st->put(metric));
  }
  auto st = open_state(dir);
  CHECK(*st->get<job_record>("j1") == job("j1", 1));
  CHECK(*st->get<round_record>("r1") == round);
  CHECK(*st->get<session_record>("s1") == session);
  CHECK(*st->get<model_record>("m2") == model);
  CHECK(*st->get<validation_record>("v1") == validation);
  CHECK(*st->get<client_record>("c1") == client);
  CHECK(*st->get<metric_record>("x1") == metric);
}

TEST_CASE("state store: kinds are separate with list replace and erase") {
  temp_dir dir;
  auto st = open_state(dir);
  REQUIRE(!st->put(job("b", 2)));
  REQUIRE(!st->put(job("a", 1)));
  model_record m{"a", "", "s", "", 1.0};
  REQUIRE(!st->put(m));
  auto jobs = st->list<job_record>();
  REQUIRE(jobs);
  REQUIRE(jobs->size() == 2);
  CHECK((*jobs)[0].job_id == "a");
  CHECK((*jobs)[1].job_id == "b");
  CHECK(st->list<model_record>()->size() == 1);
  auto replaced = job("a", 1);
  replaced.status = job_status::running;
  REQUIRE(!st->put(replaced));
  CHECK(st->get<job_record>("a")->status == job_status::running);
  REQUIRE(!st->erase<job_record>("a"));
  auto missing = st->get<job_record>("a");
  REQUIRE(!missing);
  CHECK(render(missing.error()) == "rondo.not_found: jobs has no record a");
  // Erasing the job left the model trail entry with the same id alone.
  CHECK(st->get<model_record>("a")->model_id == "a");
  CHECK(!st->erase<job_record>("never-existed"));
}

TEST_CASE("state store: a batch commits records of several kinds at once") {
  temp_dir dir;
  {
    auto st = open_state(dir);
    REQUIRE(!st->put(job("j", 1)));
    state_batch batch;
    round_record r;
    r.round_id = "r";
    r.status = round_status::success;
    r.model_id = "m-new";
    batch.put(r);
    batch.put(model_record{"m-new", "m-old", "s", "r", 3.0});
    batch.erase<job_record>("j");
    REQUIRE(!st->commit(batch));
    CHECK(batch.empty());
  }
  auto st = open_state(dir);
  CHECK(st->get<round_record>("r")->model_id == "m-new");
  CHECK(st->get<model_record>("m-new")->parent_id == "m-old");
  CHECK(st->list<job_record>()->empty());
  // A record with an empty id is refused and nothing of the batch lands.
  state_batch bad;
  bad.put(model_record{"m-x", "", "", "", 0});
  bad.put(job_record{});
  auto err = st->commit(bad);
  CHECK(render(err) == "rondo.invalid_argument: state record with an empty "
                       "id");
  CHECK(st->get<model_record>("m-x").error() == ec::not_found);
}
