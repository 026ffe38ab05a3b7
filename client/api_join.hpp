#pragma once

// `rondo client --api-url`: what FEDn's client does before it opens its
// gRPC stream (fedn/network/clients/fedn_client.py, package_runtime.py):
// ask the controller's API to assign it a combiner (POST
// /api/v1/clients/add), then download the active compute package, check
// its SHA-256 against GET /api/v1/packages/checksum and unpack it. Only
// api_join.cpp includes httplib.h.

#include <caf/expected.hpp>

#include <cstdint>
#include <filesystem>
#include <string>

namespace rondo::client {

class stop_source;

/// How to reach the controller's API.
struct api_config {
  /// "http://host:port" or "https://host:port" (a trailing "/" is fine).
  std::string url;
  /// Bearer token; empty: none sent.
  std::string token;
  /// The word before the token (FEDn's FEDN_AUTH_SCHEME). Default "Bearer".
  std::string auth_scheme = "Bearer";
  /// CA file (PEM) verifying an https URL; empty: the system's roots.
  std::string ca_file;
  /// Bound on each HTTP request, seconds. Default 10 (FEDn's client's
  /// REQUEST_TIMEOUT).
  double request_timeout_s = 10;
  /// How long to keep asking while the controller answers "retry" (no
  /// compute package yet, no combiner alive) or cannot be reached,
  /// seconds. Default 300.
  double retry_for_s = 300;
  /// First wait between tries; doubles up to `retry_max_s`. Defaults 1 s
  /// (FEDn's client waits 3 s) and 10 s.
  double retry_initial_s = 1;
  double retry_max_s = 10;
};

/// What the client sends to clients/add (FEDn's ClientOptions.to_json).
struct join_request {
  std::string client_id;
  std::string name;
  /// "" when none.
  std::string preferred_combiner;
  /// "remote": the client will download the active package; "local".
  std::string package = "remote";
};

/// The controller's answer: where to connect.
struct assignment {
  std::string client_id;
  /// The combiner's id (Rondo's "combiner" field); "" from FEDn.
  std::string combiner;
  /// The combiner's name (FEDn's "host" is the combiner's address).
  std::string host;
  std::string fqdn;
  std::string ip;
  uint16_t port = 0;
  /// The combiner serves TLS (Rondo's "tls" field, or FEDn's rule: port
  /// 443, which also holds whenever fqdn is set).
  bool tls = false;
  std::string helper_type;
  std::string package;
};

/// Posts `req` to clients/add until the answer is an assignment. Retries
/// (with back-off, at most `retry_for_s`) while the controller answers
/// status "retry" (FEDn's 203: no compute package yet; Rondo's 400 with
/// "retry": no combiner alive) or cannot be reached.
/// @returns the assignment (with fqdn set: host = fqdn, port 443, as
///          FEDn's client dials); ec::unauthenticated (401),
///          ec::permission_denied (403), ec::invalid_argument (other 4xx,
///          with the API's message), ec::timeout when the retries ran out
///          (naming the last answer), ec::terminated when `stop` was
///          requested.
caf::expected<assignment> join_via_api(const api_config& cfg,
                                       const join_request& req,
                                       stop_source& stop);

/// Downloads the active compute package (GET /api/v1/packages/download),
/// checks its SHA-256 against GET /api/v1/packages/checksum and unpacks
/// it into `dest` (see `unpack_package_archive`).
/// @returns the folder holding fedn.yaml; ec::not_found when no package
///          is active; ec::corrupt when the checksum differs (naming
///          both); the unpacking errors; HTTP errors as `join_via_api`.
caf::expected<std::filesystem::path>
fetch_package(const api_config& cfg, const std::filesystem::path& dest);

} // namespace rondo::client
