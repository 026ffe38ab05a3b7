#pragma once

// Rondo's Prometheus metrics: one process-wide registry (prometheus-cpp,
// hidden in api/metrics.cpp) with Rondo's metric families, fed from the
// places where things happen (rounds, the aggregator, staging, the edge's
// model transfers, the HTTP server) and rendered as the text exposition
// format by `/metrics` on the controller's HTTP port and on the combiner's
// `--metrics-port`.
//
// Label values come from fixed sets only (statuses, round kinds, rejection
// classes, route patterns): never from what a client sent, so a client
// cannot grow the number of series.
//
// Families (counters end in _total; durations are seconds, sizes bytes):
//   rondo_rounds_total{kind,status}            rounds that ended
//   rondo_round_duration_seconds{kind}         started_at..ended_at
//   rondo_updates_accepted_total{kind}         model updates (training) or
//                                              validations (validation)
//                                              accepted into a round
//   rondo_updates_rejected_total{kind,reason}  ... rejected, by class
//   rondo_model_bytes_uploaded_total           model bytes clients uploaded
//   rondo_model_bytes_downloaded_total         model bytes clients downloaded
//   rondo_active_clients{role}                 trainers / validators active
//   rondo_models_stored, rondo_models_stored_bytes
//   rondo_aggregation_seconds{step}            folding one update / finishing
//   rondo_staging_retries_total                staging tries that failed and
//                                              were retried
//   rondo_sessions{status}                     sessions in the state store
//   rondo_http_requests_total{route,method,code}

#include "messages/records.hpp"

#include <cstdint>
#include <map>
#include <string>

namespace rondo::metrics {

/// A round's kind: label `kind` ("training", "validation").
enum class round_kind { training, validation };

/// The class of a rejected model update or validation: label `reason`.
enum class rejection {
  /// Not for a task of the round (answered already, wrong model, the round
  /// closed or is of the other kind), or aggregated twice.
  stale,
  /// Tensors' names, dtypes, shapes or count differ from the global model.
  shape,
  /// A NaN or an infinity in the update.
  nonfinite,
  /// The update could not be loaded or is not a valid model.
  load,
  /// The client reported that its task failed.
  client,
  /// Anything else (an aggregator error, a storage error, a bad
  /// num_examples).
  other,
};

/// "training" / "validation".
const char* to_string(round_kind x);

/// "stale", "shape", "nonfinite", "load", "client", "other".
const char* to_string(rejection x);

/// The class of a rejection from its reason text as Rondo writes it
/// (round.cpp, actors/aggregator.cpp, the edge): "stale update: ..." is
/// stale, "rondo.shape_mismatch: ..." shape, "rondo.non_finite: ..."
/// nonfinite, "cannot load model update ..." or "... is not a valid model"
/// load, "task failed at the client: ..." client, anything else other. Only
/// the start of the text (Rondo's own words) decides, except for the load
/// and stale phrases after a model update id.
rejection classify_rejection(const std::string& reason);

/// Counts a round that ended: rondo_rounds_total by kind and status, its
/// duration (ended_at - started_at, when both are set), and its accepted
/// (clients_accepted) and rejected (clients_rejected, by class) updates.
void count_round(const round_record& r, round_kind kind);

/// Counts one rejection that the round record does not list (a stale
/// update or validation answered straight away).
void count_rejection(round_kind kind, rejection why);

/// Adds to rondo_model_bytes_uploaded_total / _downloaded_total.
void add_bytes_uploaded(uint64_t bytes);
void add_bytes_downloaded(uint64_t bytes);

/// Sets rondo_active_clients{role="trainer"|"validator"}.
void set_active_clients(int64_t trainers, int64_t validators);

/// Sets rondo_models_stored and rondo_models_stored_bytes.
void set_models_stored(uint64_t count, uint64_t bytes);

/// Sets rondo_sessions{status} for every status (absent ones are 0).
void set_sessions(const std::map<session_status, int64_t>& by_status);

/// Steps of rondo_aggregation_seconds.
enum class aggregation_step { update, finish };

/// Observes one aggregation step's duration, seconds.
void observe_aggregation(aggregation_step step, double seconds);

/// Adds one to rondo_staging_retries_total.
void count_staging_retry();

/// Counts one HTTP request: `route` is the route pattern that matched ("" =
/// none: label "unmatched"), `method` the HTTP method, `status` the status
/// sent.
void count_http_request(const std::string& route, const std::string& method,
                        int status);

/// The registry in Prometheus' text exposition format (version 0.0.4).
std::string render();

/// The content type of render()'s text.
inline constexpr const char* content_type
  = "text/plain; version=0.0.4; charset=utf-8";

} // namespace rondo::metrics
