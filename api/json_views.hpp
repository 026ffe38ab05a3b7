#pragma once

// Rondo's records as FEDn 0.33's REST v1 renders them (its DTOs in
// fedn/network/storage/statestore/stores/dto/), shared by the API routes
// and the dashboard. Every view has FEDn's fields (null where Rondo has no
// such value) plus, where noted, Rondo's own. Times FEDn keeps as datetimes
// (committed_at, timestamp) are rendered as Flask renders them, an HTTP
// date ("Tue, 07 Jan 2025 10:00:00 GMT"); Rondo's own times are unix
// seconds.

#include "messages/controller_messages.hpp"
#include "messages/records.hpp"

#include <caf/expected.hpp>
#include <nlohmann/json_fwd.hpp>

#include <string>

namespace rondo::api {

/// Unix seconds as an HTTP date in GMT, e.g. "Tue, 07 Jan 2025 10:00:00
/// GMT" (Flask's rendering of FEDn's datetimes); null for 0 (unset).
nlohmann::json http_date(double unix_seconds);

/// FEDn's session status: pending "Created", running "Started", finished
/// "Finished", terminated "Terminated"; failed "Failed" (FEDn's sessions
/// never fail, Rondo's end failed when no round succeeded).
const char* fedn_status(session_status x);

/// FEDn's round status: pending "Pending", running "Running", success
/// "Finished" (FEDn's final status of a successful round), failed
/// "Failed", or "Terminated" for a round failed with reason "terminated".
std::string fedn_status(round_status x, const std::string& reason = {});

/// FEDn's ModelDTO: model_id, model (the same id), name (null),
/// parent_model (null for a seed), session_id (null for a seed),
/// committed_at, updated_at (null); and Rondo's round_id (null for a
/// seed).
nlohmann::json to_fedn_json(const model_record& x);

/// FEDn's SessionConfigDTO from Rondo's session config: aggregator,
/// aggregator_kwargs (an object), round_timeout, buffer_size, rounds,
/// delete_models_storage, clients_required, requested_clients, validate,
/// helper_type ("numpyhelper", the one Rondo supports), model_id,
/// server_functions (null); and Rondo's client_settings, stop_on_failure,
/// grace, selected_clients.
nlohmann::json to_fedn_json(const session_config& x);

/// FEDn's SessionDTO: session_id, name, status (fedn_status),
/// session_config (its config as above; the stored JSON text when it no
/// longer parses), seed_model_id, committed_at (created), updated_at
/// (null); and Rondo's reason, ended_at (unix seconds, 0 while open),
/// round_ids.
nlohmann::json to_fedn_json(const session_record& x);

/// FEDn's RoundDTO: round_id, status (fedn_status), round_config (the
/// round config pushed to combiners, with FEDn's keys), round_data
/// (time_commit and reduce null: Rondo does not time them), combiners
/// (per combiner: name, status, model_id, round_id; config, data and
/// time_exec_training null; and Rondo's reason and num_examples),
/// committed_at (started), updated_at (null). Plus Rondo's top-level
/// session_id, reason, model_id, base_model_id, started_at, ended_at (unix
/// seconds, 0 while open), seconds (ended_at - started_at, 0 while open),
/// clients_selected, clients_accepted (ids), clients_rejected
/// ([{"client_id", "reason"}]), clients_silent (ids), num_examples.
nlohmann::json to_fedn_json(const round_record& x);

/// FEDn's ValidationDTO: validation_id, model_id, data (the metrics JSON
/// text exactly as the client sent it), correlation_id, timestamp,
/// session_id, meta (null), sender {name, role "CLIENT", client_id} (Rondo
/// knows the client by its id: name is the id), receiver {name, role}
/// (null: not recorded), committed_at, updated_at (null); and Rondo's
/// round_id (the controller's round whose model was validated).
nlohmann::json to_fedn_json(const validation_record& x);

/// FEDn's StatusDTO: status_id, status, timestamp, log_level, data,
/// correlation_id, type, extra, session_id, sender {name, role,
/// client_id}, committed_at, updated_at (null); and Rondo's combiner_id.
nlohmann::json to_fedn_json(const status_record& x);

/// FEDn's PredictionDTO: prediction_id (the run), model_id, data (the
/// client's output exactly as sent), correlation_id, timestamp, meta
/// (null), sender {name, role "CLIENT", client_id}, receiver (null
/// fields), committed_at, updated_at (null); and Rondo's key (the id
/// of /predictions/{id}: one answer).
nlohmann::json to_fedn_json(const prediction_record& x);

/// A session config from FEDn's `session_config` object (POST
/// /api/v1/sessions/). Keys as FEDn's SessionConfigDTO plus Rondo's
/// (client_settings, stop_on_failure, grace, selected_clients, rounds);
/// a missing key keeps Rondo's default; null counts as missing.
/// `requested_clients` is Rondo's clients_requested; `helper_type` must be
/// "numpyhelper"; `server_functions` must be null (Rondo runs no server
/// code); `aggregator_kwargs` is an object or its JSON text.
/// @returns the config, or ec::invalid_config naming the key and why
///          ("round_timeout must be a number, got 'abc'", "unknown key
///          'foo' in session_config").
caf::expected<session_config>
session_config_from_fedn(const nlohmann::json& fedn_config);

} // namespace rondo::api
