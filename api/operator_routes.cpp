// Rondo's own routes for its operator commands, beside FEDn's REST v1:
//
// GET /api/v1/sessions/{id}/wait?after_rounds=N&timeout=S (admin): a
// bounded long poll. Answers 200 with {"session", "rounds", "validations",
// "first_round"} (each record as FEDn's GET routes render it,
// api/json_views.hpp) once more than N rounds of the session ended or the
// session is not running. "rounds" holds the session's rounds from
// position "first_round" on (the controller's session_report: N, or 0 for
// a whole report), in the order they started, the round in progress last;
// "validations" those rounds' validations. 204 No Content when
// neither happened within S seconds (1..300, default 60; ask again). 404
// names an unknown session, 400 a bad parameter. `rondo session start
// --follow` prints each round from these answers instead of polling.
//
// Each waiting request holds one of the server's worker threads (8) for
// up to S seconds.

#include "actors/type_ids.hpp"
#include "api/controller_ask.hpp"
#include "api/json_views.hpp"

#include <caf/sec.hpp>

#include <nlohmann/json.hpp>

#include <chrono>
#include <string>

namespace rondo::api {

namespace {

/// The longest long poll granted, seconds.
constexpr long max_wait_seconds = 300;
/// The wait when the request names none, seconds.
constexpr long default_wait_seconds = 60;

/// `text` as a whole number in [lo, hi], or none.
std::optional<long> whole_number(const std::string& text, long lo, long hi) {
  if (text.empty() || text.size() > 12
      || text.find_first_not_of("0123456789") != std::string::npos)
    return std::nullopt;
  auto x = std::stol(text);
  if (x < lo || x > hi)
    return std::nullopt;
  return x;
}

/// A session_report as the wait route answers it.
nlohmann::json wait_answer(const session_report& report) {
  auto rounds = nlohmann::json::array();
  auto validations = nlohmann::json::array();
  for (auto& r : report.rounds) {
    rounds.push_back(to_fedn_json(r));
    for (auto& v : r.validations)
      validations.push_back(to_fedn_json(v));
  }
  return {{"session", to_fedn_json(report.session)},
          {"rounds", std::move(rounds)},
          {"validations", std::move(validations)},
          {"first_round", report.first_round}};
}

reply wait_for_rounds(const controller_context& ctx, const request& req) {
  auto& id = req.params.at(0);
  auto after = whole_number(req.query_or("after_rounds", "0"), 0,
                            1'000'000'000);
  if (!after)
    return reply::error(400, "after_rounds must be a whole number >= 0, got '"
                               + req.query_or("after_rounds") + "'");
  auto wait = whole_number(req.query_or("timeout",
                                        std::to_string(default_wait_seconds)),
                           1, max_wait_seconds);
  if (!wait)
    return reply::error(400, "timeout must be a whole number of seconds in "
                             "1.."
                               + std::to_string(max_wait_seconds) + ", got '"
                               + req.query_or("timeout") + "'");
  caf::scoped_actor self{*ctx.sys};
  reply answer;
  self
    ->request(ctx.controller, std::chrono::seconds(*wait),
              caf::wait_for_atom::value, id, static_cast<uint64_t>(*after))
    .receive(
      [&](session_report& report) {
        answer = reply::json(wait_answer(report));
      },
      [&](caf::error& err) {
        answer = err == caf::sec::request_timeout
                   ? reply{204, "application/json", "", {}}
                   : error_reply(err);
      });
  return answer;
}

} // namespace

void add_operator_routes(server& srv, const controller_context& ctx) {
  srv.route("GET", "/api/v1/sessions/([^/]+)/wait", right::admin,
            [ctx](const request& req) { return wait_for_rounds(ctx, req); });
}

} // namespace rondo::api
