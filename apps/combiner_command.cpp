// `rondo combiner`: a standalone combiner — the actor system, the stores,
// the combiner actor and its FEDn gRPC edge — until SIGINT or SIGTERM.

#include "actors/combiner.hpp"
#include "actors/type_ids.hpp"
#include "apps/commands.hpp"
#include "gateway/edge.hpp"
#include "messages/error.hpp"
#include "storage/database.hpp"
#include "storage/model_store.hpp"
#include "storage/state_store.hpp"

#include <CLI/CLI.hpp>

#include <caf/actor_system.hpp>
#include <caf/actor_system_config.hpp>
#include <caf/after.hpp>
#include <caf/exit_reason.hpp>
#include <caf/scoped_actor.hpp>
#include <caf/send.hpp>
#include <caf/stateful_actor.hpp>
#include <caf/system_messages.hpp>
#include <caf/typed_event_based_actor.hpp>

#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include <signal.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <thread>

namespace rondo::apps {

namespace {

struct combiner_args {
  std::string host = "127.0.0.1";
  int port = 12080;
  std::string db;
  std::string name = "combiner";
  double liveness_timeout = 10;
  double client_wait_timeout = 30;
  uint64_t max_model_bytes = uint64_t{10} << 30;
  std::string port_file;
  std::string log_level = "info";
};

caf::timespan seconds(double x) {
  return std::chrono::duration_cast<caf::timespan>(
    std::chrono::duration<double>(x));
}

/// Writes `port` to `path` atomically (a temporary file renamed over it), so
/// a script waiting for the file never reads a partial number.
caf::error write_port_file(const std::string& path, uint16_t port) {
  auto tmp = path + ".tmp";
  {
    std::ofstream out{tmp, std::ios::trunc};
    out << port << "\n";
    out.flush();
    if (!out)
      return caf::make_error(ec::storage_error, "cannot write " + tmp);
  }
  std::error_code err;
  std::filesystem::rename(tmp, path, err);
  if (err)
    return caf::make_error(ec::storage_error, "cannot rename " + tmp + " to "
                                                + path + ": "
                                                + err.message());
  return caf::none;
}

/// Checks the options; @returns the first problem, or an empty string.
std::string check(const combiner_args& a) {
  if (a.db.empty())
    return "--db DIR is required";
  if (a.host.empty())
    return "--host must not be empty";
  if (a.port < 0 || a.port > 65535)
    return "--port must be 0..65535, got " + std::to_string(a.port);
  if (a.name.empty())
    return "--name must not be empty";
  if (!std::isfinite(a.liveness_timeout) || a.liveness_timeout <= 0)
    return "--liveness-timeout must be > 0 seconds";
  if (!std::isfinite(a.client_wait_timeout) || a.client_wait_timeout < 0)
    return "--client-wait-timeout must be >= 0 seconds";
  if (a.max_model_bytes == 0)
    return "--max-model-bytes must be > 0";
  if (spdlog::level::from_str(a.log_level) == spdlog::level::off
      && a.log_level != "off")
    return "--log-level must be one of trace, debug, info, warn, error, off";
  return {};
}

/// Runs the combiner until SIGINT/SIGTERM. @returns the exit code.
int run(const combiner_args& a) {
  if (auto problem = check(a); !problem.empty()) {
    std::cerr << "error: " << problem << "\n";
    return 2;
  }
  spdlog::set_default_logger(spdlog::stderr_color_mt("rondo-combiner"));
  spdlog::set_level(spdlog::level::from_str(a.log_level));
  // Block the signals before any thread starts (CAF's, gRPC's): they all
  // inherit the mask, and this thread takes the signal with sigwait().
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  auto db = storage::database::open(a.db);
  if (!db) {
    std::cerr << "error: cannot open database " << a.db << ": "
              << render(db.error()) << "\n";
    return 1;
  }
  auto models = storage::model_store::open(*db);
  auto state = storage::state_store::open(*db);
  if (!models || !state) {
    std::cerr << "error: cannot open the stores in " << a.db << ": "
              << render(!models ? models.error() : state.error()) << "\n";
    return 1;
  }

  combiner_config ccfg;
  ccfg.combiner_id = a.name;
  ccfg.sessions.liveness_timeout = seconds(a.liveness_timeout);
  ccfg.rounds.client_wait_timeout = seconds(a.client_wait_timeout);
  gateway::edge_config ecfg;
  ecfg.combiner_id = a.name;
  ecfg.max_model_bytes = a.max_model_bytes;
  ecfg.client_wait_timeout = ccfg.rounds.client_wait_timeout;
  if (auto err = gateway::validate(ecfg)) {
    std::cerr << "error: " << render(err) << "\n";
    return 2;
  }

  caf::actor_system_config cfg;
  register_actor_types(cfg);
  caf::actor_system sys{cfg};
  auto combiner = sys.spawn(combiner_impl, ccfg, *models, *state,
                            model_source_actor{});
  int code = 0;
  {
    gateway::combiner_edge edge{sys, combiner, *models, *state, ecfg};
    auto port = edge.start(a.host, static_cast<uint16_t>(a.port));
    if (!port) {
      std::cerr << "error: " << render(port.error()) << "\n";
      code = 1;
    } else if (!a.port_file.empty()) {
      if (auto err = write_port_file(a.port_file, *port)) {
        std::cerr << "error: " << render(err) << "\n";
        code = 1;
      }
    }
    if (code == 0) {
      std::cout << "combiner " << a.name << " listening on " << a.host << ":"
                << *port << std::endl;
      int sig = 0;
      sigwait(&signals, &sig);
      spdlog::info("received {}, stopping (again to exit at once)",
                   sig == SIGINT ? "SIGINT" : "SIGTERM");
      // A second signal during shutdown exits at once.
      std::thread{[signals] {
        int again = 0;
        sigwait(&signals, &again);
        spdlog::warn("received a second signal, exiting now");
        spdlog::default_logger()->flush();
        std::_Exit(130);
      }}.detach();
    }
    edge.stop();
  }
  // Stop the combiner (its queue, staging and sessions are linked to it)
  // and wait, bounded, for it to go.
  {
    caf::scoped_actor self{sys};
    self->monitor(combiner);
    self->send_exit(combiner, caf::exit_reason::user_shutdown);
    self->receive([](const caf::down_msg&) {},
                  caf::after(std::chrono::seconds(10)) >> [] {
                    spdlog::warn("the combiner did not stop within 10 s");
                  });
  }
  combiner = nullptr;
  // A round that was running holds its own timer and is not linked to the
  // combiner; its job is recorded as interrupted when the combiner starts
  // again, so do not wait for it here.
  sys.await_actors_before_shutdown(false);
  if (!a.port_file.empty())
    std::filesystem::remove(a.port_file);
  spdlog::info("combiner {} stopped", a.name);
  return code;
}

} // namespace

void add_combiner_command(CLI::App& app, int& exit_code) {
  auto a = std::make_shared<combiner_args>();
  auto* cmd = app.add_subcommand(
    "combiner", "Run a combiner: round engine plus FEDn gRPC edge, until "
                "SIGINT/SIGTERM");
  cmd->add_option("--host", a->host, "Address to listen on")
    ->capture_default_str();
  cmd->add_option("--port", a->port, "Port to listen on; 0 picks a free one")
    ->capture_default_str();
  cmd->add_option("--db", a->db, "Database directory (created if missing); "
                                 "required");
  cmd->add_option("--name", a->name, "Combiner id (in tasks, records, logs)")
    ->capture_default_str();
  cmd->add_option("--liveness-timeout", a->liveness_timeout,
                  "Seconds a client stays active after its last heartbeat")
    ->capture_default_str();
  cmd->add_option("--client-wait-timeout", a->client_wait_timeout,
                  "Seconds a round waits for clients_required active "
                  "clients")
    ->capture_default_str();
  cmd->add_option("--max-model-bytes", a->max_model_bytes,
                  "Largest model a client may upload, in bytes")
    ->capture_default_str();
  cmd->add_option("--port-file", a->port_file,
                  "Write the bound port to FILE (atomically) once listening; "
                  "removed on exit");
  cmd->add_option("--log-level", a->log_level,
                  "trace, debug, info, warn, error or off")
    ->capture_default_str();
  cmd->callback([a, &exit_code] { exit_code = run(*a); });
}

} // namespace rondo::apps
