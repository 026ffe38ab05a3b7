// Clients and combiners (FEDn 0.33's client_routes.py, combiner_routes.py):
// POST /api/v1/clients/add assigns a client to a combiner; the listings
// join the controller's assignments with each combiner's live client
// status.

#include "actors/type_ids.hpp"
#include "api/controller_api.hpp"
#include "api/list_page.hpp"
#include "api/package_store.hpp"
#include "messages/error.hpp"
#include "storage/state_store.hpp"

#include <caf/actor_system.hpp>
#include <caf/scoped_actor.hpp>

#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <map>

namespace rondo::api {

namespace {

/// Bound on asking one combiner for its clients' live status.
constexpr auto live_status_bound = std::chrono::seconds(5);

/// FEDn's HTTP_STATUS_PACKAGE_MISSING (fedn_client.py): the client waits
/// and asks again.
constexpr int status_package_missing = 203;

/// Asks the controller for every combiner it knows.
caf::expected<std::vector<combiner_status>>
combiners_of(const controller_context& ctx) {
  caf::scoped_actor self{*ctx.sys};
  caf::expected<std::vector<combiner_status>> out
    = caf::make_error(ec::timeout, "the controller did not answer");
  self
    ->request(ctx.controller, ctx.request_timeout, caf::get_atom::value,
              combiners_atom::value)
    .receive([&](std::vector<combiner_status>& xs) { out = std::move(xs); },
             [&](caf::error& err) { out = std::move(err); });
  return out;
}

/// Each alive combiner's clients (live status), by client id; a combiner
/// that does not answer within the bound is left out (its clients show
/// offline).
std::map<std::string, client_record>
live_clients(const controller_context& ctx,
             const std::vector<combiner_status>& combiners) {
  std::map<std::string, client_record> out;
  caf::scoped_actor self{*ctx.sys};
  auto bound = std::min<caf::timespan>(ctx.request_timeout,
                                       live_status_bound);
  for (auto& c : combiners) {
    if (!c.alive || !c.handle)
      continue;
    self
      ->request(c.handle, bound, caf::get_atom::value, clients_atom::value)
      .receive(
        [&](std::vector<client_record>& xs) {
          for (auto& x : xs)
            // A client seen online anywhere is online.
            if (out.count(x.client_id) == 0 || x.status == "online")
              out[x.client_id] = std::move(x);
        },
        [&](caf::error& err) {
          spdlog::warn("combiner {} did not list its clients: {}",
                       c.info.combiner_id, render(err));
        });
  }
  return out;
}

nlohmann::json client_json(const client_assignment_record& a,
                           const std::map<std::string, client_record>& live) {
  auto i = live.find(a.client_id);
  auto online = i != live.end() && i->second.status == "online";
  auto last_seen = i != live.end() && i->second.last_seen > 0
                     ? i->second.last_seen
                     : a.assigned_at;
  return {{"client_id", a.client_id},
          {"id", a.client_id},
          {"name", a.name},
          {"combiner", a.combiner_id},
          {"combiner_preferred", a.combiner_preferred.empty()
                                   ? nlohmann::json(nullptr)
                                   : nlohmann::json(a.combiner_preferred)},
          {"ip", a.ip},
          {"status", online ? "online" : "offline"},
          {"last_seen", iso_time(last_seen)},
          {"package", a.package},
          {"committed_at", iso_time(a.assigned_at)},
          {"updated_at", iso_time(last_seen)}};
}

nlohmann::json combiner_json(const combiner_status& c,
                             const std::map<std::string, client_record>& live,
                             const std::vector<client_assignment_record>& as) {
  uint64_t online = 0;
  for (auto& a : as)
    if (a.combiner_id == c.info.combiner_id) {
      auto i = live.find(a.client_id);
      if (i != live.end() && i->second.status == "online")
        ++online;
    }
  return {{"combiner_id", c.info.combiner_id},
          {"id", c.info.combiner_id},
          {"name", c.info.combiner_id},
          {"address", c.info.host},
          {"fqdn", c.info.fqdn},
          {"ip", c.info.ip},
          {"port", c.info.port},
          {"parent", {{"name", "controller"}, {"type", "controller"}}},
          {"tls", c.info.tls},
          {"status", c.alive ? "online" : "offline"},
          {"alive", c.alive},
          {"clients_assigned", c.clients_assigned},
          {"clients_online", online},
          {"committed_at", iso_time(c.joined_at)},
          {"updated_at", iso_time(c.joined_at)}};
}

reply storage_failure(const caf::error& err) {
  return reply::error(500, render(err));
}

/// Every client as FEDn lists them, and the request's status.
caf::expected<nlohmann::json> all_clients(const controller_context& ctx) {
  auto combiners = combiners_of(ctx);
  if (!combiners)
    return combiners.error();
  auto assigned = ctx.state->list<client_assignment_record>();
  if (!assigned)
    return assigned.error();
  auto live = live_clients(ctx, *combiners);
  auto out = nlohmann::json::array();
  for (auto& a : *assigned)
    out.push_back(client_json(a, live));
  return out;
}

caf::expected<nlohmann::json> all_combiners(const controller_context& ctx) {
  auto combiners = combiners_of(ctx);
  if (!combiners)
    return combiners.error();
  auto assigned = ctx.state->list<client_assignment_record>();
  if (!assigned)
    return assigned.error();
  auto live = live_clients(ctx, *combiners);
  auto out = nlohmann::json::array();
  for (auto& c : *combiners)
    out.push_back(combiner_json(c, live, *assigned));
  return out;
}

/// A JSON string field of the body, or "" when absent or null.
caf::expected<std::string> text_field(const nlohmann::json& body,
                                      const char* key) {
  auto i = body.find(key);
  if (i == body.end() || i->is_null())
    return std::string{};
  if (!i->is_string())
    return caf::make_error(ec::invalid_argument,
                           std::string{key} + " must be a string");
  return i->get<std::string>();
}

reply add_client(const controller_context& ctx, const request& req) {
  auto body = parse_json_object(req.body);
  if (!body)
    return reply::error(400, error_detail(body.error()));
  client_assignment_record rec;
  for (auto [field, key] :
       {std::pair{&rec.client_id, "client_id"}, std::pair{&rec.name, "name"},
        std::pair{&rec.package, "package"}}) {
    auto value = text_field(*body, key);
    if (!value)
      return reply::error(400, error_detail(value.error()));
    *field = std::move(*value);
  }
  // FEDn's route reads "combiner_preferred"; FEDn's client sends
  // "preferred_combiner". Either is honoured.
  for (auto key : {"combiner_preferred", "preferred_combiner"}) {
    auto value = text_field(*body, key);
    if (!value)
      return reply::error(400, error_detail(value.error()));
    if (!value->empty())
      rec.combiner_preferred = std::move(*value);
  }
  if (rec.client_id.empty())
    return reply::error(400, "client_id is required");
  if (rec.name.empty())
    rec.name = rec.client_id;
  if (rec.package.empty())
    rec.package = "local";
  if (rec.package != "local" && rec.package != "remote")
    return reply::error(400, "package must be 'local' or 'remote', got '"
                               + rec.package + "'");
  if (req.caller && !req.caller->client.empty()
      && req.caller->client != rec.client_id)
    return reply::error(403, "this token is for client '"
                               + req.caller->client
                               + "' and cannot add client '" + rec.client_id
                               + "'");
  rec.ip = req.remote_addr;
  auto store = package_store::open(ctx.data_dir);
  if (!store)
    return storage_failure(store.error());
  auto active = (*store)->active();
  if (rec.package == "remote" && !active)
    return reply::json({{"success", false},
                        {"status", "retry"},
                        {"message", "No compute package found. Set package "
                                    "in controller."}},
                       status_package_missing);
  caf::scoped_actor self{*ctx.sys};
  std::optional<combiner_status> chosen;
  reply refusal;
  self->request(ctx.controller, ctx.request_timeout, caf::put_atom::value, rec)
    .receive([&](combiner_status& c) { chosen = std::move(c); },
             [&](caf::error& err) {
               if (err == ec::invalid_state)
                 // FEDn answers 400 here; "status": "retry" tells Rondo's
                 // client to ask again (FEDn's client ignores it).
                 refusal = reply::json({{"success", false},
                                        {"status", "retry"},
                                        {"message", "No combiner available."}},
                                       400);
               else if (err == ec::not_found)
                 refusal = reply::json({{"success", false},
                                        {"message", error_detail(err)}},
                                       400);
               else
                 refusal = reply::error(500, render(err));
             });
  if (!chosen)
    return refusal;
  spdlog::info("client {} ({}) assigned to combiner {}", rec.client_id,
               rec.name, chosen->info.combiner_id);
  return reply::json(
    {{"status", "assigned"},
     {"host", chosen->info.host},
     {"fqdn", chosen->info.fqdn},
     {"package", rec.package},
     {"ip", chosen->info.ip},
     {"port", chosen->info.port},
     {"tls", chosen->info.tls},
     {"combiner", chosen->info.combiner_id},
     {"helper_type", active ? active->helper : std::string{"numpyhelper"}},
     {"client_id", rec.client_id}});
}

/// Answers the one item of `items` whose `key` is `id`, else 404.
reply one_of(const caf::expected<nlohmann::json>& items, const char* key,
             const std::string& id, const char* kind) {
  if (!items)
    return storage_failure(items.error());
  for (auto& item : *items)
    if (item.value(key, "") == id)
      return reply::json(item);
  return reply::error(404, std::string{kind} + " " + id + " not found");
}

} // namespace

void add_client_routes(server& srv, const controller_context& ctx) {
  srv.route("POST", "/api/v1/clients/add", right::client,
            [ctx](const request& req) { return add_client(ctx, req); });
  srv.route("GET", "/api/v1/clients/?", right::admin,
            [ctx](const request& req) {
              auto items = all_clients(ctx);
              if (!items)
                return storage_failure(items.error());
              return reply::json(list_page(std::move(*items), req,
                                           "committed_at"));
            });
  srv.route("GET", "/api/v1/clients/count", right::admin,
            [ctx](const request& req) {
              auto items = all_clients(ctx);
              if (!items)
                return storage_failure(items.error());
              return reply::json(list_count(*items, req));
            });
  srv.route("GET", "/api/v1/clients/([^/]+)", right::admin,
            [ctx](const request& req) {
              return one_of(all_clients(ctx), "client_id", req.params.at(0),
                            "client");
            });
  srv.route("GET", "/api/v1/combiners/?", right::admin,
            [ctx](const request& req) {
              auto items = all_combiners(ctx);
              if (!items)
                return storage_failure(items.error());
              return reply::json(list_page(std::move(*items), req,
                                           "committed_at"));
            });
  srv.route("GET", "/api/v1/combiners/count", right::admin,
            [ctx](const request& req) {
              auto items = all_combiners(ctx);
              if (!items)
                return storage_failure(items.error());
              return reply::json(list_count(*items, req));
            });
  srv.route("GET", "/api/v1/combiners/([^/]+)", right::admin,
            [ctx](const request& req) {
              return one_of(all_combiners(ctx), "combiner_id",
                            req.params.at(0), "combiner");
            });
}

} // namespace rondo::api
