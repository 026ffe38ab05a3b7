// The deterministic-scheduler fixture itself: messages, replies and timers
// on the virtual clock behave as the actor tests rely on.

#include "tests/caf_fixture.hpp"
#include "messages/error.hpp"

#include <caf/stateful_actor.hpp>

using namespace std::chrono_literals;

namespace {

using tick_atom = caf::atom_constant<caf::atom("tick")>;

// Replies to an int with its double; on `tick` arms a 5 s timer that
// records when it fired.
caf::behavior doubler(caf::stateful_actor<int>* self) {
  self->state = 0;
  return {
    [](int x) { return x * 2; },
    [self](tick_atom) { self->delayed_send(self, 5s, std::string{"fired"}); },
    [self](const std::string&) { self->state += 1; },
    [self](caf::get_atom) { return self->state; },
  };
}

} // namespace

TEST_CASE_FIXTURE(rondo::test::actor_fixture,
                  "caf fixture: request and reply on the test scheduler") {
  auto aut = sys.spawn(doubler);
  int result = 0;
  auto rh = self->request(aut, caf::infinite, 21);
  run();
  rh.receive([&](int x) { result = x; },
             [&](caf::error& err) { FAIL_CHECK(sys.render(err)); });
  CHECK(result == 42);
  self->send_exit(aut, caf::exit_reason::user_shutdown);
}

TEST_CASE_FIXTURE(rondo::test::actor_fixture,
                  "caf fixture: timers fire only when the clock advances") {
  auto aut = sys.spawn(doubler);
  self->send(aut, tick_atom::value);
  sched.run(); // delivers messages only
  CHECK(sched.clock().schedule().size() == 1);
  CHECK(advance_time(4s) == 0);
  CHECK(advance_time(1s) == 1);
  sched.run();
  CHECK(sched.clock().schedule().empty());
  int fired = -1;
  auto rh = self->request(aut, caf::infinite, caf::get_atom::value);
  sched.run();
  rh.receive([&](int n) { fired = n; },
             [&](caf::error& err) { FAIL_CHECK(sys.render(err)); });
  CHECK(fired == 1);
  self->send_exit(aut, caf::exit_reason::user_shutdown);
}

TEST_CASE_FIXTURE(rondo::test::actor_fixture,
                  "caf fixture: rondo errors render readably") {
  auto err = caf::make_error(rondo::ec::invalid_config,
                             "round_timeout must be > 0, got -3");
  CHECK(sys.render(err)
        == "rondo.invalid_config: round_timeout must be > 0, got -3");
  CHECK(rondo::render(err)
        == "rondo.invalid_config: round_timeout must be > 0, got -3");
}
