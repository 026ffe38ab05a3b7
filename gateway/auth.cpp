#include "gateway/auth.hpp"

#include "messages/error.hpp"

#include <spdlog/spdlog.h>

#include <array>
#include <utility>

namespace rondo::gateway::detail {

namespace {

/// Per-method rights. Methods missing here need admin.
constexpr std::array<std::pair<std::string_view, right>, 24> rights{{
  // fedn.Connector
  {"/fedn.Connector/SendHeartbeat", right::client},
  {"/fedn.Connector/SendStatus", right::client},
  {"/fedn.Connector/AllianceStatusStream", right::client},
  {"/fedn.Connector/ListActiveClients", right::admin},
  {"/fedn.Connector/AcceptingClients", right::admin},
  {"/fedn.Connector/ReassignClient", right::admin},
  {"/fedn.Connector/ReconnectClient", right::admin},
  // fedn.Combiner
  {"/fedn.Combiner/TaskStream", right::client},
  {"/fedn.Combiner/SendModelUpdate", right::client},
  {"/fedn.Combiner/SendModelValidation", right::client},
  {"/fedn.Combiner/SendModelPrediction", right::client},
  {"/fedn.Combiner/SendBackwardCompletion", right::client},
  {"/fedn.Combiner/SendModelMetric", right::client},
  {"/fedn.Combiner/SendAttributeMessage", right::client},
  {"/fedn.Combiner/SendTelemetryMessage", right::client},
  // fedn.ModelService
  {"/fedn.ModelService/Upload", right::client},
  {"/fedn.ModelService/Download", right::client},
  // fedn.Control
  {"/fedn.Control/Start", right::admin},
  {"/fedn.Control/Stop", right::admin},
  {"/fedn.Control/FlushAggregationQueue", right::admin},
  {"/fedn.Control/SetAggregator", right::admin},
  {"/fedn.Control/SetServerFunctions", right::admin},
  {"/fedn.Control/SendCommand", right::admin},
  {"/fedn.Control/GetState", right::admin},
}};

/// Cache bound: one entry per distinct live token (one per client).
constexpr size_t max_cached_tokens = 100000;

std::string peer_of(const grpc::CallbackServerContext* ctx) {
  return ctx != nullptr ? ctx->peer() : std::string{"?"};
}

} // namespace

right required_right(std::string_view method) {
  for (auto& [name, r] : rights)
    if (name == method)
      return r;
  return right::admin;
}

authenticator::authenticator(std::string secret, std::string scheme,
                             bool require_client_identity,
                             std::chrono::seconds cache_ttl)
  : secret_(std::move(secret)),
    scheme_(std::move(scheme)),
    require_client_identity_(require_client_identity),
    cache_ttl_(cache_ttl) {
}

caf::expected<security::token_claims>
authenticator::verify(std::string_view token) {
  auto now = std::chrono::steady_clock::now();
  auto unix = security::unix_now();
  std::string key{token};
  if (cache_ttl_.count() > 0) {
    std::lock_guard<std::mutex> guard{mtx_};
    auto i = cache_.find(key);
    if (i != cache_.end()) {
      if (i->second.until > now
          && (!i->second.claims.expires || *i->second.claims.expires > unix))
        return i->second.claims;
      cache_.erase(i);
    }
  }
  auto claims = security::verify_token(token, secret_, unix);
  if (claims && cache_ttl_.count() > 0) {
    std::lock_guard<std::mutex> guard{mtx_};
    if (cache_.size() >= max_cached_tokens)
      cache_.clear();
    cache_[std::move(key)] = cache_entry{*claims, now + cache_ttl_};
  }
  return claims;
}

grpc::Status authenticator::admit(const grpc::CallbackServerContext* ctx,
                                  std::string_view method, caller& out) {
  std::string_view value;
  if (ctx != nullptr) {
    auto& md = ctx->client_metadata();
    auto i = md.find("authorization");
    if (i != md.end())
      value = std::string_view{i->second.data(), i->second.size()};
  }
  return admit_value(value, method, out, enabled() ? peer_of(ctx) : "");
}

grpc::Status authenticator::admit_value(std::string_view authorization,
                                        std::string_view method, caller& out,
                                        const std::string& peer) {
  out = caller{};
  if (!enabled())
    return grpc::Status::OK;
  out.checked = true;
  auto refuse = [&](grpc::StatusCode code, const std::string& why) {
    spdlog::warn("edge: refused {} from {}: {}", method, peer, why);
    return grpc::Status(code, std::string{method} + ": " + why);
  };
  auto token = security::token_from_authorization(authorization, scheme_);
  if (!token)
    return refuse(grpc::StatusCode::UNAUTHENTICATED,
                  error_detail(token.error()));
  auto claims = verify(*token);
  if (!claims)
    return refuse(grpc::StatusCode::UNAUTHENTICATED,
                  "invalid token: " + error_detail(claims.error()));
  out.role = claims->role;
  out.client = claims->client;
  out.expires = claims->expires;
  if (required_right(method) == right::admin
      && claims->role != security::role::admin)
    return refuse(grpc::StatusCode::PERMISSION_DENIED,
                  std::string{"needs role admin, the token has role "}
                    + to_string(claims->role)
                    + (claims->client.empty() ? ""
                                              : " (client " + claims->client
                                                  + ")"));
  return grpc::Status::OK;
}

grpc::Status authenticator::bind(const caller& c, std::string_view method,
                                 client_identity& who) const {
  if (!c.checked)
    return grpc::Status::OK;
  if (c.client.empty()) {
    if (require_client_identity_ && c.role != security::role::admin) {
      spdlog::warn("edge: refused {} as client '{}': the token names no "
                   "client and the combiner requires one",
                   method, who.id);
      return grpc::Status(grpc::StatusCode::PERMISSION_DENIED,
                          std::string{method}
                            + ": the token names no client (claim client_id) "
                              "and this combiner requires one");
    }
    return grpc::Status::OK;
  }
  if (who.id.empty()) {
    who.id = c.client;
    if (who.name.empty())
      who.name = c.client;
    return grpc::Status::OK;
  }
  if (who.id != c.client) {
    spdlog::warn("edge: refused {}: the token of client '{}' tried to act "
                 "as client '{}'",
                 method, c.client, who.id);
    return grpc::Status(grpc::StatusCode::PERMISSION_DENIED,
                        std::string{method} + ": the token of client '"
                          + c.client + "' may not act as client '" + who.id
                          + "'");
  }
  return grpc::Status::OK;
}

size_t authenticator::cached() const {
  std::lock_guard<std::mutex> guard{mtx_};
  return cache_.size();
}

grpc::Status admit(edge_core& core, const grpc::CallbackServerContext* ctx,
                   std::string_view method, caller* out) {
  caller ignored;
  return core.auth->admit(ctx, method, out != nullptr ? *out : ignored);
}

grpc::Status admit_as(edge_core& core, const grpc::CallbackServerContext* ctx,
                      std::string_view method, client_identity& who,
                      caller* out) {
  caller c;
  if (auto st = core.auth->admit(ctx, method, c); !st.ok())
    return st;
  auto st = core.auth->bind(c, method, who);
  if (out != nullptr)
    *out = std::move(c);
  return st;
}

grpc::ServerUnaryReactor* refuse_unary(grpc::CallbackServerContext* ctx,
                                       const grpc::Status& st) {
  auto* reactor = ctx->DefaultReactor();
  reactor->Finish(st);
  return reactor;
}

} // namespace rondo::gateway::detail
