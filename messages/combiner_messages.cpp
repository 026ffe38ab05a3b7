#include "messages/combiner_messages.hpp"

#include <nlohmann/json.hpp>

#include <tuple>

namespace rondo {

std::string make_roles_json(const client_roles& roles) {
  return nlohmann::json{{"trainer", roles.trainer},
                        {"validator", roles.validator}}
    .dump();
}

client_roles parse_roles_json(const std::string& data) {
  client_roles roles;
  auto j = nlohmann::json::parse(data, nullptr, false);
  if (j.is_discarded() || !j.is_object())
    return roles;
  auto get = [&j](const char* key, bool& field) {
    auto i = j.find(key);
    if (i != j.end() && i->is_boolean())
      field = i->get<bool>();
  };
  get("trainer", roles.trainer);
  get("validator", roles.validator);
  return roles;
}

bool operator==(const client_info& x, const client_info& y) {
  return std::tie(x.client_id, x.name, x.trainer, x.validator)
         == std::tie(y.client_id, y.name, y.trainer, y.validator);
}

bool operator==(const client_task& x, const client_task& y) {
  return std::tie(x.correlation_id, x.round_id, x.session_id, x.model_id,
                  x.kind, x.data)
         == std::tie(y.correlation_id, y.round_id, y.session_id, y.model_id,
                     y.kind, y.data);
}

bool operator==(const model_update& x, const model_update& y) {
  return std::tie(x.client_id, x.correlation_id, x.model_id,
                  x.model_update_id, x.num_examples, x.meta)
         == std::tie(y.client_id, y.correlation_id, y.model_id,
                     y.model_update_id, y.num_examples, y.meta);
}

bool operator==(const model_validation& x, const model_validation& y) {
  return std::tie(x.client_id, x.client_name, x.correlation_id, x.model_id,
                  x.session_id, x.data)
         == std::tie(y.client_id, y.client_name, y.correlation_id, y.model_id,
                     y.session_id, y.data);
}

bool operator==(const update_verdict& x, const update_verdict& y) {
  return x.accepted == y.accepted && x.reason == y.reason;
}

bool operator==(const task_cancelled& x, const task_cancelled& y) {
  return std::tie(x.correlation_id, x.client_id, x.reason, x.failed)
         == std::tie(y.correlation_id, y.client_id, y.reason, y.failed);
}

bool operator==(const timer_tick& x, const timer_tick& y) {
  return std::tie(x.kind, x.epoch, x.subject)
         == std::tie(y.kind, y.epoch, y.subject);
}

bool operator==(const task_refused& x, const task_refused& y) {
  return std::tie(x.correlation_id, x.client_id, x.reason)
         == std::tie(y.correlation_id, y.client_id, y.reason);
}

const char* to_string(timer_kind x) {
  switch (x) {
    case timer_kind::reconnect: return "reconnect";
    case timer_kind::staging_retry: return "staging_retry";
    case timer_kind::client_wait: return "client_wait";
    case timer_kind::round_timeout: return "round_timeout";
    case timer_kind::round_finish: return "round_finish";
    case timer_kind::liveness: return "liveness";
    case timer_kind::phase_timeout: return "phase_timeout";
    case timer_kind::no_combiner: return "no_combiner";
  }
  return "unknown";
}

bool operator==(const model_blob& x, const model_blob& y) {
  if (x.model_id != y.model_id)
    return false;
  if (!x.bytes || !y.bytes)
    return x.bytes == y.bytes;
  return *x.bytes == *y.bytes;
}

} // namespace rondo
