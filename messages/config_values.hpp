#pragma once

// Strict parsers for configuration values that arrive as strings (FEDn's
// controller sends every value of a round config as a string). Each error
// is `ec::invalid_config` naming the key and the value, e.g.
// "round_timeout must be a number, got 'abc'".

#include <caf/expected.hpp>
#include <nlohmann/json_fwd.hpp>

#include <cstdint>
#include <string>

namespace rondo {

/// `ec::invalid_config` with `what` as its text.
caf::error config_error(const std::string& what);

/// `s` in single quotes, as config errors show values.
std::string quoted(const std::string& s);

/// `s` without leading and trailing white space.
std::string trim(const std::string& s);

/// A finite number ("60", "1e2", " 2.5 ").
caf::expected<double> parse_config_double(const std::string& key,
                                          const std::string& raw);

/// An integer; Python's str() of an integral float ("5.0") is accepted.
caf::expected<int64_t> parse_config_int(const std::string& key,
                                        const std::string& raw);

/// "True", "False", "true" or "false".
caf::expected<bool> parse_config_bool(const std::string& key,
                                      const std::string& raw);

/// A JSON object (want_object) or list; never a Python repr.
caf::expected<nlohmann::json> parse_config_json(const std::string& key,
                                                const std::string& raw,
                                                bool want_object);

} // namespace rondo
