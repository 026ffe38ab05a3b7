// Clients and combiners (FEDn 0.33's client_routes.py, combiner_routes.py):
// POST /api/v1/clients/add assigns a client to a combiner; the listings
// join the controller's assignments with each combiner's live client
// status; paged and filtered as every listing (api/listing_routes.hpp).

#include "api/json_views.hpp"
#include "api/listing_routes.hpp"
#include "api/package_store.hpp"

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
          {"last_seen", http_date(last_seen)},
          {"package", a.package},
          {"committed_at", http_date(a.assigned_at)},
          {"updated_at", http_date(last_seen)}};
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
          {"committed_at", http_date(c.joined_at)},
          {"updated_at", http_date(c.joined_at)}};
}

/// What the listings join: the controller's combiners, the stored
/// assignments and the combiners' live client status.
struct federation_view {
  std::vector<combiner_status> combiners;
  std::vector<client_assignment_record> assigned;
  std::map<std::string, client_record> live;
};

caf::expected<federation_view> load_view(const controller_context& ctx) {
  federation_view out;
  auto combiners = ask_controller<std::vector<combiner_status>>(
    ctx, caf::get_atom::value, combiners_atom::value);
  if (!combiners)
    return combiners.error();
  out.combiners = std::move(*combiners);
  auto assigned = ctx.state->list<client_assignment_record>();
  if (!assigned)
    return assigned.error();
  out.assigned = std::move(*assigned);
  out.live = live_clients(ctx, out.combiners);
  return out;
}

/// Every client as FEDn lists them, sorted by default on when it was
/// assigned.
caf::expected<std::vector<listed>>
all_clients(const controller_context& ctx) {
  auto view = load_view(ctx);
  if (!view)
    return view.error();
  std::vector<listed> out;
  for (auto& a : view->assigned)
    out.push_back(make_listed(client_json(a, view->live), a.assigned_at));
  return out;
}

/// Every combiner as FEDn lists them, with Rondo's alive and counts,
/// sorted by default on when it joined.
caf::expected<std::vector<listed>>
all_combiners(const controller_context& ctx) {
  auto view = load_view(ctx);
  if (!view)
    return view.error();
  std::vector<listed> out;
  for (auto& c : view->combiners)
    out.push_back(make_listed(combiner_json(c, view->live, view->assigned),
                              c.joined_at));
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
    return error_reply(store.error());
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
                 refusal = error_reply(err);
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
     // The active package's helper, else the one PUT
     // /api/v1/helpers/active set, else FEDn's default numpyhelper.
     {"helper_type", (*store)->active_helper().value_or("numpyhelper")},
     {"client_id", rec.client_id}});
}

} // namespace

void add_client_routes(server& srv, const controller_context& ctx) {
  srv.route("POST", "/api/v1/clients/add", right::client,
            [ctx](const request& req) { return add_client(ctx, req); });
  add_listing(srv, ctx, "clients", all_clients);
  add_find(srv, ctx, "clients", all_clients, "client_id");
  add_listing(srv, ctx, "combiners", all_combiners);
  add_find(srv, ctx, "combiners", all_combiners, "combiner_id");
}

} // namespace rondo::api
