// The controller with two real combiners in one actor system on the
// deterministic scheduler: sessions, the reduction across combiners, lost
// combiners, termination.

#include "actors/controller.hpp"
#include "messages/ids.hpp"
#include "actors/model_transfer.hpp"
#include "messages/records_codec.hpp"
#include "tests/actors/combiner_fixture.hpp"

#include <doctest/doctest.h>

using namespace std::chrono_literals;
using namespace rondo;

namespace {

/// One combiner of the test cluster with its own stores and mock clients.
struct member {
  std::string id;
  rondo::test::temp_dir dir;
  std::shared_ptr<storage::model_store> models;
  std::shared_ptr<storage::state_store> state;
  combiner_actor handle;
  std::map<std::string, std::shared_ptr<rondo::test::sink_log>> sinks;
};

struct cluster_fixture : rondo::test::combiner_fixture {
  controller_actor controller;
  std::vector<std::unique_ptr<member>> members;

  cluster_fixture() {
    controller_config ccfg;
    ccfg.client_wait = 10s;
    controller = sys.spawn(controller_impl, ccfg, models, state);
    sched.run();
  }

  ~cluster_fixture() override {
    for (auto& m : members)
      if (m->handle)
        self->send_exit(m->handle, caf::exit_reason::user_shutdown);
    self->send_exit(controller, caf::exit_reason::user_shutdown);
    sched.run();
  }

  member& add_combiner(const std::string& id) {
    auto m = std::make_unique<member>();
    m->id = id;
    auto db = storage::database::open(m->dir.sub("db"));
    REQUIRE(db);
    m->models = *storage::model_store::open(*db);
    m->state = *storage::state_store::open(*db);
    combiner_config cc;
    cc.combiner_id = id;
    // Fetches from the fixture's current controller, as a combiner's
    // controller link does from the controller it joined last.
    auto current = sys.spawn(
      [this](chunk_source_actor::pointer fw)
        -> chunk_source_actor::behavior_type {
        return {
          [this, fw](caf::get_atom get, const std::string& id, uint64_t i) {
            return fw->delegate(caf::actor_cast<chunk_source_actor>(
                                  controller),
                                get, id, i);
          },
        };
      });
    auto source = sys.spawn(chunked_model_source, current, m->models,
                            caf::timespan{30s});
    m->handle = sys.spawn(combiner_impl, cc, m->models, m->state, source);
    sched.run();
    auto rh = self->request(controller, caf::infinite, caf::join_atom::value,
                            combiner_info{id, "127.0.0.1", "", "", 0, false},
                            m->handle, std::vector<round_record>{});
    sched.run();
    rh.receive([](caf::ok_atom) {},
               [&](caf::error& err) { FAIL_CHECK(render(err)); });
    members.push_back(std::move(m));
    return *members.back();
  }

  void connect_to(member& m, const std::string& client_id) {
    // Reuse the single-combiner fixture's connect() against this combiner.
    auto saved = combiner;
    combiner = m.handle;
    connect(client_id);
    m.sinks[client_id] = sinks[client_id];
    combiner = saved;
  }

  update_verdict answer_at(member& m, const std::string& client_id,
                           const std::vector<double>& values, double n) {
    auto task = last_task(client_id);
    auto update_id = "update-" + task.correlation_id;
    REQUIRE(m.models->put(update_id, npz(values)));
    auto rh = self->request(m.handle, caf::infinite,
                            model_update{client_id, task.correlation_id,
                                         task.model_id, update_id, n, "{}"});
    sched.run();
    update_verdict v;
    rh.receive([&](update_verdict& x) { v = x; },
               [&](caf::error& err) { FAIL_CHECK(render(err)); });
    return v;
  }

  std::string seed_global(const std::vector<double>& values) {
    auto bytes = std::make_shared<const std::string>(npz(values));
    auto rh = self->request(controller, caf::infinite, caf::put_atom::value,
                            model_blob{"seed", bytes});
    sched.run();
    std::string id;
    rh.receive([&](model_record& r) { id = r.model_id; },
               [&](caf::error& err) { FAIL_CHECK(render(err)); });
    return id;
  }

  std::string start(session_config cfg) {
    auto rh = self->request(controller, caf::infinite, cfg);
    sched.run();
    std::string id;
    rh.receive([&](std::string& x) { id = x; },
               [&](caf::error& err) { FAIL_CHECK(render(err)); });
    return id;
  }

  session_report status(const std::string& id) {
    auto rh = self->request(controller, caf::infinite, caf::get_atom::value,
                            session_atom::value, id);
    sched.run();
    session_report rep;
    rh.receive([&](session_report& x) { rep = x; },
               [&](caf::error& err) { FAIL_CHECK(render(err)); });
    return rep;
  }
};

/// A valid, empty ZIP archive: only its end-of-central-directory record.
std::string npz_of_no_tensors() {
  std::string eocd = "PK\x05\x06";
  eocd.resize(22, '\0');
  return eocd;
}

session_config one_round() {
  session_config c;
  c.rounds = 1;
  c.round_timeout = 60;
  c.validate = false;
  return c;
}

} // namespace

TEST_CASE_FIXTURE(cluster_fixture,
                  "controller: reduced model equals flat FedAvg over every "
                  "client") {
  auto& a = add_combiner("A");
  auto& b = add_combiner("B");
  connect_to(a, "a1");
  for (int i = 1; i <= 9; ++i)
    connect_to(b, "b" + std::to_string(i));
  seed_global({0});
  auto cfg = one_round();
  cfg.clients_requested = 20; // every client of B takes part
  auto sid = start(cfg);
  // Each combiner staged the global model from the controller.
  REQUIRE(a.sinks["a1"]->tasks.size() == 1);
  CHECK(answer_at(a, "a1", {1}, 10).accepted);
  for (int i = 1; i <= 9; ++i)
    CHECK(answer_at(b, "b" + std::to_string(i), {2}, 10).accepted);
  auto rep = status(sid);
  CHECK(rep.session.status == session_status::finished);
  REQUIRE(rep.rounds.size() == 1);
  auto& r = rep.rounds[0];
  CHECK(r.status == round_status::success);
  REQUIRE(r.combiners.size() == 2);
  CHECK(r.combiners[0].num_examples == 10);
  CHECK(r.combiners[1].num_examples == 90);
  CHECK(r.num_examples == 100);
  CHECK(r.clients_accepted.size() == 10);
  // Weights 10:90 -> (10*1 + 90*2) / 100 = 1.9.
  auto global = load(r.model_id);
  REQUIRE(global.size() == 1);
  CHECK(global[0] == doctest::Approx(1.9).epsilon(1e-6));
  // The trail links the new model to the seed.
  auto trail = state->get<model_record>(r.model_id);
  REQUIRE(trail);
  CHECK(trail->parent_id == "seed");
  CHECK(trail->session_id == sid);
}

TEST_CASE_FIXTURE(cluster_fixture,
                  "controller: a lost combiner fails its part and the round "
                  "ends with the other") {
  auto& a = add_combiner("A");
  auto& b = add_combiner("B");
  connect_to(a, "a1");
  connect_to(b, "b1");
  seed_global({0});
  auto sid = start(one_round());
  REQUIRE(b.sinks["b1"]->tasks.size() == 1);
  self->send_exit(b.handle, caf::exit_reason::kill);
  sched.run();
  CHECK(answer_at(a, "a1", {4}, 3).accepted);
  auto rep = status(sid);
  REQUIRE(rep.rounds.size() == 1);
  auto& r = rep.rounds[0];
  CHECK(r.status == round_status::success);
  CHECK(load(r.model_id) == std::vector<double>{4});
  REQUIRE(r.combiners.size() == 2);
  CHECK(r.combiners[1].combiner_id == "B");
  CHECK(r.combiners[1].status == round_status::failed);
  CHECK(r.combiners[1].reason
        == "combiner B lost (1 client(s) had its tasks: b1)");
  // b1 had B's task: the round lists it as selected and silent.
  CHECK(std::count(r.clients_selected.begin(), r.clients_selected.end(),
                   "b1")
        == 1);
  CHECK(std::count(r.clients_silent.begin(), r.clients_silent.end(), "b1")
        == 1);
}

TEST_CASE_FIXTURE(cluster_fixture,
                  "controller: a round with no successful combiner fails "
                  "with each reason") {
  auto& a = add_combiner("A");
  connect_to(a, "a1");
  seed_global({0});
  auto cfg = one_round();
  cfg.rounds = 2;
  cfg.round_timeout = 5;
  cfg.stop_on_failure = true;
  auto sid = start(cfg);
  advance_time(5s);
  sched.run();
  auto rep = status(sid);
  CHECK(rep.session.status == session_status::failed);
  REQUIRE(rep.rounds.size() == 1);
  CHECK(rep.rounds[0].status == round_status::failed);
  CHECK(rep.rounds[0].reason.rfind("no combiner succeeded: A: no model "
                                   "update was accepted",
                                   0)
        == 0);
  // The client that sent nothing is listed as silent, as on its combiner.
  CHECK(rep.rounds[0].clients_selected == std::vector<std::string>{"a1"});
  CHECK(rep.rounds[0].clients_silent == std::vector<std::string>{"a1"});
  CHECK(rep.session.reason.rfind("round 1 failed", 0) == 0);
}

TEST_CASE_FIXTURE(cluster_fixture,
                  "controller: sessions chain rounds and validate each "
                  "model") {
  auto& a = add_combiner("A");
  connect_to(a, "a1");
  seed_global({0});
  auto cfg = one_round();
  cfg.rounds = 2;
  cfg.validate = true;
  auto sid = start(cfg);
  for (int round = 1; round <= 2; ++round) {
    CHECK(answer_at(a, "a1", {double(round)}, 1).accepted);
    // The validation round's task arrived; answer it.
    auto task = last_task("a1");
    REQUIRE(task.kind == round_task::validation);
    auto rh = self->request(a.handle, caf::infinite,
                            model_validation{"a1", task.correlation_id,
                                             task.model_id, sid,
                                             R"({"test_accuracy":0.5})"});
    sched.run();
    rh.receive([](update_verdict& v) { CHECK(v.accepted); },
               [&](caf::error& err) { FAIL_CHECK(render(err)); });
  }
  auto rep = status(sid);
  CHECK(rep.session.status == session_status::finished);
  REQUIRE(rep.rounds.size() == 2);
  CHECK(rep.rounds[1].base_model_id == rep.rounds[0].model_id);
  CHECK(load(rep.rounds[1].model_id) == std::vector<double>{2});
  for (auto& r : rep.rounds) {
    REQUIRE(r.validations.size() == 1);
    CHECK(r.validations[0].metrics_json == R"({"test_accuracy":0.5})");
    CHECK(r.validations[0].model_id == r.model_id);
    // The record keeps the training phase's combiner part (its weight and
    // aggregate), not the validation phase's.
    REQUIRE(r.combiners.size() == 1);
    CHECK(r.combiners[0].num_examples == 1);
    CHECK_FALSE(r.combiners[0].model_id.empty());
  }
}

TEST_CASE_FIXTURE(cluster_fixture,
                  "controller: terminating a session interrupts the round at "
                  "once") {
  auto& a = add_combiner("A");
  connect_to(a, "a1");
  seed_global({0});
  auto sid = start(one_round());
  auto rh = self->request(controller, caf::infinite, terminate_atom::value,
                          sid);
  sched.run();
  session_report rep;
  rh.receive([&](session_report& x) { rep = x; },
             [&](caf::error& err) { FAIL_CHECK(render(err)); });
  CHECK(rep.session.status == session_status::terminated);
  REQUIRE(rep.rounds.size() == 1);
  CHECK(rep.rounds[0].status == round_status::failed);
  CHECK(rep.rounds[0].reason == "terminated");
  // The combiner that was still working is not left "running".
  REQUIRE(rep.rounds[0].combiners.size() == 1);
  CHECK(rep.rounds[0].combiners[0].status == round_status::failed);
  CHECK(rep.rounds[0].combiners[0].reason == "terminated");
  // The combiner's round was terminated too: a late answer is stale.
  CHECK(!answer_at(a, "a1", {1}, 1).accepted);
}

TEST_CASE_FIXTURE(cluster_fixture,
                  "controller: bad seeds and bad session configs are "
                  "refused") {
  auto bytes = std::make_shared<const std::string>("not an npz");
  auto rh = self->request(controller, caf::infinite, caf::put_atom::value,
                          model_blob{"bad", bytes});
  sched.run();
  rh.receive([](model_record&) { FAIL_CHECK("accepted a bad seed"); },
             [](caf::error& err) { CHECK(err == ec::malformed_model); });
  CHECK(!*models->exists("bad"));
  // An empty file, or an archive without tensors, is no model either.
  for (auto text : {std::string{}, npz_of_no_tensors()}) {
    auto empty = std::make_shared<const std::string>(text);
    auto rh2 = self->request(controller, caf::infinite, caf::put_atom::value,
                             model_blob{"empty", empty});
    sched.run();
    rh2.receive([](model_record&) { FAIL_CHECK("accepted an empty seed"); },
                [](caf::error& err) { CHECK(err == ec::malformed_model); });
  }
  CHECK(!*models->exists("empty"));
  session_config cfg;
  auto rh2 = self->request(controller, caf::infinite, cfg);
  sched.run();
  rh2.receive([](std::string&) { FAIL_CHECK("started without a seed"); },
              [](caf::error& err) {
                CHECK(rondo::render(err)
                      == "rondo.not_found: no seed model: add one with "
                         "`rondo seed <file.npz>` first");
              });
  cfg.rounds = 0;
  auto rh3 = self->request(controller, caf::infinite, cfg);
  sched.run();
  rh3.receive([](std::string&) { FAIL_CHECK("accepted rounds = 0"); },
              [](caf::error& err) {
                CHECK(rondo::render(err)
                      == "rondo.invalid_config: rounds must be >= 1, got 0");
              });
}

TEST_CASE_FIXTURE(cluster_fixture,
                  "controller: a waiter sees each ended round once and the "
                  "running one after it") {
  auto& a = add_combiner("A");
  connect_to(a, "a1");
  seed_global({0});
  auto cfg = one_round();
  cfg.rounds = 2;
  auto sid = start(cfg);
  auto rh = self->request(controller, caf::infinite,
                          caf::wait_for_atom::value, sid, uint64_t{0});
  sched.run();
  CHECK(answer_at(a, "a1", {1}, 5).accepted);
  session_report rep;
  rh.receive([&](session_report& x) { rep = x; },
             [&](caf::error& err) { FAIL_CHECK(render(err)); });
  REQUIRE(!rep.rounds.empty());
  CHECK(rep.rounds[0].status == round_status::success);
  for (size_t i = 1; i < rep.rounds.size(); ++i)
    CHECK(rep.rounds[i].round_id != rep.rounds[0].round_id);
  CHECK(answer_at(a, "a1", {2}, 5).accepted);
  auto done = status(sid);
  CHECK(done.session.status == session_status::finished);
  REQUIRE(done.rounds.size() == 2);
  CHECK(done.rounds[0].round_id != done.rounds[1].round_id);
  CHECK(load(done.rounds[1].model_id) == std::vector<double>{2});
}

TEST_CASE_FIXTURE(cluster_fixture,
                  "controller: a session without model_id skips a trail "
                  "model whose round was never recorded") {
  auto& a = add_combiner("A");
  connect_to(a, "a1");
  seed_global({1});
  // As left by a controller that stopped while validating round r-lost:
  // its model is on the trail, its round has no record.
  REQUIRE(models->put("orphan", npz({7})));
  REQUIRE(!state->put(model_record{"orphan", "seed", "old-session", "r-lost",
                                   unix_now() + 10}));
  auto sid = start(one_round());
  REQUIRE(a.sinks["a1"]->tasks.size() == 1);
  CHECK(a.sinks["a1"]->tasks[0].model_id == "seed");
  CHECK(answer_at(a, "a1", {3}, 1).accepted);
  auto rep = status(sid);
  REQUIRE(rep.rounds.size() == 1);
  CHECK(rep.rounds[0].base_model_id == "seed");
  CHECK(rep.rounds[0].status == round_status::success);
  // The next session starts from that round's model.
  auto next = start(one_round());
  REQUIRE(a.sinks["a1"]->tasks.size() == 2);
  CHECK(a.sinks["a1"]->tasks[1].model_id == rep.rounds[0].model_id);
  // Both sessions are listed, oldest first; an unknown one is named.
  auto rh = self->request(controller, caf::infinite, caf::get_atom::value,
                          session_atom::value);
  sched.run();
  rh.receive(
    [&](std::vector<session_record>& all) {
      REQUIRE(all.size() == 2);
      CHECK(all[0].session_id == sid);
      CHECK(all[0].status == session_status::finished);
      CHECK(all[1].session_id == next);
      CHECK(all[1].status == session_status::running);
    },
    [&](caf::error& err) { FAIL_CHECK(render(err)); });
  auto unknown = self->request(controller, caf::infinite, caf::get_atom::value,
                               session_atom::value, std::string{"nope"});
  sched.run();
  unknown.receive([](session_report&) { FAIL_CHECK("a report for nope"); },
                  [&](caf::error& err) {
                    CHECK(err == ec::not_found);
                    CHECK(render(err).find("no session nope")
                          != std::string::npos);
                  });
}

TEST_CASE_FIXTURE(cluster_fixture,
                  "controller: a session in which no round succeeded ends "
                  "failed") {
  auto& a = add_combiner("A");
  connect_to(a, "a1");
  seed_global({0});
  auto cfg = one_round();
  cfg.round_timeout = 5; // a1 never answers
  auto sid = start(cfg);
  advance_time(5s);
  sched.run();
  auto rep = status(sid);
  REQUIRE(rep.rounds.size() == 1);
  CHECK(rep.rounds[0].status == round_status::failed);
  CHECK(rep.session.status == session_status::failed);
  CHECK(rep.session.reason == "no round succeeded (1 failed)");
}

TEST_CASE_FIXTURE(cluster_fixture,
                  "controller: the session record written per round does not "
                  "grow with the session") {
  auto& a = add_combiner("A");
  connect_to(a, "a1");
  seed_global({0});
  auto cfg = one_round();
  cfg.rounds = 40;
  auto sid = start(cfg);
  std::map<int, size_t> written;
  for (int round = 1; round <= 40; ++round) {
    CHECK(answer_at(a, "a1", {double(round)}, 1).accepted);
    auto rec = state->get<session_record>(sid);
    REQUIRE(rec);
    written[round] = encode(*rec).size();
  }
  // While the session runs, the record names the next round: "4" at
  // round 3, "40" at round 39 (one more digit); nothing else may grow.
  CHECK(written[39] <= written[3] + 1);
  CHECK(written[39] == written[20]);
  auto rep = status(sid);
  CHECK(rep.session.status == session_status::finished);
  REQUIRE(rep.rounds.size() == 40);
  REQUIRE(rep.session.round_ids.size() == 40);
  CHECK(rep.session.round_ids[39] == rep.rounds[39].round_id);
  CHECK(rep.session.rounds_done == 40);
  CHECK(rep.session.rounds_succeeded == 40);
  CHECK(rep.session.global_model_id == rep.rounds[39].model_id);
  CHECK(load(rep.rounds[39].model_id) == std::vector<double>{40});
  // A follower that saw 38 rounds end gets the last two only.
  auto rh = self->request(controller, caf::infinite,
                          caf::wait_for_atom::value, sid, uint64_t{38});
  sched.run();
  rh.receive(
    [&](session_report& x) {
      CHECK(x.first_round == 38);
      REQUIRE(x.rounds.size() == 2);
      CHECK(x.rounds[0].round_id == rep.rounds[38].round_id);
      CHECK(x.rounds[1].round_id == rep.rounds[39].round_id);
    },
    [&](caf::error& err) { FAIL_CHECK(render(err)); });
}

TEST_CASE_FIXTURE(cluster_fixture,
                  "controller: a restarted controller resumes the running "
                  "session from its last committed model; round ids are not "
                  "reused") {
  auto& a = add_combiner("A");
  connect_to(a, "a1");
  seed_global({0});
  auto cfg = one_round();
  cfg.rounds = 3;
  auto sid = start(cfg);
  CHECK(answer_at(a, "a1", {1}, 1).accepted);
  // Round 2 is at a1 when the controller dies.
  REQUIRE(a.sinks["a1"]->tasks.size() == 2);
  self->send_exit(controller, caf::exit_reason::kill);
  sched.run();
  controller_config ccfg;
  ccfg.client_wait = 10s;
  controller = sys.spawn(controller_impl, ccfg, models, state);
  sched.run();
  auto rejoin = self->request(controller, caf::infinite,
                              caf::join_atom::value,
                              combiner_info{"A", "127.0.0.1", "", "", 0,
                                            false},
                              a.handle, std::vector<round_record>{});
  sched.run();
  rejoin.receive([](caf::ok_atom) {},
                 [&](caf::error& err) { FAIL_CHECK(render(err)); });
  // The rejoining combiner drops the old controller's round 2 and runs the
  // re-run round from round 1's model.
  REQUIRE(a.sinks["a1"]->tasks.size() == 3);
  CHECK(answer_at(a, "a1", {3}, 1).accepted);
  REQUIRE(a.sinks["a1"]->tasks.size() == 4);
  auto v4 = answer_at(a, "a1", {4}, 1);
  CHECK_MESSAGE(v4.accepted, v4.reason);
  // The old round 2 ended at the combiner when it was dropped.
  auto jobs = a.state->list<job_record>();
  REQUIRE(jobs);
  auto old = std::find_if(jobs->begin(), jobs->end(), [](auto& j) {
    return j.config.round_id == "2";
  });
  REQUIRE(old != jobs->end());
  CHECK(old->status == job_status::failed);
  auto rep = status(sid);
  CHECK(rep.session.status == session_status::finished);
  REQUIRE(rep.rounds.size() == 4);
  std::vector<std::string> ids;
  for (auto& r : rep.rounds)
    ids.push_back(r.round_id);
  CHECK(ids == std::vector<std::string>{"1", "2", "3", "4"});
  CHECK(rep.rounds[1].status == round_status::failed);
  CHECK(rep.rounds[1].reason.find("controller restart") != std::string::npos);
  CHECK(rep.rounds[2].base_model_id == rep.rounds[0].model_id);
  CHECK(rep.rounds[3].status == round_status::success);
  CHECK(load(rep.rounds[3].model_id) == std::vector<double>{4});
  CHECK(rep.session.rounds_done == 3);
  CHECK(rep.session.rounds_succeeded == 3);
}

TEST_CASE_FIXTURE(cluster_fixture,
                  "controller: a round whose model got no validation says so "
                  "and stays a success") {
  auto& a = add_combiner("A");
  connect_to(a, "a1");
  seed_global({0});
  auto cfg = one_round();
  cfg.validate = true;
  cfg.round_timeout = 5;
  auto sid = start(cfg);
  CHECK(answer_at(a, "a1", {1}, 1).accepted);
  // a1 never answers its validation task.
  REQUIRE(last_task("a1").kind == round_task::validation);
  advance_time(5s);
  sched.run();
  auto rep = status(sid);
  CHECK(rep.session.status == session_status::finished);
  REQUIRE(rep.rounds.size() == 1);
  CHECK(rep.rounds[0].status == round_status::success);
  CHECK(rep.rounds[0].validations.empty());
  CHECK(rep.rounds[0].validation_failure.rfind("no validation accepted", 0)
        == 0);
}

TEST_CASE_FIXTURE(cluster_fixture,
                  "controller: a combiner drained mid-round loses none of its "
                  "clients' updates, then releases them and is left out of "
                  "the next round") {
  // Opens a task stream of `id` at `m`; the text says why its sink stopped
  // (empty while it runs).
  auto open_stream = [&](member& m, const std::string& id) {
    auto rh = self->request(m.handle, caf::infinite,
                            client_info{id, id, true, true});
    sched.run();
    client_session_actor session;
    rh.receive([&](client_session_actor& s) { session = s; },
               [&](caf::error& err) { FAIL_CHECK(render(err)); });
    REQUIRE(session);
    auto log = std::make_shared<rondo::test::sink_log>();
    auto ended = std::make_shared<std::string>();
    auto sink = sys.spawn(
      [log, ended](
        task_sink_actor::pointer s) -> task_sink_actor::behavior_type {
        s->attach_functor([ended](const caf::error& why) {
          *ended = why ? error_detail(why) : "stopped";
        });
        return {[log](const client_task& t) { log->tasks.push_back(t); }};
      });
    sinks[id] = log;
    m.sinks[id] = log;
    self->send(session, heartbeat_atom::value);
    self->send(session, caf::open_atom::value, sink);
    sched.run();
    return ended;
  };
  auto drain = [&](const std::string& id, bool on) {
    auto rh = self->request(controller, caf::infinite, drain_atom::value, id,
                            on);
    sched.run();
    combiner_status out;
    rh.receive([&](combiner_status& c) { out = c; },
               [&](caf::error& err) { FAIL_CHECK(render(err)); });
    return out;
  };
  auto& a = add_combiner("A");
  auto& b = add_combiner("B");
  auto a1_ended = open_stream(a, "a1");
  connect_to(b, "b1");
  seed_global({0});
  auto cfg = one_round();
  cfg.rounds = 2;
  auto sid = start(cfg);
  REQUIRE(a.sinks["a1"]->tasks.size() == 1);
  REQUIRE(b.sinks["b1"]->tasks.size() == 1);
  auto drained = drain("A", true);
  CHECK(drained.info.combiner_id == "A");
  CHECK(drained.alive);
  CHECK(drained.draining);
  // The running round keeps A and its client's stream.
  CHECK(a1_ended->empty());
  CHECK(answer_at(a, "a1", {1}, 10).accepted);
  CHECK(a1_ended->empty());
  CHECK(answer_at(b, "b1", {3}, 30).accepted);
  auto rep = status(sid);
  REQUIRE(rep.rounds.size() >= 1);
  auto& r1 = rep.rounds[0];
  CHECK(r1.status == round_status::success);
  CHECK(r1.combiners.size() == 2);
  CHECK(r1.num_examples == 40);
  CHECK(r1.clients_accepted.size() == 2);
  // A's update counts: (10 * 1 + 30 * 3) / 40 = 2.5.
  auto global = load(r1.model_id);
  REQUIRE(global.size() == 1);
  CHECK(global[0] == doctest::Approx(2.5).epsilon(1e-6));
  // Once that round ended, A released its client.
  CHECK(*a1_ended
        == "combiner A is draining: ask the controller for another combiner "
           "(clients/add)");
  // Round 2 runs at B alone; a new stream to A is refused meanwhile.
  CHECK(a.sinks["a1"]->tasks.size() == 1);
  REQUIRE(b.sinks["b1"]->tasks.size() == 2);
  auto refused = open_stream(a, "a1");
  CHECK(refused->find("combiner A is draining") != std::string::npos);
  CHECK(answer_at(b, "b1", {5}, 10).accepted);
  rep = status(sid);
  CHECK(rep.session.status == session_status::finished);
  REQUIRE(rep.rounds.size() == 2);
  REQUIRE(rep.rounds[1].combiners.size() == 1);
  CHECK(rep.rounds[1].combiners[0].combiner_id == "B");
  // Undrained, A takes task streams again.
  CHECK_FALSE(drain("A", false).draining);
  auto back = open_stream(a, "a1");
  CHECK(back->empty());
  auto rh = self->request(controller, caf::infinite, drain_atom::value,
                          std::string{"Z"}, true);
  sched.run();
  rh.receive([](combiner_status&) { FAIL_CHECK("drained an unknown id"); },
             [](caf::error& err) {
               CHECK(err == ec::not_found);
               CHECK(error_detail(err) == "no combiner Z");
             });
}
