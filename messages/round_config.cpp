#include "messages/round_config.hpp"

#include "messages/config_values.hpp"
#include "messages/error.hpp"

#include <nlohmann/json.hpp>

#include <cmath>
#include <sstream>
#include <tuple>

namespace rondo {

const char* to_string(round_task task) {
  switch (task) {
    case round_task::training: return "training";
    case round_task::validation: return "validation";
    case round_task::prediction: return "prediction";
  }
  return "training";
}

namespace {

using json = nlohmann::json;

const auto& bad = config_error;

caf::error check_invariants(const round_config& c) {
  auto num = [](auto x) {
    std::ostringstream os;
    os << x;
    return os.str();
  };
  if (!(c.round_timeout > 0) || !std::isfinite(c.round_timeout))
    return bad("round_timeout must be > 0, got " + num(c.round_timeout));
  if (c.buffer_size != -1 && c.buffer_size < 1)
    return bad("buffer_size must be -1 (all selected clients) or >= 1, got "
               + num(c.buffer_size));
  if (c.clients_required < 1)
    return bad("clients_required must be >= 1, got "
               + num(c.clients_required));
  if (c.clients_requested < 1)
    return bad("clients_requested must be >= 1, got "
               + num(c.clients_requested));
  if (c.max_clients < 1)
    return bad("max_clients must be >= 1, got " + num(c.max_clients));
  // A training round samples at most max_clients trainers: requiring more
  // accepted updates than that could never succeed.
  if (c.task == round_task::training && c.selected_clients.empty()
      && c.clients_required > c.max_clients)
    return bad("clients_required (" + num(c.clients_required)
               + ") must not exceed max_clients (" + num(c.max_clients)
               + "): the round could never gather enough updates");
  if (c.aggregator.empty())
    return bad("aggregator must not be empty");
  if (c.helper_type.empty())
    return bad("helper_type must not be empty");
  for (auto& id : c.selected_clients)
    if (id.empty())
      return bad("selected_clients must not contain an empty client id");
  auto cs = json::parse(c.client_settings, nullptr, false);
  if (cs.is_discarded() || !cs.is_object())
    return bad("client_settings must be a JSON object, got "
               + quoted(c.client_settings));
  auto ak = json::parse(c.aggregator_kwargs, nullptr, false);
  if (ak.is_discarded() || !ak.is_object())
    return bad("aggregator_kwargs must be a JSON object, got "
               + quoted(c.aggregator_kwargs));
  return caf::none;
}

// Applies one key. Returns an error naming the key and value on bad input.
caf::error apply(round_config& c, const std::string& key,
                 const std::string& value) {
  auto set_int = [&](int64_t& field) -> caf::error {
    auto x = parse_config_int(key, value);
    if (!x)
      return x.error();
    field = *x;
    return caf::none;
  };
  auto set_bool = [&](bool& field) -> caf::error {
    auto x = parse_config_bool(key, value);
    if (!x)
      return x.error();
    field = *x;
    return caf::none;
  };
  auto set_object = [&](std::string& field) -> caf::error {
    auto x = parse_config_json(key, value, true);
    if (!x)
      return x.error();
    field = x->dump();
    return caf::none;
  };
  if (key == "round_id") {
    c.round_id = value;
  } else if (key == "session_id") {
    c.session_id = value;
  } else if (key == "model_id") {
    c.model_id = value;
  } else if (key == "task") {
    auto s = trim(value);
    if (s == "training")
      c.task = round_task::training;
    else if (s == "validation")
      c.task = round_task::validation;
    else if (s == "prediction")
      c.task = round_task::prediction;
    else
      return bad("task must be training, validation or prediction, got "
                 + quoted(value));
  } else if (key == "round_timeout") {
    auto x = parse_config_double(key, value);
    if (!x)
      return x.error();
    c.round_timeout = *x;
  } else if (key == "buffer_size") {
    return set_int(c.buffer_size);
  } else if (key == "clients_required") {
    return set_int(c.clients_required);
  } else if (key == "clients_requested") {
    return set_int(c.clients_requested);
  } else if (key == "max_clients") {
    return set_int(c.max_clients);
  } else if (key == "selected_clients") {
    auto x = parse_config_json(key, value, false);
    if (!x)
      return x.error();
    std::vector<std::string> ids;
    for (auto& id : *x) {
      if (!id.is_string())
        return bad("selected_clients must be a JSON list of strings, got "
                   + quoted(value));
      ids.push_back(id.get<std::string>());
    }
    c.selected_clients = std::move(ids);
  } else if (key == "client_settings") {
    return set_object(c.client_settings);
  } else if (key == "aggregator") {
    c.aggregator = trim(value);
  } else if (key == "aggregator_kwargs") {
    return set_object(c.aggregator_kwargs);
  } else if (key == "delete_models_storage") {
    return set_bool(c.delete_models_storage);
  } else if (key == "validate") {
    return set_bool(c.validate);
  } else if (key == "helper_type") {
    c.helper_type = trim(value);
  } else {
    c.extra[key] = value;
  }
  return caf::none;
}

} // namespace

caf::expected<round_config>
parse_round_config(const std::map<std::string, std::string>& kv) {
  round_config c;
  for (auto& [key, value] : kv)
    if (auto err = apply(c, key, value))
      return err;
  if (auto err = check_invariants(c))
    return err;
  return c;
}

caf::expected<round_config> parse_round_config_json(const std::string& text) {
  if (auto why = json_nesting_problem(text); !why.empty())
    return bad("round config is " + why);
  auto doc = json::parse(text, nullptr, false);
  if (doc.is_discarded())
    return bad("round config is not valid JSON");
  if (!doc.is_object())
    return bad("round config must be a JSON object, got " + doc.dump());
  std::map<std::string, std::string> kv;
  for (auto& [key, value] : doc.items()) {
    if (value.is_string())
      kv[key] = value.get<std::string>();
    else if (value.is_null())
      return bad(key + " must not be null");
    else
      kv[key] = value.dump();
  }
  return parse_round_config(kv);
}

std::string to_json(const round_config& c) {
  json j;
  for (auto& [key, value] : c.extra)
    j[key] = value;
  j["round_id"] = c.round_id;
  j["session_id"] = c.session_id;
  j["model_id"] = c.model_id;
  j["task"] = to_string(c.task);
  j["round_timeout"] = c.round_timeout;
  j["buffer_size"] = c.buffer_size;
  j["clients_required"] = c.clients_required;
  j["clients_requested"] = c.clients_requested;
  j["max_clients"] = c.max_clients;
  j["selected_clients"] = c.selected_clients;
  j["client_settings"] = json::parse(c.client_settings, nullptr, false);
  j["aggregator"] = c.aggregator;
  j["aggregator_kwargs"] = json::parse(c.aggregator_kwargs, nullptr, false);
  j["delete_models_storage"] = c.delete_models_storage;
  j["validate"] = c.validate;
  j["helper_type"] = c.helper_type;
  return j.dump();
}

caf::error validate(const round_config& cfg) {
  return check_invariants(cfg);
}

bool operator==(const round_config& x, const round_config& y) {
  auto tie = [](const round_config& c) {
    return std::tie(c.round_id, c.session_id, c.model_id, c.task,
                    c.round_timeout, c.buffer_size, c.clients_required,
                    c.clients_requested, c.max_clients, c.selected_clients,
                    c.client_settings, c.aggregator, c.aggregator_kwargs,
                    c.delete_models_storage, c.validate, c.helper_type,
                    c.extra);
  };
  return tie(x) == tie(y);
}

} // namespace rondo
