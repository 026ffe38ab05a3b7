#include "messages/records_codec.hpp"

#include "messages/error.hpp"
#include "records.pb.h"

namespace rondo {

namespace {

namespace pb = rondo::store;

template <class Enum>
caf::error to_enum(uint32_t raw, Enum last, Enum& out, const char* kind) {
  if (raw > static_cast<uint32_t>(last))
    return caf::make_error(ec::corrupt, std::string{kind}
                                          + " record is corrupt: status "
                                          + std::to_string(raw)
                                          + " out of range");
  out = static_cast<Enum>(raw);
  return caf::none;
}

template <class Proto>
caf::error parse(std::string_view bytes, Proto& msg, const char* kind) {
  if (!msg.ParseFromArray(bytes.data(), static_cast<int>(bytes.size())))
    return caf::make_error(ec::corrupt, std::string{kind}
                                          + " record is corrupt: not a valid "
                                            "protobuf message");
  return caf::none;
}

caf::error config_from(const std::string& json, round_config& out,
                       const char* kind) {
  auto cfg = parse_round_config_json(json);
  if (!cfg)
    return caf::make_error(ec::corrupt, std::string{kind}
                                          + " record is corrupt: round "
                                            "config: "
                                          + render(cfg.error()));
  out = std::move(*cfg);
  return caf::none;
}

template <class Repeated>
std::vector<std::string> strings(const Repeated& xs) {
  return {xs.begin(), xs.end()};
}

template <class Repeated>
void put_strings(const std::vector<std::string>& xs, Repeated* out) {
  for (auto& x : xs)
    out->Add(std::string{x});
}

// -- protobuf wire format, written directly ----------------------------------
//
// A round record lists every client of the round (tens of thousands of
// strings). Building those lists as protobuf fields allocates one string
// per entry; at 10 000 clients that cost ~7 ms on the round's close path
// (issue 4). They are appended in wire format instead. Protobuf parsers
// accept fields in any order, so the bytes decode exactly as before.

size_t varint_size(uint64_t x) {
  size_t n = 1;
  for (; x >= 0x80; x >>= 7)
    ++n;
  return n;
}

void put_varint(std::string& out, uint64_t x) {
  for (; x >= 0x80; x >>= 7)
    out.push_back(static_cast<char>((x & 0x7f) | 0x80));
  out.push_back(static_cast<char>(x));
}

// Wire type 2: strings, bytes and embedded messages.
uint64_t length_delimited(int field) {
  return (static_cast<uint64_t>(field) << 3) | 2;
}

// Size of a length-delimited field holding `n` bytes.
size_t field_size(int field, size_t n) {
  return varint_size(length_delimited(field)) + varint_size(n) + n;
}

void put_field(std::string& out, int field, const std::string& bytes) {
  put_varint(out, length_delimited(field));
  put_varint(out, bytes.size());
  out.append(bytes);
}

void put_repeated(std::string& out, int field,
                  const std::vector<std::string>& xs) {
  for (auto& x : xs)
    put_field(out, field, x);
}

size_t repeated_size(int field, const std::vector<std::string>& xs) {
  size_t n = 0;
  for (auto& x : xs)
    n += field_size(field, x.size());
  return n;
}

// The size of a RejectedUpdate message (proto3 omits empty strings).
size_t rejected_size(const rejected_update& x) {
  size_t n = 0;
  if (!x.client_id.empty())
    n += field_size(pb::RejectedUpdate::kClientIdFieldNumber,
                    x.client_id.size());
  if (!x.reason.empty())
    n += field_size(pb::RejectedUpdate::kReasonFieldNumber, x.reason.size());
  return n;
}

// Appends the per-client lists of a RoundRecord.
void put_client_lists(std::string& out, const round_record& x) {
  using m = pb::RoundRecord;
  size_t n = repeated_size(m::kClientsSelectedFieldNumber, x.clients_selected)
             + repeated_size(m::kClientsAcceptedFieldNumber,
                             x.clients_accepted)
             + repeated_size(m::kClientsSilentFieldNumber, x.clients_silent);
  for (auto& r : x.clients_rejected)
    n += field_size(m::kClientsRejectedFieldNumber, rejected_size(r));
  out.reserve(out.size() + n);
  put_repeated(out, m::kClientsSelectedFieldNumber, x.clients_selected);
  put_repeated(out, m::kClientsAcceptedFieldNumber, x.clients_accepted);
  for (auto& r : x.clients_rejected) {
    put_varint(out, length_delimited(m::kClientsRejectedFieldNumber));
    put_varint(out, rejected_size(r));
    if (!r.client_id.empty())
      put_field(out, pb::RejectedUpdate::kClientIdFieldNumber, r.client_id);
    if (!r.reason.empty())
      put_field(out, pb::RejectedUpdate::kReasonFieldNumber, r.reason);
  }
  put_repeated(out, m::kClientsSilentFieldNumber, x.clients_silent);
}

void to_proto(const validation_record& x, pb::ValidationRecord& m) {
  m.set_validation_id(x.validation_id);
  m.set_model_id(x.model_id);
  m.set_client_id(x.client_id);
  m.set_correlation_id(x.correlation_id);
  m.set_session_id(x.session_id);
  m.set_round_id(x.round_id);
  m.set_metrics_json(x.metrics_json);
  m.set_received_at(x.received_at);
  m.set_client_name(x.client_name);
}

void from_proto(const pb::ValidationRecord& m, validation_record& out) {
  out.validation_id = m.validation_id();
  out.model_id = m.model_id();
  out.client_id = m.client_id();
  out.correlation_id = m.correlation_id();
  out.session_id = m.session_id();
  out.round_id = m.round_id();
  out.metrics_json = m.metrics_json();
  out.received_at = m.received_at();
  out.client_name = m.client_name();
}

} // namespace

std::string encode(const job_record& x) {
  pb::JobRecord m;
  m.set_job_id(x.job_id);
  m.set_seq(x.seq);
  m.set_config_json(to_json(x.config));
  m.set_status(static_cast<uint32_t>(x.status));
  m.set_reason(x.reason);
  m.set_enqueued_at(x.enqueued_at);
  return m.SerializeAsString();
}

caf::error decode(std::string_view bytes, job_record& out) {
  pb::JobRecord m;
  if (auto err = parse(bytes, m, "job"))
    return err;
  out.job_id = m.job_id();
  out.seq = m.seq();
  out.reason = m.reason();
  out.enqueued_at = m.enqueued_at();
  if (auto err = to_enum(m.status(), job_status::failed, out.status, "job"))
    return err;
  return config_from(m.config_json(), out.config, "job");
}

std::string encode(const round_record& x) {
  pb::RoundRecord m;
  m.set_round_id(x.round_id);
  m.set_session_id(x.session_id);
  m.set_job_id(x.job_id);
  m.set_config_json(to_json(x.config));
  m.set_status(static_cast<uint32_t>(x.status));
  m.set_reason(x.reason);
  m.set_base_model_id(x.base_model_id);
  m.set_model_id(x.model_id);
  m.set_nr_expected_updates(x.nr_expected_updates);
  m.set_nr_required_updates(x.nr_required_updates);
  m.set_nr_aggregated_models(x.nr_aggregated_models);
  m.set_timeout(x.timeout);
  m.set_time_combination(x.time_combination);
  m.set_time_model_load(x.time_model_load);
  m.set_time_model_aggregation(x.time_model_aggregation);
  m.set_time_exec_training(x.time_exec_training);
  m.set_time_model_write(x.time_model_write);
  m.set_validation_failure(x.validation_failure);
  m.set_num_examples(x.num_examples);
  for (auto& c : x.combiners) {
    auto* p = m.add_combiners();
    p->set_combiner_id(c.combiner_id);
    p->set_status(static_cast<uint32_t>(c.status));
    p->set_reason(c.reason);
    p->set_model_id(c.model_id);
    p->set_num_examples(c.num_examples);
  }
  for (auto& v : x.validations)
    to_proto(v, *m.add_validations());
  m.set_started_at(x.started_at);
  m.set_ended_at(x.ended_at);
  auto out = m.SerializeAsString();
  put_client_lists(out, x);
  return out;
}

caf::error decode(std::string_view bytes, round_record& out) {
  pb::RoundRecord m;
  if (auto err = parse(bytes, m, "round"))
    return err;
  out.round_id = m.round_id();
  out.session_id = m.session_id();
  out.job_id = m.job_id();
  if (auto err = to_enum(m.status(), round_status::failed, out.status,
                         "round"))
    return err;
  out.reason = m.reason();
  out.base_model_id = m.base_model_id();
  out.model_id = m.model_id();
  out.nr_expected_updates = m.nr_expected_updates();
  out.nr_required_updates = m.nr_required_updates();
  out.nr_aggregated_models = m.nr_aggregated_models();
  out.timeout = m.timeout();
  out.time_combination = m.time_combination();
  out.time_model_load = m.time_model_load();
  out.time_model_aggregation = m.time_model_aggregation();
  out.time_exec_training = m.time_exec_training();
  out.time_model_write = m.time_model_write();
  out.validation_failure = m.validation_failure();
  out.num_examples = m.num_examples();
  out.clients_selected = strings(m.clients_selected());
  out.clients_accepted = strings(m.clients_accepted());
  out.clients_rejected.clear();
  for (auto& r : m.clients_rejected())
    out.clients_rejected.push_back({r.client_id(), r.reason()});
  out.clients_silent = strings(m.clients_silent());
  out.combiners.clear();
  for (auto& c : m.combiners()) {
    combiner_report r;
    r.combiner_id = c.combiner_id();
    if (auto err = to_enum(c.status(), round_status::failed, r.status,
                           "round"))
      return err;
    r.reason = c.reason();
    r.model_id = c.model_id();
    r.num_examples = c.num_examples();
    out.combiners.push_back(std::move(r));
  }
  out.validations.clear();
  for (auto& v : m.validations())
    from_proto(v, out.validations.emplace_back());
  out.started_at = m.started_at();
  out.ended_at = m.ended_at();
  return config_from(m.config_json(), out.config, "round");
}

std::string encode(const session_record& x) {
  pb::SessionRecord m;
  m.set_session_id(x.session_id);
  m.set_config_json(x.config_json);
  m.set_status(static_cast<uint32_t>(x.status));
  m.set_reason(x.reason);
  m.set_seed_model_id(x.seed_model_id);
  put_strings(x.round_ids, m.mutable_round_ids());
  m.set_created_at(x.created_at);
  m.set_ended_at(x.ended_at);
  m.set_name(x.name);
  m.set_rounds_done(x.rounds_done);
  m.set_rounds_succeeded(x.rounds_succeeded);
  m.set_global_model_id(x.global_model_id);
  m.set_current_round_id(x.current_round_id);
  m.set_round_count(x.round_count);
  return m.SerializeAsString();
}

caf::error decode(std::string_view bytes, session_record& out) {
  pb::SessionRecord m;
  if (auto err = parse(bytes, m, "session"))
    return err;
  out.session_id = m.session_id();
  out.config_json = m.config_json();
  if (auto err = to_enum(m.status(), session_status::terminated, out.status,
                         "session"))
    return err;
  out.reason = m.reason();
  out.seed_model_id = m.seed_model_id();
  out.round_ids = strings(m.round_ids());
  out.created_at = m.created_at();
  out.ended_at = m.ended_at();
  out.name = m.name();
  out.rounds_done = m.rounds_done();
  out.rounds_succeeded = m.rounds_succeeded();
  out.global_model_id = m.global_model_id();
  out.current_round_id = m.current_round_id();
  out.round_count = m.round_count();
  return caf::none;
}

std::string encode(const model_record& x) {
  pb::ModelRecord m;
  m.set_model_id(x.model_id);
  m.set_parent_id(x.parent_id);
  m.set_session_id(x.session_id);
  m.set_round_id(x.round_id);
  m.set_committed_at(x.committed_at);
  return m.SerializeAsString();
}

caf::error decode(std::string_view bytes, model_record& out) {
  pb::ModelRecord m;
  if (auto err = parse(bytes, m, "model"))
    return err;
  out.model_id = m.model_id();
  out.parent_id = m.parent_id();
  out.session_id = m.session_id();
  out.round_id = m.round_id();
  out.committed_at = m.committed_at();
  return caf::none;
}

std::string encode(const validation_record& x) {
  pb::ValidationRecord m;
  to_proto(x, m);
  return m.SerializeAsString();
}

caf::error decode(std::string_view bytes, validation_record& out) {
  pb::ValidationRecord m;
  if (auto err = parse(bytes, m, "validation"))
    return err;
  from_proto(m, out);
  return caf::none;
}

std::string encode(const client_record& x) {
  pb::ClientRecord m;
  m.set_client_id(x.client_id);
  m.set_name(x.name);
  m.set_trainer(x.trainer);
  m.set_validator(x.validator);
  m.set_status(x.status);
  m.set_last_seen(x.last_seen);
  return m.SerializeAsString();
}

caf::error decode(std::string_view bytes, client_record& out) {
  pb::ClientRecord m;
  if (auto err = parse(bytes, m, "client"))
    return err;
  out.client_id = m.client_id();
  out.name = m.name();
  out.trainer = m.trainer();
  out.validator = m.validator();
  out.status = m.status();
  out.last_seen = m.last_seen();
  return caf::none;
}

std::string encode(const metric_record& x) {
  pb::MetricRecord m;
  m.set_metric_id(x.metric_id);
  m.set_client_id(x.client_id);
  m.set_model_id(x.model_id);
  m.set_round_id(x.round_id);
  m.set_session_id(x.session_id);
  m.set_step(x.step);
  for (auto& [k, v] : x.values)
    (*m.mutable_values())[k] = v;
  m.set_received_at(x.received_at);
  return m.SerializeAsString();
}

caf::error decode(std::string_view bytes, metric_record& out) {
  pb::MetricRecord m;
  if (auto err = parse(bytes, m, "metric"))
    return err;
  out.metric_id = m.metric_id();
  out.client_id = m.client_id();
  out.model_id = m.model_id();
  out.round_id = m.round_id();
  out.session_id = m.session_id();
  out.step = m.step();
  out.values.clear();
  for (auto& [k, v] : m.values())
    out.values[k] = v;
  out.received_at = m.received_at();
  return caf::none;
}

std::string encode(const client_assignment_record& x) {
  pb::ClientAssignmentRecord m;
  m.set_client_id(x.client_id);
  m.set_name(x.name);
  m.set_combiner_id(x.combiner_id);
  m.set_combiner_preferred(x.combiner_preferred);
  m.set_ip(x.ip);
  m.set_package(x.package);
  m.set_assigned_at(x.assigned_at);
  return m.SerializeAsString();
}

caf::error decode(std::string_view bytes, client_assignment_record& out) {
  pb::ClientAssignmentRecord m;
  if (auto err = parse(bytes, m, "client assignment"))
    return err;
  out.client_id = m.client_id();
  out.name = m.name();
  out.combiner_id = m.combiner_id();
  out.combiner_preferred = m.combiner_preferred();
  out.ip = m.ip();
  out.package = m.package();
  out.assigned_at = m.assigned_at();
  return caf::none;
}

std::string encode(const status_record& x) {
  pb::StatusRecord m;
  m.set_status_id(x.status_id);
  m.set_status(x.status);
  m.set_log_level(x.log_level);
  m.set_type(x.type);
  m.set_data(x.data);
  m.set_correlation_id(x.correlation_id);
  m.set_session_id(x.session_id);
  m.set_extra(x.extra);
  m.set_sender_name(x.sender_name);
  m.set_sender_role(x.sender_role);
  m.set_sender_client_id(x.sender_client_id);
  m.set_combiner_id(x.combiner_id);
  m.set_timestamp(x.timestamp);
  return m.SerializeAsString();
}

caf::error decode(std::string_view bytes, status_record& out) {
  pb::StatusRecord m;
  if (auto err = parse(bytes, m, "status"))
    return err;
  out.status_id = m.status_id();
  out.status = m.status();
  out.log_level = m.log_level();
  out.type = m.type();
  out.data = m.data();
  out.correlation_id = m.correlation_id();
  out.session_id = m.session_id();
  out.extra = m.extra();
  out.sender_name = m.sender_name();
  out.sender_role = m.sender_role();
  out.sender_client_id = m.sender_client_id();
  out.combiner_id = m.combiner_id();
  out.timestamp = m.timestamp();
  return caf::none;
}

std::string encode(const prediction_record& x) {
  pb::PredictionRecord m;
  m.set_key(x.key);
  m.set_prediction_id(x.prediction_id);
  m.set_model_id(x.model_id);
  m.set_data(x.data);
  m.set_correlation_id(x.correlation_id);
  m.set_client_id(x.client_id);
  m.set_timestamp(x.timestamp);
  m.set_client_name(x.client_name);
  return m.SerializeAsString();
}

caf::error decode(std::string_view bytes, prediction_record& out) {
  pb::PredictionRecord m;
  if (auto err = parse(bytes, m, "prediction"))
    return err;
  out.key = m.key();
  out.prediction_id = m.prediction_id();
  out.model_id = m.model_id();
  out.data = m.data();
  out.correlation_id = m.correlation_id();
  out.client_id = m.client_id();
  out.timestamp = m.timestamp();
  out.client_name = m.client_name();
  return caf::none;
}

} // namespace rondo
