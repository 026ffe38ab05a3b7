#pragma once

// The combiner's gRPC edge: FEDn's client protocol (see
// ../shared/FEDN_WIRE.md) in front of a combiner actor. It serves the
// Connector, Combiner, ModelService and Control services and the standard
// `grpc.health.v1.Health`, all on gRPC's callback API: no thread is held per
// open stream, and no gRPC thread waits for an actor (unary calls that need
// an actor's answer are completed from the actor's reply handler).
//
// gRPC and protobuf headers stay in gateway/*.cpp: this header is cheap.

#include "actors/actors.hpp"

#include <caf/expected.hpp>
#include <caf/fwd.hpp>
#include <caf/timespan.hpp>

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>

namespace rondo::storage {
class model_store;
class state_store;
} // namespace rondo::storage

namespace rondo::gateway {

/// Options of the edge; every default documented on its field.
struct edge_config {
  /// This combiner's id: the `sender.name` of every TaskRequest and
  /// Response. Default "combiner".
  std::string combiner_id = "combiner";

  // -- model transfer ---------------------------------------------------------

  /// Largest model an Upload may store, in bytes; a larger upload fails
  /// with RESOURCE_EXHAUSTED and leaves nothing behind. Default 10 GiB.
  uint64_t max_model_bytes = uint64_t{10} << 30;
  /// Keep a model update in the store when its ModelUpdate is rejected
  /// (stale, for another client's task, invalid). Default false: the edge
  /// deletes it, provided the rejected client uploaded it through this
  /// edge and no round accepted it; accepted updates are the round's to
  /// delete (`delete_models_storage`). True keeps them for inspection.
  bool keep_rejected_updates = false;
  /// Sync each uploaded model before answering OK (storage::durability::
  /// synced). Default false (durability::unsynced): an upload is a model
  /// update for one round, which a combiner crash fails anyway, so the
  /// bytes go to the disk past the page cache but without the final
  /// fdatasync, which took 0.25–0.7 s of a 1 GiB upload here. Global
  /// models, seeds and aggregates are always synced.
  bool sync_uploads = false;
  /// Largest `data` of one Download message, in bytes (> 0). Default 1 MiB,
  /// FEDn's chunk size.
  uint32_t chunk_bytes = 1u << 20;
  /// Largest message the server accepts (unary requests and each Upload
  /// message), in bytes; gRPC refuses a larger one with RESOURCE_EXHAUSTED
  /// before any handler runs. Default 4 MiB + 64 KiB: a 4 MiB upload chunk
  /// (`max_upload_chunk_bytes`) plus protobuf overhead; FEDn's unary
  /// messages are a few KiB.
  int max_receive_message_bytes = (4 << 20) + (64 << 10);
  /// Memory gRPC's transport may use for its buffers over all connections,
  /// in bytes (a grpc::ResourceQuota); 0: no limit (the default). Under
  /// pressure gRPC reads in smaller pieces, and ends a stream it cannot
  /// buffer with RESOURCE_EXHAUSTED (RST_STREAM 11): with 16 MiB, 50
  /// clients uploading in 1 MiB chunks lowered the combiner's peak RSS from
  /// 242 to 178 MiB (bench/combiner_load.py), but 8 uploads in 4 MiB chunks
  /// at once sometimes failed (found in a new user's trial), so it is off
  /// unless asked for. Each stream's flow-control window stays at gRPC's
  /// initial 64 KiB either way (no BDP probing, which grew it to several
  /// MiB per upload).
  uint64_t grpc_memory_bytes = 0;

  /// Largest data of one Upload message (one chunk), in bytes; a larger
  /// chunk fails the upload with RESOURCE_EXHAUSTED. Default 4 MiB (FEDn
  /// sends 1 MiB). Every message, unary or streamed, is also bounded by
  /// `max_receive_message_bytes`, which gRPC enforces before the handler
  /// runs, so a peer cannot make the edge hold more than that per message.
  uint32_t max_upload_chunk_bytes = 4u << 20;

  // -- security (all off by default: loopback tests and the quickstart) -------

  /// PEM of this combiner's certificate (chain) and private key: with both,
  /// the edge serves gRPC over TLS only (a plaintext client's handshake
  /// fails at once). Empty: plaintext.
  std::string tls_cert_pem;
  std::string tls_key_pem;
  /// PEM of the CA that client certificates must chain to; with
  /// `require_client_cert`, mutual TLS: a client without such a
  /// certificate fails the handshake. The certificate authenticates the
  /// connection only; who a caller is and may do comes from its token.
  std::string tls_ca_pem;
  bool require_client_cert = false;
  /// The HS256 secret of clients' tokens; empty: no token check (every
  /// caller may call every method). Non-empty: every method but gRPC
  /// health needs `authorization: <auth_scheme> <JWT>`; see gateway/auth.hpp
  /// for the rights per method and the identity binding.
  std::string auth_secret;
  /// The authorization scheme (FEDn's FEDN_AUTH_SCHEME). Default "Bearer".
  std::string auth_scheme = "Bearer";
  /// Refuse client-role tokens that name no client (FEDn-minted tokens
  /// carry a role only) on the methods a client calls as itself. Default
  /// false: such a token may act as any client (FEDn compatibility).
  bool require_client_identity = false;
  /// How long a verified token is remembered (its `exp` is still checked
  /// at every call), saving the HMAC and JSON work on each heartbeat.
  /// Default 60 s; 0 disables the cache.
  std::chrono::seconds token_cache_ttl{60};

  // -- keepalive (TOOLCHAIN_NOTES, "gRPC and RocksDB") ------------------------

  /// FEDn clients ping every 5 s, also between calls. With gRPC's server
  /// defaults they get GOAWAY ("too many pings") after ~20 s. These three
  /// settings are the measured fix: allow pings without calls, accept a
  /// ping every `min_recv_ping_interval` (default 4 s, below the clients'
  /// 5 s), and never count strikes (`max_ping_strikes` 0 = unlimited).
  bool keepalive_permit_without_calls = true;
  std::chrono::milliseconds min_recv_ping_interval{4000};
  int max_ping_strikes = 0;
  /// The server's own keepalive pings: an open TaskStream keeps a client
  /// active, so a client host that vanished without closing its TCP
  /// connection must be detected. A ping every `keepalive_time` (default
  /// 30 s) unanswered within `keepalive_timeout` (default 10 s) closes the
  /// connection, which ends the stream and the client's session stream.
  std::chrono::milliseconds keepalive_time{30000};
  std::chrono::milliseconds keepalive_timeout{10000};
  // There is deliberately no per-connection stream cap (gRPC 1.51 sets none
  // by default; with one, streams over it wait silently).

  // -- bounds on waiting for actors --------------------------------------------

  /// Bound on requests to the combiner that should be quick (session
  /// lookup, client list, job submission, flush). Default 30 s.
  caf::timespan request_timeout = std::chrono::seconds(30);
  /// Bound on a model update's or validation's verdict: it includes folding
  /// the update into the aggregate, which reads the whole update model.
  /// Default 600 s (the round's own per-request bound is 300 s).
  caf::timespan update_timeout = std::chrono::seconds(600);
  /// The combiner's client_wait_timeout (round_settings): part of the bound
  /// on Control.Start with `wait=true`. Default 30 s, as round_settings'.
  caf::timespan client_wait_timeout = std::chrono::seconds(30);
  /// Control.Start with `wait=true` waits at most round_timeout +
  /// client_wait_timeout + this margin (staging, aggregation, queueing).
  /// Default 60 s.
  caf::timespan start_wait_margin = std::chrono::seconds(60);

  // -- shutdown ------------------------------------------------------------------

  /// How long `stop()` lets calls in progress (uploads, downloads) finish
  /// before gRPC cancels them. Open TaskStreams and calls waiting on an
  /// actor are ended at once with UNAVAILABLE. Default 5 s.
  std::chrono::milliseconds shutdown_grace{5000};
};

/// Checks an edge configuration.
/// @returns `ec::invalid_config` naming the option and value, or none.
caf::error validate(const edge_config& cfg);

/// The gRPC server of one combiner.
///
/// Behaviour in brief (details on each handler in the .cpp files):
/// - Clients are identified by `sender.client_id`, else the call's `client`
///   metadata, else `sender.name`; the first contact asks the combiner for
///   the client's session, which the edge then caches.
/// - SendHeartbeat: O(1), nothing written to disk; the session is told.
/// - TaskStream: bridged to the client's session through a task-sink actor;
///   tasks are written with one write in flight; the stream's end stops the
///   sink, which the session sees (it monitors the sink) as the stream's
///   close. A newer TaskStream of the same client replaces the open one,
///   which then ends with UNAVAILABLE ("replaced by a newer task stream of
///   the same client"); the edge logs a warning naming the client.
/// - Send* calls of the Combiner service always finish with gRPC status OK
///   (FEDn clients drop their connection on an error status); the
///   `response` text says what happened: "accepted", "rejected: <reason>"
///   (the combiner's verdict) or "error: <reason>" (input the edge refused,
///   e.g. "error: malformed meta: ...", or the combiner did not answer).
///   An answer the edge refuses that names its task (a correlation id)
///   resolves that task at once: the combiner gets task_refused with the
///   reason, and the round rejects the task when the refused client (the
///   token's client, else the identified one) owns it.
/// - Upload/Download stream models in chunks through the model store; upload
///   errors are gRPC statuses (see model_service.cpp).
/// - Control.Start submits a round; with parameter `wait=true` it answers
///   when the round ended, with the round record as parameters.
/// - Security (off by default): TLS or mutual TLS with `tls_*`; with
///   `auth_secret`, every method but gRPC health needs a bearer token, whose
///   role and client decide what it may call and as whom (gateway/auth.hpp):
///   UNAUTHENTICATED / PERMISSION_DENIED otherwise, as gRPC statuses even
///   on the Send* calls.
///
/// Thread-safe. The actor system, combiner and stores must outlive the edge.
class combiner_edge {
public:
  /// @param sys runs the small bridge actors (one per pending request and
  ///        one task sink per open TaskStream).
  /// @param combiner the combiner the edge serves.
  /// @param models the combiner's model store (uploads land here).
  /// @param state the combiner's state store (client metrics land here).
  combiner_edge(caf::actor_system& sys, combiner_actor combiner,
                std::shared_ptr<storage::model_store> models,
                std::shared_ptr<storage::state_store> state,
                edge_config cfg = {});

  /// Stops the server (as `stop()`).
  ~combiner_edge();

  combiner_edge(const combiner_edge&) = delete;
  combiner_edge& operator=(const combiner_edge&) = delete;

  /// Starts listening on `host:port`: over TLS when the configuration has
  /// a certificate and key, else plaintext. Port 0 picks a free port.
  /// @returns the bound port; `ec::invalid_config` for a bad configuration
  ///          or when the address cannot be bound (in use, bad host);
  ///          `ec::invalid_state` when already started.
  caf::expected<uint16_t> start(const std::string& host, uint16_t port);

  /// The bound port; 0 before `start`.
  uint16_t port() const;

  /// Graceful shutdown: open TaskStreams and calls waiting on an actor end
  /// at once with UNAVAILABLE ("combiner ... is shutting down"), new calls
  /// are refused, and other calls in progress get `shutdown_grace` to
  /// finish before gRPC cancels them. Returns once every call has ended.
  /// Idempotent.
  void stop();

private:
  struct impl;
  std::unique_ptr<impl> impl_;
};

} // namespace rondo::gateway
