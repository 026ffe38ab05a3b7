#pragma once

// A real combiner on the deterministic scheduler with mock clients: each
// mock client is a task sink that records the tasks it gets; the test
// answers them by storing an update model and sending a model_update, as
// the gRPC edge would.

#include "actors/combiner.hpp"
#include "messages/error.hpp"
#include "model/npz.hpp"
#include "model/tensor.hpp"
#include "storage/model_store.hpp"
#include "storage/state_store.hpp"
#include "tests/caf_fixture.hpp"
#include "tests/test_util.hpp"

#include <memory>
#include <string>
#include <vector>

namespace rondo::test {

/// What a mock client's task sink received.
struct sink_log {
  std::vector<client_task> tasks;
};

/// The round records a pusher received: the terminal ones, and the
/// progress ones (status running, sent once a round's tasks are out).
struct report_log {
  std::vector<round_record> rounds;
  std::vector<round_record> progress;
  /// Every record in arrival order.
  std::vector<round_record> all;
};

struct combiner_fixture : actor_fixture {
  temp_dir dir;
  std::shared_ptr<storage::model_store> models;
  std::shared_ptr<storage::state_store> state;
  combiner_config cfg;
  combiner_actor combiner;
  std::shared_ptr<report_log> reports = std::make_shared<report_log>();
  round_report_actor reporter;
  std::map<std::string, std::shared_ptr<sink_log>> sinks;
  std::map<std::string, client_session_actor> sessions;

  combiner_fixture() {
    auto db = storage::database::open(dir.sub("db"));
    REQUIRE(db);
    models = *storage::model_store::open(*db);
    state = *storage::state_store::open(*db);
    cfg.rounds.client_wait_timeout = std::chrono::seconds(30);
    cfg.staging.max_tries = 2;
    auto log = reports;
    reporter = sys.spawn([log]() -> round_report_actor::behavior_type {
      return {[log](const round_record& r) {
        log->all.push_back(r);
        (r.status == round_status::running ? log->progress : log->rounds)
          .push_back(r);
      }};
    });
  }

  ~combiner_fixture() override {
    if (combiner)
      self->send_exit(combiner, caf::exit_reason::user_shutdown);
    self->send_exit(reporter, caf::exit_reason::user_shutdown);
    for (auto& [id, s] : sessions)
      self->send_exit(s, caf::exit_reason::user_shutdown);
    sched.run();
  }

  void start() {
    combiner = sys.spawn(combiner_impl, cfg, models, state,
                         model_source_actor{});
    sched.run();
  }

  /// A one-tensor float32 model "0" with the given values.
  static std::string npz(const std::vector<double>& values,
                         std::vector<uint64_t> shape = {}) {
    if (shape.empty())
      shape = {values.size()};
    model m;
    auto t = make_tensor("0", dtype::f32, shape, values);
    REQUIRE(t);
    m.push_back(std::move(*t));
    auto bytes = write_npz_bytes(m);
    REQUIRE(bytes);
    return *bytes;
  }

  std::vector<double> load(const std::string& model_id) {
    auto bytes = models->get(model_id);
    REQUIRE_MESSAGE(bytes, (bytes ? "" : render(bytes.error())));
    auto m = read_npz_bytes(*bytes);
    REQUIRE(m);
    std::vector<double> out;
    for (uint64_t i = 0; i < (*m)[0].count(); ++i)
      out.push_back((*m)[0].at(i));
    return out;
  }

  void seed(const std::string& model_id, const std::vector<double>& values) {
    REQUIRE(models->put(model_id, npz(values)));
  }

  /// Connects a client with a heartbeat and an open task stream.
  void connect(const std::string& client_id, const std::string& name = "",
               bool trainer = true, bool validator = true) {
    auto rh = self->request(combiner, caf::infinite,
                            client_info{client_id, name.empty() ? client_id
                                                                : name,
                                        trainer, validator});
    sched.run();
    client_session_actor session;
    rh.receive([&](client_session_actor& s) { session = s; },
               [&](caf::error& err) { FAIL_CHECK(render(err)); });
    REQUIRE(session);
    auto log = std::make_shared<sink_log>();
    auto sink = sys.spawn([log]() -> task_sink_actor::behavior_type {
      return {[log](const client_task& t) { log->tasks.push_back(t); }};
    });
    sinks[client_id] = log;
    sessions[client_id] = session;
    self->send(session, heartbeat_atom::value);
    self->send(session, caf::open_atom::value, sink);
    sched.run();
  }

  /// Starts the combiner with seed model "m0" = [0], connects `clients`
  /// and pushes `c`.
  void run_round(const std::vector<std::string>& clients, round_config c) {
    start();
    seed("m0", {0});
    for (auto& id : clients)
      connect(id);
    push(std::move(c));
  }

  void disconnect(const std::string& client_id) {
    self->send(sessions.at(client_id), caf::close_atom::value);
    sched.run();
  }

  std::string push(round_config c) {
    auto rh = self->request(combiner, caf::infinite, std::move(c), reporter);
    sched.run();
    std::string job_id;
    rh.receive([&](std::string& id) { job_id = id; },
               [&](caf::error& err) { FAIL_CHECK(render(err)); });
    return job_id;
  }

  round_config training(const std::string& round_id,
                        const std::string& model_id) {
    round_config c;
    c.round_id = round_id;
    c.session_id = "session-1";
    c.model_id = model_id;
    c.round_timeout = 60;
    c.client_settings = R"({"epochs":1})";
    return c;
  }

  /// The last task client `client_id` received.
  client_task last_task(const std::string& client_id) {
    auto& log = sinks.at(client_id)->tasks;
    REQUIRE(!log.empty());
    return log.back();
  }

  /// Answers `task` with an update model of `values` weighing `n`.
  update_verdict answer(const std::string& client_id, const client_task& task,
                        const std::string& update_npz, double n,
                        std::string correlation_id = "*") {
    auto update_id = "update-" + task.correlation_id + "-" + client_id;
    static_cast<void>(models->put(update_id, update_npz));
    model_update u{client_id,
                   correlation_id == "*" ? task.correlation_id
                                         : correlation_id,
                   task.model_id,
                   update_id,
                   n,
                   "{}"};
    auto rh = self->request(combiner, caf::infinite, u);
    sched.run();
    update_verdict v;
    rh.receive([&](update_verdict& x) { v = x; },
               [&](caf::error& err) { FAIL_CHECK(render(err)); });
    return v;
  }

  update_verdict answer(const std::string& client_id,
                        const std::vector<double>& values, double n) {
    return answer(client_id, last_task(client_id), npz(values), n);
  }
};

} // namespace rondo::test
