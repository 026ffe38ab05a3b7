// Rondo's Prometheus registry: what a scrape of /metrics shows after the
// events the actors report. The registry is process-wide (other tests'
// rounds count too), so every check compares a series before and after.

#include "api/metrics.hpp"

#include <doctest/doctest.h>

#include <cmath>
#include <limits>
#include <sstream>
#include <string>

using namespace rondo;

namespace {

/// The value of the series `series` (name with its labels, as exposed) in
/// a scrape, or NaN when the scrape lacks it.
double value_of(const std::string& series) {
  std::istringstream in{metrics::render()};
  std::string line;
  while (std::getline(in, line))
    if (line.size() > series.size()
        && line.compare(0, series.size(), series) == 0
        && line[series.size()] == ' ')
      return std::stod(line.substr(series.size() + 1));
  return std::numeric_limits<double>::quiet_NaN();
}

round_record finished_round() {
  round_record r;
  r.round_id = "7";
  r.status = round_status::success;
  r.started_at = 1000;
  r.ended_at = 1012.5;
  r.clients_accepted = {"a", "b"};
  r.clients_rejected = {
    {"c", "rondo.shape_mismatch: update tensor '0': shape (3) != global (4)"},
    {"d", "task failed at the client: rondo.non_finite: my own words"},
    {"e", "stale update: round 7 is not accepting model updates"}};
  return r;
}

} // namespace

TEST_CASE("metrics: a round that ended shows in the text exposition") {
  auto rounds = R"(rondo_rounds_total{kind="training",status="success"})";
  auto accepted = R"(rondo_updates_accepted_total{kind="training"})";
  auto shape
    = R"(rondo_updates_rejected_total{kind="training",reason="shape"})";
  auto client
    = R"(rondo_updates_rejected_total{kind="training",reason="client"})";
  auto stale
    = R"(rondo_updates_rejected_total{kind="training",reason="stale"})";
  auto nonfinite
    = R"(rondo_updates_rejected_total{kind="training",reason="nonfinite"})";
  auto durations = R"(rondo_round_duration_seconds_count{kind="training"})";
  auto under_30s
    = R"(rondo_round_duration_seconds_bucket{kind="training",le="30"})";
  // Every series of a fixed label set is there before the first event.
  for (auto s : {rounds, accepted, shape, client, stale, nonfinite, durations})
    REQUIRE_FALSE(std::isnan(value_of(s)));
  auto before = [&](const char* s) { return value_of(s); };
  auto r0 = before(rounds), a0 = before(accepted), sh0 = before(shape),
       c0 = before(client), st0 = before(stale), n0 = before(nonfinite),
       d0 = before(durations), b0 = before(under_30s);
  metrics::count_round(finished_round(), metrics::round_kind::training);
  CHECK(value_of(rounds) == r0 + 1);
  CHECK(value_of(accepted) == a0 + 2);
  CHECK(value_of(shape) == sh0 + 1);
  CHECK(value_of(client) == c0 + 1);
  CHECK(value_of(stale) == st0 + 1);
  // The client's words after "task failed at the client" decide nothing.
  CHECK(value_of(nonfinite) == n0);
  CHECK(value_of(durations) == d0 + 1);
  CHECK(value_of(under_30s) == b0 + 1);
  auto text = metrics::render();
  CHECK(text.find("# TYPE rondo_rounds_total counter") != std::string::npos);
  CHECK(text.find("# TYPE rondo_round_duration_seconds histogram")
        != std::string::npos);
}

TEST_CASE("metrics: rejection classes come from Rondo's own words") {
  using metrics::rejection;
  auto cls = [](const char* reason) {
    return metrics::to_string(metrics::classify_rejection(reason));
  };
  CHECK(cls("stale update: task 1 of round 2 was already answered") ==
        std::string{"stale"});
  CHECK(cls("model update u1 was already aggregated") == std::string{"stale"});
  CHECK(cls("rondo.shape_mismatch: update has 2 tensors, global has 3") ==
        std::string{"shape"});
  CHECK(cls("rondo.non_finite: update tensor '0' is not finite at index 4") ==
        std::string{"nonfinite"});
  CHECK(cls("cannot load model update u1: rondo.not_found: model u1") ==
        std::string{"load"});
  CHECK(cls("model update u1 is not a valid model: bad zip") ==
        std::string{"load"});
  CHECK(cls("task failed at the client: rondo.shape_mismatch") ==
        std::string{"client"});
  CHECK(cls("aggregator failed: rondo.timeout") == std::string{"other"});
  CHECK(cls("anything a client wrote") == std::string{"other"});
}

TEST_CASE("metrics: gauges, bytes, staging retries and HTTP requests") {
  metrics::set_active_clients(3, 2);
  CHECK(value_of(R"(rondo_active_clients{role="trainer"})") == 3);
  CHECK(value_of(R"(rondo_active_clients{role="validator"})") == 2);
  metrics::set_models_stored(4, 4096);
  CHECK(value_of("rondo_models_stored") == 4);
  CHECK(value_of("rondo_models_stored_bytes") == 4096);
  metrics::set_sessions({{session_status::finished, 2},
                         {session_status::running, 1}});
  CHECK(value_of(R"(rondo_sessions{status="finished"})") == 2);
  CHECK(value_of(R"(rondo_sessions{status="running"})") == 1);
  CHECK(value_of(R"(rondo_sessions{status="failed"})") == 0);
  auto up0 = value_of("rondo_model_bytes_uploaded_total");
  auto down0 = value_of("rondo_model_bytes_downloaded_total");
  metrics::add_bytes_uploaded(1000);
  metrics::add_bytes_downloaded(250);
  CHECK(value_of("rondo_model_bytes_uploaded_total") == up0 + 1000);
  CHECK(value_of("rondo_model_bytes_downloaded_total") == down0 + 250);
  auto retries0 = value_of("rondo_staging_retries_total");
  metrics::count_staging_retry();
  CHECK(value_of("rondo_staging_retries_total") == retries0 + 1);
  metrics::count_http_request("/api/v1/models/([^/]+)", "GET", 404);
  metrics::count_http_request("", "BREW", 400);
  auto models_404 = R"x(rondo_http_requests_total{code="404",method="GET",)x"
                    R"x(route="/api/v1/models/([^/]+)"})x";
  CHECK(value_of(models_404) >= 1);
  // A method outside the fixed set, an unmatched path: fixed label values.
  CHECK(value_of(R"(rondo_http_requests_total{code="400",method="other",)"
                 R"(route="unmatched"})")
        >= 1);
  metrics::observe_aggregation(metrics::aggregation_step::finish, 0.02);
  CHECK(value_of(R"(rondo_aggregation_seconds_count{step="finish"})") >= 1);
}
