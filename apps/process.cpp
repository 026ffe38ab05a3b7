#include "apps/process.hpp"

#include "messages/error.hpp"
#include "storage/database.hpp"
#include "storage/model_store.hpp"
#include "storage/state_store.hpp"

#include <caf/actor_system_config.hpp>
#include <caf/after.hpp>
#include <caf/exit_reason.hpp>
#include <caf/scoped_actor.hpp>
#include <caf/system_messages.hpp>
#include <caf/io/middleman.hpp>
#include <caf/openssl/manager.hpp>

#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include <cerrno>
#include <malloc.h>
#include <netdb.h>
#include <poll.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>
#include <thread>

namespace rondo::apps {

caf::timespan seconds(double x) {
  return std::chrono::duration_cast<caf::timespan>(
    std::chrono::duration<double>(x));
}

void keep_freed_memory() {
  // 32 MiB is the largest threshold glibc accepts on 64-bit (half its
  // heap size); setting either value also turns glibc's dynamic
  // adjustment of both off.
  mallopt(M_MMAP_THRESHOLD, 32 << 20);
  mallopt(M_TRIM_THRESHOLD, 128 << 20);
  // Two heaps for all threads: glibc's default of 8 per core let each of
  // gRPC's and CAF's threads grow a heap of its own, whose free memory no
  // other thread reused; a combiner under 50 uploading clients grew by
  // about 10 MiB per round instead of levelling off.
  mallopt(M_ARENA_MAX, 2);
}

void quiet_scheduler(caf::actor_system_config& cfg) {
  cfg.set("scheduler.policy", caf::atom("sharing"));
  auto cores = std::max(2u, std::thread::hardware_concurrency());
  cfg.set("scheduler.max-threads", static_cast<int64_t>(cores));
}

sigset_t block_stop_signals() {
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  return signals;
}

void wait_for_stop_signal(sigset_t signals) {
  int sig = 0;
  sigwait(&signals, &sig);
  spdlog::info("received {}, stopping (again to exit at once)",
               sig == SIGINT ? "SIGINT" : "SIGTERM");
  std::thread{[signals] {
    int again = 0;
    sigwait(&signals, &again);
    spdlog::warn("received a second signal, exiting now");
    spdlog::default_logger()->flush();
    std::_Exit(130);
  }}.detach();
}

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

endpoint parse_endpoint(const std::string& text, std::string& problem) {
  auto colon = text.rfind(':');
  if (colon == std::string::npos || colon == 0) {
    problem = "expected host:port, got '" + text + "'";
    return {};
  }
  auto port_text = text.substr(colon + 1);
  char* end = nullptr;
  auto port = std::strtol(port_text.c_str(), &end, 10);
  if (port_text.empty() || *end != '\0' || port < 1 || port > 65535) {
    problem = "port must be 1..65535, got '" + port_text + "' in '" + text
              + "'";
    return {};
  }
  return {text.substr(0, colon), static_cast<uint16_t>(port)};
}

std::string check_middleman_options(double heartbeat_interval,
                                    double connection_timeout) {
  if (!std::isfinite(heartbeat_interval) || heartbeat_interval <= 0)
    return "--heartbeat-interval must be > 0 seconds";
  if (!std::isfinite(connection_timeout)
      || connection_timeout <= heartbeat_interval)
    return "--connection-timeout must be more than --heartbeat-interval";
  return {};
}

std::string check_log_level(const std::string& level) {
  if (spdlog::level::from_str(level) == spdlog::level::off && level != "off")
    return "--log-level must be one of trace, debug, info, warn, error, off";
  return {};
}

void setup_logger(const std::string& name, const std::string& level) {
  spdlog::set_default_logger(spdlog::stderr_color_mt(name));
  spdlog::set_level(spdlog::level::from_str(level));
}

caf::expected<process_stores> open_stores(const std::string& dir) {
  auto db = storage::database::open(dir);
  if (!db)
    return db.error(); // names the directory and RocksDB's reason
  auto models = storage::model_store::open(*db);
  auto state = storage::state_store::open(*db);
  if (!models || !state)
    return caf::make_error(ec::storage_error,
                           "cannot open the stores in " + dir + ": "
                             + render(!models ? models.error()
                                              : state.error()));
  return process_stores{std::move(*models), std::move(*state)};
}

namespace {

using addrinfo_ptr = std::unique_ptr<addrinfo, decltype(&freeaddrinfo)>;

// The TCP addresses of host:port (getaddrinfo with `flags`); empty (null)
// when the host does not resolve.
addrinfo_ptr resolve(const std::string& host, int port, int flags) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = flags;
  addrinfo* found = nullptr;
  if (getaddrinfo(host.c_str(), std::to_string(port).c_str(), &hints, &found)
      != 0)
    found = nullptr;
  return addrinfo_ptr{found, freeaddrinfo};
}

/// Connects to `at` with connect, send and receive bounded by `timeout_s`
/// seconds. @returns the socket, or -1 when nothing accepts there.
int connect_bounded(const endpoint& at, double timeout_s) {
  auto found = resolve(at.host, at.port, 0);
  timeval tv{};
  tv.tv_sec = static_cast<time_t>(timeout_s);
  tv.tv_usec = static_cast<suseconds_t>((timeout_s - tv.tv_sec) * 1e6);
  for (auto* ai = found.get(); ai != nullptr; ai = ai->ai_next) {
    int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC,
                    ai->ai_protocol);
    if (fd < 0)
      continue;
    // On Linux SO_SNDTIMEO also bounds connect().
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    if (connect(fd, ai->ai_addr, ai->ai_addrlen) == 0)
      return fd;
    close(fd);
  }
  return -1;
}

} // namespace

std::string check_port_free(const std::string& host, int port) {
  if (port == 0)
    return {};
  // A port held only by the connections of a process that is gone (a
  // controller restarted after SIGKILL: its closed connections linger in
  // FIN_WAIT/TIME_WAIT, and those of an HTTP server opened with
  // SO_REUSEPORT refuse a plain bind) is free when nothing listens there.
  auto listening = [&] {
    int fd = connect_bounded(endpoint{host, static_cast<uint16_t>(port)},
                             1.0);
    if (fd < 0)
      return false;
    close(fd);
    return true;
  };
  auto found = resolve(host, port, AI_PASSIVE);
  // An unresolvable host is left to the server's own bind to report.
  for (auto* ai = found.get(); ai != nullptr; ai = ai->ai_next) {
    int fd = socket(ai->ai_family, ai->ai_socktype, ai->ai_protocol);
    if (fd < 0)
      continue;
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    auto bound = bind(fd, ai->ai_addr, ai->ai_addrlen) == 0;
    auto why = errno;
    close(fd);
    if (!bound && why == EADDRINUSE && listening())
      return "cannot listen on " + host + ":" + std::to_string(port)
             + ": the port is in use (another combiner or controller?)";
  }
  return {};
}

namespace {

/// What the first bytes a peer sent on its own say about it.
endpoint_kind classify_head(const unsigned char* head, ssize_t n) {
  if (n == 4 && head[0] == 0 && head[1] == 0 && head[2] == 0 && head[3] == 0)
    return endpoint_kind::caf_node;
  if (n == 4 && head[3] == 0x04)
    return endpoint_kind::http2;
  return endpoint_kind::silent;
}

const char* grpc_port_hint = " is not a Rondo controller: it answers like an "
                             "HTTP/2 (gRPC) server; is it a combiner's "
                             "client port?";

} // namespace

endpoint_kind classify_endpoint(const endpoint& at, double timeout_s) {
  int fd = connect_bounded(at, timeout_s);
  if (fd < 0)
    return endpoint_kind::unreachable;
  unsigned char head[4] = {1, 1, 1, 1};
  auto n = recv(fd, head, sizeof(head), MSG_WAITALL);
  close(fd);
  return classify_head(head, n);
}

std::string probe_caf_endpoint(const endpoint& at, double timeout_s,
                               const security::tls_files& tls) {
  auto where = at.host + ":" + std::to_string(at.port);
  if (!tls.any()) {
    switch (classify_endpoint(at, timeout_s)) {
      case endpoint_kind::unreachable:
      case endpoint_kind::caf_node:
        return {};
      case endpoint_kind::http2:
        return where + grpc_port_hint;
      case endpoint_kind::silent:
        break;
    }
    return where + " sent no CAF handshake within "
           + std::to_string(static_cast<int>(timeout_s))
           + " s: a Rondo controller with TLS waits for the client to "
             "start, so give --cert, --key and --ca (the cluster CA and a "
             "certificate it signed); else it is not a Rondo controller";
  }
  int fd = connect_bounded(at, timeout_s);
  if (fd < 0)
    return {};
  // A plaintext CAF node or a gRPC server talks at once; a TLS server
  // waits for our hello, which must never reach a plaintext BASP parser.
  pollfd pfd{fd, POLLIN, 0};
  auto ready = poll(&pfd, 1, static_cast<int>(std::min(timeout_s, 0.5) * 1000));
  std::string problem;
  if (ready > 0) {
    unsigned char head[4] = {1, 1, 1, 1};
    auto n = recv(fd, head, sizeof(head), MSG_WAITALL);
    switch (classify_head(head, n)) {
      case endpoint_kind::caf_node:
        problem = where + " speaks CAF without TLS: that controller runs "
                          "without --cert/--key/--ca; connect without them "
                          "or restart it with TLS";
        break;
      case endpoint_kind::http2:
        problem = where + grpc_port_hint;
        break;
      default:
        problem = where + " is not a Rondo controller: "
                  + (n == 0 ? std::string{"it closed the connection"}
                            : std::string{"it sent unexpected bytes"})
                  + " before the TLS handshake";
    }
  } else if (auto why = security::probe_tls(fd, tls); !why.empty()) {
    problem = where + ": mutual TLS failed: " + why;
    // A gRPC server with TLS (a combiner's client port) ends a handshake
    // that offers no HTTP/2 (ALPN) without a word.
    if (why.find("unexpected eof") != std::string::npos)
      problem += " (is it a combiner's client port? those end a TLS "
                 "handshake without HTTP/2 like this)";
  }
  close(fd);
  return problem;
}

void stop_and_wait(caf::actor_system& sys,
                   const std::vector<caf::actor>& actors,
                   const std::string& what) {
  caf::scoped_actor self{sys};
  size_t alive = 0;
  for (auto& who : actors) {
    if (!who)
      continue;
    self->monitor(who);
    self->send_exit(who, caf::exit_reason::user_shutdown);
    ++alive;
  }
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (alive > 0) {
    auto left = deadline - std::chrono::steady_clock::now();
    if (left <= left.zero()) {
      spdlog::warn("the {} did not stop within 10 s", what);
      return;
    }
    self->receive([&alive](const caf::down_msg&) { --alive; },
                  caf::after(left) >> [] {});
  }
}

namespace {

/// A copy of the file at `path` that lives as long as the process: an
/// anonymous memory file (memfd), named by its /proc/self/fd path. CAF's
/// OpenSSL module loads its certificate, key and CA from their paths again
/// for every connection and throws from its I/O loop (aborting the process)
/// when one cannot be loaded: a key file renamed or rotated under a running
/// controller would kill it at the next connection. @returns the copy's
/// path, or `path` itself (logged) when no copy can be made.
std::string pin_file(const std::string& path, const char* flag) {
  auto bytes = security::read_small_file(path, flag);
  int fd = bytes ? memfd_create("rondo-tls", MFD_CLOEXEC) : -1;
  if (fd >= 0) {
    size_t done = 0;
    while (done < bytes->size()) {
      auto n = write(fd, bytes->data() + done, bytes->size() - done);
      if (n <= 0)
        break;
      done += static_cast<size_t>(n);
    }
    if (done == bytes->size())
      return "/proc/self/fd/" + std::to_string(fd); // open until exit
    close(fd);
  }
  spdlog::warn("cannot keep a private copy of {} {}; it must stay in place "
               "while this process runs",
               flag, path);
  return path;
}

} // namespace

void enable_middleman(caf::actor_system_config& cfg,
                      double heartbeat_interval, double connection_timeout,
                      const security::tls_files& tls) {
  cfg.load<caf::io::middleman>();
  cfg.set("middleman.heartbeat-interval", seconds(heartbeat_interval));
  cfg.set("middleman.connection-timeout", seconds(connection_timeout));
  if (tls.any()) {
    // CAF's manager reads these members (not the `openssl.*` settings).
    cfg.openssl_certificate = pin_file(tls.cert, "--cert");
    cfg.openssl_key = pin_file(tls.key, "--key");
    cfg.openssl_cafile = pin_file(tls.ca, "--ca");
    cfg.load<caf::openssl::manager>();
  }
}

std::string check_middleman_tls(const security::tls_files& tls) {
  if (!tls.any())
    return {};
  if (auto err = security::check_tls_files(tls, true))
    return error_detail(err);
  return {};
}

} // namespace rondo::apps
