#pragma once

// Rondo's error domain: one enum, registered with CAF so that a
// `caf::error` carrying an `ec` renders as readable text on every node.

#include <caf/error.hpp>
#include <caf/fwd.hpp>
#include <caf/make_message.hpp>
#include <caf/message.hpp>

#include <cstdint>
#include <string>

namespace rondo {

/// Error codes of every Rondo layer. A `caf::error` made from an `ec` carries
/// the code and a context message with the human-readable detail (what and
/// why), e.g. `make_error(ec::invalid_config, "round_timeout must be > 0,
/// got -3")`.
enum class ec : uint8_t {
  /// Not an error.
  none = 0,
  /// An unknown or unexpected failure.
  unspecified,
  /// A configuration value failed validation (names key and value).
  invalid_config,
  /// An argument to a function or message was out of range or malformed.
  invalid_argument,
  /// The requested id (model, job, round, session, client) does not exist.
  not_found,
  /// An id that must be new already exists.
  already_exists,
  /// Stored data failed its checksum or could not be decoded.
  corrupt,
  /// The storage engine reported an I/O or internal failure.
  storage_error,
  /// A model file is not a valid model (npz/npy format violation).
  malformed_model,
  /// A model update does not match the global model's keys, dtypes or shapes.
  shape_mismatch,
  /// A value is NaN or infinite where a finite number is required.
  non_finite,
  /// An aggregation could not produce a model.
  aggregation_failed,
  /// A bounded wait ran out.
  timeout,
  /// Fewer active or successful clients than a round requires.
  too_few_clients,
  /// The global model could not be staged for a round.
  staging_failed,
  /// A round or session was terminated on request.
  terminated,
  /// A model update does not belong to any outstanding task of the round.
  stale_update,
  /// A size limit was exceeded.
  too_large,
  /// An operation is not valid in the current state.
  invalid_state,
  /// A peer presented no credentials, or ones that do not verify (missing,
  /// malformed, badly signed or expired token; no or untrusted certificate).
  unauthenticated,
  /// A verified peer asked for something its role or identity does not
  /// allow (a client token on an admin method, acting as another client).
  permission_denied,
};

/// Returns the enumerator's name, e.g. "invalid_config".
const char* to_string(ec code);

/// Renders a `caf::error` of the `rondo` category as
/// "rondo.<code>: <context>"; other categories as CAF renders them.
std::string render(const caf::error& err);

/// The context text of a Rondo error alone (what make_error was given,
/// e.g. "malformed meta: ..."), so that it can go into another message
/// without its code twice; other categories as `render` prints them.
std::string error_detail(const caf::error& err);

/// Returns `err` with the same code and `prefix` put before its text, e.g.
/// with_prefix(err, "update 'a.npz': "); errors of other categories as
/// they are.
caf::error with_prefix(const caf::error& err, const std::string& prefix);

/// Registers the `rondo` error category with `cfg` so that
/// `actor_system::render` prints Rondo errors readably. Call once per
/// configuration before the actor system starts.
void add_error_category(caf::actor_system_config& cfg);

} // namespace rondo

CAF_ERROR_CODE_ENUM(rondo::ec, "rondo")
