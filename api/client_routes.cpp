// Clients and combiners (FEDn 0.33's client_routes.py, combiner_routes.py):
// POST /api/v1/clients/add assigns a client to a combiner; the listings
// join the controller's assignments with each combiner's live client
// status, and also list the clients that connected to a combiner directly
// (`rondo client --host --port`, FEDn's --combiner path) without an
// assignment; paged and filtered as every listing
// (api/listing_routes.hpp). POST /api/v1/combiners/{id}/drain and
// /undrain (Rondo's own, for scale-in) start and stop draining a combiner.

#include "api/json_views.hpp"
#include "api/listing_routes.hpp"
#include "api/package_store.hpp"

#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <map>
#include <set>

namespace rondo::api {

namespace {

/// Bound on asking one combiner for its clients' live status.
constexpr auto live_status_bound = std::chrono::seconds(5);

/// FEDn's HTTP_STATUS_PACKAGE_MISSING (fedn_client.py): the client waits
/// and asks again.
constexpr int status_package_missing = 203;

/// A client as a combiner reported it, and which combiner that was.
struct live_client {
  client_record record;
  std::string combiner_id;
};

/// The alive combiners' clients (live status).
struct live_view {
  /// By client id; a client seen online on any combiner is online (and
  /// listed on that combiner).
  std::map<std::string, live_client> by_id;
  /// Each combiner's online clients, by combiner id.
  std::map<std::string, uint64_t> online;
};

/// Asks each alive combiner for its clients (`(get, clients)`); a combiner
/// that does not answer within the bound is left out (its clients show
/// offline, or are not listed when nothing assigned them).
live_view live_clients(const controller_context& ctx,
                       const std::vector<combiner_status>& combiners) {
  live_view out;
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
          for (auto& x : xs) {
            if (x.status == "online")
              ++out.online[c.info.combiner_id];
            auto id = x.client_id;
            auto i = out.by_id.find(id);
            if (i == out.by_id.end() || x.status == "online")
              out.by_id[id] = {std::move(x), c.info.combiner_id};
          }
        },
        [&](caf::error& err) {
          spdlog::warn("combiner {} did not list its clients: {}",
                       c.info.combiner_id, render(err));
        });
  }
  return out;
}

nlohmann::json client_json(const client_assignment_record& a,
                           const live_view& live) {
  auto i = live.by_id.find(a.client_id);
  auto found = i != live.by_id.end();
  auto online = found && i->second.record.status == "online";
  auto last_seen = found && i->second.record.last_seen > 0
                     ? i->second.record.last_seen
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

/// A client that connected to a combiner without an assignment, as FEDn
/// lists a client: Rondo keeps no record of it, so it is listed only while
/// a combiner reports it (FEDn stores a client record on connect); no ip,
/// package or preferred combiner are known.
nlohmann::json client_json(const live_client& c) {
  auto& x = c.record;
  return {{"client_id", x.client_id},
          {"id", x.client_id},
          {"name", x.name.empty() ? x.client_id : x.name},
          {"combiner", c.combiner_id},
          {"combiner_preferred", nullptr},
          {"ip", nullptr},
          {"status", x.status == "online" ? "online" : "offline"},
          {"last_seen", http_date(x.last_seen)},
          {"package", nullptr},
          {"committed_at", nullptr},
          {"updated_at", http_date(x.last_seen)}};
}

/// A combiner as FEDn lists it; `clients_online` counts the clients the
/// combiner reports online, assigned or connected directly.
nlohmann::json combiner_json(const combiner_status& c, const live_view& live) {
  auto i = live.online.find(c.info.combiner_id);
  uint64_t online = i == live.online.end() ? 0 : i->second;
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
          {"draining", c.draining},
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
  live_view live;
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

/// Every client as FEDn lists them: the assigned ones, then those the
/// combiners report without an assignment; sorted by default on when it was
/// assigned (last seen for a client without an assignment).
caf::expected<std::vector<listed>>
all_clients(const controller_context& ctx) {
  auto view = load_view(ctx);
  if (!view)
    return view.error();
  std::vector<listed> out;
  std::set<std::string> assigned;
  for (auto& a : view->assigned) {
    assigned.insert(a.client_id);
    out.push_back(make_listed(client_json(a, view->live), a.assigned_at));
  }
  for (auto& [id, c] : view->live.by_id)
    if (assigned.count(id) == 0)
      out.push_back(make_listed(client_json(c), c.record.last_seen));
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
    out.push_back(make_listed(combiner_json(c, view->live), c.joined_at));
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

/// POST /api/v1/combiners/{id}/drain (`on`) or /undrain: the controller's
/// (drain, id, on); 200 with the combiner as the listing shows it, 404
/// naming an id that never joined.
reply drain_combiner(const controller_context& ctx, const request& req,
                     bool on) {
  auto& id = req.params.at(0);
  auto c = ask_controller<combiner_status>(ctx, drain_atom::value, id, on);
  if (!c && c.error() == ec::not_found)
    return not_found(id);
  if (!c)
    return error_reply(c.error());
  spdlog::info("combiner {} {} on request", id,
               on ? "drains" : "no longer drains");
  return reply::json(combiner_json(*c, live_clients(ctx, {*c})));
}

} // namespace

void add_client_routes(server& srv, const controller_context& ctx) {
  srv.route("POST", "/api/v1/clients/add", right::client,
            [ctx](const request& req) { return add_client(ctx, req); });
  add_listing(srv, ctx, "clients", all_clients);
  add_find(srv, ctx, "clients", all_clients, "client_id");
  add_listing(srv, ctx, "combiners", all_combiners);
  add_find(srv, ctx, "combiners", all_combiners, "combiner_id");
  srv.route("POST", "/api/v1/combiners/([^/]+)/drain", right::admin,
            [ctx](const request& req) {
              return drain_combiner(ctx, req, true);
            });
  srv.route("POST", "/api/v1/combiners/([^/]+)/undrain", right::admin,
            [ctx](const request& req) {
              return drain_combiner(ctx, req, false);
            });
}

} // namespace rondo::api
