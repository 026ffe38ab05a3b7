// `rondo session`, `rondo models` and `rondo seed`: a user's commands to a
// running controller, over its operator API (`rondo controller
// --http-port`, FEDn's REST v1). HTTP or HTTPS (cpp-httplib's client), an
// admin token as `Authorization: Bearer <token>`; every request has a
// finite timeout. `session start --follow` long-polls
// /api/v1/sessions/{id}/wait (api/operator_routes.cpp) instead of sleeping
// between polls.

#include "api/json_views.hpp"
#include "apps/api_client.hpp"
#include "apps/commands.hpp"
#include "apps/process.hpp"
#include "messages/error.hpp"
#include "messages/session_view.hpp"

#include <CLI/CLI.hpp>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <ctime>
#include <chrono>
#include <optional>
#include <thread>
#include <filesystem>
#include <fstream>
#include <iomanip>
#include <iostream>
#include <map>
#include <set>
#include <sstream>

namespace rondo::apps {

namespace {

using json = nlohmann::json;

/// The longest wait the controller grants one long poll, seconds
/// (api/operator_routes.cpp's bound).
constexpr int max_wait_seconds = 300;

caf::error write_file(const std::string& path, const std::string& text) {
  std::ofstream out{path, std::ios::trunc};
  out << text;
  out.flush();
  if (!out)
    return caf::make_error(ec::storage_error, "cannot write " + path);
  return caf::none;
}

bool is_terminal(session_status s) {
  return s != session_status::pending && s != session_status::running;
}

// -- the API's records as Rondo's -------------------------------------------

std::string text_of(const json& j, const char* key) {
  auto i = j.find(key);
  return i != j.end() && i->is_string() ? i->get<std::string>() : "";
}

double number_of(const json& j, const char* key) {
  auto i = j.find(key);
  return i != j.end() && i->is_number() ? i->get<double>() : 0;
}

std::vector<std::string> strings_of(const json& j, const char* key) {
  std::vector<std::string> out;
  auto i = j.find(key);
  if (i != j.end() && i->is_array())
    for (auto& x : *i)
      if (x.is_string())
        out.push_back(x.get<std::string>());
  return out;
}

/// A round or combiner status as the API spells it
/// (api::fedn_status: "Finished", "Terminated", ...).
round_status round_status_of(const std::string& s) {
  if (s == api::fedn_status(round_status::failed, "terminated"))
    return round_status::failed;
  for (auto x : {round_status::pending, round_status::running,
                 round_status::success, round_status::failed})
    if (s == api::fedn_status(x))
      return x;
  return round_status::pending;
}

/// A session status as the API spells it ("Created", "Started", ...).
session_status session_status_of(const std::string& s) {
  for (auto x : {session_status::pending, session_status::running,
                 session_status::finished, session_status::failed,
                 session_status::terminated})
    if (s == api::fedn_status(x))
      return x;
  return session_status::pending;
}

/// A session as GET /api/v1/sessions/{id} answers it.
session_record session_from_json(const json& j) {
  session_record s;
  s.session_id = text_of(j, "session_id");
  s.status = session_status_of(text_of(j, "status"));
  s.reason = text_of(j, "reason");
  s.seed_model_id = text_of(j, "seed_model_id");
  if (auto c = j.find("session_config"); c != j.end())
    s.config_json = c->dump();
  s.round_ids = strings_of(j, "round_ids");
  s.ended_at = number_of(j, "ended_at");
  return s;
}

/// A validation as GET /api/v1/validations/ answers it (`data`: the
/// metrics as JSON text).
validation_record validation_from_json(const json& j) {
  validation_record v;
  v.validation_id = text_of(j, "validation_id");
  v.model_id = text_of(j, "model_id");
  v.correlation_id = text_of(j, "correlation_id");
  v.session_id = text_of(j, "session_id");
  v.round_id = text_of(j, "round_id");
  v.metrics_json = text_of(j, "data");
  if (auto sender = j.find("sender"); sender != j.end()
                                      && sender->is_object()) {
    v.client_name = text_of(*sender, "name");
    v.client_id = text_of(*sender, "client_id");
    if (v.client_id.empty())
      v.client_id = v.client_name;
  }
  return v;
}

/// A round as GET /api/v1/rounds/ answers it: FEDn's fields plus Rondo's
/// top-level outcome (session_id, reason, model_id, base_model_id,
/// started_at, ended_at, clients_*, num_examples, validation_failure).
round_record round_from_json(const json& j) {
  round_record r;
  r.round_id = text_of(j, "round_id");
  r.session_id = text_of(j, "session_id");
  r.status = round_status_of(text_of(j, "status"));
  r.reason = text_of(j, "reason");
  r.model_id = text_of(j, "model_id");
  r.base_model_id = text_of(j, "base_model_id");
  r.started_at = number_of(j, "started_at");
  r.ended_at = number_of(j, "ended_at");
  r.num_examples = number_of(j, "num_examples");
  r.validation_failure = text_of(j, "validation_failure");
  r.clients_selected = strings_of(j, "clients_selected");
  r.clients_accepted = strings_of(j, "clients_accepted");
  r.clients_silent = strings_of(j, "clients_silent");
  if (auto x = j.find("clients_rejected"); x != j.end() && x->is_array())
    for (auto& c : *x)
      if (c.is_object())
        r.clients_rejected.push_back(
          {text_of(c, "client_id"), text_of(c, "reason")});
  int64_t aggregated = 0;
  if (auto x = j.find("combiners"); x != j.end() && x->is_array())
    for (auto& c : *x) {
      if (!c.is_object())
        continue;
      combiner_report part;
      part.combiner_id = text_of(c, "combiner_id");
      if (part.combiner_id.empty())
        part.combiner_id = text_of(c, "name");
      part.status = round_status_of(text_of(c, "status"));
      part.reason = text_of(c, "reason");
      part.model_id = text_of(c, "model_id");
      part.num_examples = number_of(c, "num_examples");
      if (auto d = c.find("data"); d != c.end() && d->is_object())
        if (auto t = d->find("aggregation_time");
            t != d->end() && t->is_object())
          aggregated += static_cast<int64_t>(
            number_of(*t, "nr_aggregated_models"));
      r.combiners.push_back(std::move(part));
    }
  r.nr_aggregated_models
    = j.contains("nr_aggregated_models")
        ? static_cast<int64_t>(number_of(j, "nr_aggregated_models"))
        : std::max<int64_t>(aggregated,
                            static_cast<int64_t>(r.clients_accepted.size()));
  return r;
}

/// Gives each validation of `validations` (the API's list) to the round of
/// `rounds` whose id or whose new model it names (a validation round
/// validates its training round's model); others are dropped.
void attach_validations(std::vector<round_record>& rounds,
                        const json& validations) {
  if (!validations.is_array())
    return;
  for (auto& x : validations) {
    if (!x.is_object())
      continue;
    auto v = validation_from_json(x);
    auto owner = std::find_if(rounds.begin(), rounds.end(), [&](auto& r) {
      return r.round_id == v.round_id
             || (!v.model_id.empty() && r.model_id == v.model_id);
    });
    if (owner != rounds.end())
      owner->validations.push_back(std::move(v));
  }
}

/// The rounds of an API list, in its order.
std::vector<round_record> rounds_from_json(const json& rounds) {
  std::vector<round_record> out;
  if (rounds.is_array())
    for (auto& r : rounds)
      if (r.is_object())
        out.push_back(round_from_json(r));
  return out;
}

/// A session_report from the API's session, its rounds and its
/// validations. Rounds in the order they started.
session_report report_from_json(const json& session, const json& rounds,
                                const json& validations) {
  session_report report;
  report.session = session_from_json(session);
  report.rounds = rounds_from_json(rounds);
  std::stable_sort(report.rounds.begin(), report.rounds.end(),
                   [](auto& x, auto& y) { return x.started_at < y.started_at; });
  if (report.session.round_ids.empty())
    for (auto& r : report.rounds)
      report.session.round_ids.push_back(r.round_id);
  attach_validations(report.rounds, validations);
  return report;
}

/// The session `id` and everything it did so far, from FEDn's routes.
caf::expected<session_report> fetch_report(api_client& client,
                                           const std::string& id) {
  auto session = client.get(with_id("/api/v1/sessions/", id));
  if (!session)
    return session.error();
  auto query = with_id("?session_id=", id);
  auto rounds = list_all(client, "/api/v1/rounds/" + query);
  if (!rounds)
    return rounds.error();
  auto validations = list_all(client, "/api/v1/validations/" + query);
  if (!validations)
    return validations.error();
  return report_from_json(*session, *rounds, *validations);
}

// -- session start / status / terminate ---------------------------------------

struct session_args {
  common_args common;
  std::string config_file;
  std::string session_id;
  /// Overrides of the config file's keys, as given on the command line.
  std::map<std::string, std::string> raw;
  bool follow = false;
  bool json = false;
  std::string metrics_csv;
};

/// The session config from --config plus the flags given (flags win).
caf::expected<session_config> build_config(const session_args& a) {
  json j = json::object();
  if (!a.config_file.empty()) {
    std::ifstream in{a.config_file};
    if (!in)
      return caf::make_error(ec::not_found,
                             "cannot read --config " + a.config_file);
    std::stringstream text;
    text << in.rdbuf();
    j = json::parse(text.str(), nullptr, false);
    if (!j.is_object())
      return caf::make_error(ec::invalid_config,
                             "--config " + a.config_file
                               + " is not a JSON object");
  }
  for (auto& [key, value] : a.raw)
    j[key] = value;
  return parse_session_config_json(j.dump());
}

/// POST /api/v1/sessions/'s body: FEDn's session, its `session_config`
/// with FEDn's keys plus Rondo's (api::to_fedn_json).
json session_body(const session_config& cfg) {
  json body{{"session_config", api::to_fedn_json(cfg)}};
  if (!cfg.session_id.empty()) {
    body["session_id"] = cfg.session_id;
    body["name"] = cfg.session_id;
  }
  if (!cfg.model_id.empty())
    body["seed_model_id"] = cfg.model_id;
  return body;
}

/// Prints every round of `report`.
void print_rounds(const session_report& report) {
  for (auto& r : report.rounds)
    std::cout << summary_line(summarize(r)) << std::endl;
}

caf::error write_outputs(const session_args& a,
                         const session_report& report) {
  if (!a.metrics_csv.empty())
    if (auto err = write_file(a.metrics_csv, to_metrics_csv(report)))
      return err;
  return caf::none;
}

bool has_ended(const round_record& r) {
  return r.status == round_status::success
         || r.status == round_status::failed;
}

/// What `session start --follow` keeps of a session while it follows it:
/// which rounds (by position among the session's rounds, the order they
/// started in) it printed, the ids of those it saw running, counts for
/// the exit status and the metrics.csv it appends to. No round records:
/// its memory does not grow with the session's length.
class follower {
public:
  /// Creates `csv_path` (when not empty) with metrics.csv's header; each
  /// printed round appends its line. ec::storage_error when it cannot be
  /// written.
  caf::error open_csv(const std::string& csv_path) {
    if (csv_path.empty())
      return caf::none;
    csv_path_ = csv_path;
    csv_.open(csv_path, std::ios::trunc);
    csv_ << metrics_csv_header();
    csv_.flush();
    if (!csv_)
      return caf::make_error(ec::storage_error,
                             "--metrics-csv: cannot write " + csv_path);
    return caf::none;
  }

  /// The wait's after_rounds: how many of the session's rounds were
  /// printed (ended).
  uint64_t printed() const {
    return low_ + above_.size();
  }

  /// Takes one answer of the wait route: prints each round that ended and
  /// was not printed yet; remembers the rounds still running. @returns
  /// whether it printed anything.
  caf::expected<bool> take(const json& answer) {
    uint64_t first = 0;
    if (auto f = answer.find("first_round");
        f != answer.end() && f->is_number_unsigned())
      first = f->get<uint64_t>();
    auto rounds = rounds_from_json(answer.value("rounds", json::array()));
    attach_validations(rounds, answer.value("validations", json::array()));
    bool progress = false;
    for (size_t i = 0; i < rounds.size(); ++i) {
      auto at = first + i;
      if (was_printed(at))
        continue;
      if (!has_ended(rounds[i])) {
        running_[at] = rounds[i].round_id;
        continue;
      }
      if (auto err = print(at, rounds[i]))
        return err;
      progress = true;
    }
    return progress;
  }

  /// Once the session ended: prints each round seen running but not seen
  /// ending (an answer may be built while a round closes) as the
  /// controller stored it (GET /api/v1/rounds/{id}).
  caf::error settle(api_client& client) {
    auto left = running_;
    for (auto& [at, id] : left) {
      auto stored = client.get(with_id("/api/v1/rounds/", id));
      if (!stored)
        return stored.error();
      auto r = round_from_json(*stored);
      auto validations = list_all(client, with_id("/api/v1/validations/"
                                                  "?round_id=",
                                                  id));
      if (!validations)
        return validations.error();
      std::vector<round_record> one{std::move(r)};
      attach_validations(one, *validations);
      if (!has_ended(one[0]))
        std::cerr << "warning: round " << id << " is stored "
                  << to_string(one[0].status)
                  << " although its session ended" << std::endl;
      if (auto err = print(at, one[0]))
        return err;
    }
    return caf::none;
  }

  /// The exit status once the session `id` ended with `status`: an error
  /// unless it finished with every printed round successful and
  /// validated as asked.
  caf::error verdict(const std::string& id, session_status status) const {
    if (status != session_status::finished)
      return caf::make_error(ec::invalid_state,
                             "session " + id + " ended " + to_string(status)
                               + ", not finished");
    auto all = std::to_string(printed());
    if (failed_ > 0)
      return caf::make_error(ec::aggregation_failed,
                             std::to_string(failed_) + " of " + all
                               + " rounds of session " + id + " failed");
    if (unvalidated_ > 0)
      return caf::make_error(ec::aggregation_failed,
                             std::to_string(unvalidated_) + " of " + all
                               + " rounds of session " + id
                               + " have no validation (first: round "
                               + first_unvalidated_ + ")");
    return caf::none;
  }

private:
  bool was_printed(uint64_t at) const {
    return at < low_ || above_.count(at) > 0;
  }

  caf::error print(uint64_t at, const round_record& r) {
    auto s = summarize(r);
    std::cout << summary_line(s) << std::endl;
    if (r.status != round_status::success)
      ++failed_;
    if (!r.validation_failure.empty() && unvalidated_++ == 0)
      first_unvalidated_ = r.round_id + ": " + r.validation_failure;
    running_.erase(at);
    above_.insert(at);
    while (!above_.empty() && *above_.begin() == low_) {
      above_.erase(above_.begin());
      ++low_;
    }
    if (!csv_path_.empty()) {
      csv_ << metrics_csv_line(s);
      csv_.flush();
      if (!csv_)
        return caf::make_error(ec::storage_error,
                               "--metrics-csv: cannot write " + csv_path_);
    }
    return caf::none;
  }

  /// Every position below low_ was printed, and those in above_.
  uint64_t low_ = 0;
  std::set<uint64_t> above_;
  /// Rounds seen running and not printed yet, by position.
  std::map<uint64_t, std::string> running_;
  uint64_t failed_ = 0;
  uint64_t unvalidated_ = 0;
  std::string first_unvalidated_;
  std::string csv_path_;
  std::ofstream csv_;
};

/// Answers in a row, while the session runs, that bring no newly ended
/// round before `follow` gives up (the controller answers a wait only
/// once a round ended beyond after_rounds; this bounds a disagreement).
constexpr int max_idle_answers = 20;

/// Seconds `follow` keeps asking a controller that does not answer (it
/// restarts: a controller started again on its database resumes the
/// session) before it gives up.
constexpr int reconnect_seconds = 120;

/// Follows a session round by round until it ends, each step a long poll
/// that the controller answers once a round ends (or with 204 after
/// max_wait_seconds, when the poll is repeated). Prints each round's final
/// state once, in the order the rounds end, then the session's end.
caf::error follow(api_client& client, follower& f, const std::string& id) {
  std::cout << summary_header() << std::endl;
  int idle = 0;
  // When the controller stopped answering; the epoch while it answers.
  std::chrono::steady_clock::time_point lost_at{};
  for (;;) {
    auto path = with_id("/api/v1/sessions/", id,
                        "/wait?after_rounds=" + std::to_string(f.printed())
                          + "&timeout="
                          + std::to_string(max_wait_seconds));
    auto got = client.long_poll(path, max_wait_seconds);
    if (!got && client.unreachable()) {
      auto now = std::chrono::steady_clock::now();
      if (lost_at == std::chrono::steady_clock::time_point{}) {
        lost_at = now;
        std::cout << "controller unreachable (" << render(got.error())
                  << "); asking again for up to " << reconnect_seconds
                  << " s" << std::endl;
      }
      if (now - lost_at < std::chrono::seconds(reconnect_seconds)) {
        std::this_thread::sleep_for(std::chrono::seconds(1));
        continue;
      }
    }
    if (!got)
      return caf::make_error(ec::timeout, "lost track of session " + id
                                            + ": " + render(got.error()));
    if (lost_at != std::chrono::steady_clock::time_point{}) {
      std::cout << "controller reachable again" << std::endl;
      lost_at = {};
    }
    if (!*got)
      continue; // no round ended within the wait: ask again
    auto& answer = **got;
    if (!answer.is_object())
      return caf::make_error(ec::invalid_state,
                             "the controller answered " + path
                               + " with JSON that is not an object");
    auto progress = f.take(answer);
    if (!progress)
      return progress.error();
    auto session = session_from_json(answer.value("session", json::object()));
    // The controller answers at once for a session it is not running: one
    // that never started would be asked again and again.
    if (session.status == session_status::pending)
      return caf::make_error(ec::invalid_state,
                             "session " + id + " has not started");
    if (is_terminal(session.status)) {
      if (auto err = f.settle(client))
        return err;
      std::cout << "session " << id << " " << to_string(session.status)
                << (session.reason.empty() ? "" : ": " + session.reason)
                << std::endl;
      return f.verdict(id, session.status);
    }
    idle = *progress ? 0 : idle + 1;
    if (idle >= max_idle_answers)
      return caf::make_error(ec::invalid_state,
                             "the controller answered "
                               + std::to_string(idle)
                               + " waits on session " + id + " without a "
                               "newly ended round after "
                               + std::to_string(f.printed())
                               + "; see `rondo session status " + id + "`");
  }
}

/// An HTTP date as the API renders times ("Sun, 06 Dec 2026 14:00:00
/// GMT") as ISO 8601 UTC, one word for a table; "-" when absent.
std::string iso_utc(const json& t) {
  if (!t.is_string())
    return "-";
  std::tm tm{};
  auto text = t.get<std::string>();
  if (strptime(text.c_str(), "%a, %d %b %Y %H:%M:%S", &tm) == nullptr)
    return text;
  std::ostringstream os;
  os << std::put_time(&tm, "%Y-%m-%dT%H:%M:%SZ");
  return os.str();
}

void add_session_commands(CLI::App& app, int& exit_code) {
  auto* session = app.add_subcommand(
    "session", "Start, follow, inspect and terminate training sessions on a "
               "running controller");
  session->require_subcommand(1);

  auto a = std::make_shared<session_args>();
  auto* start = session->add_subcommand(
    "start", "Start a session (config from --config JSON and/or flags)");
  add_common(start, a->common);
  start->add_option("--config", a->config_file,
                    "JSON file with session config keys (see README)");
  // Each flag sets one session config key; parse_session_config_json
  // validates all of them with messages naming key and value.
  for (auto key :
       {"session_id", "rounds", "round_timeout", "buffer_size",
        "clients_required", "clients_requested", "aggregator",
        "aggregator_kwargs", "validate", "client_settings", "model_id",
        "stop_on_failure", "grace"}) {
    std::string flag = "--" + std::string{key};
    for (auto& c : flag)
      if (c == '_')
        c = '-';
    start->add_option_function<std::string>(
      flag, [a, key](const std::string& v) { a->raw[key] = v; },
      std::string{"Session config key "} + key);
  }
  start->add_flag("--follow", a->follow,
                  "Print each round once, as it ends, and wait for the "
                  "session to end; exit 1 unless it finished with every "
                  "round successful and validated as asked (the session "
                  "goes on if this command is stopped)");
  start->add_option("--metrics-csv", a->metrics_csv,
                    "With --follow: write per-round metrics.csv to FILE, a "
                    "line as each round ends");
  start->callback([a, &exit_code] {
    with_controller(a->common, exit_code, [&](api_client& client)
                                             -> caf::error {
      auto cfg = build_config(*a);
      if (!cfg)
        return cfg.error();
      follower f;
      if (a->follow)
        if (auto err = f.open_csv(a->metrics_csv))
          return err;
      auto created = client.post("/api/v1/sessions/", session_body(*cfg));
      if (!created)
        return created.error();
      auto id = text_of(*created, "session_id");
      if (id.empty())
        return caf::make_error(ec::invalid_state,
                               "the controller created a session without "
                               "a session_id: "
                                 + created->dump());
      auto started = client.post("/api/v1/sessions/start",
                                 json{{"session_id", id},
                                      {"rounds", cfg->rounds},
                                      {"round_timeout", cfg->round_timeout}});
      if (!started) {
        // The session stays pending otherwise (and its seed protected from
        // `models prune`): it was created for this start only.
        static_cast<void>(client.post(
          with_id("/api/v1/sessions/", id, "/terminate"), json::object()));
        return started.error();
      }
      std::cout << "session " << id << " started: " << cfg->rounds
                << (cfg->rounds == 1 ? " round" : " rounds")
                << ", aggregator " << cfg->aggregator << std::endl;
      if (!a->follow)
        return caf::none;
      return follow(client, f, id);
    });
  });

  auto fo = std::make_shared<session_args>();
  auto* follow_cmd = session->add_subcommand(
    "follow", "Print a session's rounds once each, as they end, until it "
              "ends (e.g. again after a controller restart); exit as "
              "`start --follow`");
  add_common(follow_cmd, fo->common);
  follow_cmd->add_option("session_id", fo->session_id, "Session id")
    ->required();
  follow_cmd->add_option("--metrics-csv", fo->metrics_csv,
                         "Write per-round metrics.csv to FILE, a line as "
                         "each round ends");
  follow_cmd->callback([fo, &exit_code] {
    with_controller(fo->common, exit_code, [&](api_client& client)
                                               -> caf::error {
      follower f;
      if (auto err = f.open_csv(fo->metrics_csv))
        return err;
      return follow(client, f, fo->session_id);
    });
  });

  auto s = std::make_shared<session_args>();
  auto l = std::make_shared<session_args>();
  auto* list = session->add_subcommand(
    "list", "List the controller's sessions, oldest first: id, status, "
            "rounds ended, start time (UTC)");
  add_common(list, l->common);
  list->add_flag("--json", l->json, "Print JSON");
  list->callback([l, &exit_code] {
    with_controller(l->common, exit_code, [&](api_client& client)
                                             -> caf::error {
      auto sessions = list_all(client, "/api/v1/sessions/");
      if (!sessions)
        return sessions.error();
      auto rows = json::array();
      for (auto& x : *sessions) {
        auto r = session_from_json(x);
        rows.push_back({{"session_id", r.session_id},
                        {"status", to_string(r.status)},
                        {"reason", r.reason},
                        {"rounds", r.round_ids.size()},
                        {"seed_model_id", r.seed_model_id},
                        {"created_at", x.value("committed_at", json{})},
                        {"ended_at", x.value("ended_at", json{})}});
      }
      if (l->json) {
        std::cout << rows.dump(2) << std::endl;
        return caf::none;
      }
      std::cout << "session_id status rounds created\n";
      for (auto& r : rows)
        std::cout << r["session_id"].get<std::string>() << " "
                  << r["status"].get<std::string>() << " " << r["rounds"]
                  << " " << iso_utc(r["created_at"]) << "\n";
      return caf::none;
    });
  });

  auto* status = session->add_subcommand(
    "status", "Show a session's rounds: state, clients, accepted updates, "
              "times, validation metrics");
  add_common(status, s->common);
  status->add_option("session_id", s->session_id, "Session id")->required();
  status->add_flag("--json", s->json,
                   "Print the full report as JSON (per-client outcomes, "
                   "each validator's metrics)");
  status->add_option("--metrics-csv", s->metrics_csv,
                     "Also write per-round metrics.csv to FILE");
  status->callback([s, &exit_code] {
    with_controller(s->common, exit_code, [&](api_client& client)
                                             -> caf::error {
      auto report = fetch_report(client, s->session_id);
      if (!report)
        return report.error();
      if (s->json) {
        std::cout << to_json(*report) << std::endl;
      } else {
        auto& r = report->session;
        std::cout << "session " << r.session_id << " " << to_string(r.status)
                  << (r.reason.empty() ? "" : ": " + r.reason) << "\n"
                  << summary_header() << "\n";
        print_rounds(*report);
      }
      return write_outputs(*s, *report);
    });
  });

  auto t = std::make_shared<session_args>();
  auto* terminate = session->add_subcommand(
    "terminate", "Stop a running session now (its waiting round is Failed "
                 "with \"terminated\")");
  add_common(terminate, t->common);
  terminate->add_option("session_id", t->session_id, "Session id")
    ->required();
  terminate->callback([t, &exit_code] {
    with_controller(t->common, exit_code, [&](api_client& client)
                                             -> caf::error {
      auto before = client.get(with_id("/api/v1/sessions/", t->session_id));
      if (!before)
        return before.error();
      auto status = session_status_of(text_of(*before, "status"));
      if (is_terminal(status)) {
        std::cout << "session " << t->session_id << " already ended ("
                  << to_string(status) << "); nothing to terminate"
                  << std::endl;
        return caf::none;
      }
      auto after = client.post(
        with_id("/api/v1/sessions/", t->session_id, "/terminate"),
        json::object());
      if (!after)
        return after.error();
      std::cout << "session " << t->session_id << " "
                << to_string(session_status_of(text_of(*after, "status")))
                << std::endl;
      return caf::none;
    });
  });
}

// -- models list / export, seed -------------------------------------------

struct model_args {
  common_args common;
  std::string model_id;
  std::string file;
  bool json = false;
};

/// Writes model `id` to `path` (to `path`.partial, renamed once
/// complete).
caf::error export_model(api_client& client, const std::string& id,
                        const std::string& path) {
  auto tmp = path + ".partial";
  std::ofstream out{tmp, std::ios::binary | std::ios::trunc};
  if (!out)
    return caf::make_error(ec::storage_error, "cannot write " + tmp);
  auto bytes = client.download(with_id("/api/v1/models/", id, "/download"),
                               out);
  out.close();
  caf::error err;
  if (!bytes)
    err = bytes.error();
  else if (!out)
    err = caf::make_error(ec::storage_error, "cannot write " + tmp);
  if (err) {
    std::filesystem::remove(tmp);
    return err;
  }
  std::filesystem::rename(tmp, path);
  return caf::none;
}

void add_model_commands(CLI::App& app, int& exit_code) {
  auto* models = app.add_subcommand(
    "models", "List and export the controller's global model trail");
  models->require_subcommand(1);

  auto l = std::make_shared<model_args>();
  auto* list = models->add_subcommand("list", "The trail, oldest first");
  add_common(list, l->common);
  list->add_flag("--json", l->json, "Print JSON");
  list->callback([l, &exit_code] {
    with_controller(l->common, exit_code, [&](api_client& client)
                                             -> caf::error {
      auto trail = list_all(client, "/api/v1/models/");
      if (!trail)
        return trail.error();
      auto rows = json::array();
      for (auto& m : *trail)
        if (m.is_object())
          rows.push_back({{"model_id", text_of(m, "model_id")},
                          {"parent_id", text_of(m, "parent_model")},
                          {"session_id", text_of(m, "session_id")},
                          {"round_id", text_of(m, "round_id")},
                          {"committed_at", m.value("committed_at", json{})}});
      if (l->json) {
        std::cout << rows.dump(2) << std::endl;
        return caf::none;
      }
      auto or_dash = [](const json& x) {
        auto s = x.get<std::string>();
        return s.empty() ? "-" : s;
      };
      std::cout << "model_id parent_id session_id round_id\n";
      for (auto& m : rows)
        std::cout << or_dash(m["model_id"]) << " " << or_dash(m["parent_id"])
                  << " " << or_dash(m["session_id"]) << " "
                  << or_dash(m["round_id"]) << "\n";
      return caf::none;
    });
  });

  auto e = std::make_shared<model_args>();
  auto* exp = models->add_subcommand(
    "export", "Write a global model to an npz file");
  add_common(exp, e->common);
  exp->add_option("model_id", e->model_id, "Model id")->required();
  exp->add_option("file", e->file, "Output .npz file")->required();
  exp->callback([e, &exit_code] {
    with_controller(e->common, exit_code, [&](api_client& client) {
      auto err = export_model(client, e->model_id, e->file);
      if (!err)
        std::cout << "model " << e->model_id << " -> " << e->file
                  << std::endl;
      return err;
    });
  });

  auto p = std::make_shared<model_args>();
  auto keep = std::make_shared<int64_t>(0);
  auto* prune = models->add_subcommand(
    "prune", "Delete the bytes of every trail model but the newest --keep "
             "and the protected ones (the trail records stay)");
  add_common(prune, p->common);
  prune->add_option("--keep", *keep,
                    "Newest models of the trail to keep (>= 1); a session's "
                    "current global model, a pending or running session's "
                    "seed and the running round's model are kept too")
    ->required();
  prune->callback([p, keep, &exit_code] {
    if (*keep < 1) {
      std::cerr << "error: --keep must be at least 1 (the newest model of "
                   "the trail is always kept), got "
                << *keep << "\n";
      exit_code = 1;
      return;
    }
    with_controller(p->common, exit_code, [&](api_client& client)
                                             -> caf::error {
      auto out = client.post("/api/v1/models/prune", json{{"keep", *keep}});
      if (!out)
        return out.error();
      auto removed = out->value("removed", json::array());
      for (auto& id : removed)
        std::cout << "pruned " << id.get<std::string>() << "\n";
      std::cout << removed.size() << " models pruned, the newest " << *keep
                << " and the protected ones kept" << std::endl;
      return caf::none;
    });
  });

  auto s = std::make_shared<model_args>();
  auto* seed = app.add_subcommand(
    "seed", "Add a seed model (npz) to the controller's trail; a session "
            "without model_id starts from the newest model");
  add_common(seed, s->common);
  seed->add_option("file", s->file, "Model .npz file")->required();
  seed->add_option("--model-id", s->model_id,
                   "Id to store it under (sent as form field model_id; "
                   "default: a new UUID)");
  seed->callback([s, &exit_code] {
    with_controller(s->common, exit_code, [&](api_client& client)
                                             -> caf::error {
      std::ifstream in{s->file, std::ios::binary};
      if (!in)
        return caf::make_error(ec::not_found, "cannot read " + s->file);
      std::stringstream bytes;
      bytes << in.rdbuf();
      if (!in && !in.eof())
        return caf::make_error(ec::storage_error, "cannot read " + s->file);
      std::vector<form_part> form{
        {"file", bytes.str(),
         std::filesystem::path{s->file}.filename().string(),
         "application/octet-stream"}};
      if (!s->model_id.empty())
        form.push_back({"model_id", s->model_id, "", ""});
      auto rec = client.post("/api/v1/models/", form);
      if (!rec)
        return rec.error();
      auto id = text_of(*rec, "model_id");
      if (id.empty())
        id = text_of(*rec, "model");
      if (id.empty())
        return caf::make_error(ec::invalid_state,
                               "the controller stored the seed but named no "
                               "model_id: "
                                 + rec->dump());
      if (!s->model_id.empty() && id != s->model_id)
        std::cerr << "warning: the controller stored the seed as " << id
                  << ", not as --model-id " << s->model_id << std::endl;
      std::cout << id << std::endl;
      return caf::none;
    });
  });
}

} // namespace

void add_session_command(CLI::App& app, int& exit_code) {
  add_session_commands(app, exit_code);
  add_model_commands(app, exit_code);
}

} // namespace rondo::apps
