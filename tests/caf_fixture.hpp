#pragma once

// CAF's deterministic test scheduler (caf/test/dsl.hpp, test_coordinator)
// routed into doctest. A virtual clock makes timers instant and exact:
// `sched.run()` delivers messages only; `run()` also fires every pending
// timer; `advance_time(d)` moves the clock and fires what falls due.
//
// CAF's DSL assumes its failure macros do not return, so the routed
// REQUIRE/FAIL report to doctest first and then abort the test binary.

#include "actors/type_ids.hpp"

#include <doctest/doctest.h>

#include <caf/test/unit_test.hpp>

#include <cstdlib>
#include <iostream>
#include <sstream>

#undef CAF_MESSAGE
#undef CAF_CHECK
#undef CAF_CHECK_EQUAL
#undef CAF_FAIL
#undef CAF_REQUIRE
#undef CAF_REQUIRE_EQUAL

#define CAF_MESSAGE(msg)                                                       \
  do {                                                                         \
  } while (false)

#define CAF_CHECK(...) CHECK(static_cast<bool>(__VA_ARGS__))

#define CAF_CHECK_EQUAL(x, y) CHECK((x) == (y))

#define RONDO_TEST_ABORT(what)                                                 \
  do {                                                                         \
    FAIL_CHECK(what);                                                          \
    std::cout.flush();                                                         \
    std::cerr << "fatal test failure at " << __FILE__ << ":" << __LINE__     \
              << ": " << (what) << std::endl;                                  \
    std::abort();                                                              \
  } while (false)

#define CAF_FAIL(msg)                                                          \
  do {                                                                         \
    std::ostringstream rondo_os_;                                              \
    rondo_os_ << msg;                                                          \
    RONDO_TEST_ABORT(rondo_os_.str());                                         \
  } while (false)

#define CAF_REQUIRE(...)                                                       \
  do {                                                                         \
    if (!static_cast<bool>(__VA_ARGS__))                                       \
      RONDO_TEST_ABORT("requirement failed: " #__VA_ARGS__);                   \
  } while (false)

#define CAF_REQUIRE_EQUAL(x, y)                                                \
  do {                                                                         \
    if (!((x) == (y)))                                                         \
      RONDO_TEST_ABORT("requirement failed: " #x " == " #y);                   \
  } while (false)

#include <caf/test/dsl.hpp>

namespace rondo::test {

/// An actor system config with Rondo's message types and error category.
struct config : caf::actor_system_config {
  config() {
    register_actor_types(*this);
  }
};

/// Base fixture for actor tests on the deterministic scheduler.
struct actor_fixture : test_coordinator_fixture<config> {
  /// Renders an error with the system's registered renderers.
  std::string render(const caf::error& err) {
    return sys.render(err);
  }
};

} // namespace rondo::test
