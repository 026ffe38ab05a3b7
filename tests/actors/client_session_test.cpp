// The client session on the deterministic scheduler: liveness on the
// virtual clock (exact to the nanosecond), task delivery to the open
// stream, cancellation when the stream ends, records for listings.

#include <optional>
#include "actors/client_session.hpp"
#include "messages/error.hpp"
#include "messages/ids.hpp"
#include "tests/caf_fixture.hpp"

#include <caf/stateful_actor.hpp>
#include <caf/typed_event_based_actor.hpp>

#include <cmath>
#include <memory>
#include <string>
#include <utility>
#include <vector>

using namespace std::chrono_literals;
using namespace rondo;

namespace {

template <class T>
using log_ptr = std::shared_ptr<std::vector<T>>;

// -- mocks: the real interfaces; anything but the expected message fails ----

activity_listener_actor::behavior_type
mock_listener(log_ptr<client_activity> log) {
  return {
    [log](const client_activity& x) { log->push_back(x); },
  };
}

task_sink_actor::behavior_type mock_sink(log_ptr<client_task> log) {
  return {
    [log](const client_task& x) { log->push_back(x); },
  };
}

/// A sink that also records why it stopped (the edge finishes its gRPC
/// stream with that reason).
task_sink_actor::behavior_type
mock_sink_noting_exit(task_sink_actor::pointer self, log_ptr<client_task> log,
                      std::shared_ptr<std::optional<caf::error>> exit) {
  self->attach_functor([exit](const caf::error& why) { *exit = why; });
  return mock_sink(std::move(log));
}

round_actor::behavior_type mock_round(log_ptr<task_cancelled> log) {
  return {
    [](const model_update&) {
      FAIL_CHECK("mock round: unexpected model_update");
      return update_verdict{};
    },
    [](const model_validation&) {
      FAIL_CHECK("mock round: unexpected model_validation");
      return update_verdict{};
    },
    [](const task_refused&) {
      FAIL_CHECK("mock round: unexpected task_refused");
    },
    [log](const task_cancelled& x) { log->push_back(x); },
    [](terminate_atom) { FAIL_CHECK("mock round: unexpected terminate"); },
    [](finish_atom) { FAIL_CHECK("mock round: unexpected finish"); },
    [](const timer_tick&) { FAIL_CHECK("mock round: unexpected timer_tick"); },
  };
}

client_task make_task(std::string correlation_id,
                      std::string round_id = "round-1") {
  client_task t;
  t.correlation_id = std::move(correlation_id);
  t.round_id = round_id;
  t.session_id = "session-1";
  t.model_id = "model-1";
  t.kind = round_task::training;
  t.data = R"({"round_id": ")" + round_id + R"("})";
  return t;
}

struct session_fixture : rondo::test::actor_fixture {
  /// Every actor the test spawned (declared first: initializers below use
  /// it); all get an exit at the end.
  std::vector<caf::actor> spawned;
  client_info info{"client-1", "alice", true, false};
  log_ptr<client_activity> activity = std::make_shared<
    std::vector<client_activity>>();
  activity_listener_actor listener = keep(sys.spawn(mock_listener, activity));

  ~session_fixture() override {
    for (auto& a : spawned)
      self->send_exit(a, caf::exit_reason::user_shutdown);
    sched.run();
  }

  template <class Handle>
  Handle keep(Handle h) {
    spawned.push_back(caf::actor_cast<caf::actor>(h));
    return h;
  }

  client_session_actor spawn_session(client_session_config cfg = {}) {
    auto s = keep(sys.spawn(client_session, info, listener, cfg));
    sched.run();
    return s;
  }

  std::pair<task_sink_actor, log_ptr<client_task>> make_sink() {
    auto log = std::make_shared<std::vector<client_task>>();
    return {keep(sys.spawn(mock_sink, log)), log};
  }

  std::pair<round_actor, log_ptr<task_cancelled>> make_round() {
    auto log = std::make_shared<std::vector<task_cancelled>>();
    return {keep(sys.spawn(mock_round, log)), log};
  }

  /// The sequence of liveness values the listener was told (a report that
  /// only changes the stream's state keeps the value), after checking each
  /// report names the session's client and changes something.
  std::vector<bool> activity_values() {
    std::vector<bool> result;
    std::optional<std::pair<bool, bool>> last;
    for (auto& x : *activity) {
      CHECK(x.info == info);
      auto now = std::make_pair(x.active, x.streaming);
      CHECK(now != last);
      last = now;
      if (result.empty() || result.back() != x.active)
        result.push_back(x.active);
    }
    return result;
  }

  void heartbeat(const client_session_actor& s) {
    self->send(s, heartbeat_atom::value);
    sched.run();
  }

  void open(const client_session_actor& s, const task_sink_actor& sink) {
    self->send(s, caf::open_atom::value, sink);
    sched.run();
  }

  void close(const client_session_actor& s) {
    self->send(s, caf::close_atom::value);
    sched.run();
  }

  void finish(const client_session_actor& s, const std::string& cid) {
    self->send(s, finish_atom::value, cid);
    sched.run();
  }

  /// Moves the virtual clock by `d` and delivers what falls due.
  void advance(caf::timespan d) {
    advance_time(d);
    sched.run();
  }

  bool assign(const client_session_actor& s, const client_task& task,
              const round_actor& round) {
    auto rh = self->request(s, caf::infinite, task, round);
    sched.run();
    bool replied = false;
    bool result = false;
    rh.receive(
      [&](bool x) {
        replied = true;
        result = x;
      },
      [&](caf::error& err) { FAIL_CHECK(render(err)); });
    CHECK(replied);
    return result;
  }

  client_record get(const client_session_actor& s) {
    auto rh = self->request(s, caf::infinite, caf::get_atom::value);
    sched.run();
    client_record result;
    rh.receive([&](client_record& x) { result = std::move(x); },
               [&](caf::error& err) { FAIL_CHECK(render(err)); });
    return result;
  }

  /// Number of pending timers on the virtual clock.
  size_t pending_timers() {
    return sched.clock().schedule().size();
  }
};

using bools = std::vector<bool>;

} // namespace

TEST_CASE_FIXTURE(session_fixture,
                  "client session: a heartbeat activates the client once and "
                  "it goes inactive exactly liveness_timeout later") {
  auto s = spawn_session();
  CHECK(activity->empty()); // a new session starts inactive, silently
  CHECK(pending_timers() == 0);
  heartbeat(s);
  CHECK(activity_values() == bools{true});
  heartbeat(s); // no change, no message
  CHECK(activity_values() == bools{true});
  CHECK(pending_timers() == 1);
  advance(9900ms);
  CHECK(activity_values() == bools{true});
  advance(100ms);
  CHECK(activity_values() == bools{true, false});
  CHECK(pending_timers() == 0);
  advance(60s); // nothing more happens
  CHECK(activity_values() == bools{true, false});
  heartbeat(s); // a returning client becomes active again
  CHECK(activity_values() == bools{true, false, true});
}

TEST_CASE_FIXTURE(session_fixture,
                  "client session: heartbeats every 2 s keep the client "
                  "active with at most one pending timer") {
  auto s = spawn_session();
  heartbeat(s);
  for (int i = 0; i < 15; ++i) { // heartbeats at 2 s ... 30 s
    advance(2s);
    heartbeat(s);
    CHECK(pending_timers() <= 1);
  }
  CHECK(activity_values() == bools{true});
  advance(9999ms); // the last heartbeat was at 30 s
  CHECK(activity_values() == bools{true});
  advance(1ms);
  CHECK(activity_values() == bools{true, false});
}

TEST_CASE_FIXTURE(session_fixture,
                  "client session: an open stream keeps the client active "
                  "without heartbeats and close starts the timeout") {
  auto s = spawn_session();
  auto [sink, tasks] = make_sink();
  heartbeat(s);
  advance(5s);
  open(s, sink);
  CHECK(activity_values() == bools{true});
  advance(60s); // the heartbeat's check fires and is not re-armed
  CHECK(activity_values() == bools{true});
  CHECK(pending_timers() == 0);
  CHECK(get(s).status == "online");
  close(s);
  CHECK(pending_timers() == 1);
  advance(9900ms);
  CHECK(activity_values() == bools{true});
  advance(100ms);
  CHECK(activity_values() == bools{true, false});
  CHECK(tasks->empty());
}

TEST_CASE_FIXTURE(session_fixture,
                  "client session: a stream opened without heartbeats "
                  "activates the client") {
  auto s = spawn_session();
  auto [sink, tasks] = make_sink();
  open(s, sink);
  CHECK(activity_values() == bools{true});
  CHECK(pending_timers() == 0); // no polling while the stream is open
  close(s);
  advance(10s);
  CHECK(activity_values() == bools{true, false});
}

TEST_CASE_FIXTURE(session_fixture,
                  "client session: a task goes to the open stream and the "
                  "reply is true") {
  auto s = spawn_session();
  auto [sink, tasks] = make_sink();
  auto [round, cancelled] = make_round();
  heartbeat(s);
  // No stream: refused, nothing sent, nothing remembered.
  CHECK_FALSE(assign(s, make_task("cid-0"), round));
  open(s, sink);
  CHECK(tasks->empty());
  auto task = make_task("cid-1", "round-7");
  task.kind = round_task::validation;
  CHECK(assign(s, task, round));
  REQUIRE(tasks->size() == 1);
  auto& got = tasks->front();
  CHECK(got.correlation_id == "cid-1");
  CHECK(got.round_id == "round-7");
  CHECK(got.session_id == "session-1");
  CHECK(got.model_id == "model-1");
  CHECK(got.kind == round_task::validation);
  CHECK(got.data == R"({"round_id": "round-7"})");
  // The refused task was not remembered: closing cancels only cid-1.
  close(s);
  REQUIRE(cancelled->size() == 1);
  CHECK(cancelled->front().correlation_id == "cid-1");
}

TEST_CASE_FIXTURE(session_fixture,
                  "client session: close cancels outstanding tasks but not "
                  "finished ones") {
  auto s = spawn_session();
  auto [sink, tasks] = make_sink();
  auto [round1, cancelled1] = make_round();
  auto [round2, cancelled2] = make_round();
  open(s, sink);
  CHECK(assign(s, make_task("cid-1"), round1));
  CHECK(assign(s, make_task("cid-2"), round1));
  CHECK(assign(s, make_task("cid-3", "round-2"), round2));
  finish(s, "cid-2");
  finish(s, "unknown"); // ignored
  close(s);
  REQUIRE(cancelled1->size() == 1);
  CHECK(cancelled1->front().correlation_id == "cid-1");
  CHECK(cancelled1->front().client_id == "client-1");
  CHECK(cancelled1->front().reason == "client client-1 closed its task stream");
  REQUIRE(cancelled2->size() == 1);
  CHECK(cancelled2->front().correlation_id == "cid-3");
  CHECK(cancelled2->front().client_id == "client-1");
  close(s); // a second close changes nothing
  CHECK(cancelled1->size() == 1);
  CHECK(cancelled2->size() == 1);
  CHECK(tasks->size() == 3);
}

TEST_CASE_FIXTURE(session_fixture,
                  "client session: a reconnecting client gets nothing from "
                  "before") {
  auto s = spawn_session();
  auto [sink1, tasks1] = make_sink();
  auto [sink2, tasks2] = make_sink();
  auto [sink3, tasks3] = make_sink();
  auto [round, cancelled] = make_round();
  open(s, sink1);
  CHECK(assign(s, make_task("cid-1"), round));
  close(s);
  open(s, sink2);
  CHECK(tasks2->empty());
  REQUIRE(cancelled->size() == 1);
  CHECK(cancelled->at(0).correlation_id == "cid-1");
  CHECK(assign(s, make_task("cid-2"), round));
  REQUIRE(tasks2->size() == 1);
  CHECK(tasks2->front().correlation_id == "cid-2");
  // A second open while a stream is open replaces the (dead) stream and
  // cancels what was sent on it.
  open(s, sink3);
  REQUIRE(cancelled->size() == 2);
  CHECK(cancelled->at(1).correlation_id == "cid-2");
  CHECK(cancelled->at(1).reason
        == "client client-1 opened a new task stream; the old one was ended");
  CHECK(tasks3->empty());
  CHECK(assign(s, make_task("cid-3"), round));
  REQUIRE(tasks3->size() == 1);
  CHECK(tasks3->front().correlation_id == "cid-3");
  CHECK(tasks1->size() == 1);
  CHECK(tasks2->size() == 1);
  CHECK(activity_values() == bools{true}); // reconnects within the window
}

TEST_CASE_FIXTURE(session_fixture,
                  "client session: a duplicate correlation id is refused") {
  auto s = spawn_session();
  auto [sink, tasks] = make_sink();
  auto [round1, cancelled1] = make_round();
  auto [round2, cancelled2] = make_round();
  open(s, sink);
  CHECK(assign(s, make_task("cid-1"), round1));
  CHECK_FALSE(assign(s, make_task("cid-1"), round1));
  CHECK_FALSE(assign(s, make_task("cid-1", "round-2"), round2));
  CHECK(tasks->size() == 1);
  close(s);
  REQUIRE(cancelled1->size() == 1); // the first assignment owns the id
  CHECK(cancelled1->front().correlation_id == "cid-1");
  CHECK(cancelled2->empty());
}

TEST_CASE_FIXTURE(session_fixture,
                  "client session: a dead sink counts as a closed stream") {
  auto s = spawn_session();
  auto [sink, tasks] = make_sink();
  auto [round, cancelled] = make_round();
  open(s, sink);
  CHECK(assign(s, make_task("cid-1"), round));
  self->send_exit(sink, caf::exit_reason::user_shutdown);
  sched.run();
  REQUIRE(cancelled->size() == 1);
  CHECK(cancelled->front().correlation_id == "cid-1");
  CHECK(cancelled->front().reason.find("edge actor is down")
        != std::string::npos);
  CHECK_FALSE(assign(s, make_task("cid-2"), round));
  advance(10s);
  CHECK(activity_values() == bools{true, false});
}

TEST_CASE_FIXTURE(session_fixture,
                  "client session: get reports online or offline and "
                  "last_seen") {
  auto s = spawn_session();
  auto r = get(s);
  CHECK(r.client_id == "client-1");
  CHECK(r.name == "alice");
  CHECK(r.trainer);
  CHECK_FALSE(r.validator);
  CHECK(r.status == "offline");
  CHECK(r.last_seen == 0);
  heartbeat(s);
  r = get(s);
  CHECK(r.status == "online");
  CHECK(std::abs(r.last_seen - unix_now()) < 1.0);
  advance(5s);
  r = get(s);
  CHECK(r.status == "online");
  CHECK(std::abs(r.last_seen - (unix_now() - 5.0)) < 1.0);
  advance(5s);
  r = get(s);
  CHECK(r.status == "offline");
  CHECK(std::abs(r.last_seen - (unix_now() - 10.0)) < 1.0);
  auto [sink, tasks] = make_sink();
  open(s, sink);
  advance(30s);
  r = get(s);
  CHECK(r.status == "online");
  CHECK(std::abs(r.last_seen - unix_now()) < 1.0); // an open stream is now
}

TEST_CASE_FIXTURE(session_fixture,
                  "client session: a custom liveness_timeout is honoured") {
  client_session_config cfg;
  cfg.liveness_timeout = 3s;
  auto s = spawn_session(cfg);
  heartbeat(s);
  advance(2s);
  heartbeat(s); // the window now ends at 5 s
  advance(2999ms);
  CHECK(activity_values() == bools{true});
  CHECK(get(s).status == "online");
  advance(1ms);
  CHECK(activity_values() == bools{true, false});
  CHECK(get(s).status == "offline");
  heartbeat(s); // at 5 s; no second heartbeat: inactive at 8 s exactly
  advance(2999ms);
  CHECK(activity_values() == bools{true, false, true});
  advance(1ms);
  CHECK(activity_values() == bools{true, false, true, false});
}

TEST_CASE_FIXTURE(session_fixture,
                  "client session: an invalid liveness_timeout stops the "
                  "session") {
  client_session_config cfg;
  cfg.liveness_timeout = caf::timespan{0};
  CHECK(validate(cfg));
  CHECK_FALSE(validate(client_session_config{}));
  auto s = keep(sys.spawn(client_session, info, listener, cfg));
  sched.run();
  auto rh = self->request(s, caf::infinite, caf::get_atom::value);
  sched.run();
  bool failed = false;
  rh.receive([&](client_record&) { FAIL_CHECK("the session should be down"); },
             [&](caf::error&) { failed = true; });
  CHECK(failed);
  CHECK(activity->empty());
}

TEST_CASE_FIXTURE(session_fixture,
                  "client session: a task the client reports failed goes to "
                  "its round at once as failed") {
  auto s = spawn_session();
  auto [sink, tasks] = make_sink();
  auto [round, cancelled] = make_round();
  heartbeat(s);
  open(s, sink);
  REQUIRE(assign(s, make_task("cid-1"), round));
  REQUIRE(assign(s, make_task("cid-2"), round));
  // An id this client does not hold is ignored.
  self->send(s, failed_atom::value, std::string{"cid-9"},
             std::string{"nope"});
  sched.run();
  CHECK(cancelled->empty());
  self->send(s, failed_atom::value, std::string{"cid-1"},
             std::string{"train failed: exit 3"});
  sched.run();
  REQUIRE(cancelled->size() == 1);
  CHECK(cancelled->front()
        == task_cancelled{"cid-1", info.client_id, "train failed: exit 3",
                          true});
  // The failed task is forgotten: closing cancels only cid-2, as silent.
  close(s);
  REQUIRE(cancelled->size() == 2);
  CHECK(cancelled->back().correlation_id == "cid-2");
  CHECK_FALSE(cancelled->back().failed);
}

TEST_CASE_FIXTURE(session_fixture,
                  "client session: a newer stream of the same client ends "
                  "the old stream's sink with the reason") {
  // A second process with the same client id (or a reconnect) opens a
  // TaskStream while one is open: the old sink must stop, so that the edge
  // finishes the old gRPC stream and its client reconnects, rather than
  // waiting for tasks on a stream nothing writes to any more.
  auto s = spawn_session();
  auto old_tasks = std::make_shared<std::vector<client_task>>();
  auto old_exit = std::make_shared<std::optional<caf::error>>();
  auto old_sink = keep(sys.spawn(mock_sink_noting_exit, old_tasks, old_exit));
  auto [new_sink, new_tasks] = make_sink();
  auto [round, cancelled] = make_round();
  open(s, old_sink);
  CHECK(assign(s, make_task("cid-1"), round));
  open(s, new_sink);
  REQUIRE(old_exit->has_value());
  CHECK(render(**old_exit).find(client_session_state::replaced_reason)
        != std::string::npos);
  CHECK(error_detail(**old_exit) == client_session_state::replaced_reason);
  REQUIRE(cancelled->size() == 1);
  CHECK(cancelled->front().correlation_id == "cid-1");
  // The new stream is the session's stream: tasks go there, and the old
  // sink's down message does not close it.
  CHECK(assign(s, make_task("cid-2"), round));
  REQUIRE(new_tasks->size() == 1);
  CHECK(new_tasks->front().correlation_id == "cid-2");
  CHECK(get(s).status == "online");
  advance(60s);
  CHECK(activity_values() == bools{true});
  CHECK(cancelled->size() == 1);
  CHECK(old_tasks->size() == 1);
}

TEST_CASE_FIXTURE(session_fixture,
                  "client session: draining ends the open stream and refuses "
                  "new ones with the reason until it is lifted") {
  const std::string why = "combiner c1 is draining: ask the controller for "
                          "another combiner (clients/add)";
  auto s = spawn_session();
  auto tasks = std::make_shared<std::vector<client_task>>();
  auto first_exit = std::make_shared<std::optional<caf::error>>();
  auto first = keep(sys.spawn(mock_sink_noting_exit, tasks, first_exit));
  auto [round, cancelled] = make_round();
  open(s, first);
  CHECK(assign(s, make_task("cid-1"), round));
  self->send(s, drain_atom::value, true, why);
  sched.run();
  // The open stream ends with the reason; its task is cancelled.
  REQUIRE(first_exit->has_value());
  CHECK(error_detail(**first_exit) == why);
  REQUIRE(cancelled->size() == 1);
  CHECK(cancelled->front().correlation_id == "cid-1");
  CHECK_FALSE(assign(s, make_task("cid-2"), round));
  // A new stream is refused the same way; the client still counts as seen.
  auto refused_exit = std::make_shared<std::optional<caf::error>>();
  auto refused = keep(
    sys.spawn(mock_sink_noting_exit,
              std::make_shared<std::vector<client_task>>(), refused_exit));
  open(s, refused);
  REQUIRE(refused_exit->has_value());
  CHECK(error_detail(**refused_exit) == why);
  CHECK_FALSE(assign(s, make_task("cid-3"), round));
  CHECK(get(s).status == "online");
  // Lifted: a new stream is kept and gets tasks.
  self->send(s, drain_atom::value, false, std::string{});
  sched.run();
  auto [again, again_tasks] = make_sink();
  open(s, again);
  CHECK(assign(s, make_task("cid-4"), round));
  REQUIRE(again_tasks->size() == 1);
  CHECK(again_tasks->front().correlation_id == "cid-4");
  CHECK(tasks->size() == 1);
}
