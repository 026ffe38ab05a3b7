// `rondo client`: a FEDn-protocol client that runs a compute package.

#include "apps/commands.hpp"
#include "apps/process.hpp"
#include "client/api_join.hpp"
#include "client/compute_package.hpp"
#include "client/fedn_client.hpp"
#include "client/runner.hpp"
#include "client/stop_source.hpp"
#include "messages/error.hpp"
#include "messages/ids.hpp"
#include "security/certs.hpp"
#include "security/listen_policy.hpp"

#include <CLI/CLI.hpp>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include <semaphore.h>
#include <signal.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <string>
#include <thread>
#include <vector>

namespace rondo::apps {

namespace {

struct client_args {
  client::client_config cfg;
  /// --port, range-checked before it goes to cfg.port.
  int port = 12080;
  std::string package;
  bool trainer = true;
  bool validator = true;
  bool verbose = false;
  /// --ca, --cert, --key: files; read into cfg's PEMs at start.
  std::string ca_file;
  std::string cert_file;
  std::string key_file;
  /// --token-file: a file holding the token (first line).
  std::string token_file;
  /// --api-url: join through the controller's API (clients/add) instead
  /// of --host/--port; without --package, download its active package.
  std::string api_url;
  /// --preferred-combiner: the combiner to ask the controller for.
  std::string preferred_combiner;
  /// --api-retry-time: seconds to keep asking while the controller says
  /// retry.
  double api_retry_s = 300;
  /// --reassign-after: with --api-url, seconds of an unreachable combiner
  /// before asking clients/add for another (0: never).
  double reassign_after_s = 10;
};

/// Removes a downloaded package's folder when the client ends.
struct folder_remover {
  std::filesystem::path dir;
  ~folder_remover() {
    if (dir.empty())
      return;
    std::error_code ignored;
    std::filesystem::remove_all(dir, ignored);
  }
};

/// The controller's API as --api-url, the token, --ca and
/// --api-retry-time give it.
client::api_config api_of(const client_args& a) {
  client::api_config api;
  api.url = a.api_url;
  api.token = a.cfg.token;
  api.auth_scheme = a.cfg.auth_scheme;
  api.ca_file = a.ca_file;
  api.retry_for_s = a.api_retry_s;
  return api;
}

/// "host:port" of the combiner `cfg` serves.
std::string endpoint_of(const client::client_config& cfg) {
  return cfg.host + ":" + std::to_string(cfg.port);
}

/// Asks clients/add for a combiner (this client id, --preferred-combiner;
/// "package" "remote" while no --package was given) and points a.cfg at
/// it: host, port, tls and the client id the controller answered. On an
/// error a.cfg is unchanged.
/// @returns the assignment; the errors of `join_via_api` (the ask retries
///          for at most --api-retry-time seconds).
caf::expected<client::assignment> ask_for_combiner(client_args& a,
                                                   client::stop_source& stop,
                                                   bool remote_package) {
  auto& cfg = a.cfg;
  client::join_request req;
  req.client_id = cfg.client_id;
  req.name = cfg.name;
  req.preferred_combiner = a.preferred_combiner;
  req.package = remote_package ? "remote" : "local";
  auto got = client::join_via_api(api_of(a), req, stop);
  if (!got)
    return got;
  spdlog::info("the controller assigned combiner {} at {}:{}{} (helper {})",
               got->combiner.empty() ? got->host : got->combiner, got->host,
               got->port, got->tls ? " (TLS)" : "", got->helper_type);
  cfg.client_id = got->client_id;
  cfg.host = got->host;
  cfg.port = got->port;
  cfg.tls = got->tls;
  return got;
}

/// Joins through the controller's API: asks clients/add for a combiner
/// (into cfg.host/port/tls) and, without --package, downloads, checks and
/// unpacks the active compute package into a fresh folder under the work
/// folder (a.package then names it; `cleanup` removes it at exit).
/// @returns the problem, or an empty string.
std::string join_through_api(client_args& a, client::stop_source& stop,
                             folder_remover& cleanup) {
  auto& cfg = a.cfg;
  auto got = ask_for_combiner(a, stop, a.package.empty());
  if (!got)
    return render(got.error());
  if (!a.package.empty())
    return {};
  auto api = api_of(a);
  std::error_code err;
  auto base = cfg.work_dir.empty() ? std::filesystem::temp_directory_path(err)
                                   : cfg.work_dir;
  if (err)
    return "no temporary folder for the compute package: " + err.message();
  cleanup.dir = base / ("rondo-package-" + new_id());
  auto dir = client::fetch_package(api, cleanup.dir);
  if (!dir)
    return render(dir.error());
  spdlog::info("compute package unpacked into {}", dir->string());
  a.package = dir->string();
  return {};
}

/// Reads the TLS files and the token file into `a.cfg`.
/// @returns the problem naming the flag and file, or an empty string.
std::string load_security(client_args& a) {
  auto& cfg = a.cfg;
  auto load = [](const std::string& path, const char* flag,
                 std::string& out) -> std::string {
    auto err = security::read_small_file_into(path, flag, out);
    return err ? error_detail(err) : std::string{};
  };
  for (auto problem : {load(a.ca_file, "--ca", cfg.tls_ca_pem),
                       load(a.cert_file, "--cert", cfg.tls_cert_pem),
                       load(a.key_file, "--key", cfg.tls_key_pem)})
    if (!problem.empty())
      return problem;
  if (!a.token_file.empty()) {
    if (!cfg.token.empty())
      return "give --token or --token-file, not both";
    std::string text;
    if (auto problem = load(a.token_file, "--token-file", text);
        !problem.empty())
      return problem;
    auto end = text.find_first_of("\r\n");
    cfg.token = text.substr(0, end);
    while (!cfg.token.empty() && cfg.token.back() == ' ')
      cfg.token.pop_back();
    if (cfg.token.empty())
      return "--token-file: " + a.token_file + " holds no token";
  }
  return {};
}

/// Posted by the signal handler; sem_post() is async-signal-safe.
sem_t* signal_sem = nullptr;

extern "C" void on_stop_signal(int) {
  if (signal_sem != nullptr)
    sem_post(signal_sem);
}

/// Turns SIGINT/SIGTERM into a stop request: the handler posts a semaphore,
/// a dedicated thread waits on it and requests stop (a handler could not
/// safely touch the stop source's mutex). This works whichever thread the
/// signal lands on (gRPC starts threads before main). A second signal exits
/// at once (status 130). SIGINT is left alone when it was ignored at start
/// (a background job of a non-interactive shell), as shells expect.
class signal_stopper {
public:
  explicit signal_stopper(client::stop_source& stop) {
    sem_init(&sem_, 0, 0);
    signal_sem = &sem_;
    struct sigaction sa = {};
    sa.sa_handler = on_stop_signal;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESTART;
    sigaction(SIGINT, nullptr, &old_int_);
    if (old_int_.sa_handler != SIG_IGN)
      sigaction(SIGINT, &sa, nullptr);
    sigaction(SIGTERM, &sa, &old_term_);
    thread_ = std::thread{[this, &stop] {
      for (int received = 0;; ++received) {
        while (sem_wait(&sem_) != 0 && errno == EINTR) {
        }
        if (exiting_.load())
          return;
        if (received > 0) {
          spdlog::warn("received a second stop signal, exiting now");
          spdlog::default_logger()->flush();
          std::_Exit(130);
        }
        spdlog::info("received a stop signal (SIGINT/SIGTERM), stopping; "
                     "send another to exit at once");
        stop.request_stop();
      }
    }};
  }
  ~signal_stopper() {
    sigaction(SIGINT, &old_int_, nullptr);
    sigaction(SIGTERM, &old_term_, nullptr);
    exiting_ = true;
    sem_post(&sem_);
    thread_.join();
    signal_sem = nullptr;
    sem_destroy(&sem_);
  }
  signal_stopper(const signal_stopper&) = delete;
  signal_stopper& operator=(const signal_stopper&) = delete;

private:
  sem_t sem_;
  struct sigaction old_int_ = {};
  struct sigaction old_term_ = {};
  std::atomic<bool> exiting_{false};
  std::thread thread_;
};

/// Checks --ca, --cert and --key before gRPC loads them: gRPC takes a file
/// with no certificate and then fails every handshake ("Could not load any
/// root certificate"), forever. The combiner's certificate need not come
/// from the CA of this client's own certificate, so --ca is checked alone
/// and --cert/--key together.
/// @returns the problem naming the flag, file and reason, or an empty
///          string.
std::string check_tls_flags(const client_args& a) {
  for (auto files : {security::tls_files{{}, {}, a.ca_file},
                     security::tls_files{a.cert_file, a.key_file, {}}})
    if (auto err = security::check_tls_files(files, false))
      return error_detail(err);
  return {};
}

/// Warns when the token would travel to a remote combiner in plaintext.
void warn_plaintext_token(const client::client_config& cfg) {
  if (!cfg.token.empty() && !uses_tls(cfg)
      && !security::is_loopback_host(cfg.host))
    spdlog::warn("sending the token to {} without TLS: anyone on the path "
                 "can read and reuse it (pass --ca)",
                 cfg.host);
}

/// Longest wait between two asks for another combiner that did not move
/// the client, seconds (the first wait is 1 s, doubling).
constexpr double max_reassign_pause_s = 30;

/// Serves combiners with `pkg` until stopped. With --api-url, a client
/// that leaves its combiner (unreachable for --reassign-after seconds, or
/// draining: see client::run_end) asks clients/add again, with the same
/// client id and --preferred-combiner, and serves the combiner it gets
/// with a new client object and gRPC channel; the compute package is
/// kept. When that ask fails (no answer within --api-retry-time, a
/// preferred combiner that is not available) or names the same combiner,
/// the client waits (1 s, doubling up to 30 s, reset by a move) and
/// serves its combiner again; the reasons to leave then apply afresh.
/// @returns the exit code: 0 once stopped (signal, --max-tasks); 1 when
///          the combiner or the API refused the token, or on another
///          error of `fedn_client::run`.
int serve_combiners(client_args& a, const client::compute_package& pkg,
                    client::stop_source& stop) {
  auto& cfg = a.cfg;
  auto pause = 1.0;
  for (;;) {
    client::fedn_client fc{cfg, pkg, stop};
    auto outcome = fc.run();
    if (!outcome) {
      spdlog::error("{}", render(outcome.error()));
      return 1;
    }
    if (!outcome->leave() || stop.stop_requested())
      return 0;
    if (cfg.max_tasks > 0)
      cfg.max_tasks -= std::min(cfg.max_tasks, fc.tasks_handled());
    auto from = endpoint_of(cfg);
    spdlog::info("asking the controller for another combiner: {} is {}",
                 from, to_string(outcome->end));
    auto got = ask_for_combiner(a, stop, false);
    if (stop.stop_requested())
      return 0;
    if (!got && (got.error() == ec::unauthenticated
                 || got.error() == ec::permission_denied)) {
      spdlog::error("{}", render(got.error()));
      return 1;
    }
    if (got && endpoint_of(cfg) != from) {
      pause = 1.0;
      spdlog::info("reassigned from {} to {} (combiner {}): {} was {}",
                   from, endpoint_of(cfg), got->combiner, from,
                   to_string(outcome->end));
      warn_plaintext_token(cfg);
      continue;
    }
    spdlog::warn("{}; serving {} again in {:.0f} s",
                 got ? "the controller assigned the same combiner"
                     : "no other combiner: " + render(got.error()),
                 from, pause);
    if (stop.wait_for(std::chrono::duration_cast<
                      std::chrono::steady_clock::duration>(
          std::chrono::duration<double>(pause))))
      return 0;
    pause = std::min(pause * 2, max_reassign_pause_s);
  }
}

int run_client(client_args& a) {
  spdlog::set_default_logger(spdlog::stderr_color_mt("rondo-client"));
  spdlog::set_level(a.verbose ? spdlog::level::debug : spdlog::level::info);
  auto& cfg = a.cfg;
  if (auto problem = check_tls_flags(a); !problem.empty()) {
    spdlog::error("{}", problem);
    return 2;
  }
  cfg.roles.trainer = a.trainer;
  cfg.roles.validator = a.validator;
  if (auto problem = load_security(a); !problem.empty()) {
    spdlog::error("{}", problem);
    return 1;
  }
  // A token naming a client binds to the client id: with a token, the id
  // defaults to the name, so `rondo token create --client NAME` fits.
  if (cfg.client_id.empty())
    cfg.client_id = cfg.token.empty() ? new_id() : cfg.name;
  if (!cfg.roles.trainer && !cfg.roles.validator) {
    spdlog::error("nothing to serve: --no-trainer and --no-validator");
    return 1;
  }
  if (a.package.empty() && a.api_url.empty()) {
    spdlog::error("give --package DIR, or --api-url URL to download the "
                  "controller's active compute package");
    return 1;
  }
  // Only a client that joined through the API can ask for another
  // combiner. The options are checked before the API is asked (and again
  // with the combiner it names).
  cfg.reassign_after_s = a.api_url.empty() ? 0 : a.reassign_after_s;
  cfg.reassign_on_drain = !a.api_url.empty();
  if (auto err = client::validate(cfg)) {
    spdlog::error("{}", render(err));
    return 1;
  }
  client::stop_source stop;
  signal_stopper signals{stop};
  folder_remover downloaded;
  if (!a.api_url.empty()) {
    if (auto problem = join_through_api(a, stop, downloaded);
        !problem.empty()) {
      if (stop.stop_requested())
        return 0;
      spdlog::error("{}", problem);
      return 1;
    }
  }
  warn_plaintext_token(cfg);
  if (auto err = client::validate(cfg)) {
    spdlog::error("{}", render(err));
    return 1;
  }
  std::vector<std::string> required;
  if (cfg.roles.trainer)
    required.emplace_back(client::entry_point_names::train);
  if (cfg.roles.validator)
    required.emplace_back(client::entry_point_names::validate);
  auto pkg = client::load_compute_package(a.package, required);
  if (!pkg) {
    spdlog::error("{}", render(pkg.error()));
    return 1;
  }
  // A controller's port would only ever fail the gRPC handshake; say so
  // (a combiner that is not up yet is fine: the client retries).
  if (!uses_tls(cfg) && classify_endpoint(endpoint{cfg.host, cfg.port}, 2)
      == endpoint_kind::caf_node) {
    spdlog::error("{}:{} answers like a Rondo controller (CAF middleman), "
                  "not a combiner: give the combiner's client port "
                  "(its --port, 12080 by default)",
                  cfg.host, cfg.port);
    return 1;
  }
  if (pkg->find(client::entry_point_names::startup) != nullptr) {
    spdlog::info("running the startup entry point");
    client::run_options opts;
    opts.timeout_s = cfg.task_timeout_s;
    opts.kill_grace_s = cfg.kill_grace_s;
    opts.stop = &stop;
    auto ran = client::run_entry_point(*pkg, client::entry_point_names::startup,
                                       {}, opts);
    if (!ran) {
      if (stop.stop_requested())
        return 0;
      spdlog::error("{}", render(ran.error()));
      return 1;
    }
    spdlog::info("startup done in {:.2f} s", *ran);
  }
  return serve_combiners(a, *pkg, stop);
}

} // namespace

void add_client_command(CLI::App& app, int& exit_code) {
  auto a = std::make_shared<client_args>();
  auto* cmd = app.add_subcommand(
    "client", "Run a FEDn-protocol client: connect to a combiner and serve "
              "training/validation tasks with a compute package (fedn.yaml)");
  auto& cfg = a->cfg;
  cmd->add_option("--host", cfg.host, "Combiner host")->capture_default_str();
  cmd->add_option("--port", a->port, "Combiner gRPC port (1..65535)")
    ->capture_default_str()
    ->check(CLI::Range(1, 65535));
  cmd->add_option("--name", cfg.name, "Client name")->required();
  cmd->add_option("--client-id", cfg.client_id,
                  "Client id (default: a new UUID; with a token, --name)");
  cmd->add_option("--package", a->package,
                  "Compute package directory (contains fedn.yaml); FEDn's "
                  "--local-package. Without it, --api-url downloads the "
                  "controller's active package");
  auto* api_url = cmd->add_option("--api-url", a->api_url,
                  "The controller's API (http(s)://host:port): ask it for a "
                  "combiner (FEDn's clients/add) instead of --host/--port "
                  "and, without --package, download its active compute "
                  "package (checksum verified)");
  cmd->add_option("--preferred-combiner", a->preferred_combiner,
                  "With --api-url: the combiner to ask for");
  cmd->add_option("--api-retry-time", a->api_retry_s,
                  "With --api-url: seconds to keep asking while the "
                  "controller has no compute package or no combiner yet")
    ->capture_default_str()
    ->check(CLI::PositiveNumber);
  cmd->add_option("--reassign-after", a->reassign_after_s,
                  "With --api-url: seconds the combiner may be unreachable "
                  "(no heartbeat succeeds, no task stream open) before the "
                  "client abandons a running task and asks the controller "
                  "for another combiner (0: never; must be > "
                  "--heartbeat-interval). The default, 10, is twice the "
                  "controller's --connection-timeout (5 s), after which it "
                  "drops a combiner whose link went silent: by then "
                  "clients/add assigns a live one. A draining combiner is "
                  "left at once")
    ->capture_default_str()
    ->check(CLI::NonNegativeNumber)
    ->needs(api_url);
  cmd->add_flag("--trainer,!--no-trainer", a->trainer,
                "Serve training tasks (default: on)");
  cmd->add_flag("--validator,!--no-validator", a->validator,
                "Serve validation tasks (default: on)");
  cmd->add_option("--task-timeout", cfg.task_timeout_s,
                  "Seconds an entry point may run before it is killed")
    ->capture_default_str()
    ->check(CLI::PositiveNumber);
  cmd->add_option("--heartbeat-interval", cfg.heartbeat_interval_s,
                  "Seconds between heartbeats")
    ->capture_default_str()
    ->check(CLI::PositiveNumber);
  cmd->add_option("--max-tasks", cfg.max_tasks,
                  "Exit 0 after this many tasks (0: unlimited)")
    ->capture_default_str();
  cmd->add_option("--work-dir", cfg.work_dir,
                  "Parent of the per-task temporary directories "
                  "(default: $TMPDIR or /tmp)");
  cmd->add_option("--ca", a->ca_file,
                  "Connect over TLS, verifying the combiner's certificate "
                  "against this CA (PEM)");
  cmd->add_option("--cert", a->cert_file,
                  "This client's certificate (PEM), for a combiner that "
                  "requires client certificates (mutual TLS); implies TLS");
  cmd->add_option("--key", a->key_file, "The private key of --cert (PEM)");
  cmd->add_option("--token", cfg.token,
                  "Bearer token (rondo token create), sent on every call as "
                  "'authorization: <scheme> <token>'");
  cmd->add_option("--token-file", a->token_file,
                  "File whose first line is the token (keeps it out of ps)");
  cmd->add_option("--auth-scheme", cfg.auth_scheme,
                  "The scheme word before the token (FEDn's "
                  "FEDN_AUTH_SCHEME)")
    ->capture_default_str();
  cmd->add_flag("-v,--verbose", a->verbose, "Debug logging");
  cmd->callback([a, &exit_code] {
    a->cfg.port = static_cast<uint16_t>(a->port);
    exit_code = run_client(*a);
  });
}

} // namespace rondo::apps
