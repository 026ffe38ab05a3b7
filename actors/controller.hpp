#pragma once

// The controller: owns sessions and the global model trail. For each round
// of a session it picks the combiners with enough active trainers, pushes
// them the round, waits (bounded by a timer) for every combiner's terminal
// report, reduces the successful combiners' models weighted by their
// accepted num_examples (so the result equals FedAvg over every client's
// update), commits the new global model to the trail and, when the session
// validates, runs a validation round on it.
//
// A round in which no combiner succeeded is Failed with each combiner's
// reason; the session then stops if `stop_on_failure` is set, else the next
// round starts from the same global model.

#include "actors/actors.hpp"

#include <caf/timespan.hpp>

#include <chrono>
#include <deque>
#include <map>
#include <memory>
#include <string>
#include <vector>

namespace rondo {

struct optimizer_state;

namespace storage {
class model_store;
class state_store;
} // namespace storage

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

  /// predicting: a prediction run (no session) is at the combiners.
  enum class stage {
    idle,
    selecting,
    training,
    reducing,
    validating,
    predicting,
  };

  controller_config cfg;
  std::shared_ptr<storage::model_store> models;
  std::shared_ptr<storage::state_store> state;
  /// Connected combiners by id.
  std::map<std::string, combiner_actor> combiners;
  /// Every combiner that joined since start, by id, alive or lost (what
  /// GET /api/v1/combiners/ lists and clients are assigned from).
  std::map<std::string, combiner_status> known_combiners;

  // -- the running session ---------------------------------------------------
  session_config session;
  session_record record;
  std::shared_ptr<optimizer_state> optimizer;
  /// The global model the next round starts from.
  std::string global_model;
  int64_t rounds_done = 0;
  /// Rounds of the session that ended in success; a session in which none
  /// did ends failed.
  int64_t rounds_succeeded = 0;
  /// Numbers the controller's round ids ("1", "2", ...) across sessions.
  uint64_t next_round = 1;

  // -- the running round -----------------------------------------------------
  stage current = stage::idle;
  /// Bumped per phase: reports and timer ticks of older phases are stale.
  uint64_t epoch = 0;
  round_record round;
  /// Each asked combiner's report; status pending until it arrives.
  std::map<std::string, combiner_report> reports;
  /// Validations collected in the validation phase.
  std::vector<validation_record> validations;
  /// Report actors of the phase, stopped when it ends.
  std::vector<round_report_actor> report_sinks;

  struct waiter {
    std::string session_id;
    int64_t after_rounds;
    caf::typed_response_promise<session_report> promise;
  };
  std::vector<waiter> waiters;

  /// The prediction run in progress (stage predicting).
  std::string prediction_id;

  /// Ids of the stored status events, oldest first (for the bound).
  std::deque<std::string> statuses;

  /// The session's report from the state store.
  caf::expected<session_report> report(const std::string& session_id);

  /// Assigns a client (FEDn's clients/add): its `combiner_preferred` when
  /// that combiner is alive, else the alive combiner with the fewest
  /// stored assignments (ties: the smallest id). Stores the assignment
  /// (`combiner_id` and `assigned_at` filled in; a reassigned client moves).
  /// @returns the chosen combiner; ec::not_found naming a preferred
  ///          combiner that is not alive; ec::invalid_state when no
  ///          combiner is alive; a storage error.
  caf::expected<combiner_status> assign(client_assignment_record rec);

  /// `known_combiners` with each one's number of assigned clients.
  caf::expected<std::vector<combiner_status>> combiner_statuses();
};

/// @param models the controller's model store (global models).
/// @param state the controller's state store (sessions, rounds, trail,
///        validations).
controller_actor::behavior_type
controller_impl(controller_actor::stateful_pointer<controller_state> self,
                controller_config cfg,
                std::shared_ptr<storage::model_store> models,
                std::shared_ptr<storage::state_store> state);

} // namespace rondo
