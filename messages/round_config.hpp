#pragma once

// The typed form of a round config: what FEDn's controller pushes to a
// combiner's round queue, validated once at the edge so that actors only
// ever see valid values.

#include <caf/expected.hpp>
#include <caf/meta/type_name.hpp>

#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace rondo {

/// What a round asks its clients to do.
enum class round_task : uint8_t { training, validation, prediction };

/// Returns "training", "validation" or "prediction".
const char* to_string(round_task task);

/// A round config with FEDn's keys and defaults (FEDn 0.9+ `round_config`,
/// see ../shared/FEDN_WIRE.md). Times are in seconds.
struct round_config {
  /// Round identifier assigned by the controller (free text, e.g. "3").
  std::string round_id;
  /// The session this round belongs to.
  std::string session_id;
  /// The global model the round starts from.
  std::string model_id;
  /// training (default) | validation | prediction.
  round_task task = round_task::training;
  /// Round timeout in seconds, > 0. Default 180 (FEDn's).
  double round_timeout = 180.0;
  /// Accepted updates that close the round early; -1 means "as many as
  /// clients were sent the task", else >= 1. Default -1.
  int64_t buffer_size = -1;
  /// Active trainers a round needs before it starts, and accepted updates it
  /// needs to succeed; >= 1. Default 1.
  int64_t clients_required = 1;
  /// Clients the controller asks for; >= 1. Default 8.
  int64_t clients_requested = 8;
  /// Upper bound on the clients sampled for the round; >= 1. Default 30.
  int64_t max_clients = 30;
  /// When non-empty, exactly the active ones among these client ids are
  /// selected instead of a random sample.
  std::vector<std::string> selected_clients;
  /// JSON object handed to each client's training code, as JSON text.
  /// Default "{}".
  std::string client_settings = "{}";
  /// Aggregator name; default "fedavg".
  std::string aggregator = "fedavg";
  /// JSON object of aggregator options, as JSON text. Default "{}".
  std::string aggregator_kwargs = "{}";
  /// Delete intermediate model updates from storage after the round.
  /// Default true.
  bool delete_models_storage = true;
  /// Run validation after training. Default true.
  bool validate = true;
  /// Model serialization helper; default "numpyhelper".
  std::string helper_type = "numpyhelper";
  /// Keys Rondo does not interpret, kept verbatim (string form) and passed
  /// through to clients.
  std::map<std::string, std::string> extra;
};

/// Parses a round config from a string map, as FEDn's controller sends it
/// (every value a string). Booleans accept "True"/"False"/"true"/"false";
/// lists and objects must be JSON ("[\"c1\"]"), never a Python repr.
/// Unknown keys land in `extra`.
/// @returns the config, or `ec::invalid_config` naming the key and value,
///          e.g. "round_timeout must be > 0, got -3".
caf::expected<round_config>
parse_round_config(const std::map<std::string, std::string>& kv);

/// Parses a round config from JSON text: an object whose values are JSON
/// numbers, booleans, arrays, objects, or strings in the string-map form.
/// @returns the config, or `ec::invalid_config` naming the key and value.
caf::expected<round_config> parse_round_config_json(const std::string& json);

/// Renders the config as a JSON object with every key (typed values; nested
/// objects inline; `extra` keys as their original strings). Parsing the
/// result with `parse_round_config_json` gives back an equal config.
std::string to_json(const round_config& cfg);

/// Checks the invariants `parse_round_config` enforces, for configs built in
/// code. @returns `ec::invalid_config` naming the first violated key.
caf::error validate(const round_config& cfg);

bool operator==(const round_config& x, const round_config& y);
inline bool operator!=(const round_config& x, const round_config& y) {
  return !(x == y);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, round_config& x) {
  return f(caf::meta::type_name("rondo.round_config"), x.round_id,
           x.session_id, x.model_id, x.task, x.round_timeout, x.buffer_size,
           x.clients_required, x.clients_requested, x.max_clients,
           x.selected_clients, x.client_settings, x.aggregator,
           x.aggregator_kwargs, x.delete_models_storage, x.validate,
           x.helper_type, x.extra);
}

} // namespace rondo
