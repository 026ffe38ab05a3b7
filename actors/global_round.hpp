#pragma once

// One global round of a session, or one prediction run, as its own actor:
// the controller spawns it with the combiners connected at the time and
// the global model to start from, and it runs the round's state machine
//
//   selecting -> training -> reducing -> committing -> validating -> done
//
// (a prediction run: predicting -> done), persisting its round record at
// each step so that a restarted controller knows how far it got. It ends
// by sending the controller its terminal round record (status success with
// the new global model's id, or failed with the reason) and quitting.
//
// The reduce equals FedAvg over every client's update: each successful
// combiner's model is weighted by its accepted num_examples (the session's
// aggregator, e.g. FedOpt, then applies its server step to that average).

#include "actors/actors.hpp"

#include <caf/timespan.hpp>
#include <caf/typed_response_promise.hpp>

#include <chrono>
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

/// The combiner's part has been lost: the controller saw it go down.
using lost_atom = caf::atom_constant<caf::atom("lost")>;

/// One global round (or prediction run).
/// - combiner_round_done: a combiner's report of its part: progress
///   (status running, the clients that got its tasks) or terminal. Reports
///   of an earlier phase are ignored.
/// - (join, combiner_id, combiner): a combiner joined the controller; a
///   round waiting for its first combiner starts selecting.
/// - (lost, combiner_id): the combiner went down: its part fails now,
///   naming the clients that had its tasks.
/// - (terminate) -> round_record: stop now; the round ends Failed
///   ("terminated") and the reply is its terminal record (the controller
///   is not sent it again).
/// - timer_tick: internal (phase_timeout, no_combiner).
using global_round_actor = timer_owner_actor::extend<
  caf::reacts_to<combiner_round_done>,
  caf::reacts_to<caf::join_atom, std::string, combiner_actor>,
  caf::reacts_to<lost_atom, std::string>,
  caf::replies_to<terminate_atom>::with<round_record>>;

/// What a global round needs from the controller.
struct global_round_deps {
  /// The controller: receives the terminal round record.
  controller_actor parent;
  std::shared_ptr<storage::model_store> models;
  std::shared_ptr<storage::state_store> state;
  /// Bound on each request to a combiner (listing trainers, pushing the
  /// round, one model chunk).
  caf::timespan request_timeout = std::chrono::seconds(30);
  /// How long selection waits for combiners with clients_required active
  /// trainers (and, with none connected, for one to join).
  caf::timespan client_wait = std::chrono::seconds(30);
};

/// One global round's inputs.
struct global_round_setup {
  /// The round record so far: round_id, session_id, base_model_id (the
  /// global model the round starts from), timeout, nr_required_updates,
  /// config; status running.
  round_record round;
  /// The session's config (aggregator, clients_required, validate, ...).
  session_config session;
  /// The combiners connected when the round starts.
  std::map<std::string, combiner_actor> combiners;
  /// The session's server-side optimizer state (FedOpt's moments), shared
  /// across its rounds.
  std::shared_ptr<optimizer_state> optimizer;
  /// Non-empty for a prediction run: the run's id. Every client's answer
  /// is stored as a prediction_record; `round.base_model_id` is the model
  /// predicted with.
  std::string prediction_id;
};

struct global_round_state {
  static inline constexpr const char* name = "global-round";

  enum class phase {
    selecting,
    training,
    reducing,
    validating,
    predicting,
    done,
  };

  global_round_deps deps;
  global_round_setup setup;
  phase current = phase::selecting;
  /// Bumped per phase: reports and timer ticks of older phases are stale.
  uint64_t epoch = 0;
  /// Each asked combiner's part; status running until its report arrives.
  std::map<std::string, combiner_report> reports;
  /// The clients that got each combiner's tasks (its progress report).
  std::map<std::string, std::vector<std::string>> asked;
  /// Validations (or prediction answers) collected in this phase.
  std::vector<validation_record> validations;
  /// Report actors of the phase, stopped when it ends.
  std::vector<round_report_actor> report_sinks;
};

/// Spawn linked to the controller (a global round dies with it).
global_round_actor::behavior_type
global_round_impl(global_round_actor::stateful_pointer<global_round_state> self,
                  global_round_deps deps, global_round_setup setup);

} // namespace rondo
