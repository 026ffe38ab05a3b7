#include "messages/controller_messages.hpp"

#include "messages/config_values.hpp"
#include "messages/error.hpp"
#include "messages/round_config.hpp"

#include <nlohmann/json.hpp>

#include <sstream>

#include <cmath>
#include <tuple>

namespace rondo {

namespace {

using json = nlohmann::json;

// Applies one key; the shared keys keep the round config's meaning.
caf::error apply(session_config& c, const std::string& key,
                 const std::string& value) {
  auto set = [&](auto& field, auto parsed) -> caf::error {
    if (!parsed)
      return parsed.error();
    field = *parsed;
    return caf::none;
  };
  auto client_list = [&](std::vector<std::string>& field) -> caf::error {
    auto x = parse_config_json(key, value, false);
    if (!x)
      return x.error();
    std::vector<std::string> ids;
    for (auto& id : *x) {
      if (!id.is_string() || id.get<std::string>().empty())
        return config_error(key + " must be a list of client ids, got "
                            + quoted(value));
      ids.push_back(id.get<std::string>());
    }
    field = std::move(ids);
    return caf::none;
  };
  auto object = [&](std::string& field) -> caf::error {
    auto x = parse_config_json(key, value, true);
    if (!x)
      return x.error();
    field = x->dump();
    return caf::none;
  };
  if (key == "session_id")
    c.session_id = value;
  else if (key == "model_id")
    c.model_id = value;
  else if (key == "aggregator")
    c.aggregator = trim(value);
  else if (key == "rounds")
    return set(c.rounds, parse_config_int(key, value));
  else if (key == "round_timeout")
    return set(c.round_timeout, parse_config_double(key, value));
  else if (key == "grace")
    return set(c.grace, parse_config_double(key, value));
  else if (key == "buffer_size")
    return set(c.buffer_size, parse_config_int(key, value));
  else if (key == "clients_required")
    return set(c.clients_required, parse_config_int(key, value));
  else if (key == "clients_requested")
    return set(c.clients_requested, parse_config_int(key, value));
  else if (key == "validate")
    return set(c.validate, parse_config_bool(key, value));
  else if (key == "stop_on_failure")
    return set(c.stop_on_failure, parse_config_bool(key, value));
  else if (key == "delete_models_storage")
    return set(c.delete_models_storage, parse_config_bool(key, value));
  else if (key == "selected_clients")
    return client_list(c.selected_clients);
  else if (key == "client_settings")
    return object(c.client_settings);
  else if (key == "aggregator_kwargs")
    return object(c.aggregator_kwargs);
  else
    return config_error("unknown session config key " + quoted(key));
  return caf::none;
}

} // namespace

caf::error validate(const session_config& c) {
  if (c.rounds < 1)
    return config_error("rounds must be >= 1, got "
                        + std::to_string(c.rounds));
  if (!(c.grace > 0) || !std::isfinite(c.grace))
    return config_error("grace must be > 0, got "
                        + (std::ostringstream{} << c.grace).str());
  if (c.clients_required > c.clients_requested && c.clients_requested >= 1)
    return config_error("clients_required (" + std::to_string(
                          c.clients_required)
                        + ") must not exceed clients_requested ("
                        + std::to_string(c.clients_requested)
                        + "): a combiner samples at most clients_requested "
                          "trainers");
  // The keys a session passes on to each combiner round obey the round
  // config's rules.
  round_config rc;
  rc.round_timeout = c.round_timeout;
  rc.buffer_size = c.buffer_size;
  rc.clients_required = c.clients_required;
  rc.clients_requested = c.clients_requested;
  rc.max_clients = c.clients_requested;
  rc.aggregator = c.aggregator;
  rc.aggregator_kwargs = c.aggregator_kwargs;
  rc.client_settings = c.client_settings;
  return rondo::validate(rc);
}

caf::expected<session_config>
parse_session_config_json(const std::string& text) {
  if (auto why = json_nesting_problem(text); !why.empty())
    return config_error("session config is " + why);
  auto doc = json::parse(text, nullptr, false);
  if (doc.is_discarded() || !doc.is_object())
    return config_error("session config must be a JSON object");
  session_config c;
  for (auto& [key, value] : doc.items()) {
    if (value.is_null())
      return config_error(key + " must not be null");
    auto str = value.is_string() ? value.get<std::string>() : value.dump();
    if (auto err = apply(c, key, str))
      return err;
  }
  if (auto err = validate(c))
    return err;
  return c;
}

std::string to_json(const session_config& c) {
  json j;
  j["session_id"] = c.session_id;
  j["rounds"] = c.rounds;
  j["round_timeout"] = c.round_timeout;
  j["buffer_size"] = c.buffer_size;
  j["clients_required"] = c.clients_required;
  j["clients_requested"] = c.clients_requested;
  j["aggregator"] = c.aggregator;
  j["aggregator_kwargs"] = json::parse(c.aggregator_kwargs, nullptr, false);
  j["validate"] = c.validate;
  j["client_settings"] = json::parse(c.client_settings, nullptr, false);
  j["model_id"] = c.model_id;
  j["stop_on_failure"] = c.stop_on_failure;
  j["grace"] = c.grace;
  j["delete_models_storage"] = c.delete_models_storage;
  j["selected_clients"] = c.selected_clients;
  return j.dump();
}

bool operator==(const session_config& x, const session_config& y) {
  auto tie = [](const session_config& c) {
    return std::tie(c.session_id, c.rounds, c.round_timeout, c.buffer_size,
                    c.clients_required, c.clients_requested, c.aggregator,
                    c.aggregator_kwargs, c.validate, c.client_settings,
                    c.model_id, c.stop_on_failure, c.grace,
                    c.delete_models_storage, c.selected_clients);
  };
  return tie(x) == tie(y);
}

bool operator==(const model_chunk& x, const model_chunk& y) {
  return std::tie(x.model_id, x.index, x.count, x.total_bytes, x.checksum,
                  x.bytes)
         == std::tie(y.model_id, y.index, y.count, y.total_bytes, y.checksum,
                     y.bytes);
}

} // namespace rondo
