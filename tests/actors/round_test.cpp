// The combiner's rounds end to end on the deterministic scheduler: mock
// clients, virtual clock, the real queue, staging, sessions and aggregator.

#include "tests/actors/combiner_fixture.hpp"

#include "actors/round_queue.hpp"

#include <caf/stateful_actor.hpp>

#include <doctest/doctest.h>

#include <algorithm>
#include <optional>

using namespace std::chrono_literals;
using namespace rondo;
using rondo::test::combiner_fixture;

namespace {

bool near(const std::vector<double>& xs, const std::vector<double>& ys) {
  if (xs.size() != ys.size())
    return false;
  for (size_t i = 0; i < xs.size(); ++i)
    if (std::abs(xs[i] - ys[i]) > 1e-5 * (1 + std::abs(ys[i])))
      return false;
  return true;
}

} // namespace

TEST_CASE_FIXTURE(combiner_fixture,
                  "round: closes on the buffer_size-th accepted update") {
  start();
  seed("m0", {0, 0});
  connect("a");
  connect("b");
  connect("c");
  auto cfg = training("1", "m0");
  cfg.buffer_size = 2;
  push(cfg);
  REQUIRE(sinks["a"]->tasks.size() == 1);
  REQUIRE(sinks["b"]->tasks.size() == 1);
  REQUIRE(sinks["c"]->tasks.size() == 1);
  auto task = last_task("a");
  CHECK(task.round_id == "1");
  CHECK(task.model_id == "m0");
  CHECK(task.kind == round_task::training);
  CHECK(task.data.find(R"("round_id":"1")") != std::string::npos);
  CHECK(task.data.find(R"("client_settings":{"epochs":1})")
        != std::string::npos);
  CHECK(answer("a", {1, 2}, 100).accepted);
  CHECK(reports->rounds.empty());
  CHECK(answer("b", {5, 6}, 300).accepted);
  // The second accepted update closed the round: no clock advance needed.
  REQUIRE(reports->rounds.size() == 1);
  auto& r = reports->rounds[0];
  CHECK(r.status == round_status::success);
  CHECK(r.reason.empty());
  CHECK(r.nr_expected_updates == 3);
  CHECK(r.nr_aggregated_models == 2);
  CHECK(r.num_examples == 400);
  CHECK(r.clients_silent == std::vector<std::string>{"c"});
  // FedAvg weighted by num_examples: (100*[1,2] + 300*[5,6]) / 400.
  CHECK(near(load(r.model_id), {4.0, 5.0}));
  // The round is recorded in the state store with its job.
  auto stored = state->get<round_record>("1");
  REQUIRE(stored);
  CHECK(stored->model_id == r.model_id);
  CHECK(state->get<job_record>(r.job_id)->status == job_status::success);
  // Model updates are removed after the round (delete_models_storage).
  CHECK(!*models->exists("update-" + task.correlation_id + "-a"));
}

TEST_CASE_FIXTURE(combiner_fixture,
                  "round: ends on round_timeout with the partial updates") {
  start();
  seed("m0", {0});
  connect("a");
  connect("b");
  connect("c");
  auto cfg = training("1", "m0");
  cfg.round_timeout = 20;
  push(cfg);
  CHECK(answer("a", {10}, 10).accepted);
  CHECK(answer("b", {50}, 30).accepted);
  advance_time(19s);
  sched.run();
  CHECK(reports->rounds.empty());
  advance_time(1s);
  sched.run();
  REQUIRE(reports->rounds.size() == 1);
  auto& r = reports->rounds[0];
  CHECK(r.status == round_status::success);
  // Weights 10:30 -> (10*10 + 30*50) / 40 = 40.
  CHECK(near(load(r.model_id), {40.0}));
  CHECK(r.clients_silent == std::vector<std::string>{"c"});
  CHECK(r.time_exec_training == doctest::Approx(20.0));
}

TEST_CASE_FIXTURE(combiner_fixture,
                  "round: too few active clients fails after the bounded "
                  "wait") {
  start();
  seed("m0", {0});
  connect("a");
  auto cfg = training("1", "m0");
  cfg.clients_required = 2;
  push(cfg);
  CHECK(sinks["a"]->tasks.empty());
  advance_time(29s);
  sched.run();
  CHECK(reports->rounds.empty());
  advance_time(1s);
  sched.run();
  REQUIRE(reports->rounds.size() == 1);
  CHECK(reports->rounds[0].status == round_status::failed);
  CHECK(reports->rounds[0].reason
        == "too few active trainers: 1 active, clients_required is 2 "
           "(waited 30 s)");
  CHECK(reports->rounds[0].model_id.empty());
}

TEST_CASE_FIXTURE(combiner_fixture,
                  "round: starts as soon as enough clients become active") {
  start();
  seed("m0", {0});
  auto cfg = training("1", "m0");
  cfg.clients_required = 2;
  push(cfg);
  advance_time(5s);
  connect("a");
  connect("b");
  CHECK(sinks["a"]->tasks.size() == 1);
  CHECK(sinks["b"]->tasks.size() == 1);
}

TEST_CASE_FIXTURE(combiner_fixture,
                  "round: a client that drops mid-round is cancelled") {
  start();
  seed("m0", {0});
  connect("a");
  connect("b");
  push(training("1", "m0"));
  disconnect("b");
  CHECK(reports->rounds.empty());
  CHECK(answer("a", {7}, 5).accepted);
  // Every task is answered or cancelled: the round closes at once.
  REQUIRE(reports->rounds.size() == 1);
  auto& r = reports->rounds[0];
  CHECK(r.status == round_status::success);
  CHECK(near(load(r.model_id), {7.0}));
  CHECK(r.clients_silent == std::vector<std::string>{"b"});
}

TEST_CASE_FIXTURE(combiner_fixture,
                  "round: a task the client reports failed is rejected with "
                  "its reason and not waited for") {
  start();
  seed("m0", {0});
  connect("a");
  connect("b");
  push(training("1", "m0"));
  auto task = last_task("b");
  self->send(sessions["b"], failed_atom::value, task.correlation_id,
             std::string{"train failed: exit 3"});
  sched.run();
  CHECK(reports->rounds.empty());
  CHECK(answer("a", {7}, 5).accepted);
  // Nothing left outstanding: the round closes without its timeout.
  REQUIRE(reports->rounds.size() == 1);
  auto& r = reports->rounds[0];
  CHECK(r.status == round_status::success);
  CHECK(near(load(r.model_id), {7.0}));
  CHECK(r.clients_silent.empty());
  REQUIRE(r.clients_rejected.size() == 1);
  CHECK(r.clients_rejected[0].client_id == "b");
  CHECK(r.clients_rejected[0].reason == "train failed: exit 3");
}

TEST_CASE_FIXTURE(combiner_fixture,
                  "round: an update from round r arriving in round r+1 is "
                  "stale") {
  start();
  seed("m0", {0});
  connect("a");
  connect("b");
  auto r1 = training("1", "m0");
  r1.buffer_size = 1;
  push(r1);
  auto late_task = last_task("b");
  CHECK(answer("a", {2}, 1).accepted);
  REQUIRE(reports->rounds.size() == 1);
  auto m1 = reports->rounds[0].model_id;
  push(training("2", m1));
  // b's answer to round 1 arrives while round 2 runs.
  auto v = answer("b", late_task, npz({1000}), 1000);
  CHECK(!v.accepted);
  CHECK(v.reason.rfind("stale update: correlation id", 0) == 0);
  CHECK(answer("a", {4}, 1).accepted);
  CHECK(answer("b", {6}, 3).accepted);
  REQUIRE(reports->rounds.size() == 2);
  // Only round 2's updates count: (1*4 + 3*6) / 4.
  CHECK(near(load(reports->rounds[1].model_id), {5.5}));
  // And an update after every round ended is stale too.
  auto v2 = answer("a", late_task, npz({1}), 1);
  CHECK(v2.reason == "stale update: no round is running");
}

TEST_CASE_FIXTURE(combiner_fixture,
                  "round: bad updates are rejected and do not count") {
  start();
  seed("m0", {0, 0});
  connect("u1");
  connect("u2");
  connect("u3");
  connect("u4");
  connect("u5");
  push(training("1", "m0"));
  CHECK(answer("u1", {1, 1}, 100).accepted);
  auto wrong_shape = answer("u2", last_task("u2"), npz({9, 9, 9}), 100);
  CHECK(!wrong_shape.accepted);
  CHECK(wrong_shape.reason.find("'0'") != std::string::npos);
  auto nan = answer("u3", {std::nan(""), 1}, 100);
  CHECK(!nan.accepted);
  CHECK(nan.reason.find("NaN") != std::string::npos);
  auto zero = answer("u4", {5, 5}, 0);
  CHECK(!zero.accepted);
  CHECK(zero.reason.find("num_examples") != std::string::npos);
  CHECK(answer("u5", {3, 5}, 100).accepted);
  REQUIRE(reports->rounds.size() == 1);
  auto& r = reports->rounds[0];
  CHECK(r.status == round_status::success);
  // Exactly the mean of u1 and u5: rejected weights never count.
  CHECK(near(load(r.model_id), {2.0, 3.0}));
  CHECK(r.num_examples == 200);
  CHECK(r.clients_rejected.size() == 3);
  CHECK(r.clients_accepted == std::vector<std::string>{"u1", "u5"});
}

TEST_CASE_FIXTURE(combiner_fixture,
                  "round: fewer accepted updates than clients_required "
                  "fails") {
  start();
  seed("m0", {0});
  connect("a");
  connect("b");
  auto cfg = training("1", "m0");
  cfg.clients_required = 2;
  cfg.round_timeout = 10;
  push(cfg);
  CHECK(answer("a", {1}, 1).accepted);
  advance_time(10s);
  sched.run();
  REQUIRE(reports->rounds.size() == 1);
  CHECK(reports->rounds[0].status == round_status::failed);
  CHECK(reports->rounds[0].reason
        == "only 1 model updates were accepted, clients_required is 2 "
           "(round_timeout of 10 s passed)");
}

TEST_CASE_FIXTURE(combiner_fixture,
                  "round: no accepted update means no model") {
  start();
  seed("m0", {0});
  connect("a");
  push(training("1", "m0"));
  CHECK(!answer("a", {std::nan("")}, 1).accepted);
  REQUIRE(reports->rounds.size() == 1);
  CHECK(reports->rounds[0].status == round_status::failed);
  CHECK(reports->rounds[0].reason.rfind("no model update was accepted", 0)
        == 0);
  CHECK(reports->rounds[0].model_id.empty());
}

TEST_CASE_FIXTURE(combiner_fixture, "round: selected_clients are honoured") {
  start();
  seed("m0", {0});
  connect("a");
  connect("b");
  connect("c");
  auto cfg = training("1", "m0");
  cfg.selected_clients = {"b", "c", "offline-one"};
  push(cfg);
  CHECK(sinks["a"]->tasks.empty());
  CHECK(sinks["b"]->tasks.size() == 1);
  CHECK(sinks["c"]->tasks.size() == 1);
}

TEST_CASE_FIXTURE(combiner_fixture,
                  "round: max_clients bounds the random sample") {
  start();
  seed("m0", {0});
  for (auto id : {"a", "b", "c", "d", "e"})
    connect(id);
  auto cfg = training("1", "m0");
  cfg.max_clients = 2;
  push(cfg);
  size_t tasks = 0;
  for (auto& [id, log] : sinks)
    tasks += log->tasks.size();
  CHECK(tasks == 2);
}

TEST_CASE_FIXTURE(combiner_fixture,
                  "round: two clients with the same name are two clients") {
  start();
  seed("m0", {0});
  connect("id-1", "alice");
  connect("id-2", "alice");
  push(training("1", "m0"));
  CHECK(sinks["id-1"]->tasks.size() == 1);
  CHECK(sinks["id-2"]->tasks.size() == 1);
  CHECK(answer("id-1", {1}, 1).accepted);
  CHECK(answer("id-2", {3}, 1).accepted);
  REQUIRE(reports->rounds.size() == 1);
  CHECK(near(load(reports->rounds[0].model_id), {2.0}));
}

TEST_CASE_FIXTURE(combiner_fixture,
                  "round: an empty correlation id matches by client and "
                  "model") {
  start();
  seed("m0", {0});
  connect("a");
  push(training("1", "m0"));
  auto v = answer("a", last_task("a"), npz({8}), 2, "");
  CHECK(v.accepted);
  REQUIRE(reports->rounds.size() == 1);
  CHECK(near(load(reports->rounds[0].model_id), {8.0}));
}

TEST_CASE_FIXTURE(combiner_fixture,
                  "round: flushing the queue terminates a waiting round at "
                  "once") {
  start();
  seed("m0", {0});
  connect("a");
  auto cfg = training("1", "m0");
  push(cfg);
  auto queued = training("2", "m0");
  push(queued);
  auto rh = self->request(combiner, caf::infinite, caf::flush_atom::value);
  sched.run();
  uint64_t dropped = 0;
  rh.receive([&](uint64_t n) { dropped = n; },
             [&](caf::error& err) { FAIL_CHECK(render(err)); });
  CHECK(dropped == 2);
  REQUIRE(reports->rounds.size() == 2);
  for (auto& r : reports->rounds) {
    CHECK(r.status == round_status::failed);
    CHECK(r.reason == "terminated");
  }
  // The terminated round's task is forgotten: a late answer is stale.
  CHECK(!answer("a", {1}, 1).accepted);
}

TEST_CASE_FIXTURE(combiner_fixture,
                  "round: staging a missing model fails the round") {
  cfg.staging.max_tries = 2;
  cfg.staging.retry_delay = 1s;
  start();
  connect("a");
  push(training("1", "no-such-model"));
  advance_time(1s);
  sched.run();
  REQUIRE(reports->rounds.size() == 1);
  CHECK(reports->rounds[0].status == round_status::failed);
  CHECK(reports->rounds[0].reason.rfind("staging failed:", 0) == 0);
  CHECK(reports->rounds[0].reason.find("no-such-model") != std::string::npos);
}

TEST_CASE_FIXTURE(combiner_fixture,
                  "round queue: a failing job does not stop the queue") {
  start();
  seed("m0", {0});
  connect("a");
  auto bad = training("1", "m0");
  bad.aggregator = "no-such-aggregator";
  push(bad);
  push(training("2", "m0"));
  REQUIRE(reports->rounds.size() == 1);
  CHECK(reports->rounds[0].status == round_status::failed);
  CHECK(reports->rounds[0].reason.rfind("aggregator:", 0) == 0);
  CHECK(answer("a", {3}, 1).accepted);
  REQUIRE(reports->rounds.size() == 2);
  CHECK(reports->rounds[1].status == round_status::success);
}

TEST_CASE_FIXTURE(combiner_fixture,
                  "round queue: a restart reloads pending jobs") {
  seed("m0", {0});
  job_record running;
  running.job_id = "job-running";
  running.seq = 1;
  running.config = training("1", "m0");
  running.status = job_status::running;
  job_record queued;
  queued.job_id = "job-queued";
  queued.seq = 2;
  queued.config = training("2", "m0");
  REQUIRE(!state->put(running));
  REQUIRE(!state->put(queued));
  start();
  auto r1 = state->get<round_record>("1");
  REQUIRE(r1);
  CHECK(r1->status == round_status::failed);
  CHECK(r1->reason
        == "interrupted: the combiner restarted while the round ran");
  CHECK(state->get<job_record>("job-running")->status == job_status::failed);
  // The queued job runs once a client is there.
  connect("a");
  CHECK(answer("a", {1}, 1).accepted);
  auto r2 = state->get<round_record>("2");
  REQUIRE(r2);
  CHECK(r2->status == round_status::success);
  CHECK(state->get<job_record>("job-queued")->status == job_status::success);
}

TEST_CASE_FIXTURE(combiner_fixture,
                  "round: validation metrics are stored per client") {
  start();
  seed("m0", {0});
  connect("v1");
  connect("v2");
  auto cfg = training("val-1", "m0");
  cfg.task = round_task::validation;
  push(cfg);
  auto t1 = last_task("v1");
  CHECK(t1.kind == round_task::validation);
  auto send = [&](const std::string& client, const client_task& t,
                  const std::string& metrics) {
    auto rh = self->request(combiner, caf::infinite,
                            model_validation{client, t.correlation_id,
                                             t.model_id, t.session_id,
                                             metrics});
    sched.run();
    update_verdict v;
    rh.receive([&](update_verdict& x) { v = x; },
               [&](caf::error& err) { FAIL_CHECK(render(err)); });
    return v;
  };
  CHECK(send("v1", t1, R"({"test_accuracy":0.8})").accepted);
  CHECK(send("v2", last_task("v2"), R"({"test_accuracy":0.9})").accepted);
  REQUIRE(reports->rounds.size() == 1);
  CHECK(reports->rounds[0].status == round_status::success);
  CHECK(reports->rounds[0].model_id == "m0");
  CHECK(reports->rounds[0].validations.size() == 2);
  auto stored = state->list<validation_record>();
  REQUIRE(stored);
  REQUIRE(stored->size() == 2);
  std::map<std::string, std::string> by_client;
  for (auto& v : *stored) {
    CHECK(v.model_id == "m0");
    CHECK(v.session_id == "session-1");
    CHECK(v.round_id == "val-1");
    by_client[v.client_id] = v.metrics_json;
  }
  CHECK(by_client["v1"] == R"({"test_accuracy":0.8})");
  CHECK(by_client["v2"] == R"({"test_accuracy":0.9})");
}

TEST_CASE_FIXTURE(combiner_fixture,
                  "round: prediction outputs are stored per client, and a "
                  "prediction is refused in a training round") {
  start();
  seed("m0", {0});
  connect("p1");
  auto cfg = training("pred-1", "m0");
  cfg.task = round_task::prediction;
  push(cfg);
  auto t = last_task("p1");
  CHECK(t.kind == round_task::prediction);
  CHECK(t.model_id == "m0");
  auto send = [&](const client_task& task, const std::string& data) {
    auto rh = self->request(combiner, caf::infinite,
                            model_validation{"p1", task.correlation_id,
                                             task.model_id, task.session_id,
                                             data});
    sched.run();
    update_verdict v;
    rh.receive([&](update_verdict& x) { v = x; },
               [&](caf::error& err) { FAIL_CHECK(render(err)); });
    return v;
  };
  CHECK(send(t, R"({"predictions":[[0.1,0.9]]})").accepted);
  REQUIRE(reports->rounds.size() == 1);
  CHECK(reports->rounds[0].status == round_status::success);
  CHECK(reports->rounds[0].model_id == "m0");
  REQUIRE(reports->rounds[0].validations.size() == 1);
  auto stored = state->list<validation_record>();
  REQUIRE(stored);
  REQUIRE(stored->size() == 1);
  CHECK(stored->front().client_id == "p1");
  CHECK(stored->front().round_id == "pred-1");
  CHECK(stored->front().metrics_json == R"({"predictions":[[0.1,0.9]]})");
  // The same output for a training round's task is stale.
  push(training("train-2", "m0"));
  auto v = send(last_task("p1"), R"({"predictions":[]})");
  CHECK(!v.accepted);
  CHECK(v.reason.find("is a training round") != std::string::npos);
}

TEST_CASE("round state: outstanding counts the pending and delivered tasks") {
  round_state st;
  using outcome = round_task_entry::outcome;
  auto& x = st.add_task("c1", {});
  auto& y = st.add_task("c2", {});
  CHECK(st.outstanding == 2);
  st.set(x, outcome::delivered);
  CHECK(st.outstanding == 2);
  st.set(x, outcome::answering);
  CHECK(st.outstanding == 1);
  st.set(x, outcome::accepted);
  CHECK(st.outstanding == 1);
  CHECK(!st.all_resolved());
  st.set(y, outcome::cancelled);
  CHECK(st.outstanding == 0);
  CHECK(st.all_resolved());
}

TEST_CASE_FIXTURE(combiner_fixture,
                  "round: the pusher hears of a round only once it is "
                  "recorded") {
  start();
  seed("m0", {0});
  connect("a");
  // What the store held when the report arrived.
  struct seen {
    bool reported = false;
    std::optional<round_record> round;
    std::optional<job_record> job;
    bool model = false;
  };
  auto log = std::make_shared<seen>();
  auto st = state;
  auto ms = models;
  auto checker = sys.spawn(
    [log, st, ms]() -> round_report_actor::behavior_type {
      return {[log, st, ms](const round_record& r) {
        log->reported = true;
        if (auto x = st->get<round_record>(r.round_id))
          log->round = std::move(*x);
        if (auto x = st->get<job_record>(r.job_id))
          log->job = std::move(*x);
        auto exists = ms->exists(r.model_id);
        log->model = exists && *exists;
      }};
    });
  auto rh = self->request(combiner, caf::infinite, training("1", "m0"),
                          checker);
  sched.run();
  rh.receive([](std::string&) {},
             [&](caf::error& err) { FAIL_CHECK(render(err)); });
  CHECK(answer("a", {2}, 1).accepted);
  REQUIRE(log->reported);
  REQUIRE(log->round);
  CHECK(log->round->status == round_status::success);
  CHECK(!log->round->model_id.empty());
  CHECK(log->round->clients_selected == std::vector<std::string>{"a"});
  CHECK(log->round->clients_accepted == std::vector<std::string>{"a"});
  REQUIRE(log->job);
  CHECK(log->job->status == job_status::success);
  CHECK(log->model);
  self->send_exit(checker, caf::exit_reason::user_shutdown);
}

TEST_CASE_FIXTURE(combiner_fixture,
                  "round: sessions forget unanswered tasks once the round "
                  "is recorded") {
  start();
  seed("m0", {0});
  connect("a");
  connect("b");
  auto cfg = training("1", "m0");
  cfg.buffer_size = 1;
  push(cfg);
  auto& b = deref<caf::stateful_actor<client_session_state,
                                      client_session_actor::base>>(
              sessions.at("b"))
              .state;
  CHECK(b.outstanding() == 1);
  CHECK(answer("a", {1}, 1).accepted);
  REQUIRE(reports->rounds.size() == 1);
  CHECK(reports->rounds[0].status == round_status::success);
  CHECK(reports->rounds[0].clients_silent == std::vector<std::string>{"b"});
  auto stored = state->get<round_record>("1");
  REQUIRE(stored);
  CHECK(stored->clients_silent == std::vector<std::string>{"b"});
  CHECK(b.outstanding() == 0);
  CHECK(!answer("b", {1}, 1).accepted);
}

TEST_CASE_FIXTURE(combiner_fixture,
                  "round: an update still being aggregated when the round "
                  "ends gets a stale verdict") {
  start();
  seed("m0", {0});
  connect("a");
  connect("b");
  push(training("1", "m0"));
  auto task = last_task("a");
  auto update_id = "update-" + task.correlation_id + "-a";
  REQUIRE(models->put(update_id, npz({1})));
  auto& comb = deref<caf::stateful_actor<combiner_state,
                                         combiner_actor::base>>(combiner)
                 .state;
  auto& queue = deref<caf::stateful_actor<round_queue_state,
                                          round_queue_actor::base>>(comb.queue)
                  .state;
  auto& round = deref<caf::stateful_actor<round_state, round_actor::base>>(
                  queue.running)
                  .state;
  auto* agg = dynamic_cast<caf::resumable*>(
    caf::actor_cast<caf::abstract_actor*>(round.agg));
  REQUIRE(agg != nullptr);
  auto rh = self->request(combiner, caf::infinite,
                          model_update{"a", task.correlation_id, "m0",
                                       update_id, 1, "{}"});
  // Deliver until the update waits in the aggregator's mailbox, then let
  // the round time out before the aggregator answers.
  while (std::find(sched.jobs.begin(), sched.jobs.end(), agg)
         == sched.jobs.end()) {
    REQUIRE(sched.has_job());
    sched.run_once();
  }
  advance_time(60s);
  sched.run();
  update_verdict v{true, {}};
  rh.receive([&](update_verdict& x) { v = x; },
             [&](caf::error& err) { FAIL_CHECK(render(err)); });
  CHECK(!v.accepted);
  CHECK(v.reason == "stale update: round 1 ended before the update was "
                    "aggregated");
  REQUIRE(reports->rounds.size() == 1);
  CHECK(reports->rounds[0].status == round_status::failed);
  CHECK(reports->rounds[0].reason.rfind("no model update was accepted", 0)
        == 0);
  CHECK(reports->rounds[0].clients_silent == std::vector<std::string>{"b"});
  for (auto id : {"a", "b"})
    CHECK(deref<caf::stateful_actor<client_session_state,
                                    client_session_actor::base>>(
            sessions.at(id))
            .state.outstanding()
          == 0);
}

TEST_CASE_FIXTURE(combiner_fixture,
                  "round: after reporting, a round quits on the queue's "
                  "finish, or after request_timeout without it") {
  job_record job;
  job.job_id = "job-1";
  job.config = training("1", "");
  round_deps deps;
  deps.models = models;
  deps.state = state;
  deps.settings.request_timeout = 5s;
  auto terminated = [](const round_actor& r) {
    return caf::actor_cast<caf::abstract_actor*>(r)->getf(
      caf::abstract_actor::is_terminated_flag);
  };
  // A config without model_id fails at once.
  auto first = sys.spawn(round_impl, job, deps, reporter);
  auto second = sys.spawn(round_impl, job, deps, reporter);
  sched.run();
  REQUIRE(reports->rounds.size() == 2);
  for (auto& r : reports->rounds)
    CHECK(r.status == round_status::failed);
  CHECK(!terminated(first));
  CHECK(!terminated(second));
  self->send(first, finish_atom::value);
  sched.run();
  CHECK(terminated(first));
  CHECK(!terminated(second));
  advance_time(5s);
  sched.run();
  CHECK(terminated(second));
}

TEST_CASE_FIXTURE(combiner_fixture,
                  "round queue: stopping the combiner stops its running "
                  "round") {
  auto base = sys.registry().running();
  start();
  seed("m0", {0});
  connect("a");
  push(training("1", "m0"));
  REQUIRE(sinks["a"]->tasks.size() == 1);
  // The round waits for the update (its timeout timer pending).
  CHECK(sys.registry().running() > base);
  self->send_exit(combiner, caf::exit_reason::user_shutdown);
  sched.run();
  // Queue, staging, sessions and the round (linked to the queue) are gone:
  // nothing is left to outlive the actor system at process exit.
  CHECK(sys.registry().running() == base);
}

TEST_CASE_FIXTURE(combiner_fixture,
                  "round: an answer the edge refused is rejected at once "
                  "with its reason") {
  run_round({"a", "b"}, training("1", "m0"));
  auto tb = last_task("b");
  auto why = std::string{"refused at the edge: malformed meta: "
                         "training_metadata.num_examples must be a finite "
                         "number > 0, got 0"};
  self->send(combiner, task_refused{tb.correlation_id, "b", why});
  sched.run();
  CHECK(reports->rounds.empty());
  auto& b = deref<caf::stateful_actor<client_session_state,
                                      client_session_actor::base>>(
              sessions.at("b"))
              .state;
  // b's session forgot the task: it may take the next one.
  CHECK(b.outstanding() == 0);
  CHECK(answer("a", {4}, 2).accepted);
  // Nothing is outstanding: the round closed without its 60 s timeout.
  REQUIRE(reports->rounds.size() == 1);
  auto& r = reports->rounds[0];
  CHECK(r.status == round_status::success);
  CHECK(near(load(r.model_id), {4.0}));
  CHECK(r.clients_silent.empty());
  REQUIRE(r.clients_rejected.size() == 1);
  CHECK(r.clients_rejected[0].client_id == "b");
  CHECK(r.clients_rejected[0].reason == why);
  // A second answer to the refused task is stale.
  CHECK(!answer("b", tb, npz({1}), 1).accepted);
}

TEST_CASE_FIXTURE(combiner_fixture,
                  "round: a refusal of a stranger never resolves another "
                  "client's task") {
  run_round({"a", "b"}, training("1", "m0"));
  auto tb = last_task("b");
  self->send(combiner,
             task_refused{tb.correlation_id, "mallory", "refused at the edge"});
  sched.run();
  CHECK(answer("a", {4}, 2).accepted);
  // b's task is still open: the round waits for it.
  CHECK(reports->rounds.empty());
  CHECK(answer("b", {8}, 2).accepted);
  REQUIRE(reports->rounds.size() == 1);
  CHECK(reports->rounds[0].status == round_status::success);
  CHECK(reports->rounds[0].clients_rejected.empty());
  CHECK(near(load(reports->rounds[0].model_id), {6.0}));
}

TEST_CASE_FIXTURE(combiner_fixture,
                  "round: an answer on another model or of the wrong kind "
                  "rejects its own task") {
  seed("m-old", {0});
  run_round({"a", "b"}, training("1", "m0"));
  auto ta = last_task("a");
  auto wrong = ta;
  wrong.model_id = "m-old";
  auto v = answer("a", wrong, npz({3}), 1);
  CHECK(!v.accepted);
  CHECK(v.reason == "client a trained from model m-old, round 1 uses m0");
  // b answers with a validation: its training task is rejected too.
  auto tb = last_task("b");
  auto rh = self->request(combiner, caf::infinite,
                          model_validation{"b", tb.correlation_id, "m0",
                                           tb.session_id, "{}"});
  sched.run();
  rh.receive([&](update_verdict& x) { CHECK(!x.accepted); },
             [&](caf::error& err) { FAIL_CHECK(render(err)); });
  // Both tasks resolved: the round failed at once, with both reasons.
  REQUIRE(reports->rounds.size() == 1);
  auto& r = reports->rounds[0];
  CHECK(r.status == round_status::failed);
  REQUIRE(r.clients_rejected.size() == 2);
  CHECK(r.clients_rejected[0].client_id == "a");
  CHECK(r.clients_rejected[1].client_id == "b");
  CHECK(r.clients_rejected[1].reason
        == "round 1 is a training round, it takes no validation");
  CHECK(r.clients_silent.empty());
}

TEST_CASE_FIXTURE(combiner_fixture,
                  "round: a validation round without an accepted validation "
                  "fails and says why") {
  auto cfg = training("val-1", "m0");
  cfg.task = round_task::validation;
  cfg.round_timeout = 30;
  run_round({"v1", "v2"}, cfg);
  auto t2 = last_task("v2");
  self->send(combiner, task_refused{t2.correlation_id, "v2",
                                    "refused at the edge: data: not JSON"});
  sched.run();
  CHECK(reports->rounds.empty());
  advance_time(30s);
  sched.run();
  REQUIRE(reports->rounds.size() == 1);
  auto& r = reports->rounds[0];
  CHECK(r.status == round_status::failed);
  CHECK(r.reason
        == "no validation accepted: 2 validators asked, 1 silent, 1 rejected "
           "(v2: refused at the edge: data: not JSON; round_timeout of 30 s "
           "passed)");
  CHECK(r.validations.empty());
  CHECK(r.clients_silent == std::vector<std::string>{"v1"});
}

TEST_CASE_FIXTURE(combiner_fixture,
                  "round: the pusher gets the round's progress once its "
                  "tasks are out, persisted, then its end") {
  run_round({"a", "b"}, training("1", "m0"));
  REQUIRE(reports->progress.size() == 1);
  CHECK(reports->rounds.empty());
  auto& p = reports->progress[0];
  CHECK(p.status == round_status::running);
  CHECK(p.round_id == "1");
  auto selected = p.clients_selected;
  std::sort(selected.begin(), selected.end());
  CHECK(selected == std::vector<std::string>{"a", "b"});
  CHECK(p.nr_expected_updates == 2);
  // Persisted: a restart now knows who had tasks.
  auto stored = state->get<round_record>("1");
  REQUIRE(stored);
  CHECK(stored->status == round_status::running);
  CHECK(stored->clients_selected == p.clients_selected);
  CHECK(answer("a", {1}, 1).accepted);
  CHECK(answer("b", {3}, 1).accepted);
  REQUIRE(reports->all.size() == 2);
  CHECK(reports->all[0].status == round_status::running);
  CHECK(reports->all[1].status == round_status::success);
  CHECK(state->get<round_record>("1")->status == round_status::success);
}

TEST_CASE_FIXTURE(combiner_fixture,
                  "round queue: a restart reports the interrupted round once, "
                  "with the clients that had its tasks") {
  seed("m0", {0});
  // What a combiner that died mid-round left: its running job, the round's
  // progress, and a queued job.
  job_record running;
  running.job_id = "job-running";
  running.seq = 1;
  running.config = training("7", "m0");
  running.status = job_status::running;
  round_record progress;
  progress.round_id = "7";
  progress.job_id = "job-running";
  progress.session_id = "session-1";
  progress.status = round_status::running;
  progress.clients_selected = {"a", "b"};
  progress.nr_expected_updates = 2;
  progress.started_at = 1000;
  job_record queued;
  queued.job_id = "job-queued";
  queued.seq = 2;
  queued.config = training("8", "m0");
  REQUIRE(!state->put(running));
  REQUIRE(!state->put(progress));
  REQUIRE(!state->put(queued));
  auto closed = close_interrupted_jobs(*state, "comb-1");
  REQUIRE(closed);
  REQUIRE(closed->size() == 1);
  auto& r = closed->front();
  CHECK(r.round_id == "7");
  CHECK(r.job_id == "job-running");
  CHECK(r.status == round_status::failed);
  CHECK(r.reason == "interrupted: combiner comb-1 restarted while the round "
                    "ran");
  CHECK(r.clients_selected == std::vector<std::string>{"a", "b"});
  CHECK(r.nr_expected_updates == 2);
  CHECK(r.started_at == 1000);
  auto stored = state->get<round_record>("7");
  REQUIRE(stored);
  CHECK(stored->status == round_status::failed);
  CHECK(stored->clients_selected == r.clients_selected);
  CHECK(state->get<job_record>("job-running")->status == job_status::failed);
  // Reported once: a second look finds nothing.
  auto again = close_interrupted_jobs(*state, "comb-1");
  REQUIRE(again);
  CHECK(again->empty());
  // The queued job resumes and runs.
  start();
  connect("a");
  CHECK(answer("a", {1}, 1).accepted);
  CHECK(state->get<round_record>("8")->status == round_status::success);
  CHECK(state->get<round_record>("7")->reason == r.reason);
}
