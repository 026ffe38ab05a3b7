#pragma once

// Input checks and small conversions of the FEDn wire protocol that need no
// gRPC: the meta of a ModelUpdate, JSON payloads, time stamps. Kept apart
// so tests can check them directly.

#include <caf/error.hpp>
#include <caf/expected.hpp>

#include <string>

namespace rondo::gateway {

/// Reads the FedAvg weight from a ModelUpdate's `meta` (FEDN_WIRE:
/// `{"training_metadata": {"num_examples": N, ...}, ...}`).
/// @returns N, a finite number > 0; or `ec::invalid_argument` with a text
///          starting "malformed meta: " that names what is wrong (not JSON,
///          not an object, missing training_metadata or num_examples, not a
///          number, not finite, not > 0).
caf::expected<double> parse_num_examples(const std::string& meta);

/// Checks that `text` is a JSON object (a validation's metrics, a
/// prediction's output). @returns `ec::invalid_argument` with a text
/// starting "malformed <what>: ", or none.
caf::error check_json_object(const std::string& text, const std::string& what);

/// The current local time as Python's `str(datetime.now())` prints it
/// ("2024-05-01 13:45:12.123456"), the form FEDn puts in string time stamps.
std::string fedn_timestamp_now();

} // namespace rondo::gateway
