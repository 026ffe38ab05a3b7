#pragma once

// The controller's operator API: FEDn's REST v1 routes (FEDn 0.33's paths,
// parameters, JSON field names, status codes and paging headers), the live
// dashboard and /metrics, on `rondo controller --http-port`. Each group of
// routes registers itself from its own file.

#include "actors/actors.hpp"
#include "api/http_server.hpp"

#include <caf/fwd.hpp>
#include <caf/timespan.hpp>

#include <filesystem>
#include <memory>
#include <string>

namespace rondo::storage {
class model_store;
class state_store;
} // namespace rondo::storage

namespace rondo::api {

/// What the controller's routes reach. Reads of durable records go to the
/// stores directly (RocksDB is thread-safe); anything that changes the
/// federation or needs live state asks the controller actor, each request
/// bounded by `request_timeout`.
struct controller_context {
  caf::actor_system* sys = nullptr;
  controller_actor controller;
  std::shared_ptr<storage::model_store> models;
  std::shared_ptr<storage::state_store> state;
  /// The API's own files (compute packages, the active helper):
  /// `<db>/api`, created by the controller command.
  std::filesystem::path data_dir;
  /// Bound on each request to the controller actor. Default 30 s.
  caf::timespan request_timeout = std::chrono::seconds(30);
  /// The URL clients and browsers reach this API at, e.g.
  /// "https://ctrl.example:8092" (the dashboard's links, logs).
  std::string public_url;
};

/// Models, sessions, rounds, validations, statuses, predictions, helpers,
/// health and get_controller_status (api/model_routes.cpp,
/// api/session_routes.cpp).
void add_model_routes(server& srv, const controller_context& ctx);
void add_session_routes(server& srv, const controller_context& ctx);

/// Clients (clients/add assignment) and combiners (api/client_routes.cpp).
void add_client_routes(server& srv, const controller_context& ctx);

/// Compute packages (api/package_routes.cpp).
void add_package_routes(server& srv, const controller_context& ctx);

/// The dashboard at `/` and its static files (api/dashboard.cpp).
void add_dashboard_routes(server& srv, const controller_context& ctx);

/// `/metrics`: Prometheus text exposition (api/metrics_routes.cpp).
void add_metrics_routes(server& srv, const controller_context& ctx);

/// Rondo's routes for its operator commands that FEDn lacks: the
/// long-polled session wait (api/operator_routes.cpp).
void add_operator_routes(server& srv, const controller_context& ctx);

/// Every route above.
inline void add_controller_routes(server& srv, const controller_context& ctx) {
  add_model_routes(srv, ctx);
  add_session_routes(srv, ctx);
  add_client_routes(srv, ctx);
  add_package_routes(srv, ctx);
  add_dashboard_routes(srv, ctx);
  add_metrics_routes(srv, ctx);
  add_operator_routes(srv, ctx);
}

} // namespace rondo::api
