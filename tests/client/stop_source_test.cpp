// The client's stop source: interruptible waits and stop callbacks.

#include "client/stop_source.hpp"

#include <doctest/doctest.h>

#include <atomic>
#include <chrono>
#include <thread>

using namespace rondo::client;
using namespace std::chrono_literals;

TEST_CASE("client: stop_source wakes waits and runs callbacks once") {
  stop_source stop;
  CHECK(!stop.stop_requested());
  CHECK(!stop.wait_for(10ms));
  std::atomic<int> calls{0};
  {
    stop_callback cb{stop, [&calls] { ++calls; }};
    std::thread t{[&stop] { stop.request_stop(); }};
    auto t0 = std::chrono::steady_clock::now();
    CHECK(stop.wait_for(60s));
    CHECK(std::chrono::steady_clock::now() - t0 < 10s);
    t.join();
  }
  CHECK(calls == 1);
  CHECK(!stop.request_stop());
  CHECK(calls == 1);
  // Registered after stop: runs at once.
  stop_callback late{stop, [&calls] { ++calls; }};
  CHECK(calls == 2);
}
