#include "api/metrics_routes.hpp"

#include "api/controller_api.hpp"
#include "api/metrics.hpp"
#include "messages/error.hpp"
#include "storage/model_store.hpp"
#include "storage/state_store.hpp"

#include <spdlog/spdlog.h>

#include <map>

namespace rondo::api {

void add_metrics_route(server& srv, std::function<void()> refresh) {
  srv.route("GET", "/metrics", right::admin,
            [refresh = std::move(refresh)](const request&) {
              if (refresh)
                refresh();
              return reply::bytes(metrics::render(), metrics::content_type);
            });
}

void refresh_store_gauges(storage::model_store& models,
                          storage::state_store* state) {
  if (auto list = models.list()) {
    uint64_t bytes = 0;
    for (auto& m : *list)
      bytes += m.size_bytes;
    metrics::set_models_stored(list->size(), bytes);
  } else {
    spdlog::warn("metrics: cannot list the models: {}",
                 render(list.error()));
  }
  if (state == nullptr)
    return;
  if (auto sessions = state->list<session_record>()) {
    std::map<session_status, int64_t> by_status;
    for (auto& s : *sessions)
      ++by_status[s.status];
    metrics::set_sessions(by_status);
  } else {
    spdlog::warn("metrics: cannot list the sessions: {}",
                 render(sessions.error()));
  }
}

void add_metrics_routes(server& srv, const controller_context& ctx) {
  add_metrics_route(srv, [models = ctx.models, state = ctx.state] {
    refresh_store_gauges(*models, state.get());
  });
}

} // namespace rondo::api
