#include "client/api_join.hpp"

#include "client/package_archive.hpp"
#include "client/stop_source.hpp"
#include "messages/error.hpp"

#include <httplib.h>
#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <chrono>
#include <memory>

namespace rondo::client {

namespace {

/// The URL without a trailing "/", and its scheme://host:port part.
std::string base_of(const std::string& url) {
  auto out = url;
  while (!out.empty() && out.back() == '/')
    out.pop_back();
  return out;
}

std::unique_ptr<httplib::Client> make_client(const api_config& cfg) {
  auto cli = std::make_unique<httplib::Client>(base_of(cfg.url));
  auto secs = static_cast<time_t>(cfg.request_timeout_s);
  auto usecs = static_cast<time_t>((cfg.request_timeout_s - secs) * 1e6);
  cli->set_connection_timeout(secs, usecs);
  cli->set_read_timeout(secs, usecs);
  cli->set_write_timeout(secs, usecs);
  if (!cfg.ca_file.empty())
    cli->set_ca_cert_path(cfg.ca_file);
  cli->enable_server_certificate_verification(true);
  return cli;
}

httplib::Headers auth_headers(const api_config& cfg) {
  httplib::Headers h;
  if (!cfg.token.empty())
    h.emplace("Authorization", cfg.auth_scheme + " " + cfg.token);
  return h;
}

/// The API's `message` field, or the body's start.
std::string message_of(const std::string& body) {
  auto j = nlohmann::json::parse(body, nullptr, false);
  if (j.is_object() && j.contains("message") && j["message"].is_string())
    return j["message"].get<std::string>();
  return body.substr(0, 200);
}

/// Maps a refused answer to an error naming the route.
caf::error http_error(const std::string& what, int status,
                      const std::string& body) {
  auto text = what + ": HTTP " + std::to_string(status) + ": "
              + message_of(body);
  if (status == 401)
    return caf::make_error(ec::unauthenticated, text);
  if (status == 403)
    return caf::make_error(ec::permission_denied, text);
  if (status == 404)
    return caf::make_error(ec::not_found, text);
  if (status >= 400 && status < 500)
    return caf::make_error(ec::invalid_argument, text);
  return caf::make_error(ec::unspecified, text);
}

std::string get_string(const nlohmann::json& j, const char* key) {
  auto i = j.find(key);
  return i != j.end() && i->is_string() ? i->get<std::string>()
                                        : std::string{};
}

/// GETs `path`. @returns the body of a 200 answer; the refusal as
/// `http_error`; ec::unspecified when the API cannot be reached.
caf::expected<std::string> get_ok(httplib::Client& cli, const api_config& cfg,
                                  const std::string& path) {
  auto url = base_of(cfg.url) + path;
  auto res = cli.Get(path.c_str(), auth_headers(cfg));
  if (!res)
    return caf::make_error(ec::unspecified, "cannot reach " + url + ": "
                                              + httplib::to_string(
                                                res.error()));
  if (res->status != 200)
    return http_error(url, res->status, res->body);
  return std::move(res->body);
}

} // namespace

caf::expected<assignment> join_via_api(const api_config& cfg,
                                       const join_request& req,
                                       stop_source& stop) {
  nlohmann::json body{{"client_id", req.client_id},
                      {"name", req.name},
                      {"package", req.package}};
  // FEDn's client sends "preferred_combiner"; FEDn's route reads
  // "combiner_preferred". Rondo's route reads both.
  if (!req.preferred_combiner.empty())
    body["preferred_combiner"] = req.preferred_combiner;
  auto cli = make_client(cfg);
  auto deadline = std::chrono::steady_clock::now()
                  + std::chrono::duration_cast<std::chrono::nanoseconds>(
                    std::chrono::duration<double>(cfg.retry_for_s));
  auto wait = cfg.retry_initial_s;
  auto url = base_of(cfg.url) + "/api/v1/clients/add";
  for (;;) {
    std::string last;
    auto res = cli->Post("/api/v1/clients/add", auth_headers(cfg),
                         body.dump(), "application/json");
    if (!res) {
      last = "cannot reach " + url + ": "
             + httplib::to_string(res.error());
    } else {
      auto j = nlohmann::json::parse(res->body, nullptr, false);
      auto retry = j.is_object() && get_string(j, "status") == "retry";
      if (res->status == 200 && j.is_object()) {
        assignment out;
        out.client_id = get_string(j, "client_id");
        out.combiner = get_string(j, "combiner");
        out.host = get_string(j, "host");
        out.fqdn = get_string(j, "fqdn");
        out.ip = get_string(j, "ip");
        out.helper_type = get_string(j, "helper_type");
        out.package = get_string(j, "package");
        auto port = j.value("port", 0);
        if (out.host.empty() || port <= 0 || port > 65535)
          return caf::make_error(ec::invalid_argument,
                                 url + " answered no combiner host or port: "
                                   + res->body.substr(0, 200));
        out.port = static_cast<uint16_t>(port);
        out.tls = j.value("tls", false);
        if (!out.fqdn.empty()) {
          // FEDn's client dials fqdn:443 over TLS whenever fqdn is set.
          out.host = out.fqdn;
          out.port = 443;
        }
        if (out.port == 443)
          out.tls = true;
        if (out.client_id.empty())
          out.client_id = req.client_id;
        return out;
      }
      if (!retry)
        return http_error(url, res->status, res->body);
      last = url + " answered HTTP " + std::to_string(res->status) + ": "
             + message_of(res->body);
    }
    auto now = std::chrono::steady_clock::now();
    if (now >= deadline)
      return caf::make_error(ec::timeout,
                             "no combiner assignment within "
                               + std::to_string(
                                 static_cast<int>(cfg.retry_for_s))
                               + " s; last answer: " + last);
    spdlog::info("{}; asking again in {:.1f} s", last, wait);
    auto pause = std::min(
      std::chrono::duration_cast<std::chrono::steady_clock::duration>(
        std::chrono::duration<double>(wait)),
      deadline - now);
    if (stop.wait_for(pause))
      return caf::make_error(ec::terminated, "stopped while joining via "
                                               + url);
    wait = std::min(wait * 2, cfg.retry_max_s);
  }
}

caf::expected<std::filesystem::path>
fetch_package(const api_config& cfg, const std::filesystem::path& dest) {
  auto cli = make_client(cfg);
  auto sum = get_ok(*cli, cfg, "/api/v1/packages/checksum");
  if (!sum)
    return sum.error();
  auto j = nlohmann::json::parse(*sum, nullptr, false);
  auto expected = j.is_object() ? get_string(j, "checksum") : std::string{};
  if (expected.empty())
    return caf::make_error(ec::invalid_argument,
                           base_of(cfg.url)
                             + "/api/v1/packages/checksum answered no "
                               "checksum: "
                             + sum->substr(0, 200));
  // A package may be large: a longer bound than one API call.
  cli->set_read_timeout(std::max<time_t>(
    600, static_cast<time_t>(cfg.request_timeout_s)));
  auto pkg = get_ok(*cli, cfg, "/api/v1/packages/download");
  if (!pkg)
    return pkg.error();
  auto got = sha256_hex(*pkg);
  if (got != expected)
    return caf::make_error(ec::corrupt,
                           "the downloaded compute package's sha256 is " + got
                             + ", the controller's checksum is " + expected);
  spdlog::info("downloaded the compute package ({} bytes, sha256 {})",
               pkg->size(), got);
  return unpack_package_archive(*pkg, dest);
}

} // namespace rondo::client
