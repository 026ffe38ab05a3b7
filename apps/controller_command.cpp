// `rondo controller`: the controller actor (sessions, the global model
// trail) published on the CAF middleman, until SIGINT or SIGTERM. Combiners
// join it with `rondo combiner --controller HOST:PORT`; users drive it with
// `rondo session|models|seed --controller HOST:PORT`.

#include "actors/controller.hpp"
#include "actors/type_ids.hpp"
#include "api/controller_api.hpp"
#include "api/http_server.hpp"
#include "api/metrics.hpp"
#include "apps/commands.hpp"
#include "apps/process.hpp"
#include "messages/error.hpp"
#include "security/certs.hpp"
#include "security/listen_policy.hpp"
#include "security/token.hpp"
#include "storage/model_store.hpp"
#include "storage/state_store.hpp"

#include <CLI/CLI.hpp>

#include <caf/actor_system.hpp>
#include <caf/actor_system_config.hpp>
#include <caf/exit_reason.hpp>
#include <caf/io/middleman.hpp>
#include <caf/openssl/publish.hpp>
#include <caf/stateful_actor.hpp>
#include <caf/typed_event_based_actor.hpp>

#include <spdlog/spdlog.h>

#include <cmath>
#include <filesystem>
#include <iostream>

namespace rondo::apps {

namespace {

struct controller_args {
  std::string host = "127.0.0.1";
  int port = 12090;
  std::string db;
  std::string port_file;
  double client_wait = 30;
  double request_timeout = 30;
  double heartbeat_interval = 0.5;
  double connection_timeout = 5;
  std::string log_level = "info";
  /// --cert/--key/--ca: the controller's certificate, its key and the
  /// cluster CA; all three turn on mutual TLS on the middleman port.
  security::tls_files tls;
  /// --insecure: allow a non-loopback --host without TLS.
  bool insecure = false;
  /// --http-port: the operator API, dashboard and /metrics (FEDn's
  /// default API port is 8092); 0 picks a free one.
  int http_port = 8092;
  std::string http_port_file;
  /// --auth-secret-file: HS256 secret of the API's bearer tokens.
  std::string auth_secret_file;
  std::string auth_scheme = "Bearer";
  /// --public-url: how clients and browsers reach the API.
  std::string public_url;
};

constexpr const char* server_name = "rondo controller";

/// The flags that would secure the middleman port and are missing; empty
/// with mutual TLS.
std::string missing_tls(const controller_args& a) {
  return a.tls.any() ? "" : "--cert, --key, --ca";
}

/// Every flag that would secure the middleman or the HTTP port and is
/// missing, each named once.
std::string missing_security(const controller_args& a) {
  auto missing = missing_tls(a);
  if (a.auth_secret_file.empty())
    missing += std::string{missing.empty() ? "" : ", "}
               + "--auth-secret-file";
  return missing;
}

/// Checks the options; @returns the first problem, or an empty string.
std::string check(const controller_args& a) {
  if (a.db.empty())
    return "--db DIR is required";
  if (a.host.empty())
    return "--host must not be empty";
  if (auto problem = check_middleman_tls(a.tls); !problem.empty())
    return problem;
  // One refusal naming every missing flag of both ports.
  if (auto refused = security::check_listen_policy(server_name, a.host,
                                                   missing_security(a),
                                                   a.insecure);
      !refused.empty())
    return refused;
  if (a.port < 0 || a.port > 65535)
    return "--port must be 0..65535, got " + std::to_string(a.port);
  if (a.http_port < 0 || a.http_port > 65535)
    return "--http-port must be 0..65535, got "
           + std::to_string(a.http_port);
  if (!std::isfinite(a.client_wait) || a.client_wait < 0)
    return "--client-wait must be >= 0 seconds";
  if (!std::isfinite(a.request_timeout) || a.request_timeout <= 0)
    return "--request-timeout must be > 0 seconds";
  if (auto problem = check_middleman_options(a.heartbeat_interval,
                                             a.connection_timeout);
      !problem.empty())
    return problem;
  return check_log_level(a.log_level);
}

/// `host` as a URL's host part: IPv6 literals in brackets.
std::string url_host(const std::string& host) {
  return host.find(':') != std::string::npos ? "[" + host + "]" : host;
}

int run(const controller_args& a) {
  if (auto problem = check(a); !problem.empty()) {
    std::cerr << "error: " << problem << "\n";
    return 2;
  }
  setup_logger("rondo-controller", a.log_level);
  if (security::exposed_unsecured(a.host, missing_security(a)))
    spdlog::warn(security::insecure_warning(server_name, a.host));
  std::string auth_secret;
  if (!a.auth_secret_file.empty()) {
    auto secret = security::read_secret_file(a.auth_secret_file);
    if (!secret) {
      std::cerr << "error: --auth-secret-file: " << render(secret.error())
                << "\n";
      return 2;
    }
    auth_secret = std::move(*secret);
  }
  keep_freed_memory();
  // Before the database is opened (or created): a taken port is the
  // usual mistake, and it should leave nothing behind.
  for (auto port : {a.port, a.http_port})
    if (auto busy = check_port_free(a.host, port); !busy.empty()) {
      std::cerr << "error: " << busy << "\n";
      return 1;
    }
  auto signals = block_stop_signals();
  auto stores = open_stores(a.db);
  if (!stores) {
    std::cerr << "error: " << render(stores.error()) << "\n";
    return 1;
  }
  caf::actor_system_config cfg;
  register_actor_types(cfg);
  quiet_scheduler(cfg);
  enable_middleman(cfg, a.heartbeat_interval, a.connection_timeout, a.tls);
  caf::actor_system sys{cfg};
  controller_config ccfg;
  ccfg.client_wait = seconds(a.client_wait);
  ccfg.request_timeout = seconds(a.request_timeout);
  auto controller = sys.spawn(controller_impl, ccfg, stores->models,
                              stores->state);
  int code = 0;
  api::server_config hcfg;
  hcfg.host = a.host;
  hcfg.port = a.http_port;
  hcfg.tls = security::tls_files{a.tls.cert, a.tls.key, {}};
  hcfg.auth_secret = auth_secret;
  hcfg.auth_scheme = a.auth_scheme;
  hcfg.observer = metrics::count_http_request;
  api::server http{hcfg};
  api::controller_context ctx;
  ctx.sys = &sys;
  ctx.controller = controller;
  ctx.models = stores->models;
  ctx.state = stores->state;
  ctx.data_dir = std::filesystem::path{a.db} / "api";
  ctx.request_timeout = ccfg.request_timeout;
  std::error_code mkdir_failed;
  std::filesystem::create_directories(ctx.data_dir, mkdir_failed);
  if (mkdir_failed) {
    std::cerr << "error: cannot create " << ctx.data_dir << ": "
              << mkdir_failed.message() << "\n";
    code = 1;
  }
  auto http_port = code == 0 ? http.start()
                             : caf::expected<uint16_t>{caf::error{}};
  if (code == 0 && !http_port) {
    std::cerr << "error: " << render(http_port.error()) << "\n";
    code = 1;
  }
  if (code == 0) {
    ctx.public_url = a.public_url.empty()
                       ? std::string{http.scheme()} + "://"
                           + url_host(a.host) + ":"
                           + std::to_string(*http_port)
                       : a.public_url;
    api::add_controller_routes(http, ctx);
    if (!a.http_port_file.empty())
      if (auto err = write_port_file(a.http_port_file, *http_port)) {
        std::cerr << "error: " << render(err) << "\n";
        code = 1;
      }
  }
  auto port = code != 0 ? caf::expected<uint16_t>{caf::error{}}
             : a.tls.any()
                ? caf::openssl::publish(controller,
                                        static_cast<uint16_t>(a.port),
                                        a.host.c_str(), true)
                : sys.middleman().publish(controller,
                                          static_cast<uint16_t>(a.port),
                                          a.host.c_str(), true);
  if (code != 0) {
    // Reported above.
  } else if (!port) {
    std::cerr << "error: cannot listen on " << a.host << ":" << a.port
              << ": " << sys.render(port.error()) << "\n";
    code = 1;
  } else if (!a.port_file.empty()) {
    if (auto err = write_port_file(a.port_file, *port)) {
      std::cerr << "error: " << render(err) << "\n";
      code = 1;
    }
  }
  if (code == 0) {
    std::cout << "controller listening on " << a.host << ":" << *port
              << (a.tls.any() ? " (mutual TLS)"
                              : " (plaintext, no authentication)")
              << "; API and dashboard at " << ctx.public_url
              << (auth_secret.empty() ? " (no tokens)" : " (bearer tokens)")
              << std::endl;
    wait_for_stop_signal(signals);
    static_cast<void>(sys.middleman().unpublish(controller, *port));
  }
  http.stop();
  stop_and_wait(sys, {caf::actor_cast<caf::actor>(controller)},
                "controller");
  controller = nullptr;
  // Every other actor of this process (report sinks, model fetchers) is
  // linked to the controller and goes with it; wait for them: one alive
  // when the actor system is destroyed crashes it.
  sys.await_actors_before_shutdown(true);
  for (auto& file : {a.port_file, a.http_port_file})
    if (!file.empty())
      std::filesystem::remove(file);
  spdlog::info("controller stopped");
  return code;
}

} // namespace

void add_controller_command(CLI::App& app, int& exit_code) {
  auto a = std::make_shared<controller_args>();
  auto* cmd = app.add_subcommand(
    "controller", "Run the controller (sessions, global model trail) on the "
                  "CAF middleman, until SIGINT/SIGTERM");
  cmd->add_option("--host", a->host, "Address to listen on")
    ->capture_default_str();
  cmd->add_option("--port", a->port, "Port to listen on; 0 picks a free one")
    ->capture_default_str();
  cmd->add_option("--db", a->db, "Database directory (created if missing); "
                                 "required");
  cmd->add_option("--port-file", a->port_file,
                  "Write the bound port to FILE (atomically) once listening; "
                  "removed on exit");
  cmd->add_option("--client-wait", a->client_wait,
                  "Seconds a round waits for combiners with enough active "
                  "trainers (and for a first combiner to join)")
    ->capture_default_str();
  cmd->add_option("--request-timeout", a->request_timeout,
                  "Seconds each request to a combiner may take")
    ->capture_default_str();
  cmd->add_option("--heartbeat-interval", a->heartbeat_interval,
                  "Seconds between middleman heartbeats to combiners")
    ->capture_default_str();
  cmd->add_option("--connection-timeout", a->connection_timeout,
                  "Seconds of silence after which a combiner counts as lost "
                  "(a frozen peer)")
    ->capture_default_str();
  cmd->add_option("--cert", a->tls.cert,
                  "The controller's certificate (PEM, e.g. from `rondo certs "
                  "issue`); with --key and --ca: mutual TLS on the "
                  "middleman port, every combiner and operator must present "
                  "a certificate signed by --ca");
  cmd->add_option("--key", a->tls.key, "The private key of --cert (PEM)");
  cmd->add_option("--ca", a->tls.ca,
                  "The cluster CA (PEM) that peers' certificates must verify "
                  "against");
  cmd->add_flag("--insecure", a->insecure,
                "Allow a non-loopback --host without --cert/--key/--ca "
                "(plaintext, unauthenticated; logs a warning at every "
                "start)");
  cmd->add_option("--http-port", a->http_port,
                  "Port of the operator API (FEDn REST v1), the dashboard "
                  "and /metrics, on --host; 0 picks a free one. HTTPS with "
                  "--cert/--key")
    ->capture_default_str();
  cmd->add_option("--http-port-file", a->http_port_file,
                  "Write the bound API port to FILE once listening; removed "
                  "on exit");
  cmd->add_option("--auth-secret-file", a->auth_secret_file,
                  "HS256 secret (>= 32 bytes) of the API's bearer tokens "
                  "(`rondo token create`): admin for everything, client for "
                  "clients/add and package download");
  cmd->add_option("--auth-scheme", a->auth_scheme,
                  "Authorization scheme before the token (FEDn's "
                  "FEDN_AUTH_SCHEME)")
    ->capture_default_str();
  cmd->add_option("--public-url", a->public_url,
                  "The API's URL as clients and browsers reach it (default "
                  "scheme://--host:--http-port)");
  cmd->add_option("--log-level", a->log_level,
                  "trace, debug, info, warn, error or off")
    ->capture_default_str();
  cmd->callback([a, &exit_code] { exit_code = run(*a); });
}

} // namespace rondo::apps
