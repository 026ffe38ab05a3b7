// Compute packages (FEDn 0.33's package_routes.py): upload (checked, then
// active), listing, the active package, its checksum and download.

#include "api/json_views.hpp"
#include "api/listing_routes.hpp"
#include "api/package_store.hpp"
#include "messages/error.hpp"

#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

namespace rondo::api {

namespace {

/// FEDn's PackageDTO.to_dict(), plus the checksum and size.
nlohmann::json package_json(const package_info& p) {
  return {{"id", p.package_id},
          {"package_id", p.package_id},
          {"name", p.name},
          {"description", p.description},
          {"file_name", p.file_name},
          {"helper", p.helper},
          {"storage_file_name", p.storage_file_name},
          {"checksum", p.checksum},
          {"size_bytes", p.size_bytes},
          {"active", p.active},
          {"committed_at", http_date(p.committed_at)}};
}

/// The package named by the `name` query parameter (its storage file name,
/// as FEDn's, or its id), else the active one.
std::optional<package_info> named_or_active(const package_store& store,
                                            const request& req) {
  auto name = req.query_or("name");
  return name.empty() ? store.active() : store.find(name);
}

reply upload(package_store& store, const request& req) {
  auto file = req.form.find("file");
  if (file == req.form.end() || file->second.filename.empty())
    return reply::error(400, "file: a multipart file part named 'file' (the "
                             "package .tgz) is required");
  package_info meta;
  meta.file_name = file->second.filename;
  meta.name = req.form_or("name");
  meta.helper = req.form_or("helper");
  meta.description = req.form_or("description");
  if (meta.name.empty())
    meta.name = meta.file_name;
  auto added = store.add(file->second.content, std::move(meta));
  if (!added) {
    if (added.error() == ec::invalid_argument)
      return reply::error(400, error_detail(added.error()));
    return reply::error(500, render(added.error()));
  }
  spdlog::info("compute package {} ({}, {} bytes, sha256 {}) uploaded and "
               "active",
               added->package_id, added->file_name, added->size_bytes,
               added->checksum);
  return reply::json({{"message", "Package uploaded"},
                      {"package_id", added->package_id},
                      {"checksum", added->checksum}});
}

} // namespace

void add_package_routes(server& srv, const controller_context& ctx) {
  auto opened = package_store::open(ctx.data_dir);
  if (!opened)
    // The controller command creates data_dir; a store that cannot open
    // fails every package request with the reason instead of the start.
    spdlog::error("compute packages unavailable: {}",
                  render(opened.error()));
  auto store = opened ? *opened : nullptr;
  auto unavailable = opened ? caf::error{}
                            : caf::make_error(ec::storage_error,
                                              "compute packages unavailable: "
                                                + render(opened.error()));
  auto with_store = [store, unavailable](auto fn) {
    return [store, unavailable, fn](const request& req) {
      if (!store)
        return reply::error(500, error_detail(unavailable));
      return fn(*store, req);
    };
  };
  srv.route("POST", "/api/v1/packages/?", right::admin,
            with_store([](package_store& s, const request& req) {
              return upload(s, req);
            }));
  // Sorted by default on when each was uploaded.
  add_listing(srv, ctx, "packages",
              [store, unavailable](const controller_context&)
                -> caf::expected<std::vector<listed>> {
                if (!store)
                  return unavailable;
                std::vector<listed> out;
                for (auto& p : store->list())
                  out.push_back(make_listed(package_json(p), p.committed_at));
                return out;
              });
  srv.route("GET", "/api/v1/packages/active", right::admin,
            with_store([](package_store& s, const request&) {
              auto p = s.active();
              if (!p)
                return reply::error(404, "No active package");
              return reply::json(package_json(*p));
            }));
  srv.route("GET", "/api/v1/packages/checksum", right::client,
            with_store([](package_store& s, const request& req) {
              auto p = named_or_active(s, req);
              if (!p)
                return reply::json(
                  {{"message", req.query_or("name").empty()
                                 ? "No compute package uploaded"
                                 : "File not found."},
                   {"checksum", nullptr}},
                  404);
              return reply::json(
                {{"message", "Checksum created."}, {"checksum", p->checksum}});
            }));
  srv.route("GET", "/api/v1/packages/download", right::client,
            with_store([](package_store& s, const request& req) {
              auto p = named_or_active(s, req);
              if (!p)
                return reply::error(404, req.query_or("name").empty()
                                           ? "No active package"
                                           : "no package "
                                               + req.query_or("name"));
              auto bytes = s.read(*p);
              if (!bytes)
                return reply::error(500, render(bytes.error()));
              auto out = reply::bytes(std::move(*bytes),
                                      "application/octet-stream");
              // FEDn's client takes the file name from here.
              out.headers.emplace_back("Content-Disposition",
                                       "attachment; filename="
                                         + p->storage_file_name);
              return out;
            }));
  srv.route("GET", "/api/v1/packages/([^/]+)", right::admin,
            with_store([](package_store& s, const request& req) {
              auto p = s.find(req.params.at(0));
              if (!p)
                return not_found(req.params.at(0));
              return reply::json(package_json(*p));
            }));
}

} // namespace rondo::api
