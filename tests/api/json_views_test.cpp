// FEDn's JSON shapes of Rondo's records, the session config FEDn's
// APIClient posts, and FEDn's listing conventions (filters, paging, sort).

#include "api/json_views.hpp"
#include "api/paging.hpp"
#include "messages/config_values.hpp"
#include "messages/error.hpp"

#include <doctest/doctest.h>

#include <tuple>

#include <nlohmann/json.hpp>

using namespace rondo;
using namespace rondo::api;
using json = nlohmann::json;

TEST_CASE("json views: a failed round has FEDn's fields and Rondo's "
          "client lists") {
  round_record r;
  r.round_id = "7";
  r.session_id = "s1";
  r.status = round_status::failed;
  r.reason = "no combiner succeeded: A: combiner lost";
  r.base_model_id = "m6";
  r.started_at = 1000;
  r.ended_at = 1012.5;
  r.num_examples = 0;
  r.config.round_id = "7";
  r.config.session_id = "s1";
  r.config.clients_requested = 5;
  r.clients_selected = {"a", "b"};
  r.clients_accepted = {"a"};
  r.clients_rejected = {{"b", "tensor '0' holds NaN at index 3"}};
  r.clients_silent = {"c"};
  r.combiners = {{"A", round_status::failed, "combiner lost", "", 0}};
  auto j = to_fedn_json(r);
  CHECK(j["round_id"] == "7");
  CHECK(j["status"] == "Failed");
  CHECK(j["reason"] == "no combiner succeeded: A: combiner lost");
  CHECK(j["session_id"] == "s1");
  CHECK(j["model_id"].is_null());
  CHECK(j["base_model_id"] == "m6");
  CHECK(j["started_at"] == 1000.0);
  CHECK(j["ended_at"] == 1012.5);
  CHECK(j["seconds"] == 12.5);
  CHECK(j["clients_selected"] == json::array({"a", "b"}));
  CHECK(j["clients_accepted"] == json::array({"a"}));
  CHECK(j["clients_rejected"]
        == json::parse(R"([{"client_id": "b",
                            "reason": "tensor '0' holds NaN at index 3"}])"));
  CHECK(j["clients_silent"] == json::array({"c"}));
  CHECK(j["round_config"]["requested_clients"] == 5);
  CHECK(j["round_config"]["task"] == "training");
  CHECK(j["round_data"].contains("time_commit"));
  REQUIRE(j["combiners"].size() == 1);
  CHECK(j["combiners"][0]["name"] == "A");
  CHECK(j["combiners"][0]["status"] == "Failed");
  CHECK(j["combiners"][0]["reason"] == "combiner lost");
  CHECK(j["committed_at"] == "Thu, 01 Jan 1970 00:16:40 GMT");
  r.status = round_status::success;
  r.reason.clear();
  CHECK(to_fedn_json(r)["status"] == "Finished");
  r.status = round_status::failed;
  r.reason = "terminated";
  CHECK(to_fedn_json(r)["status"] == "Terminated");
}

TEST_CASE("json views: a validation keeps the client's metrics text "
          "verbatim") {
  validation_record v;
  v.validation_id = "v1";
  v.model_id = "m1";
  v.client_id = "client-1";
  v.round_id = "3";
  v.session_id = "s1";
  v.metrics_json = R"({"test_accuracy": 0.125,   "extra": "x y"})";
  v.received_at = 1736244000;
  auto j = to_fedn_json(v);
  CHECK(j["data"] == v.metrics_json);
  CHECK(j["sender"]["name"] == "client-1");
  CHECK(j["sender"]["role"] == "CLIENT");
  CHECK(j["round_id"] == "3");
  CHECK(j["timestamp"] == "Tue, 07 Jan 2025 10:00:00 GMT");
}

TEST_CASE("json views: a validation's and a prediction's sender is the "
          "client's name and id") {
  validation_record v;
  v.validation_id = "v1";
  v.client_id = "2f6c0c4e-uuid";
  v.client_name = "py1";
  auto j = to_fedn_json(v);
  CHECK(j["sender"]["name"] == "py1");
  CHECK(j["sender"]["client_id"] == "2f6c0c4e-uuid");
  CHECK(j["sender"]["role"] == "CLIENT");
  prediction_record p;
  p.key = "k1";
  p.client_id = "2f6c0c4e-uuid";
  p.client_name = "py1";
  auto pj = to_fedn_json(p);
  CHECK(pj["sender"]["name"] == "py1");
  CHECK(pj["sender"]["client_id"] == "2f6c0c4e-uuid");
  p.client_name.clear(); // stored before the name was kept
  CHECK(to_fedn_json(p)["sender"]["name"] == "2f6c0c4e-uuid");
}

TEST_CASE("json views: sessions and models in FEDn's shape") {
  session_config cfg;
  cfg.session_id = "s1";
  cfg.rounds = 3;
  cfg.clients_requested = 4;
  cfg.model_id = "m0";
  session_record s;
  s.session_id = "s1";
  s.name = "first";
  s.status = session_status::pending;
  s.config_json = to_json(cfg);
  s.seed_model_id = "m0";
  auto j = to_fedn_json(s);
  CHECK(j["status"] == "Created");
  CHECK(j["name"] == "first");
  CHECK(j["session_config"]["rounds"] == 3);
  CHECK(j["session_config"]["requested_clients"] == 4);
  CHECK(j["session_config"]["helper_type"] == "numpyhelper");
  s.status = session_status::finished;
  CHECK(to_fedn_json(s)["status"] == "Finished");
  model_record seed{"m0", "", "", "", 1736244000};
  auto m = to_fedn_json(seed);
  CHECK(m["model"] == "m0");
  CHECK(m["model_id"] == "m0");
  CHECK(m["parent_model"].is_null());
  CHECK(m["committed_at"] == "Tue, 07 Jan 2025 10:00:00 GMT");
}

TEST_CASE("json views: the session config APIClient.start_session posts") {
  auto posted = json::parse(R"({
    "aggregator": "fedavg", "aggregator_kwargs": null, "round_timeout": 30,
    "buffer_size": -1, "model_id": "m0", "delete_models_storage": false,
    "clients_required": 2, "requested_clients": 3, "validate": true,
    "helper_type": "numpyhelper", "server_functions": null})");
  auto cfg = session_config_from_fedn(posted);
  REQUIRE(cfg);
  CHECK(cfg->round_timeout == 30);
  CHECK(cfg->clients_required == 2);
  CHECK(cfg->clients_requested == 3);
  CHECK(cfg->delete_models_storage == false);
  CHECK(cfg->model_id == "m0");
  CHECK(cfg->rounds == 5);
  auto refused = [&](const char* key, json value, const char* says) {
    auto bad = posted;
    bad[key] = value;
    auto r = session_config_from_fedn(bad);
    REQUIRE_FALSE(r);
    CHECK(render(r.error()).find(says) != std::string::npos);
  };
  refused("helper_type", "kerashelper", "helper_type");
  refused("round_timeout", "abc", "round_timeout");
  refused("round_timeout", -5, "round_timeout");
  refused("clients_required", 0, "clients_required");
  refused("validate", "maybe", "validate");
  refused("server_functions", "def f(): pass", "server_functions");
  refused("nonsense", 1, "unknown key 'nonsense'");
}

namespace {

std::vector<listed> three_models() {
  std::vector<listed> xs;
  for (auto& m : {model_record{"a", "", "", "", 10},
                  model_record{"b", "a", "s1", "1", 20},
                  model_record{"c", "b", "s1", "2", 30}})
    xs.push_back(make_listed(to_fedn_json(m), m.committed_at));
  return xs;
}

std::vector<std::string> ids(const json& answer) {
  std::vector<std::string> out;
  for (auto& x : answer["result"])
    out.push_back(x["model_id"]);
  return out;
}

} // namespace

TEST_CASE("paging: FEDn's headers sort, skip and limit; count is of every "
          "match") {
  auto newest = parse_paging_values("1", "", "committed_at", "desc");
  REQUIRE(newest);
  auto a = list_answer(three_models(), {}, *newest, "models");
  REQUIRE(a);
  CHECK((*a)["count"] == 3);
  CHECK(ids(*a) == std::vector<std::string>{"c"});
  auto asc = parse_paging_values("2", "1", "", "ASC");
  REQUIRE(asc);
  auto b = list_answer(three_models(), {}, *asc, "models");
  REQUIRE(b);
  CHECK(ids(*b) == std::vector<std::string>{"b", "c"});
  auto by_id = parse_paging_values("", "", "model_id", "desc");
  REQUIRE(by_id);
  auto c = list_answer(three_models(), {{"session_id", "s1"}}, *by_id,
                       "models");
  REQUIRE(c);
  CHECK((*c)["count"] == 2);
  CHECK(ids(*c) == std::vector<std::string>{"c", "b"});
  auto seeds = list_answer(three_models(), {{"parent_model", "null"}},
                           page_request{}, "models");
  REQUIRE(seeds);
  CHECK(ids(*seeds) == std::vector<std::string>{"a"});
}

TEST_CASE("paging: bad headers and unknown filters name what is wrong") {
  auto limit = parse_paging_values("ten", "", "", "");
  REQUIRE_FALSE(limit);
  CHECK(render(limit.error()).find("X-Limit") != std::string::npos);
  auto skip = parse_paging_values("", "-1", "", "");
  REQUIRE_FALSE(skip);
  CHECK(render(skip.error()).find("X-Skip") != std::string::npos);
  auto order = parse_paging_values("", "", "", "up");
  REQUIRE_FALSE(order);
  CHECK(render(order.error()).find("X-Sort-Order") != std::string::npos);
  auto key = list_answer(three_models(), {},
                         page_request{0, 0, "colour", true}, "models");
  REQUIRE_FALSE(key);
  CHECK(render(key.error()).find("X-Sort-Key") != std::string::npos);
  auto filter = list_answer(three_models(), {{"colour", "red"}},
                            page_request{}, "models");
  REQUIRE_FALSE(filter);
  CHECK(render(filter.error()).find("unknown filter 'colour'")
        != std::string::npos);
}

TEST_CASE("paging: dotted filters reach nested fields; aliases rename") {
  std::vector<listed> xs;
  const std::tuple<const char*, const char*, const char*> rows[]
    = {{"v1", "c1", "s1"}, {"v2", "c2", "s1"}, {"v3", "c1", "s2"}};
  for (auto [id, client, session] : rows) {
    validation_record v;
    v.validation_id = id;
    v.client_id = client;
    v.session_id = session;
    v.metrics_json = "{}";
    xs.push_back(make_listed(to_fedn_json(v), 0));
  }
  auto a = list_answer(xs, {{"sender.name", "c1"}, {"sessionId", "s2"}},
                       page_request{}, "validations",
                       {{"sessionId", "session_id"}});
  REQUIRE(a);
  CHECK((*a)["count"] == 1);
  CHECK((*a)["result"][0]["validation_id"] == "v3");
}

TEST_CASE("paging: header names and values compare in any ASCII case") {
  CHECK(ascii_lower("X-Sort-Order") == "x-sort-order");
  CHECK(ascii_lower("TRUE") == "true");
  // Bytes outside ASCII (here UTF-8 "Ä") are kept as they are.
  CHECK(ascii_lower("\xc3\x84SC") == "\xc3\x84sc");
  auto mixed = parse_paging_values("", "", "", "Desc");
  REQUIRE(mixed);
  CHECK(mixed->descending);
}
