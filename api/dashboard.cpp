#include "api/controller_api.hpp"

#include <map>
#include <string>

namespace rondo::api {

/// The dashboard's files by name (index.html, dashboard.js,
/// dashboard.css), embedded at build time (api/embed_files.cmake writes
/// this function).
const std::map<std::string, std::string>& dashboard_files();

namespace {

const char* content_type_of(const std::string& name) {
  auto ends_with = [&name](const std::string& ext) {
    return name.size() >= ext.size()
           && name.compare(name.size() - ext.size(), ext.size(), ext) == 0;
  };
  if (ends_with(".html"))
    return "text/html; charset=utf-8";
  if (ends_with(".js"))
    return "text/javascript; charset=utf-8";
  if (ends_with(".css"))
    return "text/css; charset=utf-8";
  return "application/octet-stream";
}

reply serve(const std::string& name) {
  auto& files = dashboard_files();
  auto i = files.find(name);
  if (i == files.end())
    return reply::error(404, "no dashboard file " + name);
  auto r = reply::bytes(i->second, content_type_of(name));
  // The page reads the API with the token from its URL fragment; it loads
  // nothing from other origins.
  r.headers.emplace_back("Content-Security-Policy",
                         "default-src 'self'; img-src 'self' data: blob:; "
                         "style-src 'self'; script-src 'self'; "
                         "connect-src 'self'");
  r.headers.emplace_back("Cache-Control", "no-cache");
  r.headers.emplace_back("X-Content-Type-Options", "nosniff");
  return r;
}

} // namespace

void add_dashboard_routes(server& srv, const controller_context&) {
  // The static files are open (they hold no data); every figure on the page
  // comes from the REST routes, with the token the page was given.
  srv.route("GET", "/", right::open,
            [](const request&) { return serve("index.html"); });
  srv.route("GET", R"(/dashboard/([A-Za-z0-9_.-]+))", right::open,
            [](const request& req) { return serve(req.params.at(0)); });
}

} // namespace rondo::api
