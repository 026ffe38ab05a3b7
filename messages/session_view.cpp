#include "messages/session_view.hpp"

#include <nlohmann/json.hpp>

#include <cstdio>
#include <sstream>

namespace rondo {

namespace {

/// The value of `key` in `metrics`, as fixed-point text; empty if absent.
std::string metric_text(const std::map<std::string, double>& metrics,
                        const std::string& key, const char* format) {
  auto i = metrics.find(key);
  if (i == metrics.end())
    return {};
  char buf[64];
  std::snprintf(buf, sizeof(buf), format, i->second);
  return buf;
}

nlohmann::json parse_or_text(const std::string& text) {
  auto j = nlohmann::json::parse(text, nullptr, false);
  return j.is_discarded() ? nlohmann::json(text) : j;
}

} // namespace

round_summary summarize(const round_record& r) {
  round_summary s;
  s.round_id = r.round_id;
  s.status = to_string(r.status);
  s.reason = r.reason;
  s.clients_asked = r.clients_selected.size();
  s.updates_accepted = r.nr_aggregated_models;
  s.combiners_asked = r.combiners.size();
  for (auto& c : r.combiners)
    if (c.status == round_status::success)
      ++s.combiners_ok;
  if (r.ended_at > 0 && r.started_at > 0)
    s.seconds = r.ended_at - r.started_at;
  s.model_id = r.model_id;
  s.validation_failure = r.validation_failure;
  std::map<std::string, size_t> counts;
  for (auto& v : r.validations) {
    auto m = nlohmann::json::parse(v.metrics_json, nullptr, false);
    if (!m.is_object())
      continue;
    ++s.validators;
    for (auto& [key, value] : m.items())
      if (value.is_number()) {
        s.metrics[key] += value.get<double>();
        ++counts[key];
      }
  }
  for (auto& [key, sum] : s.metrics)
    sum /= static_cast<double>(counts[key]);
  return s;
}

std::string to_json(const session_report& report) {
  auto& s = report.session;
  nlohmann::json j;
  j["session_id"] = s.session_id;
  j["status"] = to_string(s.status);
  j["reason"] = s.reason;
  j["config"] = parse_or_text(s.config_json);
  j["seed_model_id"] = s.seed_model_id;
  j["created_at"] = s.created_at;
  j["ended_at"] = s.ended_at;
  auto rounds = nlohmann::json::array();
  for (auto& r : report.rounds) {
    auto sum = summarize(r);
    nlohmann::json jr{{"round_id", r.round_id},
                      {"status", sum.status},
                      {"reason", r.reason},
                      {"base_model_id", r.base_model_id},
                      {"model_id", r.model_id},
                      {"clients_asked", sum.clients_asked},
                      {"updates_accepted", sum.updates_accepted},
                      {"num_examples", r.num_examples},
                      {"seconds", sum.seconds},
                      {"started_at", r.started_at},
                      {"ended_at", r.ended_at},
                      {"clients_selected", r.clients_selected},
                      {"clients_accepted", r.clients_accepted},
                      {"clients_silent", r.clients_silent},
                      {"metrics_mean", sum.metrics},
                      {"validation_failure", r.validation_failure}};
    auto rejected = nlohmann::json::array();
    for (auto& x : r.clients_rejected)
      rejected.push_back({{"client_id", x.client_id}, {"reason", x.reason}});
    jr["clients_rejected"] = rejected;
    auto combiners = nlohmann::json::array();
    for (auto& c : r.combiners)
      combiners.push_back({{"combiner_id", c.combiner_id},
                           {"status", to_string(c.status)},
                           {"reason", c.reason},
                           {"model_id", c.model_id},
                           {"num_examples", c.num_examples}});
    jr["combiners"] = combiners;
    auto validations = nlohmann::json::array();
    for (auto& v : r.validations)
      validations.push_back({{"client_id", v.client_id},
                             {"model_id", v.model_id},
                             {"metrics", parse_or_text(v.metrics_json)}});
    jr["validations"] = validations;
    rounds.push_back(std::move(jr));
  }
  j["rounds"] = std::move(rounds);
  return j.dump(2);
}

std::string metrics_csv_header() {
  return "round,status,clients_asked,updates_accepted,seconds,val_accuracy,"
         "val_loss\n";
}

std::string metrics_csv_line(const round_summary& s) {
  char secs[32];
  std::snprintf(secs, sizeof(secs), "%.2f", s.seconds);
  std::ostringstream out;
  out << s.round_id << ',' << s.status << ',' << s.clients_asked << ','
      << s.updates_accepted << ',' << secs << ','
      << metric_text(s.metrics, "test_accuracy", "%.4f") << ','
      << metric_text(s.metrics, "test_loss", "%.4f") << '\n';
  return out.str();
}

std::string to_metrics_csv(const session_report& report) {
  auto out = metrics_csv_header();
  for (auto& r : report.rounds)
    out += metrics_csv_line(summarize(r));
  return out;
}

std::string summary_header() {
  char buf[128];
  std::snprintf(buf, sizeof(buf), "%6s %8s %9s %6s %9s %8s %8s %8s", "round",
                "status", "combiners", "asked", "accepted", "seconds",
                "val_acc", "val_loss");
  return buf;
}

std::string summary_line(const round_summary& s) {
  char buf[256];
  auto combiners = std::to_string(s.combiners_ok) + "/"
                   + std::to_string(s.combiners_asked);
  std::snprintf(buf, sizeof(buf), "%6s %8s %9s %6zu %9lld %8.2f %8s %8s",
                s.round_id.c_str(), s.status.c_str(), combiners.c_str(),
                s.clients_asked, static_cast<long long>(s.updates_accepted),
                s.seconds,
                metric_text(s.metrics, "test_accuracy", "%.4f").c_str(),
                metric_text(s.metrics, "test_loss", "%.4f").c_str());
  std::string line = buf;
  if (!s.reason.empty())
    line += "  (" + s.reason + ")";
  if (!s.validation_failure.empty())
    line += "  (no validation: " + s.validation_failure + ")";
  return line;
}

} // namespace rondo
