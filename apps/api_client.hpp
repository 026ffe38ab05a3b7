#pragma once

// What the operator's commands (`rondo session ...`, `rondo models ...`,
// `rondo seed`, `rondo combiners ...`) share: the flags naming a running
// controller's operator API (`rondo controller --http-port`, FEDn's REST
// v1) and a client for it. HTTP or HTTPS (cpp-httplib's client, kept out of
// this header), an admin token as `Authorization: Bearer <token>`; every
// request has a finite timeout.

#include <caf/error.hpp>
#include <caf/expected.hpp>

#include <nlohmann/json_fwd.hpp>

#include <cstdint>
#include <functional>
#include <iosfwd>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace CLI {
class App;
} // namespace CLI

namespace rondo::apps {

/// The flags every operator command takes (add_common).
struct common_args {
  /// --controller: HOST:PORT of the API, or an http:// or https:// URL.
  /// Default 127.0.0.1:8092, `rondo controller`'s default --http-port.
  std::string controller = "127.0.0.1:8092";
  /// --timeout: seconds each request may take. Default 30.
  double timeout = 30;
  /// --ca: the CA the controller's HTTPS certificate must verify against.
  std::string ca;
  /// --token / --token-file: an admin token (`rondo token create --role
  /// admin`).
  std::string token;
  std::string token_file;
};

/// Adds --controller, --timeout, --ca, --token and --token-file to `cmd`.
void add_common(CLI::App* cmd, common_args& a);

/// One part of a multipart form (api_client::post).
struct form_part {
  std::string name;
  std::string content;
  /// "" for a plain field.
  std::string filename;
  std::string content_type;
};

/// A connection to a controller's operator API. Answers with a status
/// other than 2xx become errors carrying the API's `message`: 401
/// ec::unauthenticated, 403 ec::permission_denied, 404 ec::not_found, 400 /
/// 409 / 413 ec::invalid_argument, others ec::invalid_state; no answer at
/// all is ec::not_found "cannot reach a Rondo controller API at ...".
class api_client {
public:
  api_client();
  ~api_client();

  api_client(const api_client&) = delete;
  api_client& operator=(const api_client&) = delete;

  /// Checks the flags and sets up the connection (nothing is sent yet).
  /// `--controller` is HOST:PORT (HTTPS with --ca, else HTTP) or a URL
  /// `http://HOST:PORT` / `https://HOST:PORT`.
  /// @returns ec::invalid_argument naming the bad flag; ec::not_found for a
  ///          missing --ca or --token-file.
  caf::error connect(const common_args& a);

  /// GET `path` with extra request headers; @returns the JSON body.
  caf::expected<nlohmann::json>
  get(const std::string& path,
      const std::vector<std::pair<std::string, std::string>>& headers = {});

  /// The last request got no HTTP answer at all (nothing listening, the
  /// connection dropped), as when the controller restarts.
  bool unreachable() const;

  /// GET `path` with a read timeout of `wait_s` seconds beyond --timeout;
  /// @returns the JSON body, or none on 204 No Content.
  caf::expected<std::optional<nlohmann::json>>
  long_poll(const std::string& path, double wait_s);

  /// POST a JSON body to `path`; @returns the JSON answer.
  caf::expected<nlohmann::json> post(const std::string& path,
                                     const nlohmann::json& body);

  /// POST a multipart form to `path`; @returns the JSON answer.
  caf::expected<nlohmann::json> post(const std::string& path,
                                     const std::vector<form_part>& form);

  /// GET `path` into `out` as it arrives.
  /// @returns the number of bytes written.
  caf::expected<uint64_t> download(const std::string& path, std::ostream& out);

private:
  struct impl;
  std::unique_ptr<impl> impl_;
};

/// Connects, runs `fn(client)`, prints an error on stderr and sets
/// `exit_code` to 1 on failure.
void with_controller(const common_args& a, int& exit_code,
                     const std::function<caf::error(api_client&)>& fn);

/// `prefix` + `id` percent-encoded as one path segment + `suffix`.
std::string with_id(const std::string& prefix, const std::string& id,
                    const std::string& suffix = "");

/// Every record of a list route (`{"count", "result"}`), oldest first (by
/// the time the API sorts by without X-Sort-Key: committed_at).
caf::expected<nlohmann::json> list_all(api_client& client,
                                       const std::string& path);

} // namespace rondo::apps
