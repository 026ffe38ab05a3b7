#include "messages/records.hpp"

#include <tuple>

namespace rondo {

const char* to_string(job_status x) {
  switch (x) {
    case job_status::queued: return "queued";
    case job_status::running: return "running";
    case job_status::success: return "success";
    case job_status::failed: return "failed";
  }
  return "unknown";
}

const char* to_string(round_status x) {
  switch (x) {
    case round_status::pending: return "pending";
    case round_status::running: return "running";
    case round_status::success: return "success";
    case round_status::failed: return "failed";
  }
  return "unknown";
}

const char* to_string(session_status x) {
  switch (x) {
    case session_status::pending: return "pending";
    case session_status::running: return "running";
    case session_status::finished: return "finished";
    case session_status::failed: return "failed";
    case session_status::terminated: return "terminated";
  }
  return "unknown";
}

namespace {

auto fields(const job_record& x) {
  return std::tie(x.job_id, x.seq, x.config, x.status, x.reason,
                  x.enqueued_at);
}
auto fields(const rejected_update& x) {
  return std::tie(x.client_id, x.reason);
}
auto fields(const combiner_report& x) {
  return std::tie(x.combiner_id, x.status, x.reason, x.model_id,
                  x.num_examples);
}
auto fields(const round_record& x) {
  return std::tie(x.round_id, x.session_id, x.job_id, x.config, x.status,
                  x.reason, x.base_model_id, x.model_id,
                  x.nr_expected_updates, x.nr_required_updates,
                  x.nr_aggregated_models, x.timeout, x.time_combination,
                  x.time_model_load, x.time_model_aggregation,
                  x.time_exec_training, x.time_model_write, x.num_examples,
                  x.clients_selected,
                  x.clients_accepted, x.clients_rejected, x.clients_silent,
                  x.combiners, x.validations, x.started_at, x.ended_at,
                  x.validation_failure);
}
auto fields(const session_record& x) {
  return std::tie(x.session_id, x.config_json, x.status, x.reason,
                  x.seed_model_id, x.round_ids, x.created_at, x.ended_at,
                  x.name, x.rounds_done, x.rounds_succeeded,
                  x.global_model_id, x.current_round_id, x.round_count);
}
auto fields(const model_record& x) {
  return std::tie(x.model_id, x.parent_id, x.session_id, x.round_id,
                  x.committed_at);
}
auto fields(const validation_record& x) {
  return std::tie(x.validation_id, x.model_id, x.client_id, x.client_name,
                  x.correlation_id, x.session_id, x.round_id,
                  x.metrics_json, x.received_at);
}
auto fields(const client_record& x) {
  return std::tie(x.client_id, x.name, x.trainer, x.validator, x.status,
                  x.last_seen);
}
auto fields(const metric_record& x) {
  return std::tie(x.metric_id, x.client_id, x.model_id, x.round_id,
                  x.session_id, x.step, x.values, x.received_at);
}
auto fields(const client_assignment_record& x) {
  return std::tie(x.client_id, x.name, x.combiner_id, x.combiner_preferred,
                  x.ip, x.package, x.assigned_at);
}

auto fields(const status_record& x) {
  return std::tie(x.status_id, x.status, x.log_level, x.type, x.data,
                  x.correlation_id, x.session_id, x.extra, x.sender_name,
                  x.sender_role, x.sender_client_id, x.combiner_id,
                  x.timestamp);
}
auto fields(const prediction_record& x) {
  return std::tie(x.key, x.prediction_id, x.model_id, x.data,
                  x.correlation_id, x.client_id, x.client_name,
                  x.timestamp);
}

} // namespace

#define RONDO_EQ(T) \
  bool operator==(const T& x, const T& y) { return fields(x) == fields(y); }
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

} // namespace rondo
