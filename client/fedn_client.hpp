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

#include "client/compute_package.hpp"
#include "client/task_meta.hpp"
#include "messages/combiner_messages.hpp"

#include <caf/error.hpp>

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
/// timeouts, intervals and chunk size, backoff_initial <= backoff_max.
/// Errors: `ec::invalid_config` naming the option.
caf::error validate(const client_config& cfg);

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
  /// handled, reconnecting with back-off whenever the TaskStream breaks or
  /// the combiner is unreachable. Returns none then. Errors: an invalid
  /// configuration (see `validate`); `ec::unauthenticated` or
  /// `ec::permission_denied` as soon as the combiner refuses any call
  /// (TaskStream, heartbeat, status, model transfer, update) for the token
  /// (missing, invalid, expired, or naming another client), at start or
  /// later, e.g. when the token expires while connected: retrying with the
  /// same token would not help, so the client stops (a running entry point
  /// too) and the error says so and what to do. Task failures are not
  /// errors of `run`: they are reported to the combiner (SendStatus ERROR)
  /// and logged.
  caf::error run();

  /// Tasks handled so far (any kind, including rejected and failed ones).
  uint64_t tasks_handled() const;

private:
  struct impl;
  std::unique_ptr<impl> impl_;
};

} // namespace rondo::client
