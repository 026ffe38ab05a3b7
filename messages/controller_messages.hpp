#pragma once

// Messages between the controller, its combiners and its users: sessions,
// model chunks, combiner round reports.

#include "messages/records.hpp"

#include <caf/expected.hpp>
#include <caf/meta/type_name.hpp>

#include <cstdint>
#include <string>
#include <vector>

namespace rondo {

/// One chunk of a stored model, for transfers between controller and
/// combiners: models cross the middleman as byte strings in chunks of the
/// model store's chunk size (1 MiB), never as one message (a large message
/// stalls CAF 0.17's single middleman I/O thread).
struct model_chunk {
  std::string model_id;
  /// Index of this chunk, 0-based.
  uint64_t index = 0;
  /// Number of chunks of the model (0 for an empty model).
  uint64_t count = 0;
  /// Size of the whole model in bytes.
  uint64_t total_bytes = 0;
  /// XXH3-64 of the whole model, for the receiver to verify.
  uint64_t checksum = 0;
  std::string bytes;
};

/// A training session: `rounds` rounds of training (and, when `validate`
/// is set, validation) run by the controller across its combiners. Times
/// in seconds. Defaults as FEDn's session defaults where FEDn has one.
struct session_config {
  /// Empty: the controller assigns a UUID.
  std::string session_id;
  /// Number of training rounds, >= 1. Default 5.
  int64_t rounds = 5;
  /// Per-round timeout at each combiner, > 0. Default 180.
  double round_timeout = 180;
  /// Per-combiner buffer size (-1: all selected clients). Default -1.
  int64_t buffer_size = -1;
  /// Active trainers a combiner needs to take part, >= 1. Default 1.
  int64_t clients_required = 1;
  /// Clients each combiner samples at most, >= 1. Default 8.
  int64_t clients_requested = 8;
  /// How the controller reduces combiner models: "fedavg" (default) or
  /// "fedopt" (server optimizer state kept for the session).
  std::string aggregator = "fedavg";
  /// JSON object of aggregator options. Default "{}".
  std::string aggregator_kwargs = "{}";
  /// Run a validation round on each new global model. Default true.
  bool validate = true;
  /// JSON object handed to clients' training code. Default "{}".
  std::string client_settings = "{}";
  /// The model the session starts from; empty: the newest model in the
  /// trail.
  std::string model_id;
  /// Stop the session at the first round that fails (no combiner
  /// succeeded). Default false: the next round starts from the same global
  /// model.
  bool stop_on_failure = false;
  /// How long beyond round_timeout (plus the combiners' client wait) the
  /// controller waits for combiner reports, > 0. Default 60.
  double grace = 60;
  /// Combiners delete the round's model updates once it ends. Default true
  /// (FEDn's delete_models_storage).
  bool delete_models_storage = true;
  /// When non-empty, only these clients (the active ones among them) train
  /// and validate (FEDn's selected_clients / client_ids).
  std::vector<std::string> selected_clients;
};

/// A session and its rounds, as `rondo session status` shows them.
struct session_report {
  session_record session;
  /// The session's rounds in order from position `first_round` on (the
  /// round in progress last, status running).
  std::vector<round_record> rounds;
  /// Position of rounds[0] among the session's rounds: 0 for a full
  /// report; a follower's count of rounds already seen for a wait.
  uint64_t first_round = 0;
};

/// A combiner's terminal report of one round (training or validation) of
/// the controller's.
struct combiner_round_done {
  std::string combiner_id;
  /// The controller's round (epoch) the report belongs to; stale ones are
  /// ignored.
  uint64_t epoch = 0;
  round_record record;
};

/// Parses a session config from JSON (numbers, booleans, objects typed or
/// as strings). @returns `ec::invalid_config` naming the key and value.
caf::expected<session_config> parse_session_config_json(const std::string&);

/// Renders the config as JSON with every key.
std::string to_json(const session_config& cfg);

/// @returns `ec::invalid_config` naming the first invalid key.
caf::error validate(const session_config& cfg);

bool operator==(const session_config& x, const session_config& y);
bool operator==(const model_chunk& x, const model_chunk& y);

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, model_chunk& x) {
  return f(caf::meta::type_name("rondo.model_chunk"), x.model_id, x.index,
           x.count, x.total_bytes, x.checksum, x.bytes);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, session_config& x) {
  return f(caf::meta::type_name("rondo.session_config"), x.session_id,
           x.rounds, x.round_timeout, x.buffer_size, x.clients_required,
           x.clients_requested, x.aggregator, x.aggregator_kwargs,
           x.validate, x.client_settings, x.model_id, x.stop_on_failure,
           x.grace, x.delete_models_storage, x.selected_clients);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, session_report& x) {
  return f(caf::meta::type_name("rondo.session_report"), x.session,
           x.rounds, x.first_round);
}

template <class Inspector>
typename Inspector::result_type
inspect(Inspector& f, combiner_round_done& x) {
  return f(caf::meta::type_name("rondo.combiner_round_done"), x.combiner_id,
           x.epoch, x.record);
}

} // namespace rondo
