#pragma once

// The FEDn-protocol client loop behind `rondo client`: heartbeats, the
// TaskStream with reconnect and back-off, and the training / validation /
// prediction tasks run through a compute package. gRPC and protobuf stay in
// fedn_client.cpp (pimpl).
//
// Tasks are processed inline on the thread that reads the TaskStream, so
// they run one at a time in the order the combiner sent them; tasks that
// arrive meanwhile wait in the stream (gRPC/HTTP2 flow control buffers
// them). Heartbeats run on their own thread and continue during a task.
//
// A client that joined through the controller's API may leave its
// combiner (`client_config::reassign_after_s`, `reassign_on_drain`):
// `run` then returns a `run_outcome` saying why, and the caller asks
// clients/add again and runs a new `fedn_client` (a new gRPC channel) for
// the combiner it gets.

#include "client/compute_package.hpp"
#include "client/task_meta.hpp"
#include "messages/combiner_messages.hpp"

#include <caf/error.hpp>
#include <caf/expected.hpp>

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>

namespace rondo::client {

class stop_source;

/// Options of a `fedn_client`. Durations are in seconds.
struct client_config {
  /// Combiner host name or address (IPv6 literals without brackets work).
  std::string host = "127.0.0.1";
  /// Combiner gRPC port.
  uint16_t port = 12080;
  /// Client name (Client.name); required.
  std::string name;
  /// Client id (Client.client_id, and the `client` call metadata);
  /// required (`rondo client` defaults it to a new UUID).
  std::string client_id;
  /// Task kinds served; announced in ClientAvailableMessage.data (see
  /// `make_roles_json`). Tasks of a kind not served are answered with an
  /// ERROR status and nothing else.
  client_roles roles;
  /// Wall-clock limit of one entry-point run (> 0).
  double task_timeout_s = 3600;
  /// Between SIGTERM and SIGKILL when a run is stopped (>= 0).
  double kill_grace_s = 5;
  /// Period of SendHeartbeat (> 0).
  double heartbeat_interval_s = 2;
  /// Exit `run` after this many tasks (any kind, including rejected ones);
  /// 0 = unlimited.
  uint64_t max_tasks = 0;
  /// First reconnect delay; doubles per failed attempt up to
  /// `backoff_max_s`; reset after a stream that delivered a task or stayed
  /// open `stable_stream_s`.
  double backoff_initial_s = 0.5;
  /// Largest reconnect delay.
  double backoff_max_s = 30;
  /// A stream open this long counts as a successful connection.
  double stable_stream_s = 10;
  /// Deadline of unary calls (status, heartbeat, update, validation).
  double rpc_timeout_s = 30;
  /// Deadline of one whole model download or upload.
  double transfer_timeout_s = 600;
  /// How long a download keeps reading while the combiner answers UNKNOWN
  /// (model known but not yet staged), as FEDn clients do.
  double unknown_model_wait_s = 20;
  /// Leave the combiner (`run` returns `run_end::unreachable`) once it
  /// has been unreachable this long: no heartbeat succeeded and no task
  /// stream was open (the channel not connected while the TaskStream call
  /// runs). A task running then is abandoned: its entry point is stopped
  /// (SIGTERM, then SIGKILL after `kill_grace_s`) and nothing is sent for
  /// it, since its round belongs to the lost combiner. 0 (the default):
  /// never, reconnect to the same combiner forever. When > 0 it must be >
  /// `heartbeat_interval_s` (heartbeats are the evidence). `rondo client
  /// --api-url` sets 10 s (see its --reassign-after).
  double reassign_after_s = 0;
  /// Leave the combiner (`run` returns `run_end::draining`) at once when
  /// it ends or refuses the TaskStream because an operator drains it
  /// (`is_drain_refusal`); the stream is read between tasks, so a task in
  /// progress finishes and is sent first. false (the default): treat it
  /// as any other broken stream (reconnect with back-off).
  bool reassign_on_drain = false;
  /// Upload chunk size in bytes (FEDn: at most 1 MiB).
  size_t chunk_bytes = size_t{1} << 20;
  /// Parent of the per-task temporary directories; empty = $TMPDIR or /tmp.
  std::filesystem::path work_dir;

  // -- security ----------------------------------------------------------------

  /// Connect over TLS. Implied by any of the PEMs below.
  bool tls = false;
  /// PEM of the CA that must have signed the combiner's certificate; empty
  /// with `tls`: the system's trusted roots.
  std::string tls_ca_pem;
  /// PEM of this client's certificate and key, for a combiner that
  /// requires client certificates (mutual TLS); both or neither.
  std::string tls_cert_pem;
  std::string tls_key_pem;
  /// The bearer token (a JWT from `rondo token create` or FEDn), sent on
  /// every call as `authorization: <auth_scheme> <token>`; empty: none.
  std::string token;
  /// The scheme word before the token (FEDn's FEDN_AUTH_SCHEME).
  std::string auth_scheme = "Bearer";
};

/// Whether `cfg` connects over TLS: `tls`, or any of its PEMs given.
bool uses_tls(const client_config& cfg);

/// Checks a configuration: name and client_id non-empty, positive
/// timeouts, intervals and chunk size, backoff_initial <= backoff_max,
/// reassign_after 0 or > the heartbeat interval.
/// Errors: `ec::invalid_config` naming the option.
caf::error validate(const client_config& cfg);

/// Whether a TaskStream's end (or refusal) with gRPC status code
/// `status_code` (the numeric grpc::StatusCode) and `message` says the
/// combiner is draining: UNAVAILABLE (14) with "is draining" in the
/// message, as a drained Rondo combiner answers.
bool is_drain_refusal(int status_code, const std::string& message);

/// Whether a combiner counts as unreachable (see
/// `client_config::reassign_after_s`): tracks the last contact, i.e. the
/// last successful heartbeat or the last moment a task stream was open.
/// Times are seconds on one monotonic clock. Not thread-safe.
class reachability {
public:
  /// `reassign_after_s` 0: never unreachable. `now`: the start, which
  /// counts as contact (a client given a dead combiner leaves it
  /// `reassign_after_s` after it started).
  reachability(double reassign_after_s, double now);

  /// A heartbeat succeeded at `now`.
  void heartbeat_ok(double now);

  /// Whether a task stream is open at `now` (an open stream is contact
  /// for as long as it stays open).
  void stream_open(bool open, double now);

  /// Seconds since the last contact (0 while a stream is open).
  double silent_for(double now) const;

  /// Whether the combiner is unreachable at `now`: enabled, no stream
  /// open and silent for at least `reassign_after_s`.
  bool unreachable(double now) const;

private:
  double reassign_after_s_;
  double last_contact_;
  bool stream_open_ = false;
};

/// Why `fedn_client::run` returned without an error.
enum class run_end {
  /// `stop` was requested, or `max_tasks` tasks were handled.
  stopped,
  /// The combiner was unreachable for `reassign_after_s`.
  unreachable,
  /// The combiner ended or refused the TaskStream: it is draining.
  draining,
};

/// "stopped", "unreachable", "draining".
const char* to_string(run_end end);

/// What `fedn_client::run` ended with.
struct run_outcome {
  run_end end = run_end::stopped;
  /// With unreachable / draining: what the client saw (the last failed
  /// call's status, or the stream's end), for the log.
  std::string detail;
  /// Whether the caller should ask for another combiner.
  bool leave() const {
    return end != run_end::stopped;
  }
};

/// A FEDn-protocol client. Construct, then call `run` once.
class fedn_client {
public:
  /// `stop` ends `run` (and a running entry point, and blocked calls) when
  /// requested; it must outlive the client.
  fedn_client(client_config cfg, compute_package pkg, stop_source& stop);
  ~fedn_client();
  fedn_client(const fedn_client&) = delete;
  fedn_client& operator=(const fedn_client&) = delete;

  /// Serves tasks until `stop` is requested or `max_tasks` tasks were
  /// handled (run_end::stopped), reconnecting with back-off whenever the
  /// TaskStream breaks or the combiner is unreachable; or until the client
  /// leaves the combiner (run_end::unreachable after `reassign_after_s`,
  /// run_end::draining when the combiner drains and `reassign_on_drain`
  /// is set). Call it once per object: a new combiner needs a new
  /// `fedn_client` (with its own channel). Errors: an invalid
  /// configuration (see `validate`); `ec::unauthenticated` or
  /// `ec::permission_denied` as soon as the combiner refuses any call
  /// (TaskStream, heartbeat, status, model transfer, update) for the token
  /// (missing, invalid, expired, or naming another client), at start or
  /// later, e.g. when the token expires while connected: retrying with the
  /// same token would not help, so the client stops (a running entry point
  /// too) and the error says so and what to do. Task failures are not
  /// errors of `run`: they are reported to the combiner (SendStatus ERROR)
  /// and logged.
  caf::expected<run_outcome> run();

  /// Tasks handled so far (any kind, including rejected and failed ones).
  uint64_t tasks_handled() const;

private:
  struct impl;
  std::unique_ptr<impl> impl_;
};

} // namespace rondo::client
