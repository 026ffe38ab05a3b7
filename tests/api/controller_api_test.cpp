// The controller's handlers behind the REST API: pending sessions (FEDn's
// POST /sessions/ then /sessions/start), FEDn's controller states, and the
// bounded store of clients' status events.

#include "actors/controller.hpp"
#include "tests/actors/combiner_fixture.hpp"

#include <doctest/doctest.h>

#include <algorithm>

using namespace std::chrono_literals;
using namespace rondo;

namespace {

struct api_fixture : rondo::test::combiner_fixture {
  controller_actor controller;

  explicit api_fixture(size_t max_statuses = 10000) {
    controller_config ccfg;
    ccfg.client_wait = 10s;
    ccfg.max_statuses = max_statuses;
    controller = sys.spawn(controller_impl, ccfg, models, state);
    sched.run();
  }

  ~api_fixture() override {
    self->send_exit(controller, caf::exit_reason::user_shutdown);
    sched.run();
  }

  std::string controller_status() {
    auto rh = self->request(controller, caf::infinite, caf::get_atom::value,
                            status_atom::value);
    sched.run();
    std::string out;
    rh.receive([&](std::string& x) { out = x; },
               [this](caf::error& err) { FAIL_CHECK(render(err)); });
    return out;
  }
};

} // namespace

TEST_CASE("controller api: a pending session keeps its name and starts by "
          "its id") {
  api_fixture f;
  f.seed("seed", {1, 2});
  session_config cfg;
  cfg.rounds = 2;
  cfg.model_id = "seed";
  auto created = f.self->request(f.controller, caf::infinite,
                                 caf::put_atom::value, session_atom::value,
                                 cfg, std::string{"named"});
  f.sched.run();
  session_record rec;
  created.receive([&](session_record& x) { rec = x; },
                  [&f](caf::error& err) { FAIL(f.render(err)); });
  CHECK(rec.status == session_status::pending);
  CHECK(rec.name == "named");
  CHECK_FALSE(rec.session_id.empty());
  auto stored = f.state->get<session_record>(rec.session_id);
  REQUIRE(stored);
  CHECK(*stored == rec);
  CHECK(f.controller_status() == "idle");
  // The same id again is refused.
  cfg.session_id = rec.session_id;
  auto again = f.self->request(f.controller, caf::infinite,
                               caf::put_atom::value, session_atom::value, cfg,
                               std::string{});
  f.sched.run();
  again.receive([](session_record&) { FAIL("a second session was stored"); },
                [](caf::error& err) { CHECK(err == ec::already_exists); });
  auto start = f.self->request(f.controller, caf::infinite, cfg);
  f.sched.run();
  start.receive([&](std::string& id) { CHECK(id == rec.session_id); },
                [&f](caf::error& err) { FAIL(f.render(err)); });
  auto running = f.state->get<session_record>(rec.session_id);
  REQUIRE(running);
  CHECK(running->status == session_status::running);
  CHECK(running->name == "named");
  CHECK(running->created_at == rec.created_at);
  // No combiner: the controller waits for one to pick.
  CHECK(f.controller_status() == "instructing");
}

TEST_CASE("controller api: status events are stored, the newest "
          "max_statuses kept") {
  api_fixture f{3};
  for (int i = 0; i < 5; ++i) {
    status_record x;
    x.status = "event " + std::to_string(i);
    x.sender_client_id = "c1";
    x.timestamp = 100 + i;
    f.self->send(f.controller, x);
    f.sched.run();
  }
  auto kept = f.state->list<status_record>();
  REQUIRE(kept);
  std::vector<std::string> texts;
  for (auto& x : *kept) {
    CHECK_FALSE(x.status_id.empty());
    texts.push_back(x.status);
  }
  std::sort(texts.begin(), texts.end());
  CHECK(texts == std::vector<std::string>{"event 2", "event 3", "event 4"});
}
