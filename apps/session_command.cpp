// `rondo session`, `rondo models` and `rondo seed`: a user's commands to a
// running controller. They connect over the CAF middleman (the controller's
// published port) as typed requests to the controller actor; every request
// has a finite timeout. Models travel in 1 MiB chunks
// (controller_messages.hpp model_chunk); a seed model goes as one message,
// so seeds are limited to `max_seed_bytes` (256 MiB).

#include "actors/type_ids.hpp"
#include "apps/commands.hpp"
#include "apps/process.hpp"
#include "messages/error.hpp"
#include "messages/session_view.hpp"

#include <CLI/CLI.hpp>

#include <caf/actor_system.hpp>
#include <caf/actor_system_config.hpp>
#include <caf/io/middleman.hpp>
#include <caf/openssl/remote_actor.hpp>
#include <caf/event_based_actor.hpp>

#include <nlohmann/json.hpp>
#include <xxhash.h>

#include <algorithm>
#include <cmath>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <iomanip>
#include <future>
#include <iostream>
#include <sstream>

namespace rondo::apps {

namespace {

constexpr uint64_t max_seed_bytes = uint64_t{256} << 20;

struct common_args {
  std::string controller = "127.0.0.1:12090";
  double timeout = 30;
  /// --cert/--key/--ca: the operator's certificate, its key and the cluster
  /// CA, for a controller that runs with mutual TLS.
  security::tls_files tls;
};

/// A connection to a running controller.
class controller_client {
public:
  /// Connects; @returns an error naming the address on failure.
  caf::error connect(const common_args& a) {
    if (!std::isfinite(a.timeout) || a.timeout <= 0)
      return caf::make_error(ec::invalid_argument,
                             "--timeout must be > 0 seconds");
    std::string problem;
    auto at = parse_endpoint(a.controller, problem);
    if (!problem.empty())
      return caf::make_error(ec::invalid_argument,
                             "--controller: " + problem);
    timeout_ = seconds(a.timeout);
    if (auto problem = check_middleman_tls(a.tls); !problem.empty())
      return caf::make_error(ec::invalid_config, problem);
    if (auto wrong = probe_caf_endpoint(at, std::min(a.timeout, 5.0), a.tls);
        !wrong.empty())
      return caf::make_error(ec::invalid_argument, "--controller: " + wrong);
    register_actor_types(cfg_);
    // Heartbeats let a request to a frozen controller end with an error
    // before its timeout.
    enable_middleman(cfg_, 0.5, 5, a.tls);
    cfg_.set("scheduler.max-threads", 2);
    sys_ = std::make_unique<caf::actor_system>(cfg_);
    auto ctrl = a.tls.any()
                  ? caf::openssl::remote_actor<controller_actor>(*sys_,
                                                                 at.host,
                                                                 at.port)
                  : sys_->middleman().remote_actor<controller_actor>(
                    at.host, at.port);
    if (!ctrl)
      return caf::make_error(ec::not_found,
                             "cannot reach a Rondo controller at "
                               + a.controller + ": "
                               + sys_->render(ctrl.error()));
    ctrl_ = *ctrl;
    return caf::none;
  }

  /// Sends `xs...` and waits up to `timeout` (default: --timeout) for a
  /// reply of type T. Fails at once (not at the timeout) when the
  /// controller goes away meanwhile: a request to a dead peer is otherwise
  /// only ended by its timeout.
  template <class T, class... Ts>
  caf::expected<T> ask(caf::timespan timeout, Ts... xs) {
    auto result = std::make_shared<std::promise<caf::expected<T>>>();
    auto answer = result->get_future();
    auto ctrl = ctrl_;
    sys_->spawn([=](caf::event_based_actor* self) -> caf::behavior {
      auto done = std::make_shared<bool>(false);
      auto finish = [=](caf::expected<T> x) {
        if (*done)
          return;
        *done = true;
        result->set_value(std::move(x));
        self->quit();
      };
      self->monitor(ctrl);
      self->set_down_handler([=](caf::down_msg& dm) {
        finish(caf::make_error(ec::not_found, "lost the controller: "
                                                + render(dm.reason)));
      });
      self->request(ctrl, timeout, xs...)
        .then([=](T& x) { finish(std::move(x)); },
              [=](caf::error& err) { finish(std::move(err)); });
      return {[](caf::ok_atom) {}};
    });
    return answer.get();
  }

  template <class T, class... Ts>
  caf::expected<T> ask(Ts... xs) {
    return ask<T>(timeout_, std::move(xs)...);
  }

private:
  caf::actor_system_config cfg_;
  std::unique_ptr<caf::actor_system> sys_;
  controller_actor ctrl_;
  caf::timespan timeout_{};
};

/// Connects, runs `fn(client)`, prints an error and sets `exit_code` to 1
/// on failure.
template <class F>
void with_controller(const common_args& a, int& exit_code, F fn) {
  controller_client client;
  auto err = client.connect(a);
  if (!err)
    err = fn(client);
  if (err) {
    std::cerr << "error: " << render(err) << "\n";
    exit_code = 1;
  }
}

void add_common(CLI::App* cmd, common_args& a) {
  cmd->add_option("--controller", a.controller,
                  "The controller's HOST:PORT (`rondo controller`)")
    ->capture_default_str();
  cmd->add_option("--timeout", a.timeout,
                  "Seconds each request to the controller may take")
    ->capture_default_str();
  cmd->add_option("--cert", a.tls.cert,
                  "The operator's certificate (PEM), for a controller with "
                  "mutual TLS (with --key and --ca)");
  cmd->add_option("--key", a.tls.key, "The private key of --cert (PEM)");
  cmd->add_option("--ca", a.tls.ca,
                  "The cluster CA (PEM) the controller's certificate must "
                  "verify against");
}

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
  nlohmann::json j = nlohmann::json::object();
  if (!a.config_file.empty()) {
    std::ifstream in{a.config_file};
    if (!in)
      return caf::make_error(ec::not_found,
                             "cannot read --config " + a.config_file);
    std::stringstream text;
    text << in.rdbuf();
    j = nlohmann::json::parse(text.str(), nullptr, false);
    if (!j.is_object())
      return caf::make_error(ec::invalid_config,
                             "--config " + a.config_file
                               + " is not a JSON object");
  }
  for (auto& [key, value] : a.raw)
    j[key] = value;
  return parse_session_config_json(j.dump());
}

/// Prints the rounds of `report` from index `from` on; @returns the new
/// count of printed rounds.
size_t print_rounds(const session_report& report, size_t from) {
  for (auto i = from; i < report.rounds.size(); ++i)
    std::cout << summary_line(summarize(report.rounds[i])) << std::endl;
  return report.rounds.size();
}

caf::error write_outputs(const session_args& a,
                         const session_report& report) {
  if (!a.metrics_csv.empty())
    if (auto err = write_file(a.metrics_csv, to_metrics_csv(report)))
      return err;
  return caf::none;
}

/// Follows a session round by round until it ends. The controller answers
/// a wait once a round ends; each wait is bounded by the session's longest
/// round (round_timeout + grace + 2 min of client wait).
caf::error follow(controller_client& client, const session_args& a,
                  const std::string& id, double round_bound_s) {
  std::cout << summary_header() << std::endl;
  size_t printed = 0;
  for (;;) {
    auto report = client.ask<session_report>(seconds(round_bound_s),
                                             caf::wait_for_atom::value, id,
                                             uint64_t{printed});
    if (!report)
      return caf::make_error(ec::timeout,
                             "lost track of session " + id + ": "
                               + render(report.error()));
    printed = print_rounds(*report, printed);
    if (is_terminal(report->session.status)) {
      std::cout << "session " << id << " "
                << to_string(report->session.status)
                << (report->session.reason.empty()
                      ? ""
                      : ": " + report->session.reason)
                << std::endl;
      if (auto err = write_outputs(a, *report))
        return err;
      if (report->session.status != session_status::finished)
        return caf::make_error(ec::invalid_state,
                               "session " + id + " ended "
                                 + to_string(report->session.status)
                                 + ", not finished");
      auto failed = std::count_if(report->rounds.begin(),
                                  report->rounds.end(), [](auto& r) {
                                    return r.status != round_status::success;
                                  });
      if (failed > 0)
        return caf::make_error(ec::aggregation_failed,
                               std::to_string(failed) + " of "
                                 + std::to_string(report->rounds.size())
                                 + " rounds of session " + id + " failed");
      return caf::none;
    }
  }
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
                  "Print each round as it ends and wait for the session to "
                  "end; exit 1 unless it finished with every round "
                  "successful (the session goes on if this command is "
                  "stopped)");
  start->add_option("--metrics-csv", a->metrics_csv,
                    "With --follow: write per-round metrics.csv to FILE");
  start->callback([a, &exit_code] {
    with_controller(a->common, exit_code, [&](controller_client& client)
                                             -> caf::error {
      auto cfg = build_config(*a);
      if (!cfg)
        return cfg.error();
      auto id = client.ask<std::string>(*cfg);
      if (!id)
        return id.error();
      std::cout << "session " << *id << " started: " << cfg->rounds
                << (cfg->rounds == 1 ? " round" : " rounds")
                << ", aggregator " << cfg->aggregator << std::endl;
      if (!a->follow)
        return caf::none;
      return follow(client, *a, *id,
                    cfg->round_timeout * 2 + cfg->grace + 120);
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
    with_controller(l->common, exit_code, [&](controller_client& client)
                                             -> caf::error {
      auto sessions = client.ask<std::vector<session_record>>(
        caf::get_atom::value, session_atom::value);
      if (!sessions)
        return sessions.error();
      auto utc = [](double t) {
        auto secs = static_cast<std::time_t>(t);
        std::tm tm{};
        gmtime_r(&secs, &tm);
        std::ostringstream os;
        os << std::put_time(&tm, "%Y-%m-%dT%H:%M:%SZ");
        return os.str();
      };
      if (l->json) {
        auto j = nlohmann::json::array();
        for (auto& r : *sessions)
          j.push_back({{"session_id", r.session_id},
                       {"status", to_string(r.status)},
                       {"reason", r.reason},
                       {"rounds", r.round_ids.size()},
                       {"seed_model_id", r.seed_model_id},
                       {"created_at", r.created_at},
                       {"ended_at", r.ended_at}});
        std::cout << j.dump(2) << std::endl;
        return caf::none;
      }
      std::cout << "session_id status rounds created\n";
      for (auto& r : *sessions)
        std::cout << r.session_id << " " << to_string(r.status) << " "
                  << r.round_ids.size() << " " << utc(r.created_at) << "\n";
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
    with_controller(s->common, exit_code, [&](controller_client& client)
                                             -> caf::error {
      auto report = client.ask<session_report>(
        caf::get_atom::value, session_atom::value, s->session_id);
      if (!report)
        return report.error();
      if (s->json) {
        std::cout << to_json(*report) << std::endl;
      } else {
        auto& r = report->session;
        std::cout << "session " << r.session_id << " " << to_string(r.status)
                  << (r.reason.empty() ? "" : ": " + r.reason) << "\n"
                  << summary_header() << "\n";
        print_rounds(*report, 0);
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
    with_controller(t->common, exit_code, [&](controller_client& client)
                                             -> caf::error {
      auto before = client.ask<session_report>(
        caf::get_atom::value, session_atom::value, t->session_id);
      if (!before)
        return before.error();
      if (is_terminal(before->session.status)) {
        std::cout << "session " << t->session_id << " already ended ("
                  << to_string(before->session.status)
                  << "); nothing to terminate" << std::endl;
        return caf::none;
      }
      auto report = client.ask<session_report>(terminate_atom::value,
                                               t->session_id);
      if (!report)
        return report.error();
      std::cout << "session " << t->session_id << " "
                << to_string(report->session.status) << std::endl;
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

/// Writes model `id` to `path` chunk by chunk (to `path`.partial, renamed
/// once complete), verifying the chunk count, size and XXH3-64 checksum.
caf::error export_model(controller_client& client, const std::string& id,
                        const std::string& path) {
  auto tmp = path + ".partial";
  std::ofstream out{tmp, std::ios::binary | std::ios::trunc};
  if (!out)
    return caf::make_error(ec::storage_error, "cannot write " + tmp);
  auto* hash = XXH3_createState();
  XXH3_64bits_reset(hash);
  uint64_t count = 1, bytes = 0, total = 0, checksum = 0;
  caf::error err;
  for (uint64_t i = 0; i < count && !err; ++i) {
    auto chunk = client.ask<model_chunk>(caf::get_atom::value, id, i);
    if (!chunk) {
      err = chunk.error();
      break;
    }
    count = chunk->count;
    total = chunk->total_bytes;
    checksum = chunk->checksum;
    bytes += chunk->bytes.size();
    XXH3_64bits_update(hash, chunk->bytes.data(), chunk->bytes.size());
    out.write(chunk->bytes.data(),
              static_cast<std::streamsize>(chunk->bytes.size()));
  }
  auto digest = XXH3_64bits_digest(hash);
  XXH3_freeState(hash);
  out.close();
  if (!err && (bytes != total || digest != checksum))
    err = caf::make_error(ec::corrupt, "model " + id + " arrived damaged ("
                                         + std::to_string(bytes) + " of "
                                         + std::to_string(total)
                                         + " bytes, checksum mismatch)");
  if (!err && !out)
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
    with_controller(l->common, exit_code, [&](controller_client& client)
                                             -> caf::error {
      auto trail = client.ask<std::vector<model_record>>(
        caf::get_atom::value, models_atom::value);
      if (!trail)
        return trail.error();
      if (l->json) {
        auto j = nlohmann::json::array();
        for (auto& m : *trail)
          j.push_back({{"model_id", m.model_id},
                       {"parent_id", m.parent_id},
                       {"session_id", m.session_id},
                       {"round_id", m.round_id},
                       {"committed_at", m.committed_at}});
        std::cout << j.dump(2) << std::endl;
        return caf::none;
      }
      std::cout << "model_id parent_id session_id round_id\n";
      for (auto& m : *trail)
        std::cout << m.model_id << " "
                  << (m.parent_id.empty() ? "-" : m.parent_id) << " "
                  << (m.session_id.empty() ? "-" : m.session_id) << " "
                  << (m.round_id.empty() ? "-" : m.round_id) << "\n";
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
    with_controller(e->common, exit_code, [&](controller_client& client) {
      auto err = export_model(client, e->model_id, e->file);
      if (!err)
        std::cout << "model " << e->model_id << " -> " << e->file
                  << std::endl;
      return err;
    });
  });

  auto s = std::make_shared<model_args>();
  auto* seed = app.add_subcommand(
    "seed", "Add a seed model (npz) to the controller's trail; a session "
            "without model_id starts from the newest model");
  add_common(seed, s->common);
  seed->add_option("file", s->file, "Model .npz file")->required();
  seed->add_option("--model-id", s->model_id,
                   "Id to store it under (default: a new UUID)");
  seed->callback([s, &exit_code] {
    with_controller(s->common, exit_code, [&](controller_client& client)
                                             -> caf::error {
      std::error_code ec_size;
      auto size = std::filesystem::file_size(s->file, ec_size);
      if (ec_size)
        return caf::make_error(ec::not_found, "cannot read " + s->file + ": "
                                                + ec_size.message());
      if (size > max_seed_bytes)
        return caf::make_error(ec::too_large,
                               s->file + " has " + std::to_string(size)
                                 + " bytes; seeds are limited to "
                                 + std::to_string(max_seed_bytes));
      std::ifstream in{s->file, std::ios::binary};
      std::string bytes(size, '\0');
      in.read(bytes.data(), static_cast<std::streamsize>(size));
      if (!in)
        return caf::make_error(ec::storage_error, "cannot read " + s->file);
      model_blob blob{s->model_id,
                      std::make_shared<const std::string>(std::move(bytes))};
      auto rec = client.ask<model_record>(caf::put_atom::value,
                                          std::move(blob));
      if (!rec)
        return rec.error();
      std::cout << rec->model_id << std::endl;
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
