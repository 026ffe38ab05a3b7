#include "gateway/edge.hpp"

#include "gateway/auth.hpp"
#include "gateway/edge_core.hpp"
#include "storage/model_store.hpp"
#include "messages/error.hpp"

#include <caf/atom.hpp>
#include <caf/message.hpp>

#include <grpcpp/health_check_service_interface.h>
#include <grpcpp/resource_quota.h>
#include <grpcpp/security/server_credentials.h>
#include <grpcpp/server.h>
#include <grpcpp/server_builder.h>

#include <chrono>
#include <vector>

namespace rondo::gateway {

namespace detail {

// -- identity -------------------------------------------------------------------

client_identity identify(const fedn::Client& sender,
                         const grpc::CallbackServerContext* ctx) {
  client_identity who;
  who.id = sender.client_id();
  who.name = sender.name();
  // FEDn 0.24's client sets only sender.name in ModelValidation while its
  // `client` metadata carries its id: the metadata outranks the name.
  if (who.id.empty() && ctx != nullptr) {
    auto& md = ctx->client_metadata();
    auto i = md.find("client");
    if (i != md.end())
      who.id.assign(i->second.data(), i->second.size());
  }
  if (who.id.empty())
    who.id = who.name;
  if (who.name.empty())
    who.name = who.id;
  return who;
}

client_info to_info(const client_identity& who) {
  client_info info;
  info.client_id = who.id;
  info.name = who.name;
  return info;
}

// -- edge_core --------------------------------------------------------------------

edge_core::edge_core(caf::actor_system& sys, combiner_actor combiner,
                     std::shared_ptr<storage::model_store> models,
                     std::shared_ptr<storage::state_store> state,
                     edge_config cfg)
  : sys(sys),
    combiner(std::move(combiner)),
    models(std::move(models)),
    state(std::move(state)),
    cfg(std::move(cfg)),
    auth(std::make_shared<authenticator>(
      this->cfg.auth_secret, this->cfg.auth_scheme,
      this->cfg.require_client_identity, this->cfg.token_cache_ttl)) {
}

void edge_core::sent_global_model(const std::string& model_id) {
  constexpr size_t max_remembered = 4096;
  std::lock_guard<std::mutex> guard{globals_mtx_};
  if (!globals_.insert(model_id).second)
    return;
  globals_order_.push_back(model_id);
  if (globals_order_.size() > max_remembered) {
    globals_.erase(globals_order_.front());
    globals_order_.pop_front();
  }
}

bool edge_core::is_global_model(const std::string& model_id) {
  std::lock_guard<std::mutex> guard{globals_mtx_};
  return globals_.count(model_id) > 0;
}

caf::expected<std::shared_ptr<const std::string>>
edge_core::hot_model(const std::string& model_id) {
  constexpr size_t kept = 2;
  if (!is_global_model(model_id))
    return std::shared_ptr<const std::string>{};
  std::lock_guard<std::mutex> guard{hot_mtx_};
  for (auto& [id, bytes] : hot_)
    if (id == model_id)
      return bytes;
  auto reader = models->open_read(model_id);
  if (!reader)
    return reader.error();
  if (reader->info().size_bytes > hot_model_max_bytes)
    return std::shared_ptr<const std::string>{};
  std::string bytes;
  bytes.reserve(reader->info().size_bytes);
  if (auto err = reader->for_each([&bytes](std::string_view chunk) {
        bytes += chunk;
        return caf::error{};
      }))
    return err;
  auto shared = std::make_shared<const std::string>(std::move(bytes));
  hot_.emplace_back(model_id, shared);
  if (hot_.size() > kept)
    hot_.pop_front();
  return shared;
}

bool edge_core::enroll(const std::shared_ptr<pending>& x) {
  std::lock_guard<std::mutex> guard{pending_mtx_};
  if (stopping_)
    return false;
  pending_.emplace(x.get(), x);
  return true;
}

void edge_core::withdraw(const pending* x) {
  std::lock_guard<std::mutex> guard{pending_mtx_};
  pending_.erase(x);
}

void edge_core::stop_all(const grpc::Status& why) {
  std::vector<std::shared_ptr<pending>> xs;
  {
    std::lock_guard<std::mutex> guard{pending_mtx_};
    stopping_ = true;
    for (auto& [ptr, weak] : pending_)
      if (auto x = weak.lock())
        xs.push_back(std::move(x));
  }
  // Outside the lock: cancelling withdraws.
  for (auto& x : xs)
    x->cancel(why);
}

client_session_actor edge_core::cached_session(const std::string& client_id) {
  std::lock_guard<std::mutex> guard{sessions_mtx_};
  auto i = sessions_.find(client_id);
  return i != sessions_.end() ? i->second.session : client_session_actor{};
}

void edge_core::with_session(const client_info& info, session_handler ok,
                             failure_handler fail) {
  lookup(info, std::move(ok), std::move(fail), false);
}

void edge_core::announce(const client_info& info, session_handler ok,
                         failure_handler fail) {
  lookup(info, std::move(ok), std::move(fail), true);
}

void edge_core::lookup(const client_info& info, session_handler ok,
                       failure_handler fail, bool announced) {
  client_session_actor ready;
  bool send = false;
  client_info to_send;
  {
    std::lock_guard<std::mutex> guard{sessions_mtx_};
    auto [i, fresh] = sessions_.try_emplace(info.client_id);
    auto& e = i->second;
    // The combiner keeps the info of a client's latest lookup, so every
    // lookup carries the roles last announced, and an announcement that
    // changes them is a lookup of its own.
    bool changed = fresh
                   || (announced
                       && (e.info.trainer != info.trainer
                           || e.info.validator != info.validator
                           || e.info.name != info.name));
    if (fresh || announced)
      e.info = info;
    if (e.session && !e.in_flight && !changed) {
      ready = e.session;
    } else {
      e.waiters.emplace_back(std::move(ok), std::move(fail));
      if (e.in_flight) {
        e.stale = e.stale || changed;
      } else {
        e.in_flight = true;
        send = true;
        to_send = e.info;
      }
    }
  }
  if (ready)
    ok(ready);
  else if (send)
    send_lookup(info.client_id, std::move(to_send));
}

void edge_core::send_lookup(const std::string& client_id, client_info info) {
  auto self = shared_from_this();
  ask(
    sys, nullptr, combiner, cfg.request_timeout,
    [self, client_id](client_session_actor& session) {
      self->lookup_done(client_id, std::move(session));
    },
    [self, client_id](caf::error& err) {
      self->lookup_done(client_id, std::move(err));
    },
    std::move(info));
}

void edge_core::lookup_done(const std::string& client_id,
                            caf::expected<client_session_actor> result) {
  std::vector<std::pair<session_handler, failure_handler>> waiters;
  client_info again;
  bool resend = false;
  {
    std::lock_guard<std::mutex> guard{sessions_mtx_};
    auto i = sessions_.find(client_id);
    if (i == sessions_.end())
      return;
    auto& e = i->second;
    if (result)
      e.session = *result;
    if (result && e.stale) {
      // Newer roles arrived meanwhile: tell the combiner before anyone
      // proceeds with the old ones.
      e.stale = false;
      resend = true;
      again = e.info;
    } else {
      e.in_flight = false;
      e.stale = false;
      waiters.swap(e.waiters);
    }
  }
  if (resend) {
    send_lookup(client_id, std::move(again));
    return;
  }
  if (result) {
    for (auto& w : waiters)
      w.first(*result);
  } else {
    auto reason = "cannot get the session of client " + client_id + ": "
                  + render(result.error());
    for (auto& w : waiters)
      w.second(reason);
  }
}

void edge_core::touch(const client_info& info) {
  if (auto session = cached_session(info.client_id)) {
    caf::anon_send(session, heartbeat_atom::value);
    return;
  }
  with_session(
    info,
    [](const client_session_actor& session) {
      caf::anon_send(session, heartbeat_atom::value);
    },
    [](const std::string& reason) { spdlog::warn("edge: {}", reason); });
}

void edge_core::uploaded(const std::string& model_id,
                         const std::string& client_id) {
  std::lock_guard<std::mutex> guard{uploads_mtx_};
  uploads_[model_id] = client_id;
}

void edge_core::update_taken(const std::string& model_id) {
  std::lock_guard<std::mutex> guard{uploads_mtx_};
  uploads_.erase(model_id);
}

bool edge_core::take_rejected_upload(const std::string& model_id,
                                     const std::string& client_id) {
  std::lock_guard<std::mutex> guard{uploads_mtx_};
  auto i = uploads_.find(model_id);
  if (i == uploads_.end() || i->second != client_id)
    return false;
  uploads_.erase(i);
  return true;
}

fedn::Client edge_core::me() const {
  fedn::Client c;
  c.set_name(cfg.combiner_id);
  c.set_client_id(cfg.combiner_id);
  c.set_role(fedn::COMBINER);
  return c;
}

} // namespace detail

// -- validate -------------------------------------------------------------------------

caf::error validate(const edge_config& cfg) {
  auto bad = [](const std::string& what) {
    return caf::make_error(ec::invalid_config, "edge " + what);
  };
  if (cfg.combiner_id.empty())
    return bad("combiner_id must not be empty");
  if (cfg.max_model_bytes == 0)
    return bad("max_model_bytes must be > 0");
  if (cfg.chunk_bytes == 0)
    return bad("chunk_bytes must be > 0");
  if (cfg.max_receive_message_bytes < 1024
      || static_cast<uint64_t>(cfg.max_receive_message_bytes)
           < uint64_t{cfg.chunk_bytes} + 1024)
    return bad("max_receive_message_bytes must exceed chunk_bytes plus 1 KiB "
               "of overhead, got "
               + std::to_string(cfg.max_receive_message_bytes));
  if (cfg.max_upload_chunk_bytes == 0
      || static_cast<uint64_t>(cfg.max_receive_message_bytes)
           < uint64_t{cfg.max_upload_chunk_bytes} + 1024)
    return bad("max_upload_chunk_bytes must be > 0 and leave 1 KiB of "
               "max_receive_message_bytes for protobuf overhead, got "
               + std::to_string(cfg.max_upload_chunk_bytes));
  if (cfg.tls_cert_pem.empty() != cfg.tls_key_pem.empty())
    return bad("TLS needs both a certificate and its key (--cert and --key)");
  if (!cfg.tls_ca_pem.empty() && cfg.tls_cert_pem.empty())
    return bad("a client CA (--ca) needs TLS (--cert and --key)");
  if (cfg.require_client_cert && cfg.tls_ca_pem.empty())
    return bad("--require-client-cert needs the CA that signs client "
               "certificates (--ca)");
  if (cfg.auth_scheme.empty()
      || cfg.auth_scheme.find(' ') != std::string::npos)
    return bad("auth_scheme must be one word, got '" + cfg.auth_scheme + "'");
  if (cfg.token_cache_ttl.count() < 0)
    return bad("token_cache_ttl must be >= 0");
  if (cfg.min_recv_ping_interval.count() < 0)
    return bad("min_recv_ping_interval must be >= 0");
  if (cfg.max_ping_strikes < 0)
    return bad("max_ping_strikes must be >= 0");
  if (cfg.keepalive_time.count() <= 0 || cfg.keepalive_timeout.count() <= 0)
    return bad("keepalive_time and keepalive_timeout must be > 0");
  if (cfg.request_timeout.count() <= 0 || cfg.update_timeout.count() <= 0)
    return bad("request_timeout and update_timeout must be > 0");
  if (cfg.client_wait_timeout.count() < 0
      || cfg.start_wait_margin.count() < 0)
    return bad("client_wait_timeout and start_wait_margin must be >= 0");
  if (cfg.shutdown_grace.count() < 0)
    return bad("shutdown_grace must be >= 0");
  return caf::none;
}

// -- combiner_edge --------------------------------------------------------------------

struct combiner_edge::impl {
  std::shared_ptr<detail::edge_core> core;
  std::vector<std::unique_ptr<grpc::Service>> services;
  std::unique_ptr<grpc::Server> server;
  std::mutex mtx;
  uint16_t port = 0;
  bool stopped = false;
};

combiner_edge::combiner_edge(caf::actor_system& sys, combiner_actor combiner,
                             std::shared_ptr<storage::model_store> models,
                             std::shared_ptr<storage::state_store> state,
                             edge_config cfg)
  : impl_(std::make_unique<impl>()) {
  impl_->core = std::make_shared<detail::edge_core>(
    sys, std::move(combiner), std::move(models), std::move(state),
    std::move(cfg));
}

combiner_edge::~combiner_edge() {
  stop();
}

caf::expected<uint16_t> combiner_edge::start(const std::string& host,
                                             uint16_t port) {
  std::lock_guard<std::mutex> guard{impl_->mtx};
  if (impl_->server || impl_->stopped)
    return caf::make_error(ec::invalid_state,
                           "the edge was already started");
  auto& core = impl_->core;
  auto& cfg = core->cfg;
  if (auto err = validate(cfg))
    return err;
  if (host.empty())
    return caf::make_error(ec::invalid_config, "edge host must not be empty");
  // The standard grpc.health.v1.Health service, answering SERVING for "".
  grpc::EnableDefaultHealthCheckService(true);
  grpc::ServerBuilder builder;
  auto address = host.find(':') != std::string::npos && host.front() != '['
                   ? "[" + host + "]:" + std::to_string(port)
                   : host + ":" + std::to_string(port);
  int bound = 0;
  auto tls = !cfg.tls_cert_pem.empty();
  std::shared_ptr<grpc::ServerCredentials> creds;
  if (tls) {
    grpc::SslServerCredentialsOptions opts{
      cfg.require_client_cert
        ? GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY
        : GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE};
    opts.pem_root_certs = cfg.tls_ca_pem;
    opts.pem_key_cert_pairs.push_back({cfg.tls_key_pem, cfg.tls_cert_pem});
    creds = grpc::SslServerCredentials(opts);
  } else {
    creds = grpc::InsecureServerCredentials();
  }
  builder.AddListeningPort(address, creds, &bound);
  builder.SetMaxReceiveMessageSize(cfg.max_receive_message_bytes);
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS,
                             cfg.keepalive_permit_without_calls ? 1 : 0);
  builder.AddChannelArgument(
    GRPC_ARG_HTTP2_MIN_RECV_PING_INTERVAL_WITHOUT_DATA_MS,
    static_cast<int>(cfg.min_recv_ping_interval.count()));
  builder.AddChannelArgument(GRPC_ARG_HTTP2_MAX_PING_STRIKES,
                             cfg.max_ping_strikes);
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_TIME_MS,
                             static_cast<int>(cfg.keepalive_time.count()));
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_TIMEOUT_MS,
                             static_cast<int>(cfg.keepalive_timeout.count()));
  // Keep pinging idle connections (default: stop after 2 pings without
  // data), so a vanished client with an open TaskStream is detected.
  builder.AddChannelArgument(GRPC_ARG_HTTP2_MAX_PINGS_WITHOUT_DATA, 0);
  // gRPC sets SO_REUSEPORT by default: a second combiner on a taken port
  // would start, and clients would be split between the two at random.
  builder.AddChannelArgument(GRPC_ARG_ALLOW_REUSEPORT, 0);
  // Bounded transport memory (see edge_config::grpc_memory_bytes).
  builder.AddChannelArgument(GRPC_ARG_HTTP2_BDP_PROBE, 0);
  if (cfg.grpc_memory_bytes > 0) {
    grpc::ResourceQuota quota{"rondo-edge"};
    quota.Resize(cfg.grpc_memory_bytes);
    builder.SetResourceQuota(quota);
  }
  impl_->services.push_back(detail::make_connector_service(core));
  impl_->services.push_back(detail::make_combiner_service(core));
  impl_->services.push_back(detail::make_model_service(core));
  impl_->services.push_back(detail::make_control_service(core));
  for (auto& s : impl_->services)
    builder.RegisterService(s.get());
  impl_->server = builder.BuildAndStart();
  if (!impl_->server || bound == 0) {
    impl_->server.reset();
    impl_->services.clear();
    return caf::make_error(
      ec::invalid_config,
      "cannot listen on " + address
        + (tls ? " (address in use or not local, or gRPC refused the TLS "
                 "certificate or key: see its log above)"
               : " (address in use or not local?)"));
  }
  impl_->port = static_cast<uint16_t>(bound);
  spdlog::info("edge: combiner {} serving FEDn gRPC on {}:{} ({}{})",
               cfg.combiner_id, host, impl_->port,
               !tls                     ? "plaintext"
               : cfg.require_client_cert ? "mutual TLS"
                                         : "TLS",
               cfg.auth_secret.empty()
                 ? ", no token check"
                 : ", tokens required (scheme " + cfg.auth_scheme + ")");
  return impl_->port;
}

uint16_t combiner_edge::port() const {
  std::lock_guard<std::mutex> guard{impl_->mtx};
  return impl_->port;
}

void combiner_edge::stop() {
  std::lock_guard<std::mutex> guard{impl_->mtx};
  if (impl_->stopped)
    return;
  impl_->stopped = true;
  auto& core = impl_->core;
  // End what would otherwise never end by itself (open streams, calls
  // waiting for a round) and refuse new ones; then give the rest the grace
  // period. Shutdown returns once every call has finished.
  core->stop_all(grpc::Status(grpc::StatusCode::UNAVAILABLE,
                              "combiner " + core->cfg.combiner_id
                                + " is shutting down"));
  if (impl_->server) {
    impl_->server->Shutdown(std::chrono::system_clock::now()
                            + core->cfg.shutdown_grace);
    impl_->server.reset();
    spdlog::info("edge: combiner {} stopped serving", core->cfg.combiner_id);
  }
  impl_->services.clear();
}

} // namespace rondo::gateway
