#pragma once

// The route shapes every FEDn REST v1 record kind shares: a listing with
// paging, filters and /count, and one record by id with FEDn's 404. Every
// listing (models, sessions, rounds, validations, statuses, predictions,
// clients, combiners, packages) goes through add_listing. Included by
// route files only; a .cpp that instantiates these includes
// nlohmann/json.hpp.

#include "api/controller_ask.hpp"
#include "api/json_views.hpp"
#include "api/paging.hpp"
#include "storage/state_store.hpp"

#include <functional>
#include <string>
#include <vector>

namespace rondo::api {

/// FEDn's answer for an unknown id: 404 "Entity with id: <id> not found".
reply not_found(const std::string& id);

/// The records of one kind as listing items.
using item_source = std::function<caf::expected<std::vector<listed>>(
  const controller_context&)>;

/// Every stored record of kind Record, viewed by to_fedn_json and sorted
/// by default on `time(record)` (unix seconds).
template <class Record, class Time>
item_source stored(Time time) {
  return [time](const controller_context& ctx)
           -> caf::expected<std::vector<listed>> {
    auto xs = ctx.state->list<Record>();
    if (!xs)
      return xs.error();
    std::vector<listed> out;
    out.reserve(xs->size());
    for (auto& x : *xs)
      out.push_back(make_listed(to_fedn_json(x), time(x)));
    return out;
  };
}

/// GET /api/v1/<kind>/ ({"count", "result"}, paged and filtered) and GET
/// /api/v1/<kind>/count (the filtered count), admin only.
void add_listing(server& srv, const controller_context& ctx,
                 const std::string& kind, item_source items,
                 filter_aliases aliases = {});

/// GET /api/v1/<kind>/{id}: the item of `items` whose view's `id_field`
/// equals id, or not_found(id); for kinds that are not one stored record
/// each (rounds in progress, clients, combiners).
void add_find(server& srv, const controller_context& ctx,
              const std::string& kind, item_source items,
              const std::string& id_field);

/// GET /api/v1/<kind>/{id}: the stored record's view, or not_found(id).
template <class Record>
void add_get(server& srv, const controller_context& ctx,
             const std::string& kind) {
  srv.route("GET", "/api/v1/" + kind + "/([^/]+)", right::admin,
            [ctx](const request& req) {
              auto& id = req.params.at(0);
              auto x = ctx.state->template get<Record>(id);
              if (!x && x.error() == ec::not_found)
                return not_found(id);
              if (!x)
                return error_reply(x.error());
              return reply::json(to_fedn_json(*x));
            });
}

} // namespace rondo::api
