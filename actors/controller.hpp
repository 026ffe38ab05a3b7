#pragma once

// The controller: owns sessions, combiner membership and the global model
// trail. A session runs round after round; each global round runs in its
// own actor (actors/global_round.hpp: pick combiners, push the round, wait
// for their reports, reduce, commit, validate) and reports its terminal
// record back here. The controller keeps the session's progress in its
// session record (rounds done, the last committed global model, the round
// in progress), so that a session running when the controller stopped
// resumes when it starts again.
//
// A round in which no combiner succeeded is Failed with each combiner's
// reason; the session then stops if `stop_on_failure` is set, else the next
// round starts from the same global model.

#include "actors/actors.hpp"
#include "actors/global_round.hpp"

#include <deque>
#include <set>

namespace rondo {

// optimizer_state, storage::model_store and storage::state_store are
// declared by actors/global_round.hpp.

/// Options of the controller.
struct controller_config {
  /// Bound on each request to a combiner (listing clients, pushing a round,
  /// one model chunk). Default 30 s.
  caf::timespan request_timeout = std::chrono::seconds(30);
  /// How long a round waits for combiners with clients_required active
  /// trainers (and, with none connected, for one to join). Default 30 s.
  caf::timespan client_wait = std::chrono::seconds(30);
  /// Clients' status events kept in the state store; the oldest go first.
  /// Default 10 000 (a few MB).
  size_t max_statuses = 10000;
};

struct controller_state {
  static inline constexpr const char* name = "controller";

  controller_config cfg;
  std::shared_ptr<storage::model_store> models;
  std::shared_ptr<storage::state_store> state;
  /// Connected combiners by id.
  std::map<std::string, combiner_actor> combiners;
  /// Every combiner that joined since start, by id, alive or lost (what
  /// GET /api/v1/combiners/ lists and clients are assigned from).
  std::map<std::string, combiner_status> known_combiners;
  /// The combiners the running global round (or prediction run) includes:
  /// those it started with and those that joined while it ran. Empty while
  /// none runs.
  std::set<std::string> round_combiners;
  /// Draining combiners already told to release their clients.
  std::set<std::string> released;

  // -- the running session ---------------------------------------------------
  session_config session;
  /// The session's record: status, counters, the last committed global
  /// model, the round in progress. Rewritten once at each round's start
  /// and end (its size does not grow with the session).
  session_record record;
  std::shared_ptr<optimizer_state> optimizer;
  /// Numbers the controller's round ids ("1", "2", ...) across sessions;
  /// persisted (counter "next_round") before a round id is used.
  uint64_t next_round = 1;

  // -- the running global round or prediction run ------------------------------
  /// Invalid while none runs.
  global_round_actor round;
  /// The round is picking combiners (FEDn's "instructing").
  bool instructing = false;
  /// The prediction run in progress; empty when `round` is a session's.
  std::string prediction_id;
  /// Terminations waiting for the running round's terminal record.
  std::vector<caf::typed_response_promise<session_report>> terminating;

  struct waiter {
    std::string session_id;
    uint64_t after_rounds;
    caf::typed_response_promise<session_report> promise;
  };
  std::vector<waiter> waiters;

  /// A session was resumed at start: a combiner's first join then drops
  /// the rounds it still runs for the controller that stopped.
  bool resumed = false;

  /// Ids of the stored status events, oldest first (for the bound).
  std::deque<std::string> statuses;

  /// The session's report with its rounds from position `from` on (0: all
  /// of them, and session.round_ids filled in). Reads only those rounds.
  /// @returns ec::not_found "no session <id>", a storage error.
  caf::expected<session_report> report(const std::string& session_id,
                                       uint64_t from = 0);

  /// Rounds of the running session that ended (by position).
  uint64_t rounds_ended() const;

  /// Assigns a client (FEDn's clients/add): its `combiner_preferred` when
  /// that combiner is alive and not draining, else the alive, not draining
  /// combiner with the fewest stored assignments (ties: the smallest id).
  /// A client that prefers a draining combiner is assigned to another one
  /// as if it preferred none: draining exists to hand clients over, and a
  /// refusal would leave a client pinned to it with nowhere to go. Stores
  /// the assignment (`combiner_id` and `assigned_at` filled in; a
  /// reassigned client moves).
  /// @returns the chosen combiner; ec::not_found naming a preferred
  ///          combiner that is not alive; ec::invalid_state "no combiner
  ///          available" when no combiner is alive and not draining (with
  ///          the draining ones named); a storage error.
  caf::expected<combiner_status> assign(client_assignment_record rec);

  /// Marks combiner `id` draining (`on`) or not. A draining combiner is
  /// never assigned clients and no new global round includes it; a round
  /// that already includes it runs to its end with it. `take_releasable`
  /// then says when to tell it to release its clients. Draining one that
  /// is draining, or undraining one that is not, changes nothing.
  /// @returns its status (clients_assigned filled in); ec::not_found
  ///          "no combiner <id>" for an id that never joined; a storage
  ///          error.
  caf::expected<combiner_status> drain(const std::string& id, bool on);

  /// The draining, alive combiners that no running round includes and
  /// that were not told yet to release their clients; each is marked told.
  std::vector<combiner_status> take_releasable();

  /// The alive combiners that are not draining: those a new global round
  /// or prediction run starts with.
  std::map<std::string, combiner_actor> serving_combiners() const;

  /// `known_combiners` with each one's number of assigned clients.
  caf::expected<std::vector<combiner_status>> combiner_statuses();
};

/// Spawns the controller. A session stored as running (the controller
/// stopped during it) resumes: its round in progress is settled (a round
/// whose model was committed counts as a success; one cut short before
/// that is recorded Failed and re-run under a new round id) and the
/// session's remaining rounds run from its last committed global model.
/// @param models the controller's model store (global models).
/// @param state the controller's state store (sessions, rounds, trail,
///        validations).
controller_actor::behavior_type
controller_impl(controller_actor::stateful_pointer<controller_state> self,
                controller_config cfg,
                std::shared_ptr<storage::model_store> models,
                std::shared_ptr<storage::state_store> state);

} // namespace rondo
