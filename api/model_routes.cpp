// FEDn 0.33's /api/v1/models and /api/v1/helpers routes on the
// controller's model trail.

#include "api/listing_routes.hpp"
#include "api/package_store.hpp"
#include "messages/config_values.hpp"
#include "model/npz.hpp"
#include "model/validate.hpp"
#include "storage/model_store.hpp"
#include "storage/state_store.hpp"

#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <map>

namespace rondo::api {

using json = nlohmann::json;

int http_status(const caf::error& err) {
  if (err.category() != caf::atom("rondo"))
    return err == caf::sec::request_timeout ? 504 : 500;
  switch (static_cast<ec>(err.code())) {
    case ec::not_found: return 404;
    case ec::invalid_config:
    case ec::invalid_argument:
    case ec::malformed_model:
    case ec::invalid_state:
    case ec::already_exists:
    case ec::shape_mismatch:
    case ec::non_finite:
    case ec::too_large: return 400;
    case ec::timeout: return 504;
    default: return 500;
  }
}

reply error_reply(const caf::error& err) {
  return reply::error(http_status(err), error_detail(err));
}

namespace {

// GET /api/v1/models/{id}/ancestors: the model's parents, nearest first
// (X-Reverse: true, oldest first), at most X-Limit (default 10, FEDn's) of
// them, plus the model itself first with include_self=true (as FEDn's
// route documents it).
reply ancestors(const controller_context& ctx, const request& req) {
  auto& id = req.params.at(0);
  auto page = parse_paging_values(req.header("X-Limit"), "", "", "");
  if (!page)
    return error_reply(page.error());
  auto limit = page->limit == 0 ? size_t{10} : page->limit;
  auto self = ctx.state->get<model_record>(id);
  if (!self && self.error() == ec::not_found)
    return not_found(id);
  if (!self)
    return error_reply(self.error());
  json out = json::array();
  if (ascii_lower(req.query_or("include_self")) == "true")
    out.push_back(to_fedn_json(*self));
  auto parent = self->parent_id;
  for (size_t i = 0; i < limit && !parent.empty(); ++i) {
    auto m = ctx.state->get<model_record>(parent);
    if (!m)
      break;
    out.push_back(to_fedn_json(*m));
    parent = m->parent_id;
  }
  if (ascii_lower(req.header("X-Reverse")) == "true")
    std::reverse(out.begin(), out.end());
  return reply::json(out);
}

// POST /api/v1/models/: FEDn's set_active_model. The npz is checked here
// (a readable archive of finite tensors) and added to the trail by the
// controller as a seed, under the form field `model_id` when given (`rondo
// seed --model-id`), else a new UUID. An id the trail has is refused with
// 409 naming it; the stored model is untouched (the model store refuses to
// write an id twice).
reply upload_model(const controller_context& ctx, const request& req) {
  auto part = req.form.find("file");
  if (part == req.form.end())
    return reply::error(400, "no 'file' field: send the model as "
                             "multipart/form-data field 'file'");
  auto model_id = req.form_or("model_id");
  if (req.form.count("model_id") > 0) {
    if (auto err = storage::validate_model_id(model_id))
      return reply::error(400, "model_id: " + error_detail(err));
    // The id is a path segment of /api/v1/models/{id}.
    if (model_id.find('/') != std::string::npos)
      return reply::error(400, "model_id must not contain '/', got '"
                                 + model_id + "'");
  }
  auto helper = req.form_or("helper", "numpyhelper");
  if (helper != "numpyhelper")
    return reply::error(400, "helper must be 'numpyhelper' (the one model "
                             "helper Rondo has), got '"
                               + helper + "'");
  auto bytes = std::make_shared<const std::string>(part->second.content);
  auto reader = npz_reader::open_bytes(bytes);
  if (!reader)
    return reply::error(400, "the file is not a valid npz model: "
                               + error_detail(reader.error()));
  if ((*reader)->spec().empty())
    return reply::error(400, "the file is not a valid npz model: it has "
                             "no tensors");
  if (auto err = check_finite(**reader))
    return reply::error(400, "the model is not usable: "
                               + error_detail(err));
  auto rec = ask_controller<model_record>(ctx, caf::put_atom::value,
                                          model_blob{model_id, bytes});
  if (!rec && rec.error() == ec::already_exists)
    return reply::error(409, "model_id: model '" + model_id
                               + "' already exists in the trail");
  if (!rec)
    return error_reply(rec.error());
  // A seed makes its helper the active one when none is (FEDn's
  // APIClient.set_active_model PUTs it first; `rondo seed` does not), so
  // that APIClient.start_session finds an active helper.
  if (auto store = package_store::open(ctx.data_dir);
      store && !(*store)->active_helper())
    if (auto err = (*store)->set_active_helper(helper))
      spdlog::warn("cannot make {} the active helper: {}", helper,
                   render(err));
  return reply::json(json{{"success", true},
                          {"message", "Model added successfully"},
                          {"model_id", rec->model_id}});
}

// POST /api/v1/models/prune {"keep": N}: Rondo's own operator route
// (`rondo models prune --keep N`; FEDn has none). The controller keeps the
// bytes of the newest N models of the trail and of the protected ones (see
// storage::prune_trail) and deletes the others'; the trail records stay.
// Answers {"removed": [ids, oldest first], "keep": N}; 400 naming `keep`
// unless it is an integer >= 1.
reply prune_models(const controller_context& ctx, const request& req) {
  auto body = parse_json_object(req.body);
  if (!body)
    return error_reply(body.error());
  auto k = body->find("keep");
  if (k == body->end() || !k->is_number_integer())
    return reply::error(400, "keep is required: the number of newest models "
                             "to keep, an integer >= 1"
                               + (k == body->end() ? std::string{}
                                                   : ", got " + k->dump()));
  if (k->get<int64_t>() < 1)
    return reply::error(400, "keep must be at least 1 (the newest model of "
                             "the trail is always kept), got "
                               + k->dump());
  auto keep = k->get<uint64_t>();
  auto removed = ask_controller<std::vector<std::string>>(
    ctx, prune_atom::value, keep);
  if (!removed)
    return error_reply(removed.error());
  return reply::json(json{{"removed", *removed}, {"keep", keep}});
}

// GET /api/v1/models/{id}/download: the model's npz bytes; 404 naming the
// id when the trail has no such model, or naming it as pruned when its
// record stays but its bytes were deleted (`rondo models prune`).
reply download_model(const controller_context& ctx, const request& req) {
  auto& id = req.params.at(0);
  if (auto m = ctx.state->get<model_record>(id); !m)
    return m.error() == ec::not_found ? not_found(id) : error_reply(m.error());
  auto bytes = ctx.models->get(id);
  if (!bytes && bytes.error() == ec::not_found)
    return reply::error(404, "model " + id + " was pruned: its trail record "
                             "stays, its bytes were deleted");
  if (!bytes)
    return error_reply(bytes.error());
  auto r = reply::bytes(std::move(*bytes), "application/octet-stream");
  r.headers.emplace_back("Content-Disposition", "attachment; filename=" + id);
  return r;
}

// GET /api/v1/helpers/active: the active helper (package_store's
// active_helper) as a JSON string, or FEDn's 404 when there is none.
reply get_helper(const controller_context& ctx) {
  auto store = package_store::open(ctx.data_dir);
  if (!store)
    return error_reply(store.error());
  auto name = (*store)->active_helper();
  if (!name)
    return reply::error(404, "No active helper");
  return reply::json(*name);
}

// PUT /api/v1/helpers/active {"helper": "numpyhelper"}: the helper for
// when no compute package is active.
reply put_helper(const controller_context& ctx, const request& req) {
  auto body = parse_json_object(req.body);
  if (!body)
    return error_reply(body.error());
  auto i = body->find("helper");
  if (i == body->end() || !i->is_string())
    return reply::error(400, "helper is required: a string");
  if (i->get<std::string>() != "numpyhelper")
    return reply::error(400, "helper must be 'numpyhelper' (the one model "
                             "helper Rondo has), got '"
                               + i->get<std::string>() + "'");
  auto store = package_store::open(ctx.data_dir);
  if (!store)
    return error_reply(store.error());
  if (auto err = (*store)->set_active_helper(i->get<std::string>()))
    return error_reply(err);
  return reply::json(json{{"message", "Active helper set"}});
}

} // namespace

void add_model_routes(server& srv, const controller_context& ctx) {
  const std::string base = "/api/v1/models";
  // FEDn's filters are the view's fields (model_id, parent_model,
  // session_id, ...).
  add_listing(srv, ctx, "models",
              stored<model_record>(
                [](const model_record& m) { return m.committed_at; }));
  srv.route("POST", base + "/?", right::admin, [ctx](const request& req) {
    return upload_model(ctx, req);
  });
  add_get<model_record>(srv, ctx, "models");
  srv.route("GET", base + "/([^/]+)/ancestors", right::admin,
            [ctx](const request& req) { return ancestors(ctx, req); });
  srv.route("POST", base + "/prune", right::admin,
            [ctx](const request& req) { return prune_models(ctx, req); });
  srv.route("GET", base + "/([^/]+)/download", right::admin,
            [ctx](const request& req) { return download_model(ctx, req); });
  srv.route("GET", "/api/v1/helpers/active", right::admin,
            [ctx](const request&) { return get_helper(ctx); });
  srv.route("PUT", "/api/v1/helpers/active", right::admin,
            [ctx](const request& req) { return put_helper(ctx, req); });
}

} // namespace rondo::api
