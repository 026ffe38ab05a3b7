// Deeply nested JSON from outside: found by tests/fuzz (fuzz_meta,
// fuzz_config). nlohmann's parser takes any depth, but dump() recurses once
// per level: a ModelUpdate meta of ~80 KB of `[` crashed the fuzz build's
// parse_num_examples with a stack overflow (a few hundred KB do it without
// sanitizers, well inside gRPC's 4 MB message). Every parser of outside
// JSON now refuses more than max_json_depth levels, naming the reason.

#include "client/task_meta.hpp"
#include "gateway/wire.hpp"
#include "messages/config_values.hpp"
#include "messages/controller_messages.hpp"
#include "messages/error.hpp"
#include "messages/round_config.hpp"

#include <doctest/doctest.h>

#include <string>

using namespace rondo;

namespace {

/// `levels` nested arrays around `inner`.
std::string nested(size_t levels, const std::string& inner = "1") {
  return std::string(levels, '[') + inner + std::string(levels, ']');
}

/// The rendered error of `x`, or "" when it holds a value.
template <class T>
std::string error_of(const caf::expected<T>& x) {
  return x ? std::string{} : render(x.error());
}

// What a peer can send in one gRPC message: 1M levels, 2 MB.
constexpr size_t deep = 1'000'000;

} // namespace

TEST_CASE("json depth: the limit counts brackets outside strings only") {
  CHECK(json_nesting_problem(nested(max_json_depth)).empty());
  CHECK(json_nesting_problem(nested(max_json_depth + 1))
        == "nested deeper than 64 levels");
  CHECK(json_nesting_problem("{\"a\": \"" + std::string(1000, '[')
                             + "\\\"[{\"}")
          .empty());
  CHECK(json_nesting_problem("]]]]" + nested(10)).empty());
}

TEST_CASE("json depth: a ModelUpdate meta nested too deep is malformed") {
  auto meta = "{\"training_metadata\": {\"num_examples\": " + nested(deep)
              + "}}";
  auto n = gateway::parse_num_examples(meta);
  REQUIRE(!n);
  CHECK(n.error() == ec::invalid_argument);
  CHECK(error_of(n).find("malformed meta: nested deeper than 64 levels")
        != std::string::npos);
  auto err = gateway::check_json_object("{\"m\": " + nested(deep) + "}",
                                        "data");
  CHECK(err == ec::invalid_argument);
  CHECK(render(err).find("malformed data: nested deeper than 64 levels")
        != std::string::npos);
  // FEDn's own meta still parses.
  auto ok = gateway::parse_num_examples(
    "{\"training_metadata\": {\"num_examples\": 600, \"nested\": "
    + nested(30) + "}}");
  REQUIRE_MESSAGE(ok, error_of(ok));
  CHECK(*ok == 600);
}

TEST_CASE("json depth: round and session configs nested too deep") {
  auto rc = parse_round_config_json("{\"aggregator_kwargs\": {\"x\": "
                                    + nested(deep) + "}}");
  REQUIRE(!rc);
  CHECK(rc.error() == ec::invalid_config);
  CHECK(error_of(rc).find("round config is nested deeper than 64 levels")
        != std::string::npos);
  auto kv = parse_round_config(
    {{"client_settings", "{\"x\": " + nested(deep) + "}"}});
  REQUIRE(!kv);
  CHECK(error_of(kv).find("client_settings is nested deeper than 64 levels")
        != std::string::npos);
  auto sc = parse_session_config_json("{\"client_settings\": {\"x\": "
                                      + nested(deep) + "}}");
  REQUIRE(!sc);
  CHECK(sc.error() == ec::invalid_config);
  CHECK(error_of(sc).find("session config is nested deeper than 64 levels")
        != std::string::npos);
}

TEST_CASE("json depth: the client refuses task JSON nested too deep") {
  auto td = client::parse_task_data("{\"round_id\": \"1\", "
                                    "\"client_settings\": {\"x\": "
                                      + nested(deep) + "}}",
                                    true);
  REQUIRE(!td);
  CHECK(error_of(td).find("task data is nested deeper than 64 levels")
        != std::string::npos);
  auto md = client::parse_training_metadata(
    "{\"num_examples\": " + nested(deep) + "}", "out-metadata");
  REQUIRE(!md);
  CHECK(error_of(md).find("in out-metadata: nested deeper than 64 levels")
        != std::string::npos);
  CHECK(!client::parse_metrics("{\"m\": " + nested(deep) + "}", "m.json"));
  CHECK(!client::parse_prediction(nested(deep), "p.json"));
}
