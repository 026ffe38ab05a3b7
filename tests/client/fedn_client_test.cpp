// The client's configuration checks (the protocol loop itself is tested
// end to end against a real combiner).

#include "client/fedn_client.hpp"

#include "messages/error.hpp"

#include <doctest/doctest.h>

using namespace rondo;
using namespace rondo::client;

namespace {

client_config good_config() {
  client_config cfg;
  cfg.name = "client-1";
  cfg.client_id = "0b7e6c3a-0000-4000-8000-000000000001";
  return cfg;
}

} // namespace

TEST_CASE("client: default configuration with name and id is valid") {
  auto cfg = good_config();
  CHECK(!validate(cfg));
  CHECK(cfg.host == "127.0.0.1");
  CHECK(cfg.port == 12080);
  CHECK(cfg.heartbeat_interval_s == 2);
  CHECK(cfg.task_timeout_s == 3600);
  CHECK(cfg.backoff_initial_s == 0.5);
  CHECK(cfg.backoff_max_s == 30);
  CHECK(cfg.chunk_bytes == 1024 * 1024);
  CHECK(cfg.roles.trainer);
  CHECK(cfg.roles.validator);
}

TEST_CASE("client: invalid configurations are named") {
  auto check_bad = [](client_config cfg, const std::string& word) {
    auto err = validate(cfg);
    REQUIRE(err);
    CHECK(err == ec::invalid_config);
    CHECK(render(err).find(word) != std::string::npos);
  };
  auto cfg = good_config();
  cfg.name.clear();
  check_bad(cfg, "name");
  cfg = good_config();
  cfg.client_id.clear();
  check_bad(cfg, "client id");
  cfg = good_config();
  cfg.task_timeout_s = 0;
  check_bad(cfg, "task timeout");
  cfg = good_config();
  cfg.heartbeat_interval_s = -1;
  check_bad(cfg, "heartbeat interval");
  cfg = good_config();
  cfg.backoff_initial_s = 60;
  check_bad(cfg, "back-off");
  cfg = good_config();
  cfg.chunk_bytes = 0;
  check_bad(cfg, "chunk size");
}
