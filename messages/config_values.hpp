#pragma once

// Strict parsers for configuration values that arrive as strings (FEDn's
// controller sends every value of a round config as a string). Each error
// is `ec::invalid_config` naming the key and the value, e.g.
// "round_timeout must be a number, got 'abc'".

#include <caf/expected.hpp>
#include <nlohmann/json_fwd.hpp>

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace rondo {

/// `ec::invalid_config` with `what` as its text.
caf::error config_error(const std::string& what);

/// `s` in single quotes, as config errors show values.
std::string quoted(const std::string& s);

/// `s` without leading and trailing white space.
std::string trim(const std::string& s);

/// `s` with its ASCII letters in lower case (header names, and values
/// compared in any case such as "asc" or "true").
std::string ascii_lower(std::string s);

/// A finite number ("60", "1e2", " 2.5 ").
caf::expected<double> parse_config_double(const std::string& key,
                                          const std::string& raw);

/// An integer; Python's str() of an integral float ("5.0") is accepted.
caf::expected<int64_t> parse_config_int(const std::string& key,
                                        const std::string& raw);

/// "True", "False", "true" or "false".
caf::expected<bool> parse_config_bool(const std::string& key,
                                      const std::string& raw);

/// The deepest nesting of arrays and objects Rondo accepts in JSON from
/// outside (configs, a ModelUpdate's meta, metrics, task data). nlohmann's
/// parser is iterative but its dump() recurses once per level, so a few
/// hundred KB of `[` would overflow the stack; FEDn's JSON nests 2 or 3
/// levels.
inline constexpr size_t max_json_depth = 64;

/// Checks in one pass, without parsing, that `text` nests arrays and
/// objects at most max_json_depth levels deep (brackets in strings do not
/// count); whether it is JSON at all is the parser's business.
/// @returns "" if so, else the reason: "nested deeper than 64 levels".
std::string json_nesting_problem(std::string_view text);

/// A JSON object (want_object) or list; never a Python repr; nested at
/// most max_json_depth levels.
caf::expected<nlohmann::json> parse_config_json(const std::string& key,
                                                const std::string& raw,
                                                bool want_object);

} // namespace rondo
