#pragma once

// `GET /metrics` (Prometheus text exposition of api/metrics.hpp's
// registry), shared by the controller's HTTP port and the combiner's
// `--metrics-port`.

#include "api/controller_api.hpp"

#include <functional>

namespace rondo::api {

/// Adds `GET /metrics` to `srv` with right::admin: with an auth secret,
/// Prometheus must send an admin bearer token (401 without one, 403 with a
/// client token); without a secret it is open. `refresh` (may be empty)
/// runs before each rendering to set the gauges read from stores.
void add_metrics_route(server& srv, std::function<void()> refresh);

/// Sets rondo_models_stored(_bytes) from `models` and, when `state` is not
/// null, rondo_sessions{status} from its session records. A store that
/// cannot be read leaves the gauges as they were (logged).
void refresh_store_gauges(storage::model_store& models,
                          storage::state_store* state);

} // namespace rondo::api
