#pragma once

// Rondo's durable records: what the state store keeps, one kind per column
// family, and what actors report to each other. Plain structs with
// inspect(); their on-disk form is protobuf (messages/proto/records.proto),
// converted in one place (messages/records_codec.hpp).

#include "messages/round_config.hpp"

#include <caf/meta/type_name.hpp>

#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace rondo {

/// Lifecycle of a queued round job.
enum class job_status : uint8_t { queued, running, success, failed };

/// Lifecycle of a round; success and failed are terminal.
enum class round_status : uint8_t { pending, running, success, failed };

/// Lifecycle of a session.
enum class session_status : uint8_t { pending, running, finished, failed,
                                      terminated };

const char* to_string(job_status x);
const char* to_string(round_status x);
const char* to_string(session_status x);

/// A round config accepted by a combiner's round queue (its persisted inbox).
struct job_record {
  /// UUID assigned when the job was accepted.
  std::string job_id;
  /// Position in the queue: jobs run in ascending `seq` (FIFO).
  uint64_t seq = 0;
  round_config config;
  job_status status = job_status::queued;
  /// Why the job failed; empty otherwise.
  std::string reason;
  /// Unix time in seconds when the job was accepted.
  double enqueued_at = 0;
};

/// One validator's metrics for one model.
struct validation_record {
  /// Storage key, unique per validation (the correlation id when set).
  std::string validation_id;
  std::string model_id;
  std::string client_id;
  std::string correlation_id;
  std::string session_id;
  std::string round_id;
  /// The metrics as the client's JSON object text.
  std::string metrics_json;
  double received_at = 0;
  /// The validator's display name (the `sender.name` it sent, as FEDn keeps
  /// a validation's sender); empty in records stored before it was kept.
  std::string client_name;
};

/// A client whose model update was rejected, and why.
struct rejected_update {
  std::string client_id;
  std::string reason;
};

/// One combiner's part of a round, as the controller records it.
struct combiner_report {
  std::string combiner_id;
  round_status status = round_status::pending;
  std::string reason;
  /// The combiner's aggregated model; empty unless status is success.
  std::string model_id;
  /// Sum of `num_examples` over the combiner's accepted updates: its weight
  /// when the controller reduces combiner models.
  double num_examples = 0;
};

/// A round and its outcome, with FEDn's round metadata. Times in seconds.
struct round_record {
  std::string round_id;
  std::string session_id;
  std::string job_id;
  round_config config;
  round_status status = round_status::pending;
  /// Why the round failed; empty on success.
  std::string reason;
  /// The global model the round started from.
  std::string base_model_id;
  /// The new global model; set exactly when status is success.
  std::string model_id;
  int64_t nr_expected_updates = 0;
  int64_t nr_required_updates = 0;
  int64_t nr_aggregated_models = 0;
  /// The round timeout in force, seconds.
  double timeout = 0;
  double time_combination = 0;
  double time_model_load = 0;
  /// Seconds the aggregator spent checking and folding the accepted and
  /// rejected updates plus computing the aggregate (not the updates' waits
  /// in its mailbox, not their uploads).
  double time_model_aggregation = 0;
  /// Seconds from sending the tasks to the round's close: waiting for the
  /// clients (FEDn's name).
  double time_exec_training = 0;
  /// Seconds spent encoding the new global model and writing it to the
  /// model store.
  double time_model_write = 0;
  /// Sum of `num_examples` over accepted updates.
  double num_examples = 0;
  std::vector<std::string> clients_selected;
  std::vector<std::string> clients_accepted;
  std::vector<rejected_update> clients_rejected;
  /// Selected clients that sent nothing before the round closed.
  std::vector<std::string> clients_silent;
  /// Per-combiner outcome (controller rounds only).
  std::vector<combiner_report> combiners;
  /// What the validators reported (validation rounds).
  std::vector<validation_record> validations;
  /// Unix times in seconds.
  double started_at = 0;
  double ended_at = 0;
  /// Why the round's model has no validation although the session asked
  /// for them (no validator answered, every validation was rejected, the
  /// validation was interrupted); empty when validations arrived or none
  /// were asked for.
  std::string validation_failure;
};

/// A training session: a sequence of rounds run by the controller.
struct session_record {
  std::string session_id;
  /// The session config as JSON text.
  std::string config_json;
  session_status status = session_status::pending;
  std::string reason;
  std::string seed_model_id;
  /// Round ids in order. Not stored with the record (that would rewrite a
  /// list growing with the session every round): the state store keeps
  /// them in its session round index (state_store::session_rounds), and
  /// reports fill this in. Records written before the index carry them.
  std::vector<std::string> round_ids;
  double created_at = 0;
  double ended_at = 0;
  /// The name the operator gave the session (FEDn's session `name`); may
  /// be empty.
  std::string name;
  /// Rounds that ended and count against the config's `rounds` (a round
  /// interrupted by a controller restart is re-run and does not count).
  int64_t rounds_done = 0;
  /// Of those, the rounds that ended in success.
  int64_t rounds_succeeded = 0;
  /// The last global model the session committed (its seed before the
  /// first success): where it resumes after a restart.
  std::string global_model_id;
  /// The round in progress; empty between rounds.
  std::string current_round_id;
  /// Entries in the session's round index (the next round's position).
  uint64_t round_count = 0;
};

/// One entry of the global model trail.
struct model_record {
  std::string model_id;
  /// The model this one was aggregated from; empty for a seed model.
  std::string parent_id;
  std::string session_id;
  std::string round_id;
  /// Unix time in seconds.
  double committed_at = 0;
};

/// What the combiner knows of a client.
struct client_record {
  std::string client_id;
  std::string name;
  bool trainer = true;
  bool validator = true;
  /// "online" or "offline".
  std::string status;
  /// Unix time in seconds.
  double last_seen = 0;
};

/// A metric a client reported (FEDn's ModelMetric), one record per message.
struct metric_record {
  std::string metric_id;
  std::string client_id;
  std::string model_id;
  std::string round_id;
  std::string session_id;
  uint32_t step = 0;
  std::map<std::string, double> values;
  double received_at = 0;
};

/// Which combiner the controller assigned a client to (FEDn's client
/// entry, written by `POST /api/v1/clients/add`). The controller counts
/// these per combiner to pick the least-loaded one.
struct client_assignment_record {
  std::string client_id;
  std::string name;
  /// The combiner the client was sent to.
  std::string combiner_id;
  /// The combiner the client asked for ("" when none).
  std::string combiner_preferred;
  /// The client's address as the API saw it.
  std::string ip;
  /// "remote" (the client downloads the active compute package) or
  /// "local".
  std::string package;
  /// Unix time in seconds of the (last) assignment.
  double assigned_at = 0;
};

/// A status event a client sent its combiner (FEDn's Status message, as
/// FEDn's status store keeps it), forwarded to the controller.
struct status_record {
  /// Storage key (a UUID assigned by the controller).
  std::string status_id;
  /// The status text.
  std::string status;
  /// FEDn's LogLevel name: "NONE", "INFO", "DEBUG", "WARNING", "ERROR",
  /// "AUDIT".
  std::string log_level;
  /// FEDn's StatusType name, e.g. "MODEL_UPDATE", "LOG".
  std::string type;
  std::string data;
  std::string correlation_id;
  std::string session_id;
  std::string extra;
  std::string sender_name;
  /// FEDn's Role name of the sender, e.g. "CLIENT".
  std::string sender_role;
  std::string sender_client_id;
  /// The combiner that received it.
  std::string combiner_id;
  /// Unix seconds: the client's timestamp, else when the combiner got it.
  double timestamp = 0;
};

/// One client's answer to a prediction run (FEDn's ModelPrediction, as
/// FEDn's prediction store keeps it), stored by the controller.
struct prediction_record {
  /// Storage key: the task's correlation id (one answer per task).
  std::string key;
  /// The prediction run (FEDn's prediction_id).
  std::string prediction_id;
  std::string model_id;
  /// The client's output, exactly as it sent it (JSON text).
  std::string data;
  std::string correlation_id;
  std::string client_id;
  /// Unix seconds when the combiner received it.
  double timestamp = 0;
  /// The client's display name (the `sender.name` it sent); empty in
  /// records stored before it was kept.
  std::string client_name;
};

#define RONDO_EQ(T) \
  bool operator==(const T& x, const T& y); \
  inline bool operator!=(const T& x, const T& y) { return !(x == y); }
RONDO_EQ(job_record)
RONDO_EQ(rejected_update)
RONDO_EQ(combiner_report)
RONDO_EQ(round_record)
RONDO_EQ(session_record)
RONDO_EQ(model_record)
RONDO_EQ(validation_record)
RONDO_EQ(client_record)
RONDO_EQ(metric_record)
RONDO_EQ(client_assignment_record)
RONDO_EQ(status_record)
RONDO_EQ(prediction_record)
#undef RONDO_EQ

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, job_record& x) {
  return f(caf::meta::type_name("rondo.job_record"), x.job_id, x.seq,
           x.config, x.status, x.reason, x.enqueued_at);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, rejected_update& x) {
  return f(caf::meta::type_name("rondo.rejected_update"), x.client_id,
           x.reason);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, combiner_report& x) {
  return f(caf::meta::type_name("rondo.combiner_report"), x.combiner_id,
           x.status, x.reason, x.model_id, x.num_examples);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, round_record& x) {
  return f(caf::meta::type_name("rondo.round_record"), x.round_id,
           x.session_id, x.job_id, x.config, x.status, x.reason,
           x.base_model_id, x.model_id, x.nr_expected_updates,
           x.nr_required_updates, x.nr_aggregated_models, x.timeout,
           x.time_combination, x.time_model_load, x.time_model_aggregation,
           x.time_exec_training, x.time_model_write, x.num_examples,
           x.clients_selected,
           x.clients_accepted, x.clients_rejected, x.clients_silent,
           x.combiners, x.validations, x.started_at, x.ended_at,
           x.validation_failure);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, session_record& x) {
  return f(caf::meta::type_name("rondo.session_record"), x.session_id,
           x.config_json, x.status, x.reason, x.seed_model_id, x.round_ids,
           x.created_at, x.ended_at, x.name, x.rounds_done,
           x.rounds_succeeded, x.global_model_id, x.current_round_id,
           x.round_count);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, model_record& x) {
  return f(caf::meta::type_name("rondo.model_record"), x.model_id,
           x.parent_id, x.session_id, x.round_id, x.committed_at);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, validation_record& x) {
  return f(caf::meta::type_name("rondo.validation_record"), x.validation_id,
           x.model_id, x.client_id, x.correlation_id, x.session_id,
           x.round_id, x.metrics_json, x.received_at, x.client_name);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, client_record& x) {
  return f(caf::meta::type_name("rondo.client_record"), x.client_id, x.name,
           x.trainer, x.validator, x.status, x.last_seen);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, metric_record& x) {
  return f(caf::meta::type_name("rondo.metric_record"), x.metric_id,
           x.client_id, x.model_id, x.round_id, x.session_id, x.step,
           x.values, x.received_at);
}

template <class Inspector>
typename Inspector::result_type
inspect(Inspector& f, client_assignment_record& x) {
  return f(caf::meta::type_name("rondo.client_assignment_record"),
           x.client_id, x.name, x.combiner_id, x.combiner_preferred, x.ip,
           x.package, x.assigned_at);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, status_record& x) {
  return f(caf::meta::type_name("rondo.status_record"), x.status_id,
           x.status, x.log_level, x.type, x.data, x.correlation_id,
           x.session_id, x.extra, x.sender_name, x.sender_role,
           x.sender_client_id, x.combiner_id, x.timestamp);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, prediction_record& x) {
  return f(caf::meta::type_name("rondo.prediction_record"), x.key,
           x.prediction_id, x.model_id, x.data, x.correlation_id,
           x.client_id, x.timestamp, x.client_name);
}

} // namespace rondo
