#include "api/http_server.hpp"

#include "messages/config_values.hpp"
#include "messages/error.hpp"

#include <httplib.h>
#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <cctype>
#include <exception>
#include <thread>

namespace rondo::api {

namespace {

void send(const reply& r, httplib::Response& res) {
  res.status = r.status;
  for (auto& [k, v] : r.headers)
    res.set_header(k, v);
  res.set_content(r.body, r.content_type.c_str());
}

} // namespace

std::string request::query_or(const std::string& name,
                              const std::string& fallback) const {
  auto i = query.find(name);
  return i == query.end() ? fallback : i->second;
}

std::string request::header(const std::string& name) const {
  auto i = headers.find(ascii_lower(name));
  return i == headers.end() ? std::string{} : i->second;
}

std::string request::form_or(const std::string& name,
                             const std::string& fallback) const {
  auto i = form.find(name);
  return i == form.end() ? fallback : i->second.content;
}

reply reply::json(const nlohmann::json& value, int status) {
  reply r;
  r.status = status;
  r.body = value.dump();
  return r;
}

reply reply::error(int status, const std::string& message) {
  return json(nlohmann::json{{"message", message}}, status);
}

reply reply::bytes(std::string data, std::string content_type, int status) {
  reply r;
  r.status = status;
  r.content_type = std::move(content_type);
  r.body = std::move(data);
  return r;
}

caf::expected<nlohmann::json> parse_json_object(const std::string& text) {
  if (auto problem = json_nesting_problem(text); !problem.empty())
    return caf::make_error(ec::invalid_argument, "body is " + problem);
  auto j = nlohmann::json::parse(text, nullptr, false);
  if (j.is_discarded())
    return caf::make_error(ec::invalid_argument, "body is not JSON");
  if (!j.is_object())
    return caf::make_error(ec::invalid_argument,
                           "body must be a JSON object");
  return j;
}

struct server::impl {
  server_config cfg;
  std::unique_ptr<httplib::Server> http;
  std::thread thread;
  bool tls = false;

  // Checks the caller's token against the route's right. @returns the
  // refusal, or nothing when the request may go on.
  std::optional<reply> admit(right needed, const httplib::Request& req,
                             request& out) const {
    if (needed == right::open || cfg.auth_secret.empty())
      return std::nullopt;
    auto value = req.get_header_value("Authorization");
    if (value.empty())
      return reply::error(401, "authorization required: send "
                               "'Authorization: "
                                 + cfg.auth_scheme + " <token>'");
    auto token = security::token_from_authorization(value, cfg.auth_scheme);
    if (!token)
      return reply::error(401, render(token.error()));
    auto claims = security::verify_token(*token, cfg.auth_secret,
                                         security::unix_now());
    if (!claims)
      return reply::error(401, render(claims.error()));
    if (needed == right::admin && claims->role != security::role::admin)
      return reply::error(403, std::string{"this route needs an admin "
                                           "token, the caller has role "}
                                 + security::to_string(claims->role));
    out.caller = std::move(*claims);
    return std::nullopt;
  }

  void observe(const std::string& route, const std::string& method,
               int status) const {
    if (cfg.observer)
      cfg.observer(route, method, status);
  }
};

server::server(server_config cfg) : impl_(std::make_unique<impl>()) {
  impl_->cfg = std::move(cfg);
  auto& c = impl_->cfg;
  impl_->tls = !c.tls.cert.empty() && !c.tls.key.empty();
  if (impl_->tls)
    impl_->http = std::make_unique<httplib::SSLServer>(c.tls.cert.c_str(),
                                                       c.tls.key.c_str());
  else
    impl_->http = std::make_unique<httplib::Server>();
  auto& http = *impl_->http;
  auto threads = static_cast<size_t>(std::max(1, c.threads));
  http.new_task_queue = [threads] { return new httplib::ThreadPool(threads); };
  http.set_payload_max_length(c.max_body_bytes);
  http.set_read_timeout(c.io_timeout, 0);
  http.set_write_timeout(c.io_timeout, 0);
  http.set_keep_alive_timeout(5);
  // FEDn's client builds some URLs as "<url>/api/v1/..." from a URL that
  // already ends in "/" (package_runtime.py); FEDn's server (Werkzeug)
  // merges the slashes with a 308 redirect, and so does this one.
  http.set_pre_routing_handler(
    [](const httplib::Request& req, httplib::Response& res) {
      if (req.path.find("//") == std::string::npos)
        return httplib::Server::HandlerResponse::Unhandled;
      std::string merged;
      for (auto ch : req.path)
        if (ch != '/' || merged.empty() || merged.back() != '/')
          merged += ch;
      auto query = req.target.find('?');
      if (query != std::string::npos)
        merged += req.target.substr(query);
      res.status = 308;
      res.set_header("Location", merged);
      return httplib::Server::HandlerResponse::Handled;
    });
  auto* self = impl_.get();
  // Reached for a path no route matches, and for errors httplib raises
  // itself (413, 400 on a malformed request): always a JSON body.
  http.set_error_handler(
    [self](const httplib::Request& req, httplib::Response& res) {
      if (!res.body.empty())
        return;
      std::string text;
      if (res.status == 404)
        text = "no route " + req.method + " " + req.path;
      else if (res.status == 413)
        text = "request body larger than "
               + std::to_string(self->cfg.max_body_bytes) + " bytes";
      else
        text = "request refused with HTTP status "
               + std::to_string(res.status);
      send(reply::error(res.status, text), res);
      self->observe("", req.method, res.status);
    });
}

server::~server() {
  stop();
}

void server::route(const std::string& method, const std::string& pattern,
                   right needed, handler h) {
  auto* self = impl_.get();
  auto wrapped = [self, pattern, needed, h = std::move(h), method](
                   const httplib::Request& req, httplib::Response& res) {
    request in;
    in.method = req.method;
    in.path = req.path;
    in.route = pattern;
    for (size_t i = 1; i < req.matches.size(); ++i)
      in.params.push_back(req.matches[i].str());
    for (auto& [k, v] : req.params)
      in.query.emplace(k, v);
    for (auto& [k, v] : req.headers)
      in.headers.emplace(ascii_lower(k), v);
    in.remote_addr = req.remote_addr;
    reply out;
    if (auto refused = self->admit(needed, req, in)) {
      out = std::move(*refused);
    } else {
      in.body = req.body;
      for (auto& [name, part] : req.files)
        in.form.emplace(name,
                        form_file{part.filename, part.content_type,
                                  part.content});
      try {
        out = h(in);
      } catch (const std::exception& e) {
        spdlog::error("http: {} {} failed: {}", method, req.path, e.what());
        out = reply::error(500, std::string{"internal error: "} + e.what());
      }
    }
    send(out, res);
    self->observe(pattern, method, out.status);
  };
  auto& http = *impl_->http;
  if (method == "GET")
    http.Get(pattern, wrapped);
  else if (method == "POST")
    http.Post(pattern, wrapped);
  else if (method == "PUT")
    http.Put(pattern, wrapped);
  else if (method == "PATCH")
    http.Patch(pattern, wrapped);
  else if (method == "DELETE")
    http.Delete(pattern, wrapped);
  else
    throw std::invalid_argument("http route: unknown method " + method);
}

caf::expected<uint16_t> server::start() {
  auto& c = impl_->cfg;
  auto where = c.host + ":" + std::to_string(c.port);
  if (!impl_->http->is_valid())
    return caf::make_error(ec::invalid_argument,
                           "cannot serve HTTPS on " + where
                             + ": the certificate or key does not load");
  int port = c.port;
  if (c.port == 0)
    port = impl_->http->bind_to_any_port(c.host);
  else if (!impl_->http->bind_to_port(c.host, c.port))
    port = -1;
  if (port <= 0)
    return caf::make_error(ec::invalid_argument,
                           "cannot listen on " + where
                             + " (address in use or not local?)");
  impl_->thread = std::thread([http = impl_->http.get()] {
    http->listen_after_bind();
  });
  return static_cast<uint16_t>(port);
}

void server::stop() {
  if (!impl_ || !impl_->thread.joinable())
    return;
  impl_->http->stop();
  impl_->thread.join();
}

const char* server::scheme() const {
  return impl_->tls ? "https" : "http";
}

} // namespace rondo::api
