#pragma once

// Bearer tokens as FEDn issues and sends them: an HS256-signed JWT in the
// gRPC metadata `authorization: <scheme> <JWT>` (scheme "Bearer" unless
// FEDN_AUTH_SCHEME says otherwise; FEDn's fedn/network/grpc/auth.py and
// clients/grpc_handler.py, v0.33.0). Signing and verification go through
// libjwt (Debian's libjwt-dev); nothing here is hand-written crypto.

#include <caf/error.hpp>
#include <caf/expected.hpp>

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace rondo::security {

/// What a token grants.
enum class role {
  /// A trainer or validator: heartbeats, TaskStream, updates, validations,
  /// model transfer.
  client,
  /// An operator (FEDn's `controller` role maps here too): everything,
  /// including Control.* and ListActiveClients.
  admin,
};

/// "client" or "admin".
const char* to_string(role r);

/// The claims Rondo reads from a token.
struct token_claims {
  /// Claim `role`: "client" or "admin"; FEDn's "controller" is admin.
  security::role role = security::role::client;
  /// Claim `client_id`, else `name`: the only client this token may act as;
  /// empty when the token names none (FEDn-minted tokens carry a role only).
  std::string client;
  /// Claim `exp`, seconds since the epoch; none when absent.
  std::optional<int64_t> expires;
  /// Claim `iat`, seconds since the epoch; none when absent.
  std::optional<int64_t> issued;
};

/// The signing secret as read from --auth-secret-file / --secret-file: the
/// file's bytes without trailing whitespace.
/// @returns ec::invalid_config naming the file when it cannot be read or
///          holds fewer than 32 bytes (HS256 wants a key at least as long
///          as its 256-bit output).
caf::expected<std::string> read_secret_file(const std::string& path);

/// Signs a token (HS256) with `claims` and `iat` = now; `exp` = now + ttl
/// when ttl > 0, no `exp` when ttl is zero.
/// @returns the compact JWT, or ec::invalid_argument for a short secret.
caf::expected<std::string> create_token(const std::string& secret,
                                        const token_claims& claims,
                                        std::chrono::seconds ttl);

/// Verifies a compact JWT: the header's alg must be HS256 (never "none"),
/// the signature must match `secret`, `role` must be client, admin or
/// controller, and `exp`, when present, must be after `now` (seconds since
/// the epoch).
/// @returns the claims, or ec::unauthenticated with the reason ("malformed
///          token", "bad signature", "expired at ...", "unknown role ...").
caf::expected<token_claims> verify_token(std::string_view token,
                                         const std::string& secret,
                                         int64_t now);

/// Splits an `authorization` metadata value "<scheme> <token>".
/// @returns the token, or ec::unauthenticated when the value is empty or its
///          scheme is not `scheme` (e.g. "expected scheme Bearer").
caf::expected<std::string_view>
token_from_authorization(std::string_view value, std::string_view scheme);

/// Seconds since the epoch, now.
int64_t unix_now();

/// `t` (seconds since the epoch) as "2026-12-06 12:00:00 UTC".
std::string utc_text(int64_t t);

} // namespace rondo::security
