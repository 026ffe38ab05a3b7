#include "messages/error.hpp"
#include "messages/round_config.hpp"

#include <doctest/doctest.h>

#include <map>
#include <string>

using namespace rondo;

namespace {

// Parses {key: value} and returns the rendered error, or "" on success.
std::string error_of(const std::string& key, const std::string& value) {
  auto cfg = parse_round_config({{key, value}});
  return cfg ? std::string{} : render(cfg.error());
}

round_config parse_ok(const std::map<std::string, std::string>& kv) {
  auto cfg = parse_round_config(kv);
  REQUIRE_MESSAGE(cfg, (cfg ? "" : render(cfg.error())));
  return *cfg;
}

} // namespace

TEST_CASE("round_config: every default is FEDn's") {
  auto c = parse_ok({});
  CHECK(c.round_id.empty());
  CHECK(c.task == round_task::training);
  CHECK(c.round_timeout == 180.0);
  CHECK(c.buffer_size == -1);
  CHECK(c.clients_required == 1);
  CHECK(c.clients_requested == 8);
  CHECK(c.max_clients == 30);
  CHECK(c.selected_clients.empty());
  CHECK(c.client_settings == "{}");
  CHECK(c.aggregator == "fedavg");
  CHECK(c.aggregator_kwargs == "{}");
  CHECK(c.delete_models_storage == true);
  CHECK(c.validate == true);
  CHECK(c.helper_type == "numpyhelper");
  CHECK(c.extra.empty());
}

TEST_CASE("round_config: string map as FEDn's controller sends it") {
  auto c = parse_ok({{"round_id", "3"},
                     {"session_id", "s-1"},
                     {"model_id", "m-7"},
                     {"task", "validation"},
                     {"round_timeout", "60.5"},
                     {"buffer_size", "4"},
                     {"clients_required", "2"},
                     {"clients_requested", "5"},
                     {"max_clients", "10"},
                     {"selected_clients", R"(["c1", "c2"])"},
                     {"client_settings", R"({"epochs": 2, "lr": 0.1})"},
                     {"aggregator", "fedopt"},
                     {"aggregator_kwargs", R"({"serveropt": "adam"})"},
                     {"delete_models_storage", "False"},
                     {"validate", "false"},
                     {"helper_type", "binaryhelper"}});
  CHECK(c.round_id == "3");
  CHECK(c.session_id == "s-1");
  CHECK(c.model_id == "m-7");
  CHECK(c.task == round_task::validation);
  CHECK(c.round_timeout == 60.5);
  CHECK(c.buffer_size == 4);
  CHECK(c.clients_required == 2);
  CHECK(c.clients_requested == 5);
  CHECK(c.max_clients == 10);
  CHECK(c.selected_clients == std::vector<std::string>{"c1", "c2"});
  CHECK(c.client_settings == R"({"epochs":2,"lr":0.1})");
  CHECK(c.aggregator == "fedopt");
  CHECK(c.aggregator_kwargs == R"({"serveropt":"adam"})");
  CHECK(c.delete_models_storage == false);
  CHECK(c.validate == false);
  CHECK(c.helper_type == "binaryhelper");
}

TEST_CASE("round_config: booleans accept True/False/true/false only") {
  CHECK(parse_ok({{"validate", "True"}}).validate == true);
  CHECK(parse_ok({{"validate", "true"}}).validate == true);
  CHECK(parse_ok({{"validate", "False"}}).validate == false);
  CHECK(parse_ok({{"validate", "false"}}).validate == false);
  CHECK(error_of("validate", "yes")
        == "rondo.invalid_config: validate must be a boolean "
           "(True/False/true/false), got 'yes'");
  CHECK(error_of("delete_models_storage", "1").find("delete_models_storage")
        != std::string::npos);
}

TEST_CASE("round_config: invalid numbers name the key and the value") {
  CHECK(error_of("round_timeout", "-3")
        == "rondo.invalid_config: round_timeout must be > 0, got -3");
  CHECK(error_of("round_timeout", "0")
        == "rondo.invalid_config: round_timeout must be > 0, got 0");
  CHECK(error_of("round_timeout", "abc")
        == "rondo.invalid_config: round_timeout must be a number, got 'abc'");
  CHECK(error_of("round_timeout", "nan").find("round_timeout")
        != std::string::npos);
  CHECK(error_of("buffer_size", "0")
        == "rondo.invalid_config: buffer_size must be -1 (all selected "
           "clients) or >= 1, got 0");
  CHECK(error_of("buffer_size", "-2").find("got -2") != std::string::npos);
  CHECK(error_of("buffer_size", "2.5")
        == "rondo.invalid_config: buffer_size must be an integer, got '2.5'");
  CHECK(error_of("clients_required", "0")
        == "rondo.invalid_config: clients_required must be >= 1, got 0");
  CHECK(error_of("clients_requested", "-1")
        == "rondo.invalid_config: clients_requested must be >= 1, got -1");
  CHECK(error_of("max_clients", "0")
        == "rondo.invalid_config: max_clients must be >= 1, got 0");
  auto too_many
    = parse_round_config({{"clients_required", "5"}, {"max_clients", "4"}});
  REQUIRE_FALSE(too_many);
  CHECK(render(too_many.error())
        == "rondo.invalid_config: clients_required (5) must not exceed "
           "max_clients (4): the round could never gather enough updates");
  // Validators are not bound by it; nor is an explicit client list.
  CHECK(parse_ok({{"clients_required", "5"}, {"max_clients", "4"},
                  {"task", "validation"}}).clients_required == 5);
  CHECK(error_of("task", "train")
        == "rondo.invalid_config: task must be training, validation or "
           "prediction, got 'train'");
  // Python's str() of an integral float is accepted for integer keys.
  CHECK(parse_ok({{"buffer_size", "5.0"}}).buffer_size == 5);
  CHECK(parse_ok({{"buffer_size", "-1"}}).buffer_size == -1);
  CHECK(parse_ok({{"round_timeout", "1e2"}}).round_timeout == 100.0);
}

TEST_CASE("round_config: lists and objects parse as JSON only") {
  // A Python repr is an error, never a substring match.
  CHECK(error_of("selected_clients", "['c1', 'c2']")
        == "rondo.invalid_config: selected_clients must be a JSON list, got "
           "'['c1', 'c2']' (not valid JSON)");
  CHECK(error_of("selected_clients", R"({"a": 1})")
        == "rondo.invalid_config: selected_clients must be a JSON list, got "
           "'{\"a\": 1}'");
  CHECK(error_of("selected_clients", "[1, 2]")
        == "rondo.invalid_config: selected_clients must be a JSON list of "
           "strings, got '[1, 2]'");
  CHECK(error_of("selected_clients", R"([""])").find("empty client id")
        != std::string::npos);
  CHECK(error_of("client_settings", "{'lr': 0.1}").find("client_settings "
                                                         "must be a JSON "
                                                         "object")
        != std::string::npos);
  CHECK(error_of("client_settings", "[1]")
        == "rondo.invalid_config: client_settings must be a JSON object, "
           "got '[1]'");
  CHECK(error_of("aggregator_kwargs", "3")
        == "rondo.invalid_config: aggregator_kwargs must be a JSON object, "
           "got '3'");
  CHECK(parse_ok({{"selected_clients", "[]"}}).selected_clients.empty());
}

TEST_CASE("round_config: unknown keys are kept and passed through") {
  auto c = parse_ok({{"round_id", "1"}, {"my_option", "42"},
                     {"tag", "experiment-a"}});
  CHECK(c.extra.size() == 2);
  CHECK(c.extra.at("my_option") == "42");
  CHECK(c.extra.at("tag") == "experiment-a");
  auto back = parse_round_config_json(to_json(c));
  REQUIRE(back);
  CHECK(back->extra == c.extra);
}

TEST_CASE("round_config: JSON with typed values and a to_json round trip") {
  auto c = parse_round_config_json(
    R"({"round_id": "7", "round_timeout": 30, "buffer_size": -1,
        "clients_required": 3, "validate": false,
        "delete_models_storage": "True",
        "selected_clients": ["a", "b"],
        "client_settings": {"epochs": 1},
        "aggregator_kwargs": {"serveropt": "yogi", "learning_rate": 0.01},
        "extra_number": 5})");
  REQUIRE_MESSAGE(c, (c ? "" : render(c.error())));
  CHECK(c->round_id == "7");
  CHECK(c->round_timeout == 30.0);
  CHECK(c->clients_required == 3);
  CHECK(c->validate == false);
  CHECK(c->delete_models_storage == true);
  CHECK(c->selected_clients == std::vector<std::string>{"a", "b"});
  CHECK(c->client_settings == R"({"epochs":1})");
  CHECK(c->extra.at("extra_number") == "5");
  auto again = parse_round_config_json(to_json(*c));
  REQUIRE(again);
  CHECK(*again == *c);
}

TEST_CASE("round_config: malformed JSON documents are clear errors") {
  auto a = parse_round_config_json("{not json");
  REQUIRE(!a);
  CHECK(render(a.error()) == "rondo.invalid_config: round config is not "
                             "valid JSON");
  auto b = parse_round_config_json("[1, 2]");
  REQUIRE(!b);
  CHECK(render(b.error()).find("must be a JSON object") != std::string::npos);
  auto c = parse_round_config_json(R"({"round_timeout": null})");
  REQUIRE(!c);
  CHECK(render(c.error()) == "rondo.invalid_config: round_timeout must not "
                             "be null");
  auto d = parse_round_config_json(R"({"round_timeout": -3})");
  REQUIRE(!d);
  CHECK(render(d.error()) == "rondo.invalid_config: round_timeout must be > "
                             "0, got -3");
}

TEST_CASE("round_config: validate() checks configs built in code") {
  round_config c;
  CHECK(!validate(c));
  c.max_clients = 0;
  CHECK(render(validate(c)) == "rondo.invalid_config: max_clients must be "
                               ">= 1, got 0");
}
