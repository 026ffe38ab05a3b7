#include "messages/error.hpp"

#include <caf/actor_system_config.hpp>
#include <caf/atom.hpp>
#include <caf/message.hpp>

namespace rondo {

const char* to_string(ec code) {
  switch (code) {
    case ec::none: return "none";
    case ec::unspecified: return "unspecified";
    case ec::invalid_config: return "invalid_config";
    case ec::invalid_argument: return "invalid_argument";
    case ec::not_found: return "not_found";
    case ec::already_exists: return "already_exists";
    case ec::corrupt: return "corrupt";
    case ec::storage_error: return "storage_error";
    case ec::malformed_model: return "malformed_model";
    case ec::shape_mismatch: return "shape_mismatch";
    case ec::non_finite: return "non_finite";
    case ec::aggregation_failed: return "aggregation_failed";
    case ec::timeout: return "timeout";
    case ec::too_few_clients: return "too_few_clients";
    case ec::staging_failed: return "staging_failed";
    case ec::terminated: return "terminated";
    case ec::stale_update: return "stale_update";
    case ec::too_large: return "too_large";
    case ec::invalid_state: return "invalid_state";
    case ec::unauthenticated: return "unauthenticated";
    case ec::permission_denied: return "permission_denied";
  }
  return "unknown_code";
}

namespace {

// Joins the context's string elements; other elements via CAF's to_string.
std::string render_context(const caf::message& ctx) {
  std::string out;
  for (size_t i = 0; i < ctx.size(); ++i) {
    if (!out.empty())
      out += ' ';
    if (ctx.match_element<std::string>(i))
      out += ctx.get_as<std::string>(i);
    else
      out += ctx.stringify(i);
  }
  return out;
}

std::string render_rondo(uint8_t code, const caf::message& ctx) {
  std::string out = "rondo.";
  out += to_string(static_cast<ec>(code));
  auto detail = render_context(ctx);
  if (!detail.empty()) {
    out += ": ";
    out += detail;
  }
  return out;
}

} // namespace

std::string render(const caf::error& err) {
  if (!err)
    return "no error";
  if (err.category() == caf::atom("rondo"))
    return render_rondo(err.code(), err.context());
  return caf::to_string(err);
}

void add_error_category(caf::actor_system_config& cfg) {
  cfg.add_error_category(
    caf::atom("rondo"),
    [](uint8_t code, caf::atom_value, const caf::message& ctx) {
      return render_rondo(code, ctx);
    });
}

std::string error_detail(const caf::error& err) {
  auto& ctx = err.context();
  if (err.category() == caf::atom("rondo") && ctx.size() == 1
      && ctx.match_element<std::string>(0))
    return ctx.get_as<std::string>(0);
  return render(err);
}

caf::error with_prefix(const caf::error& err, const std::string& prefix) {
  if (!err || err.category() != caf::atom("rondo"))
    return err;
  return caf::make_error(static_cast<ec>(err.code()),
                         prefix + error_detail(err));
}

} // namespace rondo
