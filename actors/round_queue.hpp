#pragma once

// The round queue: accepts round configs, persists each as a job before it
// answers with the job id, and runs jobs one at a time in FIFO order. It
// never polls: a push or the end of the running round wakes it. On start it
// reloads unfinished jobs; a job that was running when the process died is
// recorded Failed("interrupted: ...") (close_interrupted_jobs).
//
// Each round reports to the queue twice: a progress record (status
// running, clients_selected filled) once its tasks are out, which the queue
// persists (one write) and passes on to the job's pusher; then its terminal
// record, persisted with the job's end and then passed on.

#include "actors/actors.hpp"

#include <caf/expected.hpp>

#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

namespace rondo {

namespace storage {
class state_store;
} // namespace storage

/// Spawns the round actor for a job; the round reports its terminal record
/// to the given report actor (the queue).
using round_spawner
  = std::function<round_actor(const job_record&, round_report_actor)>;

struct round_queue_state {
  static inline constexpr const char* name = "round-queue";

  std::shared_ptr<storage::state_store> state;
  round_spawner spawn_round;
  /// Queued job ids in FIFO order and their records.
  std::deque<std::string> queued;
  std::map<std::string, job_record> jobs;
  /// Who wants each job's terminal round record (in memory only).
  std::map<std::string, round_report_actor> reporters;
  /// The running job, if any.
  std::string running_job;
  round_actor running;
  /// Every round spawned and not yet exited (the running one, and ended
  /// ones still cleaning up): linked to the queue so that they stop with
  /// it; their exits never stop the queue.
  std::set<caf::actor_addr> rounds;
  uint64_t next_seq = 1;
};

/// Records every job that was running when the process died as Failed with
/// reason "interrupted: combiner <combiner_id> restarted while the round
/// ran" ("the combiner" when `combiner_id` is empty), together with its
/// round record (one synced write per job). The record carries the
/// clients_selected of the round's persisted progress (none when the round
/// had not sent its tasks). Run once at start, before the queue is spawned;
/// the queue's own start runs it too (finding nothing the second time).
/// @returns the records, oldest job first, to be reported to the
///          controller; ec::storage_error naming what failed (jobs recorded
///          before the failure stay recorded).
caf::expected<std::vector<round_record>>
close_interrupted_jobs(storage::state_store& state,
                       const std::string& combiner_id);

/// @param state where jobs and round records are persisted.
/// @param spawn_round makes the round actor of a job.
round_queue_actor::behavior_type
round_queue_impl(round_queue_actor::stateful_pointer<round_queue_state> self,
                 std::shared_ptr<storage::state_store> state,
                 round_spawner spawn_round);

} // namespace rondo
