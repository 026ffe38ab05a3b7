// FEDn task JSON: task data, training metadata, ModelUpdate meta, metrics,
// the role announcement.

#include "client/task_meta.hpp"

#include "messages/combiner_messages.hpp"
#include "messages/error.hpp"

#include <doctest/doctest.h>
#include <nlohmann/json.hpp>

using namespace rondo;
using namespace rondo::client;
using json = nlohmann::json;

TEST_CASE("client: task data gives round_id and client_settings") {
  auto d = parse_task_data(
    R"({"round_id": "3", "client_settings": {"epochs": 2, "lr": 0.1}})", true);
  REQUIRE(d);
  CHECK(d->round_id == "3");
  CHECK(json::parse(d->client_settings) == json{{"epochs", 2}, {"lr", 0.1}});
  auto n = parse_task_data(R"({"round_id": 12})", true);
  REQUIRE(n);
  CHECK(n->round_id == "12");
  CHECK(n->client_settings == "{}");
  CHECK(parse_task_data("{}", false));
  auto missing = parse_task_data("{}", true);
  REQUIRE(!missing);
  CHECK(render(missing.error()).find("no round_id") != std::string::npos);
  CHECK(!parse_task_data("not json", false));
  CHECK(!parse_task_data(R"({"round_id": "1", "client_settings": 3})", true));
}

TEST_CASE("client: training metadata needs a positive num_examples") {
  auto md = parse_training_metadata(
    R"({"num_examples": 600, "batch_size": 32, "epochs": 1})", "out-metadata");
  REQUIRE(md);
  CHECK(md->num_examples == 600);
  CHECK(json::parse(md->json)["batch_size"] == 32);
  for (auto bad : {"{}", R"({"num_examples": 0})", R"({"num_examples": -5})",
                   R"({"num_examples": "600"})", R"({"num_examples": null})",
                   "[600]", "garbage"}) {
    CAPTURE(bad);
    auto r = parse_training_metadata(bad, "/t/out.npz-metadata");
    REQUIRE(!r);
    CHECK(r.error() == ec::invalid_argument);
    CHECK(render(r.error()).find("train wrote no valid num_examples in "
                                 "/t/out.npz-metadata")
          != std::string::npos);
  }
}

TEST_CASE("client: ModelUpdate meta has every FEDn key with numbers") {
  auto md = parse_training_metadata(R"({"num_examples": 600, "epochs": 2})",
                                    "m");
  REQUIRE(md);
  training_timings t{1.5, 20.25, 0.75, 23.0};
  auto task_data = R"({"round_id": "4", "client_settings": {"epochs": 2}})";
  auto meta = json::parse(make_model_update_meta(*md, task_data, t));
  REQUIRE(meta.is_object());
  CHECK(meta.size() == 6);
  REQUIRE(meta["training_metadata"].is_object());
  CHECK(meta["training_metadata"]["num_examples"].is_number_integer());
  CHECK(meta["training_metadata"]["num_examples"] == 600);
  CHECK(meta["training_metadata"]["epochs"] == 2);
  REQUIRE(meta["config"].is_string());
  CHECK(meta["config"] == task_data);
  for (auto key : {"fetch_model", "exec_training", "upload_model",
                   "processing_time"}) {
    CAPTURE(key);
    CHECK(meta[key].is_number());
  }
  CHECK(meta["fetch_model"] == 1.5);
  CHECK(meta["exec_training"] == 20.25);
  CHECK(meta["upload_model"] == 0.75);
  CHECK(meta["processing_time"] == 23.0);
  // A fractional weight stays fractional.
  auto frac = parse_training_metadata(R"({"num_examples": 2.5})", "m");
  REQUIRE(frac);
  auto meta2 = json::parse(make_model_update_meta(*frac, "{}", t));
  CHECK(meta2["training_metadata"]["num_examples"] == 2.5);
}

TEST_CASE("client: metrics and predictions must be JSON") {
  auto m = parse_metrics(R"({"test_accuracy": 0.9, "test_loss": 0.3})", "o");
  REQUIRE(m);
  CHECK(json::parse(*m)["test_accuracy"] == 0.9);
  CHECK(!parse_metrics("[1, 2]", "o"));
  auto bad = parse_metrics("nope", "/t/out.json");
  REQUIRE(!bad);
  CHECK(render(bad.error()).find("/t/out.json") != std::string::npos);
  CHECK(parse_prediction("[1, 2]", "o"));
  CHECK(!parse_prediction("{", "o"));
}

TEST_CASE("client: roles JSON round-trips and defaults to both roles") {
  auto text = make_roles_json({true, false});
  CHECK(json::parse(text) == json{{"trainer", true}, {"validator", false}});
  auto r = parse_roles_json(text);
  CHECK(r.trainer);
  CHECK(!r.validator);
  auto fedn = parse_roles_json("");
  CHECK(fedn.trainer);
  CHECK(fedn.validator);
  auto partial = parse_roles_json(R"({"trainer": false})");
  CHECK(!partial.trainer);
  CHECK(partial.validator);
}

TEST_CASE("client: ISO timestamps are UTC with microseconds") {
  using namespace std::chrono;
  system_clock::time_point t{seconds{1714566896} + microseconds{123456}};
  CHECK(iso_timestamp(t) == "2024-05-01T12:34:56.123456Z");
  CHECK(iso_timestamp(system_clock::time_point{}) ==
        "1970-01-01T00:00:00.000000Z");
}
