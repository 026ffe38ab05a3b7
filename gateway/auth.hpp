#pragma once

// Internal to gateway/*.cpp: who may call which method of the edge, in one
// place. Every handler of every service starts with `authenticator::admit`
// (its method's right comes from `required_right`, the one table), and the
// handlers through which a client acts as itself then call `bind`.
//
// With a secret configured (edge_config::auth_secret):
// - every method needs `authorization: <scheme> <JWT>` (HS256, see
//   security/token.hpp); missing, malformed, badly signed, expired, or
//   another scheme: UNAUTHENTICATED. gRPC health is a separate service and
//   stays open.
// - client methods (heartbeat, status, TaskStream, Send* of the Combiner
//   service, Upload, Download, AllianceStatusStream) need role client or
//   admin; every Control.* method, ListActiveClients, AcceptingClients,
//   ReassignClient and ReconnectClient need admin (FEDn lets the first
//   ones through without a token; Rondo does not). Otherwise
//   PERMISSION_DENIED.
// - identity: a token naming a client (claim client_id, else name) may act
//   only as that client: a call whose sender (client_id, else `client`
//   metadata, else name) is another client is PERMISSION_DENIED and logged
//   with both names. A call naming no client acts as the token's. A token
//   naming no client (FEDn mints role-only tokens) may act as any client,
//   unless require_client_identity, which refuses client-role tokens
//   without a client on those methods (admin tokens stay unrestricted).
// Without a secret every caller may do everything (loopback and --insecure
// deployments; `rondo combiner` refuses other addresses without one).
//
// Verified tokens are cached (token text -> claims) for token_cache_ttl;
// `exp` is checked on every call, so the cache never extends a token's
// life. The cache is bounded (emptied when full).

#include "gateway/edge_core.hpp"
#include "security/token.hpp"

#include <grpcpp/server_context.h>
#include <grpcpp/support/status.h>

#include <chrono>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>

namespace rondo::gateway::detail {

/// What a method requires of its caller.
enum class right {
  /// Role client or admin.
  client,
  /// Role admin (FEDn's controller).
  admin,
};

/// The right that `method` ("/fedn.Connector/SendHeartbeat", ...) needs;
/// admin for any method not in the table (fail closed).
right required_right(std::string_view method);

/// A caller as `admit` found it.
struct caller {
  /// False when the edge checks no tokens: then the caller may do
  /// everything and the fields below mean nothing.
  bool checked = false;
  security::role role = security::role::admin;
  /// The only client the caller may act as; empty: any.
  std::string client;
  /// When the caller's token expires (seconds since the epoch); none when
  /// it has no `exp` or tokens are not checked. A TaskStream outlives the
  /// call that opened it, so it ends itself then (task_stream).
  std::optional<int64_t> expires;
};

/// Checks tokens and rights (thread-safe).
class authenticator {
public:
  /// @param secret the HS256 secret; empty disables every check.
  authenticator(std::string secret, std::string scheme,
                bool require_client_identity, std::chrono::seconds cache_ttl);

  bool enabled() const {
    return !secret_.empty();
  }

  /// Authenticates the caller of `method` and checks its right.
  /// @returns OK and fills `out`; else UNAUTHENTICATED or
  ///          PERMISSION_DENIED naming the reason (logged as a warning).
  grpc::Status admit(const grpc::CallbackServerContext* ctx,
                     std::string_view method, caller& out);

  /// As `admit`, given the `authorization` metadata's value ("" when
  /// absent) instead of the call: what `admit` runs, and what tests call.
  grpc::Status admit_value(std::string_view authorization,
                           std::string_view method, caller& out,
                           const std::string& peer = "?");

  /// Binds the identity a call claims to its token: `who.id` empty becomes
  /// the token's client (if any); another client than the token's is
  /// refused, as is a role-only client token with require_client_identity.
  /// @returns OK, or PERMISSION_DENIED naming both clients (logged).
  grpc::Status bind(const caller& c, std::string_view method,
                    client_identity& who) const;

  /// Entries in the token cache now (for tests and logs).
  size_t cached() const;

private:
  /// Verified claims of `token`, from the cache or libjwt.
  caf::expected<security::token_claims> verify(std::string_view token);

  const std::string secret_;
  const std::string scheme_;
  const bool require_client_identity_;
  const std::chrono::seconds cache_ttl_;
  struct cache_entry {
    security::token_claims claims;
    std::chrono::steady_clock::time_point until;
  };
  mutable std::mutex mtx_;
  std::unordered_map<std::string, cache_entry> cache_;
};

/// `core.auth->admit` for a method where the caller does not act as a
/// client (Control.*, listings, Download). `out` may be null.
grpc::Status admit(edge_core& core, const grpc::CallbackServerContext* ctx,
                   std::string_view method, caller* out = nullptr);

/// `admit`, then `bind` of `who`: for the methods where a client acts as
/// itself (heartbeat, status, TaskStream, Send*, Upload). `out`, when not
/// null, receives the caller.
grpc::Status admit_as(edge_core& core, const grpc::CallbackServerContext* ctx,
                      std::string_view method, client_identity& who,
                      caller* out = nullptr);

/// Finishes a unary call at once with `st` (a refusal).
grpc::ServerUnaryReactor* refuse_unary(grpc::CallbackServerContext* ctx,
                                       const grpc::Status& st);

/// A server stream finished at once with a refusal.
template <class Msg>
class refused_stream final : public grpc::ServerWriteReactor<Msg> {
public:
  explicit refused_stream(const grpc::Status& st) {
    this->Finish(st);
  }
  void OnDone() override {
    delete this;
  }
};

/// A client stream (Upload) finished at once with a refusal; nothing read.
template <class Msg>
class refused_upload final : public grpc::ServerReadReactor<Msg> {
public:
  explicit refused_upload(const grpc::Status& st) {
    this->Finish(st);
  }
  void OnDone() override {
    delete this;
  }
};

} // namespace rondo::gateway::detail
