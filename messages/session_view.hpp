#pragma once

// How users see a session: the per-round summary that `rondo session
// status` prints, `--json` output, and metrics.csv. Pure functions over
// session_report, so they are tested without a controller.

#include "messages/controller_messages.hpp"

#include <map>
#include <string>
#include <vector>

namespace rondo {

/// One round of a session as a user reads it.
struct round_summary {
  std::string round_id;
  /// "pending", "running", "success" or "failed".
  std::string status;
  std::string reason;
  /// Clients sent a training task, over all combiners.
  size_t clients_asked = 0;
  /// Model updates aggregated, over all combiners.
  int64_t updates_accepted = 0;
  /// Combiners that succeeded / were asked.
  size_t combiners_ok = 0;
  size_t combiners_asked = 0;
  /// Wall time from start to end, seconds (0 while running).
  double seconds = 0;
  /// The new global model (success only).
  std::string model_id;
  /// Mean over validators of each numeric metric they reported for this
  /// round's model (e.g. "test_accuracy"); empty when none validated.
  std::map<std::string, double> metrics;
  size_t validators = 0;
  /// Why the round's model has no validation although the session asked
  /// for them (round_record::validation_failure); empty otherwise.
  std::string validation_failure;
};

/// Summarises one controller round record.
round_summary summarize(const round_record& r);

/// The whole report as pretty-printed JSON: the session (id, status,
/// reason, config as an object, seed model) and per round its summary plus
/// each combiner's outcome, the clients accepted, rejected (with reasons)
/// and silent, and each validator's metrics.
std::string to_json(const session_report& report);

/// metrics.csv: a header `round,status,clients_asked,updates_accepted,
/// seconds,val_accuracy,val_loss`, then one line per round. val_accuracy and
/// val_loss are the validators' mean `test_accuracy` and `test_loss` (the
/// metric names of FEDn's example packages and examples/fashion-mnist);
/// empty when the round has no such metric.
std::string to_metrics_csv(const session_report& report);

/// metrics.csv's header line and one round's line (each ending in "\n"),
/// for writers that append round by round (`session start --follow`).
std::string metrics_csv_header();
std::string metrics_csv_line(const round_summary& s);

/// One human-readable line per round (fixed-width columns) and a header
/// line from `summary_header()`; metrics shown: test_accuracy, test_loss.
/// A failed round's reason follows in parentheses, as does a missing
/// validation ("no validation: <why>").
std::string summary_header();
std::string summary_line(const round_summary& s);

} // namespace rondo
