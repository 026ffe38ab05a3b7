#include "api/json_views.hpp"

#include "messages/config_values.hpp"
#include "messages/session_view.hpp"

#include <nlohmann/json.hpp>

#include <cmath>
#include <ctime>

namespace rondo::api {

namespace {

using json = nlohmann::json;

// "" as null (FEDn's unset optional fields).
json or_null(const std::string& s) {
  return s.empty() ? json(nullptr) : json(s);
}

// A JSON object held as text (configs keep them so); the text itself when
// it does not parse.
json object_or_text(const std::string& text) {
  auto j = json::parse(text, nullptr, false);
  return j.is_discarded() ? json(text) : j;
}

json sender(const std::string& name, const std::string& role,
            const std::string& client_id) {
  return json{{"name", or_null(name)},
              {"role", or_null(role)},
              {"client_id", or_null(client_id)}};
}

// A client's answer's sender as FEDn keeps it: its name (the client id for
// records stored before the name was kept), role CLIENT, its client id.
json client_sender(const std::string& name, const std::string& client_id) {
  return sender(name.empty() ? client_id : name, "CLIENT", client_id);
}

} // namespace

json http_date(double unix_seconds) {
  if (!(unix_seconds > 0) || !std::isfinite(unix_seconds))
    return nullptr;
  auto t = static_cast<std::time_t>(unix_seconds);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[64];
  auto n = std::strftime(buf, sizeof(buf), "%a, %d %b %Y %H:%M:%S GMT", &tm);
  return std::string{buf, n};
}

const char* fedn_status(session_status x) {
  switch (x) {
    case session_status::pending: return "Created";
    case session_status::running: return "Started";
    case session_status::finished: return "Finished";
    case session_status::failed: return "Failed";
    case session_status::terminated: return "Terminated";
  }
  return "Unknown";
}

std::string fedn_status(round_status x, const std::string& reason) {
  switch (x) {
    case round_status::pending: return "Pending";
    case round_status::running: return "Running";
    case round_status::success: return "Finished";
    case round_status::failed:
      return reason == "terminated" ? "Terminated" : "Failed";
  }
  return "Unknown";
}

json to_fedn_json(const model_record& x) {
  return json{{"model_id", x.model_id},
              {"model", x.model_id},
              {"name", nullptr},
              {"parent_model", or_null(x.parent_id)},
              {"session_id", or_null(x.session_id)},
              {"committed_at", http_date(x.committed_at)},
              {"updated_at", nullptr},
              {"round_id", or_null(x.round_id)}};
}

json to_fedn_json(const session_config& x) {
  return json{{"aggregator", x.aggregator},
              {"aggregator_kwargs", object_or_text(x.aggregator_kwargs)},
              {"round_timeout", x.round_timeout},
              {"buffer_size", x.buffer_size},
              {"rounds", x.rounds},
              {"delete_models_storage", x.delete_models_storage},
              {"clients_required", x.clients_required},
              {"requested_clients", x.clients_requested},
              {"validate", x.validate},
              {"helper_type", "numpyhelper"},
              {"model_id", or_null(x.model_id)},
              {"server_functions", nullptr},
              {"client_settings", object_or_text(x.client_settings)},
              {"stop_on_failure", x.stop_on_failure},
              {"grace", x.grace},
              {"selected_clients", x.selected_clients}};
}

json to_fedn_json(const session_record& x) {
  auto cfg = parse_session_config_json(x.config_json);
  return json{{"session_id", x.session_id},
              {"name", or_null(x.name)},
              {"status", fedn_status(x.status)},
              {"session_config",
               cfg ? to_fedn_json(*cfg) : object_or_text(x.config_json)},
              {"seed_model_id", or_null(x.seed_model_id)},
              {"committed_at", http_date(x.created_at)},
              {"updated_at", nullptr},
              {"reason", x.reason},
              {"ended_at", x.ended_at},
              {"round_ids", x.round_ids},
              {"rounds_done", x.rounds_done},
              {"rounds_succeeded", x.rounds_succeeded},
              {"global_model_id", or_null(x.global_model_id)},
              {"current_round_id", or_null(x.current_round_id)}};
}

json to_fedn_json(const round_record& x) {
  auto& c = x.config;
  json config{{"aggregator", c.aggregator},
              {"aggregator_kwargs", object_or_text(c.aggregator_kwargs)},
              {"round_timeout", c.round_timeout},
              {"buffer_size", c.buffer_size},
              {"rounds", 1},
              {"delete_models_storage", c.delete_models_storage},
              {"clients_required", c.clients_required},
              {"requested_clients", c.clients_requested},
              {"validate", c.validate},
              {"helper_type", c.helper_type},
              {"model_id", or_null(c.model_id)},
              {"server_functions", nullptr},
              {"session_id", or_null(c.session_id)},
              {"task", to_string(c.task)},
              {"round_id", or_null(c.round_id)},
              {"client_settings", object_or_text(c.client_settings)},
              {"is_sl_inference", false},
              {"selected_clients", c.selected_clients}};
  json combiners = json::array();
  for (auto& part : x.combiners)
    combiners.push_back(json{{"round_id", x.round_id},
                             {"model_id", or_null(part.model_id)},
                             {"name", part.combiner_id},
                             {"status", fedn_status(part.status,
                                                    part.reason)},
                             {"time_exec_training", nullptr},
                             {"config", nullptr},
                             {"data", nullptr},
                             {"reason", part.reason},
                             {"num_examples", part.num_examples}});
  json rejected = json::array();
  for (auto& r : x.clients_rejected)
    rejected.push_back(json{{"client_id", r.client_id},
                            {"reason", r.reason}});
  return json{{"round_id", x.round_id},
              {"status", fedn_status(x.status, x.reason)},
              {"round_config", std::move(config)},
              {"round_data", json{{"time_commit", nullptr},
                                  {"reduce", nullptr}}},
              {"combiners", std::move(combiners)},
              {"committed_at", http_date(x.started_at)},
              {"updated_at", nullptr},
              {"session_id", x.session_id},
              {"reason", x.reason},
              {"model_id", or_null(x.model_id)},
              {"base_model_id", or_null(x.base_model_id)},
              {"started_at", x.started_at},
              {"ended_at", x.ended_at},
              {"seconds", summarize(x).seconds},
              {"clients_selected", x.clients_selected},
              {"clients_accepted", x.clients_accepted},
              {"clients_rejected", std::move(rejected)},
              {"clients_silent", x.clients_silent},
              {"num_examples", x.num_examples},
              {"validation_failure", or_null(x.validation_failure)}};
}

json to_fedn_json(const validation_record& x) {
  return json{{"validation_id", x.validation_id},
              {"model_id", or_null(x.model_id)},
              {"data", x.metrics_json},
              {"correlation_id", or_null(x.correlation_id)},
              {"timestamp", http_date(x.received_at)},
              {"session_id", or_null(x.session_id)},
              {"meta", nullptr},
              {"sender", client_sender(x.client_name, x.client_id)},
              {"receiver", json{{"name", nullptr}, {"role", nullptr}}},
              {"committed_at", http_date(x.received_at)},
              {"updated_at", nullptr},
              {"round_id", or_null(x.round_id)}};
}

json to_fedn_json(const status_record& x) {
  return json{{"status_id", x.status_id},
              {"status", x.status},
              {"timestamp", http_date(x.timestamp)},
              {"log_level", or_null(x.log_level)},
              {"data", x.data},
              {"correlation_id", or_null(x.correlation_id)},
              {"type", or_null(x.type)},
              {"extra", or_null(x.extra)},
              {"session_id", or_null(x.session_id)},
              {"sender", sender(x.sender_name, x.sender_role,
                                x.sender_client_id)},
              {"committed_at", http_date(x.timestamp)},
              {"updated_at", nullptr},
              {"combiner_id", or_null(x.combiner_id)}};
}

json to_fedn_json(const prediction_record& x) {
  return json{{"prediction_id", x.prediction_id},
              {"model_id", or_null(x.model_id)},
              {"data", x.data},
              {"correlation_id", or_null(x.correlation_id)},
              {"timestamp", http_date(x.timestamp)},
              {"meta", nullptr},
              {"sender", client_sender(x.client_name, x.client_id)},
              {"receiver", json{{"name", nullptr}, {"role", nullptr}}},
              {"committed_at", http_date(x.timestamp)},
              {"updated_at", nullptr},
              {"key", x.key}};
}

caf::expected<session_config> session_config_from_fedn(const json& in) {
  if (!in.is_object())
    return config_error("session_config must be a JSON object");
  json rondo = json::object();
  for (auto& [key, value] : in.items()) {
    if (value.is_null())
      continue;
    if (key == "helper_type") {
      if (!value.is_string() || value.get<std::string>() != "numpyhelper")
        return config_error("helper_type must be 'numpyhelper' (the one "
                            "model helper Rondo has), got "
                            + rondo::quoted(value.is_string()
                                       ? value.get<std::string>()
                                       : value.dump()));
    } else if (key == "server_functions") {
      return config_error("server_functions must be null: Rondo runs no "
                          "server-side Python code");
    } else if (key == "requested_clients") {
      rondo["clients_requested"] = value;
    } else if (key == "aggregator" || key == "aggregator_kwargs"
               || key == "round_timeout" || key == "buffer_size"
               || key == "rounds" || key == "delete_models_storage"
               || key == "clients_required" || key == "clients_requested"
               || key == "validate" || key == "model_id"
               || key == "client_settings" || key == "stop_on_failure"
               || key == "grace" || key == "selected_clients") {
      rondo[key] = value;
    } else {
      return config_error("unknown key " + rondo::quoted(key)
                          + " in session_config");
    }
  }
  return parse_session_config_json(rondo.dump());
}

} // namespace rondo::api
