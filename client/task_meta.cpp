#include "client/task_meta.hpp"

#include "messages/config_values.hpp"
#include "messages/error.hpp"

#include <nlohmann/json.hpp>

#include <cmath>
#include <ctime>

namespace rondo::client {

namespace {

using json = nlohmann::json;

caf::error invalid(std::string what) {
  return caf::make_error(ec::invalid_argument, std::move(what));
}

} // namespace

caf::expected<task_data> parse_task_data(const std::string& data,
                                         bool require_round_id) {
  if (auto why = json_nesting_problem(data); !why.empty())
    return invalid("task data is " + why);
  auto j = json::parse(data, nullptr, false);
  if (j.is_discarded() || !j.is_object())
    return invalid("task data is not a JSON object: '" +
                   data.substr(0, 200) + "'");
  task_data out;
  auto rid = j.find("round_id");
  if (rid == j.end() || rid->is_null()) {
    if (require_round_id)
      return invalid("task data has no round_id");
  } else if (rid->is_string()) {
    out.round_id = rid->get<std::string>();
  } else if (rid->is_number()) {
    out.round_id = rid->dump();
  } else {
    return invalid("task data round_id is neither a string nor a number");
  }
  auto cs = j.find("client_settings");
  if (cs != j.end() && !cs->is_null()) {
    if (!cs->is_object())
      return invalid("task data client_settings is not a JSON object");
    out.client_settings = cs->dump();
  }
  return out;
}

caf::expected<training_metadata>
parse_training_metadata(const std::string& text, const std::string& source) {
  auto fail = [&](const std::string& reason) {
    return invalid("train wrote no valid num_examples in " + source + ": " +
                   reason);
  };
  if (auto why = json_nesting_problem(text); !why.empty())
    return fail(why);
  auto j = json::parse(text, nullptr, false);
  if (j.is_discarded())
    return fail("not JSON");
  if (!j.is_object())
    return fail("not a JSON object");
  auto n = j.find("num_examples");
  if (n == j.end())
    return fail("num_examples is missing");
  if (!n->is_number())
    return fail("num_examples is not a number (" + n->dump() + ")");
  auto value = n->get<double>();
  if (!std::isfinite(value) || value <= 0)
    return fail("num_examples must be > 0, got " + n->dump());
  return training_metadata{value, j.dump()};
}

std::string make_model_update_meta(const training_metadata& md,
                                   const std::string& task_data_text,
                                   const training_timings& t) {
  auto training = json::parse(md.json, nullptr, false);
  if (training.is_discarded() || !training.is_object())
    training = json::object();
  training["num_examples"] = md.num_examples;
  // Keep an integral weight integral, as FEDn's clients write it.
  if (md.num_examples == std::floor(md.num_examples)
      && md.num_examples < 9.0e15)
    training["num_examples"] = static_cast<int64_t>(md.num_examples);
  json meta = json::object();
  meta["training_metadata"] = std::move(training);
  meta["config"] = task_data_text;
  meta["fetch_model"] = t.fetch_model;
  meta["exec_training"] = t.exec_training;
  meta["upload_model"] = t.upload_model;
  meta["processing_time"] = t.processing_time;
  return meta.dump(-1, ' ', false, json::error_handler_t::replace);
}

caf::expected<std::string> parse_metrics(const std::string& text,
                                         const std::string& source) {
  if (auto why = json_nesting_problem(text); !why.empty())
    return invalid("validate wrote metrics " + why + " in " + source);
  auto j = json::parse(text, nullptr, false);
  if (j.is_discarded())
    return invalid("validate wrote no JSON metrics in " + source);
  if (!j.is_object())
    return invalid("validate wrote metrics that are not a JSON object in " +
                   source);
  return j.dump(-1, ' ', false, json::error_handler_t::replace);
}

caf::expected<std::string> parse_prediction(const std::string& text,
                                            const std::string& source) {
  if (auto why = json_nesting_problem(text); !why.empty())
    return invalid("predict wrote JSON " + why + " in " + source);
  auto j = json::parse(text, nullptr, false);
  if (j.is_discarded())
    return invalid("predict wrote no JSON in " + source);
  return j.dump(-1, ' ', false, json::error_handler_t::replace);
}

std::string iso_timestamp(std::chrono::system_clock::time_point t) {
  using namespace std::chrono;
  auto us = duration_cast<microseconds>(t.time_since_epoch()).count();
  auto secs = static_cast<std::time_t>(us / 1000000);
  auto frac = us % 1000000;
  if (frac < 0) {
    frac += 1000000;
    --secs;
  }
  std::tm tm{};
  ::gmtime_r(&secs, &tm);
  char date[32];
  std::strftime(date, sizeof(date), "%Y-%m-%dT%H:%M:%S", &tm);
  char out[48];
  std::snprintf(out, sizeof(out), "%s.%06lldZ", date,
                static_cast<long long>(frac));
  return out;
}

} // namespace rondo::client
