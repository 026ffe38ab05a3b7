#include "apps/api_client.hpp"

#include "apps/process.hpp"
#include "messages/error.hpp"
#include "security/certs.hpp"

#include <CLI/CLI.hpp>

#include <httplib.h>
#include <nlohmann/json.hpp>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include <cmath>
#include <filesystem>
#include <iomanip>
#include <iostream>
#include <sstream>

namespace rondo::apps {

namespace {

using json = nlohmann::json;

/// The token of --token or the first line of --token-file.
caf::expected<std::string> load_token(const common_args& a) {
  if (a.token_file.empty())
    return a.token;
  if (!a.token.empty())
    return caf::make_error(ec::invalid_argument,
                           "give --token or --token-file, not both");
  std::string text;
  if (auto err = security::read_small_file_into(a.token_file, "--token-file",
                                                text))
    return err;
  auto token = text.substr(0, text.find_first_of("\r\n"));
  while (!token.empty() && token.back() == ' ')
    token.pop_back();
  if (token.empty())
    return caf::make_error(ec::invalid_argument,
                           "--token-file: " + a.token_file
                             + " holds no token");
  return token;
}

/// The `result` list of a paged answer (`{"count", "result"}`).
json result_of(const json& page) {
  auto i = page.find("result");
  return i != page.end() && i->is_array() ? *i : json::array();
}

} // namespace

struct api_client::impl {
  std::unique_ptr<httplib::ClientImpl> http;
  httplib::SSLClient* ssl = nullptr;
  std::string host;
  std::string where;
  double timeout = 30;
  bool unreachable = false;

  /// The JSON of a 2xx answer (`want_json`: the body must be JSON), or an
  /// error naming the controller and the problem.
  caf::expected<json> answer(const std::string& path, httplib::Result res,
                             bool want_json = true) {
    unreachable = !res;
    if (!res)
      return transport_error(res.error());
    auto body = json::parse(res->body, nullptr, false);
    if (res->status / 100 != 2) {
      auto message = body.is_object() && body.contains("message")
                         && body["message"].is_string()
                       ? body["message"].get<std::string>()
                       : res->body.substr(0, 200);
      auto detail = message + " (HTTP " + std::to_string(res->status) + ")";
      switch (res->status) {
        case 401:
          return caf::make_error(ec::unauthenticated,
                                 "the controller at " + where
                                   + " refused the token: " + detail
                                   + "; give an admin token with --token or "
                                     "--token-file");
        case 403:
          return caf::make_error(ec::permission_denied,
                                 "the controller at " + where
                                   + " refused the token's role: " + detail
                                   + "; these commands need an admin token");
        case 404:
          return caf::make_error(ec::not_found, detail);
        case 400:
        case 409:
        case 413:
          return caf::make_error(ec::invalid_argument, detail);
        default:
          return caf::make_error(ec::invalid_state,
                                 "the controller at " + where + " failed "
                                   + path + ": " + detail);
      }
    }
    if (!want_json)
      return json{};
    if (body.is_discarded())
      return caf::make_error(ec::invalid_state,
                             "the controller at " + where + " answered "
                               + path + " with something that is not JSON");
    return body;
  }

  caf::error transport_error(httplib::Error e) {
    std::string why = httplib::to_string(e);
    if (e == httplib::Error::SSLServerVerification && ssl != nullptr) {
      auto result = ssl->get_openssl_verify_result();
      why = result == X509_V_OK
              ? "its certificate does not list the host " + host
                  + " (see `rondo certs issue --host`)"
              : std::string{"its certificate does not verify against "
                            "--ca: "}
                  + X509_verify_cert_error_string(result);
    } else if (e == httplib::Error::SSLConnection)
      why = "no TLS handshake (is it serving plain HTTP? then drop --ca or "
            "use http://)";
    else if (e == httplib::Error::Connection)
      why = "no connection (refused, unreachable or timed out: is the "
            "controller running, and is this its --http-port?)";
    else if (e == httplib::Error::Read)
      why = "no answer within --timeout, or the connection closed (is it "
            "serving HTTPS? then give --ca)";
    return caf::make_error(ec::not_found, "cannot reach a Rondo controller "
                                          "API at "
                                            + where + ": " + why);
  }
};

api_client::api_client() : impl_(std::make_unique<impl>()) {
}

api_client::~api_client() = default;

caf::error api_client::connect(const common_args& a) {
  auto& d = *impl_;
  if (!std::isfinite(a.timeout) || a.timeout <= 0)
    return caf::make_error(ec::invalid_argument,
                           "--timeout must be > 0 seconds");
  auto token = load_token(a);
  if (!token)
    return token.error();
  auto address = a.controller;
  bool https = !a.ca.empty();
  for (auto [prefix, secure] :
       {std::pair{"http://", false}, std::pair{"https://", true}})
    if (address.rfind(prefix, 0) == 0) {
      address = address.substr(std::string{prefix}.size());
      https = secure;
    }
  while (!address.empty() && address.back() == '/')
    address.pop_back();
  std::string problem;
  auto at = parse_endpoint(address, problem);
  if (!problem.empty())
    return caf::make_error(ec::invalid_argument, "--controller: " + problem);
  if (https && !a.ca.empty() && !std::filesystem::exists(a.ca))
    return caf::make_error(ec::not_found, "--ca: no file " + a.ca);
  d.where = std::string{https ? "https://" : "http://"} + address;
  d.host = at.host;
  if (https) {
    auto ssl = std::make_unique<httplib::SSLClient>(at.host, at.port);
    if (a.ca.empty())
      SSL_CTX_set_default_verify_paths(ssl->ssl_context());
    else
      ssl->set_ca_cert_path(a.ca.c_str());
    ssl->enable_server_certificate_verification(true);
    d.ssl = ssl.get();
    d.http = std::move(ssl);
  } else {
    d.http = std::make_unique<httplib::ClientImpl>(at.host, at.port);
  }
  auto whole = static_cast<time_t>(a.timeout);
  auto micros = static_cast<time_t>((a.timeout - whole) * 1e6);
  d.http->set_connection_timeout(whole, micros);
  d.http->set_read_timeout(whole, micros);
  d.http->set_write_timeout(whole, micros);
  d.timeout = a.timeout;
  if (!token->empty())
    d.http->set_bearer_token_auth(token->c_str());
  return caf::none;
}

caf::expected<json>
api_client::get(const std::string& path,
                const std::vector<std::pair<std::string, std::string>>&
                  headers) {
  httplib::Headers hs(headers.begin(), headers.end());
  return impl_->answer(path, impl_->http->Get(path.c_str(), hs));
}

bool api_client::unreachable() const {
  return impl_->unreachable;
}

caf::expected<std::optional<json>>
api_client::long_poll(const std::string& path, double wait_s) {
  auto& d = *impl_;
  d.http->set_read_timeout(static_cast<time_t>(d.timeout + wait_s), 0);
  auto res = d.http->Get(path.c_str());
  auto whole = static_cast<time_t>(d.timeout);
  d.http->set_read_timeout(whole,
                           static_cast<time_t>((d.timeout - whole) * 1e6));
  if (res && res->status == 204)
    return std::optional<json>{};
  auto j = d.answer(path, std::move(res));
  if (!j)
    return j.error();
  return std::optional<json>{std::move(*j)};
}

caf::expected<json> api_client::post(const std::string& path,
                                     const json& body) {
  return impl_->answer(path, impl_->http->Post(path.c_str(), body.dump(),
                                               "application/json"));
}

caf::expected<json> api_client::post(const std::string& path,
                                     const std::vector<form_part>& form) {
  httplib::MultipartFormDataItems items;
  for (auto& x : form)
    items.push_back({x.name, x.content, x.filename, x.content_type});
  return impl_->answer(path, impl_->http->Post(path.c_str(), items));
}

caf::expected<uint64_t> api_client::download(const std::string& path,
                                             std::ostream& out) {
  uint64_t bytes = 0;
  std::string error_body;
  int status = 0;
  auto res = impl_->http->Get(
    path.c_str(),
    [&](const httplib::Response& r) {
      status = r.status;
      return true;
    },
    [&](const char* data, size_t n) {
      if (status / 100 != 2) {
        error_body.append(data, n);
        return true;
      }
      out.write(data, static_cast<std::streamsize>(n));
      bytes += n;
      return static_cast<bool>(out);
    });
  if (res && res->status / 100 != 2)
    res->body = error_body;
  if (auto j = impl_->answer(path, std::move(res), false); !j)
    return j.error();
  return bytes;
}

void with_controller(const common_args& a, int& exit_code,
                     const std::function<caf::error(api_client&)>& fn) {
  api_client client;
  auto err = client.connect(a);
  if (!err)
    err = fn(client);
  if (err) {
    std::cerr << "error: " << render(err) << "\n";
    exit_code = 1;
  }
}

void add_common(CLI::App* cmd, common_args& a) {
  cmd->add_option("--controller", a.controller,
                  "The controller's API: HOST:PORT of `rondo controller "
                  "--http-port` (HTTPS with --ca), or an http:// or "
                  "https:// URL")
    ->capture_default_str();
  cmd->add_option("--timeout", a.timeout,
                  "Seconds each request to the controller may take")
    ->capture_default_str();
  cmd->add_option("--ca", a.ca,
                  "The CA (PEM) the controller's HTTPS certificate must "
                  "verify against; implies HTTPS");
  cmd->add_option("--token", a.token,
                  "An admin token (`rondo token create --role admin`), sent "
                  "as `Authorization: Bearer <token>`");
  cmd->add_option("--token-file", a.token_file,
                  "A file holding the admin token (first line). --ca and a "
                  "token replace the operator's former --cert/--key: the "
                  "API authenticates operators by token, not certificate");
}

std::string with_id(const std::string& prefix, const std::string& id,
                    const std::string& suffix) {
  std::ostringstream os;
  os << prefix;
  for (unsigned char c : id)
    if (std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~')
      os << c;
    else
      os << '%' << std::uppercase << std::hex << std::setw(2)
         << std::setfill('0') << static_cast<int>(c) << std::dec;
  os << suffix;
  return os.str();
}

caf::expected<json> list_all(api_client& client, const std::string& path) {
  auto page = client.get(path, {{"X-Sort-Order", "asc"}});
  if (!page)
    return page.error();
  return result_of(*page);
}

} // namespace rondo::apps
