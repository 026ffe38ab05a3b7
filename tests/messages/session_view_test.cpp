// What users read of a session: per-round summaries, metrics.csv, JSON.

#include "messages/session_view.hpp"

#include <doctest/doctest.h>

#include <nlohmann/json.hpp>

using namespace rondo;

namespace {

round_record trained_round() {
  round_record r;
  r.round_id = "3";
  r.status = round_status::success;
  r.model_id = "m3";
  r.clients_selected = {"a", "b", "c"};
  r.clients_accepted = {"a", "b"};
  r.clients_rejected = {{"c", "shape mismatch in tensor 0"}};
  r.nr_aggregated_models = 2;
  r.started_at = 100;
  r.ended_at = 112.5;
  r.combiners = {{"A", round_status::success, "", "ma", 20},
                 {"B", round_status::failed, "combiner lost", "", 0}};
  validation_record v1, v2;
  v1.client_id = "a";
  v1.metrics_json = R"({"test_accuracy": 0.8, "test_loss": 0.6, "tag": "x"})";
  v2.client_id = "b";
  v2.metrics_json = R"({"test_accuracy": 0.9, "test_loss": 0.4})";
  r.validations = {v1, v2};
  return r;
}

} // namespace

TEST_CASE("session view: a round summary counts clients and averages "
          "numeric metrics") {
  auto s = summarize(trained_round());
  CHECK(s.status == "success");
  CHECK(s.clients_asked == 3);
  CHECK(s.updates_accepted == 2);
  CHECK(s.combiners_ok == 1);
  CHECK(s.combiners_asked == 2);
  CHECK(s.seconds == doctest::Approx(12.5));
  CHECK(s.validators == 2);
  CHECK(s.metrics.at("test_accuracy") == doctest::Approx(0.85));
  CHECK(s.metrics.at("test_loss") == doctest::Approx(0.5));
  CHECK(s.metrics.count("tag") == 0);
}

TEST_CASE("session view: metrics.csv has the documented columns") {
  session_report rep;
  rep.rounds.push_back(trained_round());
  round_record failed;
  failed.round_id = "4";
  failed.status = round_status::failed;
  failed.reason = "no combiner succeeded";
  rep.rounds.push_back(failed);
  CHECK(to_metrics_csv(rep)
        == "round,status,clients_asked,updates_accepted,seconds,"
           "val_accuracy,val_loss\n"
           "3,success,3,2,12.50,0.8500,0.5000\n"
           "4,failed,0,0,0.00,,\n");
}

TEST_CASE("session view: the JSON report keeps per-client outcomes and "
          "each validator's metrics") {
  session_report rep;
  rep.session.session_id = "s1";
  rep.session.status = session_status::finished;
  rep.session.config_json = R"({"rounds": 1})";
  rep.rounds.push_back(trained_round());
  auto j = nlohmann::json::parse(to_json(rep));
  CHECK(j["session_id"] == "s1");
  CHECK(j["status"] == "finished");
  CHECK(j["config"]["rounds"] == 1);
  auto& r = j["rounds"][0];
  CHECK(r["clients_rejected"][0]["reason"] == "shape mismatch in tensor 0");
  CHECK(r["combiners"][1]["reason"] == "combiner lost");
  CHECK(r["validations"][1]["metrics"]["test_accuracy"] == 0.9);
  CHECK(r["metrics_mean"]["test_loss"].get<double>()
        == doctest::Approx(0.5));
}

TEST_CASE("session view: a round without the validations asked for says "
          "why, in its line and its JSON") {
  auto r = trained_round();
  r.validations.clear();
  r.validation_failure = "no validator answered within 30 s";
  auto s = summarize(r);
  CHECK(s.validators == 0);
  auto line = summary_line(s);
  CHECK(line.find("success") != std::string::npos);
  CHECK(line.find("(no validation: no validator answered within 30 s)")
        != std::string::npos);
  session_report rep;
  rep.rounds.push_back(r);
  auto j = nlohmann::json::parse(to_json(rep));
  CHECK(j["rounds"][0]["validation_failure"]
        == "no validator answered within 30 s");
  auto validated = trained_round();
  CHECK(summary_line(summarize(validated)).find("no validation")
        == std::string::npos);
}

TEST_CASE("session view: metrics.csv written line by line equals the "
          "whole file") {
  session_report rep;
  rep.rounds.push_back(trained_round());
  auto text = metrics_csv_header();
  for (auto& r : rep.rounds)
    text += metrics_csv_line(summarize(r));
  CHECK(text == to_metrics_csv(rep));
  CHECK(metrics_csv_line(summarize(trained_round()))
        == "3,success,3,2,12.50,0.8500,0.5000\n");
}
