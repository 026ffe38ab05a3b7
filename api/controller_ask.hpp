#pragma once

// Asking the controller actor from an HTTP handler thread, and turning
// Rondo errors into FEDn's HTTP answers. Included by route files only (it
// pulls in CAF's scoped actor).

#include "actors/type_ids.hpp"
#include "api/controller_api.hpp"
#include "messages/error.hpp"

#include <caf/actor_system.hpp>
#include <caf/scoped_actor.hpp>

#include <optional>
#include <utility>

namespace rondo::api {

/// The HTTP status for a Rondo error: not_found 404; invalid_config,
/// invalid_argument, malformed_model, invalid_state, already_exists,
/// shape_mismatch, non_finite, too_large 400 (FEDn answers a refused
/// request with 400); timeout 504; anything else 500.
int http_status(const caf::error& err);

/// `{"message": <the error's text>}` with http_status(err).
reply error_reply(const caf::error& err);

/// Sends `xs...` to the controller and waits, bounded by
/// ctx.request_timeout, for its answer of type T.
/// @returns the answer, or the controller's error (ec::timeout when it did
///          not answer in time).
template <class T, class... Ts>
caf::expected<T> ask_controller(const controller_context& ctx, Ts&&... xs) {
  caf::scoped_actor self{*ctx.sys};
  std::optional<caf::expected<T>> out;
  self->request(ctx.controller, ctx.request_timeout, std::forward<Ts>(xs)...)
    .receive([&](T& x) { out.emplace(std::move(x)); },
             [&](caf::error& err) {
               if (err == caf::sec::request_timeout)
                 err = caf::make_error(ec::timeout,
                                       "the controller did not answer in "
                                       "time");
               out.emplace(std::move(err));
             });
  return std::move(*out);
}

} // namespace rondo::api
