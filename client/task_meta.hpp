#pragma once

// The JSON the client reads and writes around a task, in FEDn's formats:
// the TaskRequest's `data`, the training code's `<out>-metadata`, the
// ModelUpdate's `meta`, validation metrics, and Rondo's role announcement
// in ClientAvailableMessage.data. Pure functions (no I/O), unit-tested.

#include <caf/expected.hpp>

#include <chrono>
#include <string>

namespace rondo::client {

/// What the client uses from a TaskRequest's `data` (a JSON object).
struct task_data {
  /// "round_id" as text (a JSON string as is, a number formatted); empty if
  /// absent.
  std::string round_id;
  /// The "client_settings" object as compact JSON; "{}" if absent (FEDn
  /// hands `{}` to the training code then).
  std::string client_settings = "{}";
};

/// Parses a TaskRequest's `data`. With `require_round_id` (training tasks:
/// FEDn clients do `json.loads(data)["round_id"]`) a missing round_id is an
/// error. Errors (`ec::invalid_argument`): nested deeper than
/// max_json_depth (messages/config_values.hpp), not JSON, not an object,
/// round_id missing when required or not a string/number, client_settings
/// not an object.
caf::expected<task_data> parse_task_data(const std::string& data,
                                         bool require_round_id);

/// The training code's metadata (`<out>-metadata`).
struct training_metadata {
  /// The FedAvg weight: a finite number > 0.
  double num_examples = 0;
  /// The whole metadata object as compact JSON (num_examples included),
  /// forwarded as the update's `training_metadata`.
  std::string json;
};

/// Parses the text of `<out>-metadata`; `source` names the file in errors.
/// Errors (`ec::invalid_argument`, "train wrote no valid num_examples in
/// <source>: <reason>"): not a JSON object, num_examples missing, not a
/// number, not finite, or <= 0.
caf::expected<training_metadata>
parse_training_metadata(const std::string& text, const std::string& source);

/// Phase durations of one training task, in seconds.
struct training_timings {
  /// Downloading the global model.
  double fetch_model = 0;
  /// Running the train entry point.
  double exec_training = 0;
  /// Uploading the model update.
  double upload_model = 0;
  /// The whole task, from TaskRequest to ModelUpdate.
  double processing_time = 0;
};

/// The ModelUpdate `meta` FEDn clients send, as compact JSON:
/// {"training_metadata": <md.json>, "config": "<task_data_text>",
///  "fetch_model": s, "exec_training": s, "upload_model": s,
///  "processing_time": s}. `config` is the task's data *string*.
std::string make_model_update_meta(const training_metadata& md,
                                   const std::string& task_data_text,
                                   const training_timings& t);

/// Checks that `text` (the validate entry point's output) is a JSON object
/// and returns it as compact JSON. Errors (`ec::invalid_argument`, naming
/// `source`): not JSON, not an object.
caf::expected<std::string> parse_metrics(const std::string& text,
                                         const std::string& source);

/// Checks that `text` (the predict entry point's output) is JSON (any
/// value) and returns it as compact JSON. Errors (`ec::invalid_argument`,
/// naming `source`): not JSON.
caf::expected<std::string> parse_prediction(const std::string& text,
                                            const std::string& source);


/// `t` as ISO 8601 UTC with microseconds, e.g.
/// "2024-05-01T12:34:56.123456Z".
std::string iso_timestamp(std::chrono::system_clock::time_point t);

} // namespace rondo::client
