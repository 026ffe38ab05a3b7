#pragma once

// The HTTP(S) server behind the controller's operator API, its dashboard
// and `/metrics` (and the combiner's `--metrics-port`): cpp-httplib
// underneath, hidden behind small request/reply types so that only
// http_server.cpp includes httplib.h.
//
// Every route declares the right it needs. With an auth secret, a request
// to a client or admin route must carry `Authorization: <scheme> <JWT>`
// (HS256, the same secret and roles as the combiner's gRPC edge): none or
// an invalid one is 401, a client token on an admin route is 403. Errors
// are JSON `{"message": "..."}`, as FEDn's API answers them; an unknown
// route is 404.

#include "security/certs.hpp"
#include "security/token.hpp"

#include <caf/expected.hpp>
#include <nlohmann/json_fwd.hpp>

#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace rondo::api {

/// What a route needs from the caller's token.
enum class right {
  /// No token needed (health, the dashboard's static page, /metrics when
  /// the server has no secret).
  open,
  /// A client or admin token (FEDn's clients/add, package download).
  client,
  /// An admin token (every write and every other read).
  admin,
};

/// One part of a multipart/form-data body.
struct form_file {
  /// The part's file name as sent ("" for a plain field).
  std::string filename;
  std::string content_type;
  std::string content;
};

/// A request as a handler sees it.
struct request {
  /// "GET", "POST", "PUT", "PATCH", "DELETE".
  std::string method;
  /// The path as sent, without the query string.
  std::string path;
  /// The route pattern that matched, e.g. "/api/v1/models/([^/]+)": the
  /// label of the request metrics.
  std::string route;
  /// The pattern's capture groups, in order.
  std::vector<std::string> params;
  /// Query parameters (the first value of each name).
  std::map<std::string, std::string> query;
  /// Headers with lower-case names.
  std::map<std::string, std::string> headers;
  std::string body;
  /// multipart/form-data parts by field name (files and plain fields).
  std::map<std::string, form_file> form;
  /// The verified token's claims; none when the server has no secret or
  /// the route is open.
  std::optional<security::token_claims> caller;
  /// The peer's address.
  std::string remote_addr;

  /// The query parameter `name`, or `fallback`.
  std::string query_or(const std::string& name,
                       const std::string& fallback = "") const;
  /// The header `name` (any case), or "".
  std::string header(const std::string& name) const;
  /// A form field's content (a plain field's value), or `fallback`.
  std::string form_or(const std::string& name,
                      const std::string& fallback = "") const;
};

/// A handler's answer.
struct reply {
  int status = 200;
  std::string content_type = "application/json";
  std::string body;
  /// Extra headers, e.g. Content-Disposition.
  std::vector<std::pair<std::string, std::string>> headers;

  /// `body` is `value.dump()`.
  static reply json(const nlohmann::json& value, int status = 200);
  /// `{"message": message}` with `status` (FEDn's error shape).
  static reply error(int status, const std::string& message);
  /// Raw bytes with a content type.
  static reply bytes(std::string data, std::string content_type,
                     int status = 200);
};

/// Handles one request; may throw (an exception is a 500 naming it).
using handler = std::function<reply(const request&)>;

/// Called after each request: the matched route pattern ("" when none
/// matched), the method and the status sent. For request metrics.
using request_observer
  = std::function<void(const std::string& route, const std::string& method,
                       int status)>;

/// Options of one HTTP server.
struct server_config {
  /// Address to bind; the caller applies the listen policy first.
  std::string host = "127.0.0.1";
  /// 0 picks a free port.
  int port = 0;
  /// With cert and key: HTTPS (TLS 1.2+). `ca` is not used: callers
  /// authenticate with tokens.
  security::tls_files tls;
  /// HS256 secret; empty: no authentication (loopback only).
  std::string auth_secret;
  /// The authorization scheme expected before the token. Default "Bearer"
  /// (FEDn's default FEDN_AUTH_SCHEME).
  std::string auth_scheme = "Bearer";
  /// Largest request body accepted, bytes; larger is 413. Default 1 GiB
  /// (a model or a compute package).
  size_t max_body_bytes = size_t{1} << 30;
  /// Worker threads. Default 8.
  int threads = 8;
  /// Seconds a read or write on a connection may stall. Default 30.
  int io_timeout = 30;
  request_observer observer;
};

/// One HTTP(S) server with its own threads. Routes are added before
/// start(); each is a regular expression matched against the whole path
/// (cpp-httplib's syntax: capture groups become request::params).
class server {
public:
  explicit server(server_config cfg);
  ~server();
  server(const server&) = delete;
  server& operator=(const server&) = delete;

  /// Adds a route. `method` is "GET", "POST", "PUT", "PATCH" or "DELETE".
  void route(const std::string& method, const std::string& pattern,
             right needed, handler h);

  /// Binds host:port and serves on a background thread.
  /// @returns the bound port, or ec::invalid_argument naming the address
  ///          when it cannot be bound or the TLS files do not load.
  caf::expected<uint16_t> start();

  /// Stops serving and joins the thread; idempotent.
  void stop();

  /// "http" or "https".
  const char* scheme() const;

private:
  struct impl;
  std::unique_ptr<impl> impl_;
};

/// Parses a request body as a JSON object (nested at most max_json_depth
/// levels).
/// @returns the object, or ec::invalid_argument naming the problem ("body
///          is not JSON: ...", "body must be a JSON object"); handlers
///          answer it with 400.
caf::expected<nlohmann::json> parse_json_object(const std::string& text);

} // namespace rondo::api
