#pragma once

// The round actor: one per job. A state machine that takes one round config
// to a recorded terminal state (Success with the new model id, or Failed
// with a reason):
//
//   wait for clients_required active trainers (bounded: client_wait_timeout)
//   -> stage the global model -> select clients -> send each a task
//   -> close at the first of: buffer_size accepted updates, every task
//      answered or cancelled, round_timeout (a timer)
//   -> aggregate -> store under a new model id -> report the round record
//   to the queue, which records it (synced) and passes it on
//   -> on the queue's `finish`: per-client housekeeping (sessions forget
//      unanswered tasks, model updates are removed), then quit.
//
// Nothing on the path from the closing event to the report walks every
// task or copies the record: per-client work waits until the record is
// durable (close latency, issue 4).
//
// Validation and prediction rounds stage the model, send tasks to active
// validators and store each answer as a validation record.

#include "actors/actors.hpp"

#include <caf/timespan.hpp>

#include <chrono>
#include <map>
#include <memory>
#include <string>
#include <utility>

namespace rondo {

class aggregator;
struct optimizer_state;

namespace storage {
class model_store;
class state_store;
} // namespace storage

/// The subset of the combiner a round uses to find clients.
using client_directory_actor = caf::typed_actor<
  caf::replies_to<trainers_atom, int64_t, caf::timespan>::with<
    std::vector<active_client>>,
  caf::replies_to<validators_atom, int64_t, caf::timespan>::with<
    std::vector<active_client>>>;

/// Time bounds of a round besides its config's round_timeout.
struct round_settings {
  /// How long a round waits for clients_required active clients before it
  /// fails. Default 30 s.
  caf::timespan client_wait_timeout = std::chrono::seconds(30);
  /// Bound on staging the global model (the staging actor retries within
  /// it). Default 120 s.
  caf::timespan staging_timeout = std::chrono::seconds(120);
  /// Bound on each request to a client session or the aggregator (folding
  /// in one update, writing the aggregate). Default 300 s.
  caf::timespan request_timeout = std::chrono::seconds(300);
};

/// What a round needs besides its job.
struct round_deps {
  client_directory_actor clients;
  staging_actor staging;
  std::shared_ptr<storage::model_store> models;
  std::shared_ptr<storage::state_store> state;
  /// The session's server-optimizer state (FedOpt's m and v); lives for a
  /// session. May be null (a fresh state per round).
  std::shared_ptr<optimizer_state> optimizer;
  round_settings settings;
};

/// One task of the round and what became of it.
struct round_task_entry {
  client_info client;
  client_session_actor session;
  /// pending: sent, delivery not yet confirmed; answering: its update is
  /// being aggregated.
  enum class outcome {
    pending,
    delivered,
    answering,
    accepted,
    rejected,
    cancelled
  };
  outcome state = outcome::pending;
};

/// State of a round actor.
struct round_state {
  static inline constexpr const char* name = "round";

  /// done: the terminal record was sent to `report_to`; the round waits for
  /// the queue's `finish` (or its bound) to do per-client housekeeping.
  enum class phase { waiting_clients, staging, running, closing, done };

  job_record job;
  round_deps deps;
  round_report_actor report_to;
  round_record record;
  phase current = phase::waiting_clients;
  /// Tasks by correlation id. Change a task's state only with `set`.
  std::map<std::string, round_task_entry> tasks;
  /// Tasks still pending or delivered (not answered, not cancelled).
  size_t outstanding = 0;
  /// Tasks whose update or validation is being aggregated or stored.
  size_t answering = 0;
  /// Made (and checked) from the config before any client is asked; begun
  /// on the global model once it is staged.
  std::shared_ptr<aggregator> pending_agg;
  aggregator_actor agg;
  /// Model updates received (removed after the round when
  /// delete_models_storage is set).
  std::vector<std::string> update_ids;
  /// Accepted updates that close a training round early.
  int64_t buffer_target = 0;
  int64_t accepted = 0;
  /// Timer epoch: ticks of an older epoch are stale.
  uint64_t epoch = 0;
  caf::actor_clock::time_point tasks_sent;
  /// Seconds the aggregator spent folding this round's updates (the sum of
  /// their verdicts' fold_seconds).
  double fold_seconds = 0;

  /// Finds the task an update or validation answers: by correlation id, or,
  /// when the client left it empty, the client's one delivered task on the
  /// same base model. @returns nullptr and the reason when there is none.
  round_task_entry* match(const std::string& correlation_id,
                          const std::string& client_id,
                          const std::string& model_id, std::string& reason,
                          std::string* matched_id = nullptr);

  /// The task `correlation_id` when `client_id` owns it and it still waits
  /// for its client; else nullptr and why not (unknown, another client's,
  /// answered or cancelled) in `reason`.
  std::pair<const std::string, round_task_entry>*
  find_open(const std::string& correlation_id, const std::string& client_id,
            std::string& reason);

  /// Rejects the task `correlation_id` with `reason` (clients_rejected)
  /// when `client_id` owns it and it still waits for its client: the edge
  /// refused that client's answer, or the answer was of the wrong kind or
  /// on the wrong model, so no other answer will come. A task of another
  /// client is left alone (a stranger cannot cancel others' tasks).
  /// @returns true when rejected; false and why not in `why_not`.
  bool refuse(const std::string& correlation_id, const std::string& client_id,
              const std::string& reason, std::string& why_not);

  /// True when no delivered task can still be answered: O(1), from the
  /// counts `set` keeps.
  bool all_resolved() const {
    return outstanding == 0 && answering == 0;
  }

  /// Adds a pending task (counted as outstanding).
  round_task_entry& add_task(const std::string& correlation_id,
                             round_task_entry entry);

  /// Moves `task` to `to`, keeping `outstanding` and `answering` up to
  /// date.
  void set(round_task_entry& task, round_task_entry::outcome to);

  /// Whether a task in `x` still waits for its client.
  static bool is_outstanding(round_task_entry::outcome x) {
    return x == round_task_entry::outcome::pending
           || x == round_task_entry::outcome::delivered;
  }
};

/// Spawns nothing by itself; the round queue spawns one per job and gets
/// its terminal round record through `report_to`.
round_actor::behavior_type round_impl(round_actor::stateful_pointer<round_state> self,
                                      job_record job, round_deps deps,
                                      round_report_actor report_to);

} // namespace rondo
