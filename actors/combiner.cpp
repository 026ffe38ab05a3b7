#include "actors/combiner.hpp"

#include "actors/model_transfer.hpp"
#include "actors/round_queue.hpp"
#include "actors/type_ids.hpp"
#include "api/metrics.hpp"
#include "messages/error.hpp"
#include "messages/ids.hpp"
#include "model/aggregator.hpp"
#include "storage/model_store.hpp"
#include "storage/state_store.hpp"
#include "storage/trail.hpp"

#include <spdlog/spdlog.h>

#include <caf/actor_cast.hpp>
#include <caf/actor_system.hpp>
#include <caf/stateful_actor.hpp>
#include <caf/typed_event_based_actor.hpp>

namespace rondo {

namespace {

using self_ptr = combiner_actor::stateful_pointer<combiner_state>;

// Answers every waiter whose required number of clients is now active.
void serve_waiters(self_ptr self) {
  auto& st = self->state;
  for (auto i = st.waiters.begin(); i != st.waiters.end();) {
    auto have = i->second.trainers ? st.active_trainers : st.active_validators;
    if (have >= i->second.required) {
      i->second.promise.deliver(st.active(i->second.trainers));
      i = st.waiters.erase(i);
    } else {
      ++i;
    }
  }
}

caf::result<std::vector<active_client>>
wait_for(self_ptr self, bool trainers, int64_t n, caf::timespan wait) {
  auto& st = self->state;
  auto xs = st.active(trainers);
  if (static_cast<int64_t>(xs.size()) >= n || wait <= caf::timespan{0})
    return xs;
  auto id = ++st.next_waiter;
  auto promise = self->make_response_promise<std::vector<active_client>>();
  st.waiters.emplace(id, combiner_state::waiter{trainers, n, promise});
  self->delayed_send(self, wait, timer_tick{timer_kind::client_wait, id, {}});
  return promise;
}

// Makes the queue's round spawner: rounds get this combiner as their client
// directory and share one FedOpt state per session.
round_spawner make_spawner(self_ptr self,
                           std::shared_ptr<storage::model_store> models,
                           std::shared_ptr<storage::state_store> state) {
  auto optimizers = std::make_shared<
    std::map<std::string, std::shared_ptr<optimizer_state>>>();
  auto& sys = self->system();
  round_deps deps;
  deps.clients = caf::actor_cast<client_directory_actor>(self);
  deps.staging = self->state.staging;
  deps.models = std::move(models);
  deps.state = std::move(state);
  deps.settings = self->state.cfg.rounds;
  return [&sys, deps, optimizers](const job_record& job,
                                  round_report_actor report_to) {
    auto d = deps;
    auto& slot = (*optimizers)[job.config.session_id];
    if (!slot)
      slot = std::make_shared<optimizer_state>();
    d.optimizer = slot;
    return sys.spawn(round_impl, job, std::move(d), std::move(report_to));
  };
}

// Removes the models the combiner no longer needs (keeping `keep`); a
// failure is logged, nothing else depends on it.
void drop_models(self_ptr self, storage::model_store& models,
                 storage::state_store& state,
                 const std::vector<std::string>& keep) {
  auto& cfg = self->state.cfg;
  auto removed = storage::drop_combiner_models(state, models, keep,
                                               self->state.standalone,
                                               cfg.retention);
  if (!removed)
    spdlog::warn("combiner {}: cannot remove unneeded models: {}",
                 cfg.combiner_id, render(removed.error()));
  else if (!removed->empty())
    spdlog::debug("combiner {}: removed {} unneeded models",
                  cfg.combiner_id, removed->size());
}

// Bounds the combiner's job records (and their rounds' records); once per
// pushed round, failed rounds included.
void trim_records(self_ptr self, storage::state_store& state) {
  auto& cfg = self->state.cfg;
  auto trimmed = storage::trim_combiner_records(state, cfg.retention);
  if (!trimmed)
    spdlog::warn("combiner {}: cannot trim old job records: {}",
                 cfg.combiner_id, render(trimmed.error()));
}

} // namespace

void combiner_state::count_roles(const client_info& info, int64_t delta) {
  if (info.trainer)
    active_trainers += delta;
  if (info.validator)
    active_validators += delta;
  metrics::set_active_clients(active_trainers, active_validators);
}

std::vector<active_client> combiner_state::active(bool trainers) const {
  std::vector<active_client> result;
  for (auto& [id, c] : clients)
    if (c.available() && (trainers ? c.info.trainer : c.info.validator))
      result.push_back({c.info, c.session});
  return result;
}

combiner_actor::behavior_type
combiner_impl(combiner_actor::stateful_pointer<combiner_state> self,
              combiner_config cfg,
              std::shared_ptr<storage::model_store> models,
              std::shared_ptr<storage::state_store> state,
              model_source_actor source) {
  auto& st = self->state;
  st.cfg = std::move(cfg);
  st.standalone = !source;
  st.staging = self->spawn<caf::linked>(staging, models, std::move(source),
                                        st.cfg.staging);
  st.queue = self->spawn<caf::linked>(round_queue_impl, state,
                                      make_spawner(self, models, state));
  return {
    [models](caf::get_atom, const std::string& model_id,
             uint64_t index) -> caf::result<model_chunk> {
      auto chunk = read_model_chunk(*models, model_id, index);
      if (!chunk)
        return chunk.error();
      return std::move(*chunk);
    },
    [self](const client_info& info) -> client_session_actor {
      auto& st = self->state;
      auto i = st.clients.find(info.client_id);
      if (i != st.clients.end()) {
        if (i->second.available()) {
          // The client's roles may change when it reconnects.
          st.count_roles(i->second.info, -1);
          st.count_roles(info, 1);
          serve_waiters(self);
        }
        i->second.info = info;
        return i->second.session;
      }
      auto listener = caf::actor_cast<activity_listener_actor>(self);
      auto session = self->spawn<caf::linked>(client_session, info, listener,
                                              st.cfg.sessions);
      st.clients.emplace(info.client_id,
                         combiner_state::client_entry{info, session, false, false,
                                                      unix_now()});
      // Queued before the edge gets the handle, so ahead of its open.
      if (!st.drain_reason.empty())
        self->send(session, drain_atom::value, true, st.drain_reason);
      return session;
    },
    [self](const client_activity& x) {
      auto& st = self->state;
      auto i = st.clients.find(x.info.client_id);
      if (i == st.clients.end())
        return;
      auto was = i->second.available();
      i->second.active = x.active;
      i->second.streaming = x.streaming;
      if (was != i->second.available())
        st.count_roles(i->second.info, was ? -1 : 1);
      i->second.changed_at = unix_now();
      if (!was && i->second.available())
        serve_waiters(self);
    },
    [self](trainers_atom, int64_t n, caf::timespan wait) {
      return wait_for(self, true, n, wait);
    },
    [self](validators_atom, int64_t n, caf::timespan wait) {
      return wait_for(self, false, n, wait);
    },
    [self](const timer_tick& tick) {
      auto& st = self->state;
      auto i = st.waiters.find(tick.epoch);
      if (tick.kind != timer_kind::client_wait || i == st.waiters.end())
        return;
      // The wait is over: answer with whoever is active; the round compares.
      i->second.promise.deliver(st.active(i->second.trainers));
      st.waiters.erase(i);
    },
    [self](caf::get_atom, clients_atom) {
      std::vector<client_record> result;
      // An online client was seen within its session's liveness timeout
      // (else the session would have reported it inactive): last seen now.
      // An offline one was last seen when it went offline.
      auto now = unix_now();
      for (auto& [id, c] : self->state.clients)
        result.push_back({c.info.client_id, c.info.name, c.info.trainer,
                          c.info.validator, c.active ? "online" : "offline",
                          c.active ? now : c.changed_at});
      return result;
    },
    [self, models, state](round_config& cfg, round_report_actor& report_to) {
      // Before the job is queued: its start model is not needed yet, and
      // the aggregate of the last round is among the newest models kept.
      if (self->state.standalone)
        drop_models(self, *models, *state, {cfg.model_id});
      trim_records(self, *state);
      return self->delegate(self->state.queue, std::move(cfg),
                            std::move(report_to));
    },
    [self](const model_update& x) {
      return self->delegate(self->state.queue, x);
    },
    [self](const model_validation& x) {
      return self->delegate(self->state.queue, x);
    },
    [self](const task_refused& x) { self->send(self->state.queue, x); },
    [self](caf::flush_atom) {
      return self->delegate(self->state.queue, caf::flush_atom::value);
    },
    [self](status_record& x) {
      auto& st = self->state;
      x.combiner_id = st.cfg.combiner_id;
      if (st.status_sink)
        self->send(st.status_sink, std::move(x));
    },
    [self](caf::subscribe_atom, status_sink_actor& sink) {
      self->state.status_sink = std::move(sink);
    },
    [self, models, state](committed_atom, const std::string& model_id) {
      self->send(self->state.staging, committed_atom::value, model_id);
      drop_models(self, *models, *state, {model_id});
    },
    [self](drain_atom, bool on) {
      auto& st = self->state;
      if (on == !st.drain_reason.empty())
        return;
      st.drain_reason = on ? "combiner " + st.cfg.combiner_id
                               + " is draining: ask the controller for "
                                 "another combiner (clients/add)"
                           : std::string{};
      if (on)
        spdlog::info("combiner {}: draining: the task streams of its {} "
                     "client(s) end, new ones are refused",
                     st.cfg.combiner_id, st.clients.size());
      else
        spdlog::info("combiner {}: no longer draining: task streams are "
                     "taken again",
                     st.cfg.combiner_id);
      for (auto& [id, c] : st.clients)
        self->send(c.session, drain_atom::value, on, st.drain_reason);
    },
  };
}

} // namespace rondo
