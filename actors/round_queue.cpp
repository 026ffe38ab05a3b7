#include "actors/round_queue.hpp"

#include "actors/type_ids.hpp"
#include "messages/error.hpp"
#include "messages/ids.hpp"
#include "storage/state_store.hpp"

#include <caf/actor_cast.hpp>
#include <caf/system_messages.hpp>
#include <caf/stateful_actor.hpp>
#include <caf/typed_event_based_actor.hpp>

#include <algorithm>
#include <iostream>

namespace rondo {

namespace {

using self_ptr = round_queue_actor::stateful_pointer<round_queue_state>;

void log_error(const std::string& what) {
  std::cerr << "round-queue: " << what << std::endl;
}

// Persists the job's terminal state together with its round record (one
// synced write), then reports the round to whoever pushed the job, so a
// reporter does not hear of an end that a crash could still undo (if the
// write fails, that is logged and the report still goes out). The record
// is moved to the reporter, never copied (it lists every client).
void record_end(self_ptr self, job_record& job, round_record round) {
  auto& st = self->state;
  job.status = round.status == round_status::success ? job_status::success
                                                     : job_status::failed;
  job.reason = round.reason;
  storage::state_batch batch;
  batch.put(job);
  if (!round.round_id.empty())
    batch.put(round);
  if (auto err = st.state->commit(batch))
    log_error("cannot record the end of job " + job.job_id + ": "
              + render(err));
  auto i = st.reporters.find(job.job_id);
  if (i != st.reporters.end()) {
    if (i->second)
      self->send(i->second, std::move(round));
    st.reporters.erase(i);
  }
}

// A failed round record for a job that never ran to its own end.
round_record failed_round(const job_record& job, const std::string& reason) {
  round_record r;
  r.round_id = job.config.round_id;
  r.session_id = job.config.session_id;
  r.job_id = job.job_id;
  r.config = job.config;
  r.status = round_status::failed;
  r.reason = reason;
  r.base_model_id = job.config.model_id;
  r.timeout = job.config.round_timeout;
  r.nr_required_updates = job.config.clients_required;
  r.ended_at = unix_now();
  return r;
}

void start_next(self_ptr self) {
  auto& st = self->state;
  if (!st.running_job.empty() || st.queued.empty())
    return;
  auto id = st.queued.front();
  st.queued.pop_front();
  auto& job = st.jobs.at(id);
  job.status = job_status::running;
  if (auto err = st.state->put(job)) {
    record_end(self, job, failed_round(job, "cannot persist the job start: "
                                              + render(err)));
    st.jobs.erase(id);
    start_next(self);
    return;
  }
  st.running_job = id;
  auto me = caf::actor_cast<round_report_actor>(self);
  st.running = st.spawn_round(job, me);
  self->monitor(st.running);
  self->link_to(st.running);
  st.rounds.insert(st.running.address());
}

// Called with the running round's terminal record, or with a failed record
// when the round actor died without one. A live round gets `finish` once
// its record is persisted and reported, and then does its per-client
// housekeeping.
void on_round_end(self_ptr self, round_record rec) {
  auto& st = self->state;
  if (st.running_job.empty())
    return;
  auto id = st.running_job;
  auto round = std::move(st.running);
  st.running_job.clear();
  st.running = nullptr;
  record_end(self, st.jobs.at(id), std::move(rec));
  st.jobs.erase(id);
  if (round)
    self->send(round, finish_atom::value);
  start_next(self);
}

// Reloads unfinished jobs: queued ones run again in order; one that was
// still running (close_interrupted_jobs did not run before the queue)
// fails as interrupted.
void reload(self_ptr self) {
  auto& st = self->state;
  if (auto closed = close_interrupted_jobs(*st.state, {}); !closed)
    log_error(render(closed.error()));
  auto jobs = st.state->list<job_record>();
  if (!jobs) {
    log_error("cannot reload jobs: " + render(jobs.error()));
    return;
  }
  std::sort(jobs->begin(), jobs->end(),
            [](auto& x, auto& y) { return x.seq < y.seq; });
  for (auto& job : *jobs) {
    st.next_seq = std::max(st.next_seq, job.seq + 1);
    if (job.status == job_status::queued) {
      st.queued.push_back(job.job_id);
      st.jobs.emplace(job.job_id, job);
    }
  }
}

// The running round's progress (its record with status running, sent once
// its tasks are out): persisted, so that a restart can name the clients
// that had tasks, then passed on to the job's pusher.
void on_round_progress(self_ptr self, round_record rec) {
  auto& st = self->state;
  if (st.running_job.empty() || rec.job_id != st.running_job)
    return;
  if (auto err = st.state->put(rec))
    log_error("cannot record the progress of round " + rec.round_id
              + " (job " + rec.job_id + "): " + render(err));
  auto i = st.reporters.find(rec.job_id);
  if (i != st.reporters.end() && i->second)
    self->send(i->second, std::move(rec));
}

template <class Answer>
caf::result<update_verdict> forward(self_ptr self, const Answer& x) {
  auto& st = self->state;
  if (!st.running)
    return update_verdict{false, "stale update: no round is running"};
  return self->delegate(st.running, x);
}

} // namespace

caf::expected<std::vector<round_record>>
close_interrupted_jobs(storage::state_store& state,
                       const std::string& combiner_id) {
  auto jobs = state.list<job_record>();
  if (!jobs)
    return caf::make_error(ec::storage_error,
                           "cannot look for interrupted jobs: "
                             + render(jobs.error()));
  auto reason = "interrupted: "
                + (combiner_id.empty() ? std::string{"the combiner"}
                                       : "combiner " + combiner_id)
                + " restarted while the round ran";
  std::sort(jobs->begin(), jobs->end(),
            [](auto& x, auto& y) { return x.seq < y.seq; });
  std::vector<round_record> result;
  for (auto& job : *jobs) {
    if (job.status != job_status::running)
      continue;
    auto rec = failed_round(job, reason);
    // The progress the round persisted once its tasks were out names the
    // clients that had them.
    if (auto progress = state.get<round_record>(job.config.round_id);
        progress && progress->job_id == job.job_id) {
      rec.clients_selected = std::move(progress->clients_selected);
      rec.nr_expected_updates = progress->nr_expected_updates;
      rec.started_at = progress->started_at;
    }
    job.status = job_status::failed;
    job.reason = reason;
    storage::state_batch batch;
    batch.put(job);
    batch.put(rec);
    if (auto err = state.commit(batch))
      return caf::make_error(ec::storage_error,
                             "cannot record interrupted job " + job.job_id
                               + " as failed: " + render(err));
    result.push_back(std::move(rec));
  }
  return result;
}

round_queue_actor::behavior_type
round_queue_impl(round_queue_actor::stateful_pointer<round_queue_state> self,
                 std::shared_ptr<storage::state_store> state,
                 round_spawner spawn_round) {
  auto& st = self->state;
  st.state = std::move(state);
  st.spawn_round = std::move(spawn_round);
  self->set_down_handler([self](const caf::down_msg& dm) {
    auto& st = self->state;
    if (!st.running || dm.source != st.running.address())
      return;
    // The round died before reporting: an exception or a crash. The job
    // fails with the reason and the queue goes on.
    auto& job = st.jobs.at(st.running_job);
    st.running = nullptr;
    on_round_end(self, failed_round(job, "round actor exited: "
                                           + render(dm.reason)));
  });
  // A round's exit (normal or a crash, which the down handler records)
  // never stops the queue; any other linked actor's error does, and the
  // queue's own exit stops its linked rounds.
  self->set_exit_handler([self](caf::exit_msg& em) {
    if (self->state.rounds.erase(em.source) > 0)
      return;
    if (em.reason)
      self->quit(em.reason);
  });
  reload(self);
  start_next(self);
  return {
    [self](round_config& cfg,
           round_report_actor& report_to) -> caf::result<std::string> {
      auto& st = self->state;
      if (auto err = validate(cfg))
        return err;
      job_record job;
      job.job_id = new_id();
      job.seq = st.next_seq++;
      job.config = std::move(cfg);
      job.status = job_status::queued;
      job.enqueued_at = unix_now();
      // Persisted (synced) before the job id is handed out.
      if (auto err = st.state->put(job))
        return err;
      st.jobs.emplace(job.job_id, job);
      st.queued.push_back(job.job_id);
      if (report_to)
        st.reporters.emplace(job.job_id, std::move(report_to));
      start_next(self);
      return job.job_id;
    },
    [self](const model_update& x) { return forward(self, x); },
    [self](const model_validation& x) { return forward(self, x); },
    [self](caf::flush_atom) -> uint64_t {
      auto& st = self->state;
      uint64_t dropped = 0;
      while (!st.queued.empty()) {
        auto id = st.queued.front();
        st.queued.pop_front();
        auto& job = st.jobs.at(id);
        record_end(self, job, failed_round(job, "terminated"));
        st.jobs.erase(id);
        ++dropped;
      }
      if (st.running) {
        self->send(st.running, terminate_atom::value);
        ++dropped;
      }
      return dropped;
    },
    [self](caf::get_atom, const std::string& job_id)
      -> caf::result<job_record> {
      auto& st = self->state;
      auto i = st.jobs.find(job_id);
      if (i != st.jobs.end())
        return i->second;
      auto stored = st.state->get<job_record>(job_id);
      if (!stored)
        return stored.error();
      return *stored;
    },
    [self](const task_refused& x) {
      auto& st = self->state;
      if (st.running)
        self->send(st.running, x);
      else
        log_error("dropped the edge's refusal of client '" + x.client_id
                  + "' for task " + x.correlation_id
                  + ": no round is running (" + x.reason + ")");
    },
    [self](round_record& rec) {
      if (rec.status == round_status::running)
        on_round_progress(self, std::move(rec));
      else
        on_round_end(self, std::move(rec));
    },
  };
}

} // namespace rondo
