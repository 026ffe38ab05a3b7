#include "api/metrics.hpp"

#include <prometheus/counter.h>
#include <prometheus/family.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>
#include <prometheus/text_serializer.h>

#include <array>
#include <memory>
#include <sstream>

namespace rondo::metrics {

namespace {

using prometheus::Counter;
using prometheus::Family;
using prometheus::Gauge;
using prometheus::Histogram;

constexpr std::array<round_kind, 2> kinds{round_kind::training,
                                          round_kind::validation};
constexpr std::array<rejection, 6> rejections{
  rejection::stale, rejection::shape,  rejection::nonfinite,
  rejection::load,  rejection::client, rejection::other};
constexpr std::array<session_status, 5> session_statuses{
  session_status::pending, session_status::running, session_status::finished,
  session_status::failed, session_status::terminated};

bool starts_with(const std::string& s, const char* prefix) {
  return s.rfind(prefix, 0) == 0;
}

// The registry and every family, created once (thread-safe static).
// Series with a label from a small fixed set are added up front so that a
// scrape shows them at 0 before the first event.
struct registry {
  std::shared_ptr<prometheus::Registry> reg
    = std::make_shared<prometheus::Registry>();

  Family<Counter>& rounds = prometheus::BuildCounter()
                              .Name("rondo_rounds_total")
                              .Help("Rounds that ended, by kind and status")
                              .Register(*reg);
  Family<Histogram>& round_seconds
    = prometheus::BuildHistogram()
        .Name("rondo_round_duration_seconds")
        .Help("Seconds from a round's start to its end")
        .Register(*reg);
  Family<Counter>& accepted
    = prometheus::BuildCounter()
        .Name("rondo_updates_accepted_total")
        .Help("Model updates (kind=training) or validations "
              "(kind=validation) accepted into a round")
        .Register(*reg);
  Family<Counter>& rejected
    = prometheus::BuildCounter()
        .Name("rondo_updates_rejected_total")
        .Help("Model updates or validations rejected, by kind and reason "
              "class (stale, shape, nonfinite, load, client, other)")
        .Register(*reg);
  Counter& uploaded = prometheus::BuildCounter()
                        .Name("rondo_model_bytes_uploaded_total")
                        .Help("Model bytes clients uploaded to the edge")
                        .Register(*reg)
                        .Add({});
  Counter& downloaded
    = prometheus::BuildCounter()
        .Name("rondo_model_bytes_downloaded_total")
        .Help("Model bytes the edge sent to clients")
        .Register(*reg)
        .Add({});
  Family<Gauge>& active = prometheus::BuildGauge()
                            .Name("rondo_active_clients")
                            .Help("Active clients of this combiner, by role")
                            .Register(*reg);
  Gauge& models = prometheus::BuildGauge()
                    .Name("rondo_models_stored")
                    .Help("Models in the model store")
                    .Register(*reg)
                    .Add({});
  Gauge& model_bytes = prometheus::BuildGauge()
                         .Name("rondo_models_stored_bytes")
                         .Help("Bytes of the models in the model store")
                         .Register(*reg)
                         .Add({});
  Family<Histogram>& aggregation
    = prometheus::BuildHistogram()
        .Name("rondo_aggregation_seconds")
        .Help("Seconds to fold one model update into the aggregate "
              "(step=update) or to finish and store it (step=finish)")
        .Register(*reg);
  Counter& staging_retries
    = prometheus::BuildCounter()
        .Name("rondo_staging_retries_total")
        .Help("Tries to stage a global model that failed and were retried")
        .Register(*reg)
        .Add({});
  Family<Gauge>& sessions = prometheus::BuildGauge()
                              .Name("rondo_sessions")
                              .Help("Sessions in the state store, by status")
                              .Register(*reg);
  Family<Counter>& http = prometheus::BuildCounter()
                            .Name("rondo_http_requests_total")
                            .Help("HTTP requests by route pattern, method "
                                  "and status code")
                            .Register(*reg);

  static const Histogram::BucketBoundaries& round_buckets() {
    static const Histogram::BucketBoundaries b{0.5, 1,   2,   5,    10,  30,
                                               60,  120, 300, 600, 1800, 3600};
    return b;
  }

  static const Histogram::BucketBoundaries& aggregation_buckets() {
    static const Histogram::BucketBoundaries b{0.001, 0.005, 0.01, 0.05, 0.1,
                                               0.5,   1,     5,    10,   60};
    return b;
  }

  registry() {
    for (auto k : kinds) {
      for (auto s : {round_status::success, round_status::failed})
        rounds.Add({{"kind", to_string(k)}, {"status", rondo::to_string(s)}});
      round_seconds.Add({{"kind", to_string(k)}}, round_buckets());
      accepted.Add({{"kind", to_string(k)}});
      for (auto r : rejections)
        rejected.Add({{"kind", to_string(k)}, {"reason", to_string(r)}});
    }
    active.Add({{"role", "trainer"}});
    active.Add({{"role", "validator"}});
    for (auto step : {"update", "finish"})
      aggregation.Add({{"step", step}}, aggregation_buckets());
    for (auto s : session_statuses)
      sessions.Add({{"status", rondo::to_string(s)}});
  }
};

registry& the_registry() {
  static registry r;
  return r;
}

const char* method_label(const std::string& m) {
  for (auto known : {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE",
                     "OPTIONS"})
    if (m == known)
      return known;
  return "other";
}

} // namespace

const char* to_string(round_kind x) {
  return x == round_kind::training ? "training" : "validation";
}

const char* to_string(rejection x) {
  switch (x) {
    case rejection::stale: return "stale";
    case rejection::shape: return "shape";
    case rejection::nonfinite: return "nonfinite";
    case rejection::load: return "load";
    case rejection::client: return "client";
    case rejection::other: return "other";
  }
  return "other";
}

rejection classify_rejection(const std::string& reason) {
  // The client's own text follows this prefix: it decides nothing else.
  if (starts_with(reason, "task failed at the client"))
    return rejection::client;
  if (starts_with(reason, "stale update")
      || starts_with(reason, "rondo.stale_update"))
    return rejection::stale;
  if (starts_with(reason, "rondo.shape_mismatch"))
    return rejection::shape;
  if (starts_with(reason, "rondo.non_finite"))
    return rejection::nonfinite;
  if (starts_with(reason, "cannot load model update")
      || starts_with(reason, "rondo.malformed_model"))
    return rejection::load;
  // "model update <id> is not a valid model: ..." and "model update <id>
  // was already aggregated" (aggregator.cpp).
  if (starts_with(reason, "model update ")) {
    if (reason.find(" is not a valid model") != std::string::npos)
      return rejection::load;
    if (reason.find(" was already aggregated") != std::string::npos)
      return rejection::stale;
  }
  return rejection::other;
}

void count_round(const round_record& r, round_kind kind) {
  auto& reg = the_registry();
  auto k = to_string(kind);
  reg.rounds.Add({{"kind", k}, {"status", rondo::to_string(r.status)}})
    .Increment();
  if (r.started_at > 0 && r.ended_at >= r.started_at)
    reg.round_seconds.Add({{"kind", k}}, registry::round_buckets())
      .Observe(r.ended_at - r.started_at);
  reg.accepted.Add({{"kind", k}})
    .Increment(static_cast<double>(r.clients_accepted.size()));
  for (auto& x : r.clients_rejected)
    count_rejection(kind, classify_rejection(x.reason));
}

void count_rejection(round_kind kind, rejection why) {
  the_registry()
    .rejected.Add({{"kind", to_string(kind)}, {"reason", to_string(why)}})
    .Increment();
}

void add_bytes_uploaded(uint64_t bytes) {
  the_registry().uploaded.Increment(static_cast<double>(bytes));
}

void add_bytes_downloaded(uint64_t bytes) {
  the_registry().downloaded.Increment(static_cast<double>(bytes));
}

void set_active_clients(int64_t trainers, int64_t validators) {
  auto& reg = the_registry();
  reg.active.Add({{"role", "trainer"}}).Set(static_cast<double>(trainers));
  reg.active.Add({{"role", "validator"}})
    .Set(static_cast<double>(validators));
}

void set_models_stored(uint64_t count, uint64_t bytes) {
  auto& reg = the_registry();
  reg.models.Set(static_cast<double>(count));
  reg.model_bytes.Set(static_cast<double>(bytes));
}

void set_sessions(const std::map<session_status, int64_t>& by_status) {
  auto& reg = the_registry();
  for (auto s : session_statuses) {
    auto i = by_status.find(s);
    reg.sessions.Add({{"status", rondo::to_string(s)}})
      .Set(i == by_status.end() ? 0.0 : static_cast<double>(i->second));
  }
}

void observe_aggregation(aggregation_step step, double seconds) {
  the_registry()
    .aggregation
    .Add({{"step", step == aggregation_step::update ? "update" : "finish"}},
         registry::aggregation_buckets())
    .Observe(seconds);
}

void count_staging_retry() {
  the_registry().staging_retries.Increment();
}

void count_http_request(const std::string& route, const std::string& method,
                        int status) {
  the_registry()
    .http
    .Add({{"route", route.empty() ? "unmatched" : route},
          {"method", method_label(method)},
          {"code", std::to_string(status)}})
    .Increment();
}

std::string render() {
  std::ostringstream out;
  prometheus::TextSerializer{}.Serialize(out, the_registry().reg->Collect());
  return out.str();
}

} // namespace rondo::metrics
