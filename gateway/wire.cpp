#include "gateway/wire.hpp"

#include "messages/error.hpp"

#include <nlohmann/json.hpp>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <ctime>

namespace rondo::gateway {

namespace {

caf::error malformed(const std::string& what, const std::string& detail) {
  return caf::make_error(ec::invalid_argument,
                         "malformed " + what + ": " + detail);
}

} // namespace

caf::expected<double> parse_num_examples(const std::string& meta) {
  auto j = nlohmann::json::parse(meta, nullptr, false);
  if (j.is_discarded())
    return malformed("meta", "not JSON");
  if (!j.is_object())
    return malformed("meta", "not a JSON object");
  auto tm = j.find("training_metadata");
  if (tm == j.end())
    return malformed("meta", "training_metadata is missing");
  if (!tm->is_object())
    return malformed("meta", "training_metadata is not an object");
  auto n = tm->find("num_examples");
  if (n == tm->end())
    return malformed("meta", "training_metadata.num_examples is missing");
  if (!n->is_number())
    return malformed("meta", "training_metadata.num_examples is not a "
                             "number: "
                               + n->dump());
  auto x = n->get<double>();
  if (!std::isfinite(x) || x <= 0)
    return malformed("meta", "training_metadata.num_examples must be a "
                             "finite number > 0, got "
                               + n->dump());
  return x;
}

caf::error check_json_object(const std::string& text,
                             const std::string& what) {
  auto j = nlohmann::json::parse(text, nullptr, false);
  if (j.is_discarded())
    return malformed(what, "not JSON");
  if (!j.is_object())
    return malformed(what, "not a JSON object");
  return caf::none;
}

std::string fedn_timestamp_now() {
  using namespace std::chrono;
  auto now = system_clock::now();
  auto secs = system_clock::to_time_t(now);
  auto micros
    = duration_cast<microseconds>(now.time_since_epoch()).count() % 1000000;
  std::tm tm{};
  localtime_r(&secs, &tm);
  char buf[64];
  auto n = std::strftime(buf, sizeof(buf), "%Y-%m-%d %H:%M:%S", &tm);
  std::snprintf(buf + n, sizeof(buf) - n, ".%06lld",
                static_cast<long long>(micros));
  return buf;
}

} // namespace rondo::gateway
