#pragma once

// The combiner: spawns and monitors the round queue, model staging and one
// session per client; answers rounds' questions about active clients; routes
// client answers (model updates, validations) to the running round.

#include "actors/actors.hpp"
#include "actors/client_session.hpp"
#include "actors/round.hpp"
#include "actors/staging.hpp"
#include "storage/trail.hpp"

#include <map>
#include <memory>
#include <string>

namespace rondo {

struct optimizer_state;

/// Options of a combiner; every default documented on its field.
struct combiner_config {
  /// This combiner's id in round records and logs. Default "combiner".
  std::string combiner_id = "combiner";
  client_session_config sessions;
  staging_config staging;
  round_settings rounds;
  /// How many finished jobs (with their rounds, validations and metrics)
  /// and, without a controller, how many models it keeps; defaults in
  /// storage/trail.hpp.
  storage::combiner_retention retention;
};

struct combiner_state {
  static inline constexpr const char* name = "combiner";

  struct client_entry {
    client_info info;
    client_session_actor session;
    bool active = false;
    /// The client's task stream is open.
    bool streaming = false;
    /// Active and streaming: it can be given a task.
    bool available() const {
      return active && streaming;
    }
    /// Unix seconds of the last liveness change.
    double changed_at = 0;
  };

  struct waiter {
    bool trainers = true;
    int64_t required = 0;
    caf::typed_response_promise<std::vector<active_client>> promise;
  };

  combiner_config cfg;
  std::map<std::string, client_entry> clients;
  std::map<uint64_t, waiter> waiters;
  uint64_t next_waiter = 0;
  /// Available clients per role, kept with the flags.
  int64_t active_trainers = 0;
  int64_t active_validators = 0;
  round_queue_actor queue;
  staging_actor staging;
  /// Where clients' status events go (the controller link); may be
  /// invalid: they are dropped.
  status_sink_actor status_sink;
  /// No model source (no controller): the combiner bounds its own models
  /// (keeps cfg.retention.standalone_models) when a round is pushed, as no
  /// controller tells it which global model was committed.
  bool standalone = false;
  /// While the controller drains the combiner (scale-in), why task
  /// streams end and are refused ("combiner <id> is draining: ...");
  /// empty otherwise.
  std::string drain_reason;

  /// Adds `delta` to the active counts of `info`'s roles.
  void count_roles(const client_info& info, int64_t delta);

  /// The available (active and streaming) clients of a role (trainers or
  /// validators).
  std::vector<active_client> active(bool trainers) const;
};

/// @param models the combiner's model store (global models, updates,
///        aggregates).
/// @param state the combiner's state store (jobs, rounds, validations).
/// @param source where staging fetches models the store lacks (may be
///        invalid: none, and then the combiner runs standalone).
///
/// Retention: on (committed, model_id) from the controller the combiner
/// removes every model of its store but model_id and the start models of
/// its queued and running jobs, and staging drops its other cached models;
/// standalone, it keeps its newest cfg.retention.standalone_models models
/// (and the jobs') each time a round is pushed. Each pushed round also
/// bounds the job, round, validation and metric records
/// (trim_combiner_records).
///
/// Draining: on (drain, true) every client session ends its task stream
/// and refuses new ones with `drain_reason` (the edge ends them with gRPC
/// status UNAVAILABLE and that text), sessions of clients that connect
/// later included; (drain, false) lifts the refusal.
combiner_actor::behavior_type
combiner_impl(combiner_actor::stateful_pointer<combiner_state> self,
              combiner_config cfg,
              std::shared_ptr<storage::model_store> models,
              std::shared_ptr<storage::state_store> state,
              model_source_actor source);

} // namespace rondo
