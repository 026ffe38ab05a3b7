#include "messages/config_values.hpp"

#include "messages/error.hpp"

#include <charconv>
#include <cmath>

#include <nlohmann/json.hpp>

namespace rondo {

caf::error config_error(const std::string& what) {
  return caf::make_error(ec::invalid_config, what);
}

std::string quoted(const std::string& s) {
  return "'" + s + "'";
}

std::string trim(const std::string& s) {
  auto b = s.find_first_not_of(" \t\r\n");
  if (b == std::string::npos)
    return {};
  auto e = s.find_last_not_of(" \t\r\n");
  return s.substr(b, e - b + 1);
}

std::string ascii_lower(std::string s) {
  for (auto& c : s)
    if (c >= 'A' && c <= 'Z')
      c = static_cast<char>(c - 'A' + 'a');
  return s;
}

namespace {

using json = nlohmann::json;

const auto& bad = config_error;

} // namespace

caf::expected<double> parse_config_double(const std::string& key,
                                   const std::string& raw) {
  auto s = trim(raw);
  double x = 0;
  auto [ptr, err] = std::from_chars(s.data(), s.data() + s.size(), x);
  if (s.empty() || err != std::errc{} || ptr != s.data() + s.size())
    return bad(key + " must be a number, got " + quoted(raw));
  if (!std::isfinite(x))
    return bad(key + " must be finite, got " + quoted(raw));
  return x;
}

caf::expected<int64_t> parse_config_int(const std::string& key,
                                 const std::string& raw) {
  auto s = trim(raw);
  int64_t x = 0;
  auto [ptr, err] = std::from_chars(s.data(), s.data() + s.size(), x);
  if (!s.empty() && err == std::errc{} && ptr == s.data() + s.size())
    return x;
  // Python's str() of a float that holds an integer, e.g. "5.0".
  double d = 0;
  auto [dptr, derr] = std::from_chars(s.data(), s.data() + s.size(), d);
  if (!s.empty() && derr == std::errc{} && dptr == s.data() + s.size()
      && std::isfinite(d) && std::trunc(d) == d && std::fabs(d) < 9e15)
    return static_cast<int64_t>(d);
  return bad(key + " must be an integer, got " + quoted(raw));
}

caf::expected<bool> parse_config_bool(const std::string& key,
                               const std::string& raw) {
  auto s = trim(raw);
  if (s == "True" || s == "true")
    return true;
  if (s == "False" || s == "false")
    return false;
  return bad(key + " must be a boolean (True/False/true/false), got "
             + quoted(raw));
}

std::string json_nesting_problem(std::string_view text) {
  size_t depth = 0;
  bool in_string = false, escaped = false;
  for (char c : text) {
    if (in_string) {
      if (escaped)
        escaped = false;
      else if (c == '\\')
        escaped = true;
      else if (c == '"')
        in_string = false;
    } else if (c == '"') {
      in_string = true;
    } else if (c == '[' || c == '{') {
      if (++depth > max_json_depth)
        return "nested deeper than " + std::to_string(max_json_depth)
               + " levels";
    } else if ((c == ']' || c == '}') && depth > 0) {
      --depth;
    }
  }
  return {};
}

caf::expected<nlohmann::json> parse_config_json(const std::string& key,
                                               const std::string& raw,
                                               bool want_object) {
  if (auto why = json_nesting_problem(raw); !why.empty())
    return bad(key + " is " + why);
  auto parsed = json::parse(raw, nullptr, false);
  const char* kind = want_object ? "a JSON object" : "a JSON list";
  if (parsed.is_discarded())
    return bad(key + " must be " + kind + ", got " + quoted(raw)
               + " (not valid JSON)");
  if (want_object ? !parsed.is_object() : !parsed.is_array())
    return bad(key + " must be " + kind + ", got " + quoted(raw));
  return parsed;
}

} // namespace rondo
