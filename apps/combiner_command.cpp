// `rondo combiner`: a standalone combiner — the actor system, the stores,
// the combiner actor and its FEDn gRPC edge — until SIGINT or SIGTERM.

#include "actors/combiner.hpp"
#include "actors/type_ids.hpp"
#include "actors/controller_link.hpp"
#include "actors/round_queue.hpp"
#include "api/http_server.hpp"
#include "api/metrics.hpp"
#include "api/metrics_routes.hpp"
#include "apps/commands.hpp"
#include "apps/process.hpp"
#include "gateway/edge.hpp"
#include "messages/error.hpp"
#include "security/certs.hpp"
#include "security/listen_policy.hpp"
#include "security/token.hpp"
#include "storage/model_store.hpp"
#include "storage/update_cache.hpp"
#include "storage/state_store.hpp"

#include <CLI/CLI.hpp>

#include <caf/actor_system.hpp>
#include <caf/actor_system_config.hpp>
#include <caf/exit_reason.hpp>
#include <caf/send.hpp>
#include <caf/stateful_actor.hpp>
#include <caf/typed_event_based_actor.hpp>

#include <spdlog/spdlog.h>

#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <tuple>

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
  bool keep_rejected_updates = false;
  bool sync_uploads = false;
  /// gRPC's transport memory, bytes (gateway::edge_config).
  uint64_t grpc_memory_bytes = gateway::edge_config{}.grpc_memory_bytes;
  /// Memory for decoded model updates (storage/update_cache.hpp), bytes.
  uint64_t update_memory_bytes = storage::update_cache_options{}.memory_bytes;
  std::string port_file;
  std::string log_level = "info";
  /// The controller's host:port; empty: a standalone combiner.
  std::string controller;
  double heartbeat_interval = 0.5;
  double connection_timeout = 5;
  /// --cert/--key/--ca: this combiner's certificate, its key and the
  /// cluster CA. They serve the gRPC edge over TLS (--ca with
  /// --require-client-cert: mutual TLS for clients) and authenticate the
  /// combiner to the controller over the middleman (all three needed).
  security::tls_files tls;
  /// --require-client-cert: clients must present a certificate signed by
  /// --ca (mutual TLS on the edge).
  bool require_client_cert = false;
  /// --auth-secret-file: HS256 secret that clients' tokens must be signed
  /// with; empty: no token check.
  std::string auth_secret_file;
  /// --insecure: allow a non-loopback --host without TLS and tokens.
  bool insecure = false;
  /// --auth-scheme: the word before the token in `authorization`
  /// (FEDn's FEDN_AUTH_SCHEME).
  std::string auth_scheme = "Bearer";
  /// --require-client-identity: refuse client tokens naming no client.
  bool require_client_identity = false;
  /// --advertise-host: the host clients are told to dial (clients/add);
  /// empty: --host, or this machine's hostname when --host is a wildcard.
  std::string advertise_host;
  /// --advertise-port: the port clients are told to dial; 0: the bound
  /// port.
  int advertise_port = 0;
  /// --fqdn: a name behind a TLS proxy on port 443 (FEDn's combiner fqdn:
  /// FEDn's client then dials fqdn:443); empty: none.
  std::string fqdn;
  /// --metrics-port: serve Prometheus' /metrics on --host (HTTPS with
  /// --cert/--key, an admin token with --auth-secret-file); -1: off, 0
  /// picks a free port.
  int metrics_port = -1;
  std::string metrics_port_file;
};

/// Where clients reach this combiner, as announced to the controller.
combiner_info advertised(const combiner_args& a, uint16_t bound_port) {
  combiner_info info;
  info.combiner_id = a.name;
  auto wildcard = a.host == "0.0.0.0" || a.host == "::" || a.host == "[::]";
  info.host = a.advertise_host;
  if (info.host.empty() && !wildcard)
    info.host = a.host;
  if (info.host.empty()) {
    char name[256] = {};
    if (gethostname(name, sizeof(name) - 1) == 0)
      info.host = name;
  }
  info.ip = wildcard ? std::string{} : a.host;
  info.fqdn = a.fqdn;
  info.port = a.advertise_port > 0 ? static_cast<uint16_t>(a.advertise_port)
                                   : bound_port;
  info.tls = !a.tls.cert.empty();
  return info;
}

/// The flags that would secure the client edge and are missing, e.g.
/// "--cert, --auth-secret-file"; empty when TLS and tokens are both on.
std::string missing_edge_security(const combiner_args& a) {
  std::string out;
  auto add = [&out](const char* flag) {
    out += out.empty() ? flag : std::string{", "} + flag;
  };
  if (a.tls.cert.empty())
    add("--cert");
  if (a.tls.key.empty())
    add("--key");
  if (a.auth_secret_file.empty())
    add("--auth-secret-file");
  return out;
}

/// Fills the edge's security settings from the flags (reads the files).
/// @returns the problem, naming the flag and file, or an empty string.
std::string load_edge_security(const combiner_args& a,
                               gateway::edge_config& ecfg) {
  // The edge's certificate need not come from the cluster CA (clients may
  // trust a public CA), so --cert/--key and --ca are checked apart here;
  // the controller link checks all three together.
  for (auto files : {security::tls_files{a.tls.cert, a.tls.key, {}},
                     security::tls_files{{}, {}, a.tls.ca}})
    if (auto err = security::check_tls_files(files, false))
      return error_detail(err);
  for (auto [path, flag, out] :
       {std::tuple{&a.tls.cert, "--cert", &ecfg.tls_cert_pem},
        std::tuple{&a.tls.key, "--key", &ecfg.tls_key_pem},
        std::tuple{&a.tls.ca, "--ca", &ecfg.tls_ca_pem}})
    if (auto err = security::read_small_file_into(*path, flag, *out))
      return error_detail(err);
  ecfg.require_client_cert = a.require_client_cert;
  if (!a.auth_secret_file.empty()) {
    auto secret = security::read_secret_file(a.auth_secret_file);
    if (!secret)
      return "--auth-secret-file: " + error_detail(secret.error());
    ecfg.auth_secret = std::move(*secret);
  }
  ecfg.auth_scheme = a.auth_scheme;
  ecfg.require_client_identity = a.require_client_identity;
  return {};
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
  if (a.metrics_port < -1 || a.metrics_port > 65535)
    return "--metrics-port must be 0..65535 (or -1: off), got "
           + std::to_string(a.metrics_port);
  if (!a.metrics_port_file.empty() && a.metrics_port < 0)
    return "--metrics-port-file needs --metrics-port";
  if (!std::isfinite(a.liveness_timeout) || a.liveness_timeout <= 0)
    return "--liveness-timeout must be > 0 seconds";
  if (!std::isfinite(a.client_wait_timeout) || a.client_wait_timeout < 0)
    return "--client-wait-timeout must be >= 0 seconds";
  // CLI11 reads "-5" into an unsigned option as 2^64 - 5: byte counts past
  // 2^60 (an exbibyte) can only come from such a negative number.
  constexpr uint64_t max_bytes = uint64_t{1} << 60;
  auto signed_text = [](uint64_t x) {
    return std::to_string(static_cast<int64_t>(x));
  };
  if (a.max_model_bytes == 0 || a.max_model_bytes > max_bytes)
    return "--max-model-bytes must be 1..2^60 bytes, got "
           + signed_text(a.max_model_bytes);
  if (a.update_memory_bytes > max_bytes)
    return "--update-memory-bytes must be 0..2^60 bytes, got "
           + signed_text(a.update_memory_bytes);
  auto min_quota = 4 * uint64_t(gateway::edge_config{}.max_receive_message_bytes);
  if (a.grpc_memory_bytes > max_bytes
      || (a.grpc_memory_bytes != 0 && a.grpc_memory_bytes < min_quota))
    return "--grpc-memory-bytes must be 0 (no limit) or "
           + std::to_string(min_quota)
           + "..2^60 bytes (4 of the largest messages), got "
           + signed_text(a.grpc_memory_bytes);
  if (!a.controller.empty()) {
    std::string problem;
    parse_endpoint(a.controller, problem);
    if (!problem.empty())
      return "--controller: " + problem;
    // The link to the controller: mutual TLS with all three, or plaintext.
    if (problem = check_middleman_tls(a.tls); !problem.empty())
      return problem;
  }
  if (auto problem = check_middleman_options(a.heartbeat_interval,
                                             a.connection_timeout);
      !problem.empty())
    return problem;
  return check_log_level(a.log_level);
}

/// Starts the combiner's /metrics server (--metrics-port) on --host: HTTPS
/// with --cert/--key, an admin bearer token required when the edge has an
/// auth secret (the same one), the models gauges read from `models` at each
/// scrape. Writes --metrics-port-file.
/// @returns the problem, naming the port, or an empty string.
std::string start_metrics(const combiner_args& a,
                          const gateway::edge_config& ecfg,
                          std::shared_ptr<storage::model_store> models,
                          api::server& srv) {
  api::add_metrics_route(srv, [models] {
    api::refresh_store_gauges(*models, nullptr);
  });
  auto port = srv.start();
  if (!port)
    return "--metrics-port: " + render(port.error());
  if (!a.metrics_port_file.empty())
    if (auto err = write_port_file(a.metrics_port_file, *port))
      return render(err);
  spdlog::info("metrics at {}://{}:{}/metrics{}", srv.scheme(), a.host,
               *port,
               ecfg.auth_secret.empty() ? "" : " (admin token required)");
  return {};
}

/// Runs the combiner until SIGINT/SIGTERM. @returns the exit code.
int run(const combiner_args& a) {
  if (auto problem = check(a); !problem.empty()) {
    std::cerr << "error: " << problem << "\n";
    return 2;
  }
  // Secure by default: any address but loopback needs TLS and tokens. The
  // same flags secure --metrics-port (HTTPS, admin tokens), so this one
  // check covers it.
  auto missing = missing_edge_security(a);
  if (auto refusal = security::check_listen_policy("rondo combiner", a.host,
                                                   missing, a.insecure);
      !refusal.empty()) {
    std::cerr << "error: " << refusal << "\n";
    return 2;
  }
  // Read and check the edge's settings (certificates, secret) before
  // anything is created: a bad one leaves nothing behind.
  combiner_config ccfg;
  ccfg.combiner_id = a.name;
  ccfg.sessions.liveness_timeout = seconds(a.liveness_timeout);
  ccfg.rounds.client_wait_timeout = seconds(a.client_wait_timeout);
  gateway::edge_config ecfg;
  ecfg.combiner_id = a.name;
  ecfg.max_model_bytes = a.max_model_bytes;
  ecfg.keep_rejected_updates = a.keep_rejected_updates;
  ecfg.sync_uploads = a.sync_uploads;
  ecfg.grpc_memory_bytes = a.grpc_memory_bytes;
  ecfg.client_wait_timeout = ccfg.rounds.client_wait_timeout;
  if (auto problem = load_edge_security(a, ecfg); !problem.empty()) {
    std::cerr << "error: " << problem << "\n";
    return 2;
  }
  if (auto err = gateway::validate(ecfg)) {
    std::cerr << "error: " << render(err) << "\n";
    return 2;
  }

  setup_logger("rondo-combiner", a.log_level);
  if (security::exposed_unsecured(a.host, missing))
    spdlog::warn("{}", security::insecure_warning("rondo combiner", a.host));
  // Clients check that the edge's certificate names the host they dial; a
  // specific --host is what they will most likely use.
  if (!a.tls.cert.empty())
    if (auto problem = security::cert_host_problem(a.tls.cert, a.host);
        !problem.empty())
      spdlog::warn("{}", problem);
  keep_freed_memory();
  // Before the database is opened (or created): a taken port is the
  // usual mistake, and it should leave nothing behind.
  for (auto port : {a.port, a.metrics_port})
    if (auto busy = port < 0 ? "" : check_port_free(a.host, port);
        !busy.empty()) {
      std::cerr << "error: " << busy << "\n";
      return 1;
    }
  auto signals = block_stop_signals();
  auto stores = open_stores(a.db);
  if (!stores) {
    std::cerr << "error: " << render(stores.error()) << "\n";
    return 1;
  }
  auto& models = stores->models;
  auto& state = stores->state;
  // Model updates are decoded as they are uploaded and kept in memory (or
  // spill files) until their round folds them, not written through RocksDB.
  storage::update_cache_options ucfg;
  ucfg.memory_bytes = a.update_memory_bytes;
  ucfg.spill_dir = (std::filesystem::path{a.db} / "update-spill").string();
  ucfg.npz.max_uncompressed_bytes = std::max<uint64_t>(
    ucfg.npz.max_uncompressed_bytes, a.max_model_bytes);
  auto updates = storage::update_cache::make(ucfg);
  if (!updates) {
    std::cerr << "error: " << render(updates.error()) << "\n";
    return 1;
  }
  models->attach_update_cache(*updates);
  // The round that was running when this combiner last died fails now,
  // before its queue resumes the queued jobs; the controller hears of it
  // with the first join.
  auto interrupted = close_interrupted_jobs(*state, a.name);
  if (!interrupted) {
    spdlog::error("{}", render(interrupted.error()));
    interrupted = std::vector<round_record>{};
  }
  for (auto& r : *interrupted)
    spdlog::warn("round {} (job {}) failed: {}; {} client(s) had its tasks",
                 r.round_id, r.job_id, r.reason, r.clients_selected.size());

  caf::actor_system_config cfg;
  register_actor_types(cfg);
  quiet_scheduler(cfg);
  if (!a.controller.empty())
    enable_middleman(cfg, a.heartbeat_interval, a.connection_timeout, a.tls);
  caf::actor_system sys{cfg};
  // With a controller, staging fetches global models from it through the
  // link, which also joins (and rejoins) the controller for this combiner.
  controller_link_actor link;
  if (!a.controller.empty()) {
    std::string ignored;
    auto at = parse_endpoint(a.controller, ignored);
    controller_link_config lcfg;
    lcfg.combiner_id = a.name;
    lcfg.host = at.host;
    lcfg.port = at.port;
    lcfg.tls = a.tls.any();
    if (auto wrong = probe_caf_endpoint(at, 5, a.tls); !wrong.empty()) {
      std::cerr << "error: --controller: " << wrong << "\n";
      return 2;
    }
    link = sys.spawn(controller_link, lcfg, models);
  }
  auto combiner = sys.spawn(combiner_impl, ccfg, models, state,
                            model_source_actor{link});
  int code = 0;
  api::server_config mcfg;
  mcfg.host = a.host;
  mcfg.port = a.metrics_port;
  mcfg.tls = security::tls_files{a.tls.cert, a.tls.key, {}};
  mcfg.auth_secret = ecfg.auth_secret;
  mcfg.auth_scheme = a.auth_scheme;
  mcfg.threads = 2;
  mcfg.observer = metrics::count_http_request;
  api::server metrics_http{mcfg};
  if (a.metrics_port >= 0)
    if (auto problem = start_metrics(a, ecfg, models, metrics_http);
        !problem.empty()) {
      std::cerr << "error: " << problem << "\n";
      code = 1;
    }
  if (code == 0) {
    gateway::combiner_edge edge{sys, combiner, models, state, ecfg};
    auto port = edge.start(a.host, static_cast<uint16_t>(a.port));
    if (!port) {
      std::cerr << "error: " << render(port.error()) << "\n";
      code = 1;
    } else {
      // Joins once the client port is known (it is announced).
      if (link)
        caf::anon_send(link, caf::join_atom::value, combiner,
                       advertised(a, *port), std::move(*interrupted));
      if (!a.port_file.empty())
        if (auto err = write_port_file(a.port_file, *port)) {
          std::cerr << "error: " << render(err) << "\n";
          code = 1;
        }
    }
    if (code == 0) {
      std::cout << "combiner '" << a.name << "' listening on " << a.host << ":"
                << *port << std::endl;
      wait_for_stop_signal(signals);
    }
    edge.stop();
  }
  metrics_http.stop();
  // Stop the combiner (its queue, staging and sessions are linked to it)
  // and the controller link, and wait, bounded, for them to go: an actor
  // still alive when the actor system is destroyed crashes it.
  stop_and_wait(sys,
                {caf::actor_cast<caf::actor>(combiner),
                 caf::actor_cast<caf::actor>(link)},
                "combiner");
  combiner = nullptr;
  link = nullptr;
  sys.await_actors_before_shutdown(false);
  for (auto& file : {a.port_file, a.metrics_port_file})
    if (!file.empty())
      std::filesystem::remove(file);
  spdlog::info("combiner '{}' stopped", a.name);
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
  cmd->add_flag("--keep-rejected-updates", a->keep_rejected_updates,
                "Keep the models of rejected model updates in the store "
                "(default: deleted once rejected), e.g. to inspect them");
  cmd->add_flag("--sync-uploads", a->sync_uploads,
                "Sync each uploaded model to disk before answering the "
                "client (default: written past the page cache but not "
                "synced; an update serves one round)");
  cmd->add_option("--max-model-bytes", a->max_model_bytes,
                  "Largest model a client may upload, in bytes")
    ->capture_default_str();
  cmd->add_option("--grpc-memory-bytes", a->grpc_memory_bytes,
                  "Memory gRPC's transport may use for its buffers over all "
                  "client connections, in bytes; 0: no limit. Under the "
                  "limit gRPC ends streams it cannot buffer with "
                  "RESOURCE_EXHAUSTED, so allow for every concurrent "
                  "upload's largest message (FEDn clients: 1 MiB)")
    ->capture_default_str();
  cmd->add_option("--update-memory-bytes", a->update_memory_bytes,
                  "Memory for model updates decoded as they are uploaded, "
                  "in bytes, over all uploads; past it they are decoded "
                  "into spill files under <db>/update-spill")
    ->capture_default_str();
  cmd->add_option("--port-file", a->port_file,
                  "Write the bound port to FILE (atomically) once listening; "
                  "removed on exit");
  cmd->add_option("--controller", a->controller,
                  "Join the controller at HOST:PORT (CAF middleman) and "
                  "fetch global models from it; without it the combiner "
                  "runs standalone");
  cmd->add_option("--advertise-host", a->advertise_host,
                  "The host clients assigned by the controller dial "
                  "(default: --host, or this machine's hostname when --host "
                  "is 0.0.0.0 or ::)");
  cmd->add_option("--advertise-port", a->advertise_port,
                  "The port clients assigned by the controller dial "
                  "(default: the bound --port)")
    ->check(CLI::Range(0, 65535));
  cmd->add_option("--fqdn", a->fqdn,
                  "A name clients reach this combiner at through a TLS proxy "
                  "on port 443 (FEDn's combiner fqdn; FEDn's client then "
                  "dials FQDN:443)");
  cmd->add_option("--heartbeat-interval", a->heartbeat_interval,
                  "Seconds between middleman heartbeats to the controller")
    ->capture_default_str();
  cmd->add_option("--connection-timeout", a->connection_timeout,
                  "Seconds of silence after which the controller counts as "
                  "lost (a frozen peer)")
    ->capture_default_str();
  cmd->add_option("--cert", a->tls.cert,
                  "This combiner's certificate (PEM): serves the client edge "
                  "over TLS and, with --key and --ca, authenticates to the "
                  "controller (mutual TLS)");
  cmd->add_option("--key", a->tls.key, "The private key of --cert (PEM)");
  cmd->add_option("--ca", a->tls.ca,
                  "The cluster CA (PEM): verifies the controller and, with "
                  "--require-client-cert, clients' certificates");
  cmd->add_flag("--require-client-cert", a->require_client_cert,
                "Clients must present a certificate signed by --ca");
  cmd->add_option("--auth-secret-file", a->auth_secret_file,
                  "File with the HS256 secret that clients' tokens "
                  "(authorization: Bearer <JWT>) must be signed with");
  cmd->add_option("--auth-scheme", a->auth_scheme,
                  "The scheme before the token in the authorization "
                  "metadata (FEDn's FEDN_AUTH_SCHEME)")
    ->capture_default_str();
  cmd->add_flag("--require-client-identity", a->require_client_identity,
                "Refuse client tokens that name no client (claim "
                "client_id); by default such a token, as FEDn mints them, "
                "may act as any client");
  cmd->add_flag("--insecure", a->insecure,
                "Allow a non-loopback --host without TLS and tokens "
                "(logs a warning at every start)");
  cmd->add_option("--metrics-port", a->metrics_port,
                  "Serve Prometheus metrics at /metrics on --host and this "
                  "port (0 picks a free one; default -1: off); HTTPS with "
                  "--cert/--key; with --auth-secret-file the scrape needs "
                  "an admin token (Authorization: Bearer <JWT>)")
    ->capture_default_str();
  cmd->add_option("--metrics-port-file", a->metrics_port_file,
                  "Write the bound metrics port to FILE once listening; "
                  "removed on exit");
  cmd->add_option("--log-level", a->log_level,
                  "trace, debug, info, warn, error or off")
    ->capture_default_str();
  cmd->callback([a, &exit_code] { exit_code = run(*a); });
}

} // namespace rondo::apps
