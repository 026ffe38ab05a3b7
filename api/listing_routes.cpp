#include "api/listing_routes.hpp"

#include <nlohmann/json.hpp>

namespace rondo::api {

reply not_found(const std::string& id) {
  return reply::error(404, "Entity with id: " + id + " not found");
}

void add_listing(server& srv, const controller_context& ctx,
                 const std::string& kind, item_source items,
                 filter_aliases aliases) {
  auto list = [ctx, kind, items, aliases](const request& req,
                                          bool count_only) {
    auto page = parse_paging([&](const char* h) { return req.header(h); });
    if (!page)
      return error_reply(page.error());
    auto xs = items(ctx);
    if (!xs)
      return error_reply(xs.error());
    auto answer = list_answer(std::move(*xs), req.query, *page, kind,
                              aliases);
    if (!answer)
      return error_reply(answer.error());
    return reply::json(count_only ? (*answer)["count"] : *answer);
  };
  auto base = "/api/v1/" + kind;
  srv.route("GET", base + "/?", right::admin,
            [list](const request& req) { return list(req, false); });
  srv.route("GET", base + "/count", right::admin,
            [list](const request& req) { return list(req, true); });
}

void add_find(server& srv, const controller_context& ctx,
              const std::string& kind, item_source items,
              const std::string& id_field) {
  srv.route("GET", "/api/v1/" + kind + "/([^/]+)", right::admin,
            [ctx, items, id_field](const request& req) {
              auto& id = req.params.at(0);
              auto xs = items(ctx);
              if (!xs)
                return error_reply(xs.error());
              for (auto& x : *xs)
                if (auto i = x.view->find(id_field);
                    i != x.view->end() && i->is_string() && *i == id)
                  return reply::json(*x.view);
              return not_found(id);
            });
}

} // namespace rondo::api
