// FEDn 0.33's /api/v1 routes for sessions, rounds, validations, statuses
// and predictions, and its /health and /get_controller_status.

#include "api/listing_routes.hpp"
#include "messages/config_values.hpp"
#include "storage/model_store.hpp"

#include <nlohmann/json.hpp>

#include <optional>
#include <set>

namespace rondo::api {

namespace {

using json = nlohmann::json;

// The session that runs now, if any (from the store: the controller saves
// a session's record when it starts and when it ends).
std::optional<session_record> running_session(const controller_context& ctx) {
  auto xs = ctx.state->list<session_record>();
  if (xs)
    for (auto& x : *xs)
      if (x.status == session_status::running)
        return x;
  return std::nullopt;
}

// Stored rounds, the one in progress included (a global round stores its
// record as it goes).
caf::expected<std::vector<listed>> round_items(const controller_context& ctx) {
  auto xs = ctx.state->list<round_record>();
  if (!xs)
    return xs.error();
  std::vector<listed> out;
  for (auto& x : *xs)
    out.push_back(make_listed(to_fedn_json(x), x.started_at));
  return out;
}

// Stored sessions with their round ids (kept in the state store's round
// index, not in the session record).
caf::expected<std::vector<listed>>
session_items(const controller_context& ctx) {
  auto xs = ctx.state->list<session_record>();
  if (!xs)
    return xs.error();
  std::vector<listed> out;
  for (auto& x : *xs) {
    auto ids = ctx.state->round_ids_of(x);
    if (!ids)
      return ids.error();
    x.round_ids = std::move(*ids);
    out.push_back(make_listed(to_fedn_json(x), x.created_at));
  }
  return out;
}

// The non-empty string at `key`, or "".
std::string required_string(const json& body, const char* key) {
  auto i = body.find(key);
  return i != body.end() && i->is_string() ? i->get<std::string>() : "";
}

std::string text_of(const json& value) {
  return value.is_string() ? value.get<std::string>() : value.dump();
}

// POST /api/v1/sessions/: a pending session, as FEDn's SessionDTO (201).
reply create_session(const controller_context& ctx, const request& req) {
  auto body = parse_json_object(req.body);
  if (!body)
    return error_reply(body.error());
  std::string name;
  std::string seed;
  std::string session_id;
  const json* fedn_config = nullptr;
  for (auto& [key, value] : body->items()) {
    if (key == "session_config") {
      fedn_config = &value;
    } else if (key == "name" || key == "seed_model_id"
               || key == "session_id") {
      if (value.is_null())
        continue;
      if (!value.is_string())
        return reply::error(400, key + " must be a string, got "
                                   + value.dump());
      (key == "name" ? name : key == "seed_model_id" ? seed : session_id)
        = value.get<std::string>();
    } else {
      return reply::error(400, "unknown key '" + key
                                 + "' (a session has session_id, name, "
                                   "seed_model_id, session_config)");
    }
  }
  if (!fedn_config || fedn_config->is_null())
    return reply::error(400, "session_config is required");
  auto cfg = session_config_from_fedn(*fedn_config);
  if (!cfg)
    return error_reply(cfg.error());
  if (!seed.empty() && !cfg->model_id.empty() && seed != cfg->model_id)
    return reply::error(400, "seed_model_id '" + seed
                               + "' differs from session_config.model_id '"
                               + cfg->model_id + "'");
  if (cfg->model_id.empty())
    cfg->model_id = seed;
  if (!cfg->model_id.empty()) {
    auto have = ctx.models->exists(cfg->model_id);
    if (!have || !*have)
      return reply::error(400, "model_id: model '" + cfg->model_id
                                 + "' does not exist");
  }
  cfg->session_id = session_id;
  auto rec = ask_controller<session_record>(ctx, caf::put_atom::value,
                                            session_atom::value, *cfg, name);
  // Without a model_id and with an empty trail there is no seed model: a
  // bad request, not a missing entity.
  if (!rec && rec.error() == ec::not_found)
    return reply::error(400, error_detail(rec.error()));
  if (!rec)
    return error_reply(rec.error());
  return reply::json(to_fedn_json(*rec), 201);
}

// POST /api/v1/sessions/start {session_id, rounds, round_timeout,
// client_ids}: starts a pending session, or continues one that ended.
reply start_session(const controller_context& ctx, const request& req) {
  auto body = parse_json_object(req.body);
  if (!body)
    return error_reply(body.error());
  auto id = required_string(*body, "session_id");
  if (id.empty())
    return reply::error(400, "Session ID is required");
  auto rec = ctx.state->get<session_record>(id);
  if (!rec && rec.error() == ec::not_found)
    return reply::error(400, "Session with specified ID does not exist: "
                               + id);
  if (!rec)
    return error_reply(rec.error());
  if (auto running = running_session(ctx))
    return reply::error(400, "A session is already running! (session "
                               + running->session_id + ")");
  auto cfg = parse_session_config_json(rec->config_json);
  if (!cfg)
    return error_reply(cfg.error());
  cfg->session_id = id;
  // A missing or null `rounds` keeps the session's (FEDn silently keeps it
  // for any non-integer too; Rondo refuses one, as it refuses a bad
  // round_timeout).
  if (auto r = body->find("rounds"); r != body->end() && !r->is_null()) {
    if (!r->is_number_integer())
      return reply::error(400, "rounds must be an integer, got "
                                 + r->dump());
    cfg->rounds = r->get<int64_t>();
  }
  if (auto t = body->find("round_timeout"); t != body->end() && !t->is_null()) {
    auto secs = parse_config_double("round_timeout", text_of(*t));
    if (!secs)
      return error_reply(secs.error());
    cfg->round_timeout = *secs;
  }
  if (auto c = body->find("client_ids"); c != body->end() && !c->is_null()) {
    if (!c->is_string() || c->get<std::string>().empty())
      return reply::error(400, "client_ids must be a comma separated "
                               "string");
    cfg->selected_clients.clear();
    std::string ids = c->get<std::string>();
    for (size_t b = 0; b <= ids.size();) {
      auto e = ids.find(',', b);
      auto one = trim(ids.substr(b, e == std::string::npos ? e : e - b));
      if (one.empty())
        return reply::error(400, "client_ids must be a comma separated "
                                 "string, got '"
                                   + ids + "'");
      cfg->selected_clients.push_back(one);
      if (e == std::string::npos)
        break;
      b = e + 1;
    }
  }
  if (auto err = validate(*cfg))
    return error_reply(err);
  auto started = ask_controller<std::string>(ctx, *cfg);
  if (!started) {
    // FEDn answers a seed model that is gone with 400.
    if (started.error() == ec::not_found)
      return reply::error(400, error_detail(started.error()));
    return error_reply(started.error());
  }
  return reply::json(json{{"message", "Session started"},
                          {"session_id", *started}});
}

// POST /api/v1/sessions/{id}/terminate (FEDn 0.33 has no such route; its
// sessions stop when their status is set to Terminated).
reply terminate_session(const controller_context& ctx, const request& req) {
  auto& id = req.params.at(0);
  if (auto rec = ctx.state->get<session_record>(id); !rec)
    return rec.error() == ec::not_found ? not_found(id)
                                        : error_reply(rec.error());
  auto rep = ask_controller<session_report>(ctx, terminate_atom::value, id);
  if (!rep)
    return error_reply(rep.error());
  return reply::json(to_fedn_json(rep->session));
}

void add_sessions(server& srv, const controller_context& ctx) {
  add_listing(srv, ctx, "sessions", session_items);
  srv.route("POST", "/api/v1/sessions/?", right::admin,
            [ctx](const request& req) { return create_session(ctx, req); });
  srv.route("POST", "/api/v1/sessions/start", right::admin,
            [ctx](const request& req) { return start_session(ctx, req); });
  srv.route("POST", "/api/v1/sessions/([^/]+)/terminate", right::admin,
            [ctx](const request& req) {
              return terminate_session(ctx, req);
            });
  add_find(srv, ctx, "sessions", session_items, "session_id");
}

void add_rounds(server& srv, const controller_context& ctx) {
  add_listing(srv, ctx, "rounds", round_items);
  add_find(srv, ctx, "rounds", round_items, "round_id");
}

void add_validations(server& srv, const controller_context& ctx) {
  // APIClient.get_validations sends camelCase names.
  filter_aliases aliases{{"sessionId", "session_id"},
                         {"modelId", "model_id"},
                         {"correlationId", "correlation_id"},
                         {"roundId", "round_id"}};
  add_listing(srv, ctx, "validations",
              stored<validation_record>(
                [](const validation_record& x) { return x.received_at; }),
              aliases);
  add_get<validation_record>(srv, ctx, "validations");
}

void add_statuses(server& srv, const controller_context& ctx) {
  add_listing(srv, ctx, "statuses",
              stored<status_record>(
                [](const status_record& x) { return x.timestamp; }));
  add_get<status_record>(srv, ctx, "statuses");
}

// Predictions: a prediction round at every combiner; each client's answer
// is stored when the round ends.
void add_predictions(server& srv, const controller_context& ctx) {
  add_listing(srv, ctx, "predictions",
              stored<prediction_record>(
                [](const prediction_record& x) { return x.timestamp; }));
  add_get<prediction_record>(srv, ctx, "predictions");
  srv.route(
    "POST", "/api/v1/predictions/start", right::admin,
    [ctx](const request& req) {
      auto body = parse_json_object(req.body);
      if (!body)
        return error_reply(body.error());
      auto id = required_string(*body, "prediction_id");
      if (id.empty())
        return reply::error(400, "prediction_id is required");
      auto model_id = required_string(*body, "model_id");
      if (!model_id.empty()) {
        if (auto m = ctx.state->get<model_record>(model_id); !m)
          return m.error() == ec::not_found
                   ? reply::error(404, "Model " + model_id + " not found")
                   : error_reply(m.error());
      } else if (auto trail = ctx.state->list<model_record>();
                 trail && trail->empty()) {
        return reply::error(400, "No models available");
      }
      auto started = ask_controller<std::string>(ctx, prediction_atom::value,
                                                 id, model_id);
      if (!started)
        return error_reply(started.error());
      return reply::json(json{{"message", "Prediction session started"},
                              {"prediction_id", *started}});
    });
}

} // namespace

void add_session_routes(server& srv, const controller_context& ctx) {
  add_sessions(srv, ctx);
  add_rounds(srv, ctx);
  add_validations(srv, ctx);
  add_statuses(srv, ctx);
  add_predictions(srv, ctx);
  srv.route("GET", "/health", right::open, [](const request&) {
    return reply::bytes("OK", "text/html; charset=utf-8");
  });
  srv.route("GET", "/get_controller_status", right::admin,
            [ctx](const request&) {
              auto state = ask_controller<std::string>(ctx,
                                                       caf::get_atom::value,
                                                       status_atom::value);
              if (!state)
                return error_reply(state.error());
              return reply::json(json{{"state", *state}});
            });
}

} // namespace rondo::api
