#include "actors/round.hpp"

#include "actors/aggregator.hpp"
#include "actors/type_ids.hpp"
#include "api/metrics.hpp"
#include "messages/error.hpp"
#include "messages/ids.hpp"
#include "model/aggregator.hpp"
#include "model/npz.hpp"
#include "storage/model_store.hpp"
#include "storage/state_store.hpp"

#include <caf/actor_cast.hpp>
#include <caf/stateful_actor.hpp>
#include <caf/typed_event_based_actor.hpp>

#include <algorithm>
#include <iostream>
#include <iterator>
#include <random>
#include <sstream>

namespace rondo {

namespace {

using self_ptr = round_actor::stateful_pointer<round_state>;
using outcome = round_task_entry::outcome;

double seconds(caf::timespan d) {
  return std::chrono::duration<double>(d).count();
}

std::string num(double x) {
  std::ostringstream os;
  os << x;
  return os.str();
}

bool training(const round_state& st) {
  return st.job.config.task == round_task::training;
}

metrics::round_kind kind(const round_state& st) {
  return training(st) ? metrics::round_kind::training
                      : metrics::round_kind::validation;
}

/// The `what` of the timer that bounds the wait for the queue's `finish`.

// Per-client work after the record is durable (the queue's `finish`) or
// its bound passed: the sessions of unanswered tasks forget them, this
// round's model updates are removed when configured, and the round quits.
// It cannot change the round's outcome.
void housekeep(self_ptr self) {
  auto& st = self->state;
  if (st.outstanding > 0)
    for (auto& [cid, task] : st.tasks)
      if (round_state::is_outstanding(task.state))
        self->send(task.session, finish_atom::value, cid);
  if (st.job.config.delete_models_storage && !st.update_ids.empty())
    static_cast<void>(st.deps.models->remove_many(st.update_ids));
  self->quit();
}

// Ends the round: fills the record's closing fields, stops the aggregator
// and hands the record (moved, not copied) to the queue, which records it
// before anyone hears of it. Runs exactly once. Walks the tasks only when
// some are unanswered (they are listed as silent).
void conclude(self_ptr self) {
  auto& st = self->state;
  if (st.current == round_state::phase::done)
    return;
  st.current = round_state::phase::done;
  auto& rec = st.record;
  rec.ended_at = unix_now();
  rec.nr_aggregated_models = training(st) ? st.accepted : 0;
  if (st.outstanding > 0)
    for (auto& [cid, task] : st.tasks)
      if (round_state::is_outstanding(task.state))
        rec.clients_silent.push_back(task.client.client_id);
  metrics::count_round(rec, kind(st));
  if (st.agg)
    // kill: an actor ignores an exit message with reason normal.
    self->send_exit(st.agg, caf::exit_reason::kill);
  if (!st.report_to) {
    housekeep(self);
    return;
  }
  self->send(st.report_to, std::move(rec));
  self->delayed_send(self, st.deps.settings.request_timeout,
                     timer_tick{timer_kind::round_finish, ++st.epoch, {}});
}

void fail(self_ptr self, const std::string& reason) {
  if (self->state.current == round_state::phase::done)
    return;
  auto& rec = self->state.record;
  rec.status = round_status::failed;
  rec.reason = reason;
  rec.model_id.clear();
  conclude(self);
}

void succeed(self_ptr self, const std::string& model_id) {
  if (self->state.current == round_state::phase::done)
    return;
  auto& rec = self->state.record;
  rec.status = round_status::success;
  rec.reason.clear();
  rec.model_id = model_id;
  conclude(self);
}

void close_round(self_ptr self, const std::string& why);

// Why a validation (or prediction) round in which no answer was accepted
// failed: "no validation accepted: 2 validators asked, 1 silent, 1 rejected
// (c2: <reason>; <why it closed>)". At most three rejections are quoted.
std::string no_validation_reason(const round_state& st,
                                 const std::string& why) {
  auto& rejected = st.record.clients_rejected;
  auto asked = st.tasks.size();
  auto silent = asked - std::min(asked, rejected.size());
  std::string text = "no validation accepted: " + std::to_string(asked)
                     + (asked == 1 ? " validator" : " validators")
                     + " asked, " + std::to_string(silent) + " silent, "
                     + std::to_string(rejected.size()) + " rejected (";
  constexpr size_t quoted = 3;
  for (size_t i = 0; i < rejected.size() && i < quoted; ++i)
    text += rejected[i].client_id + ": " + rejected[i].reason + "; ";
  if (rejected.size() > quoted)
    text += std::to_string(rejected.size() - quoted) + " more; ";
  return text + why + ")";
}

// Closes the round if nothing more can change its outcome.
void check_close(self_ptr self) {
  auto& st = self->state;
  if (st.current != round_state::phase::running)
    return;
  if (training(st) && st.accepted >= st.buffer_target)
    close_round(self, "buffer_size reached");
  else if (st.all_resolved())
    close_round(self, "every task answered or cancelled");
}

void close_round(self_ptr self, const std::string& why) {
  auto& st = self->state;
  auto& cfg = st.job.config;
  st.current = round_state::phase::closing;
  auto now = self->clock().now();
  st.record.time_exec_training = seconds(now - st.tasks_sent);
  if (!training(st)) {
    if (st.accepted == 0)
      fail(self, no_validation_reason(st, why));
    else
      succeed(self, cfg.model_id);
    return;
  }
  if (st.accepted == 0) {
    fail(self, "no model update was accepted ("
                 + std::to_string(st.record.clients_rejected.size())
                 + " rejected, " + why + ")");
    return;
  }
  if (st.accepted < cfg.clients_required) {
    fail(self, "only " + std::to_string(st.accepted)
                 + " model updates were accepted, clients_required is "
                 + std::to_string(cfg.clients_required) + " (" + why + ")");
    return;
  }
  self->request(st.agg, st.deps.settings.request_timeout, finish_atom::value,
                new_id())
    .then(
      [self](const model_record& rec, double aggregate_s, double write_s) {
        auto& st = self->state;
        auto done = self->clock().now();
        st.record.time_model_aggregation = st.fold_seconds + aggregate_s;
        st.record.time_model_write = write_s;
        st.record.time_combination = seconds(done - st.tasks_sent);
        succeed(self, rec.model_id);
      },
      [self](caf::error& err) {
        fail(self, "aggregation failed: " + render(err));
      });
}

// Sends every selected client its task and arms the round timeout.
void send_tasks(self_ptr self, std::vector<active_client> selected) {
  auto& st = self->state;
  auto& cfg = st.job.config;
  st.current = round_state::phase::running;
  auto data = to_json(cfg);
  auto me = caf::actor_cast<round_actor>(self);
  for (auto& c : selected) {
    st.record.clients_selected.push_back(c.info.client_id);
    auto cid = new_id();
    st.add_task(cid, round_task_entry{c.info, c.session, outcome::pending});
    client_task task{cid, cfg.round_id, cfg.session_id, cfg.model_id,
                     cfg.task, data};
    self->request(c.session, st.deps.settings.request_timeout, task, me)
      .then(
        [self, cid](bool delivered) {
          auto& st = self->state;
          auto& t = st.tasks.at(cid);
          if (t.state == outcome::pending
              && st.current != round_state::phase::done)
            st.set(t, delivered ? outcome::delivered : outcome::cancelled);
          check_close(self);
        },
        [self, cid](caf::error&) {
          auto& st = self->state;
          auto& t = st.tasks.at(cid);
          if (t.state == outcome::pending
              && st.current != round_state::phase::done)
            st.set(t, outcome::cancelled);
          check_close(self);
        });
  }
  auto n = static_cast<int64_t>(selected.size());
  st.record.nr_expected_updates = n;
  st.buffer_target = cfg.buffer_size == -1 ? n : cfg.buffer_size;
  st.tasks_sent = self->clock().now();
  // Progress: which clients have tasks, for the queue to persist (a
  // restart then names them) and the pusher to see. One copy per round.
  if (st.report_to)
    self->send(st.report_to, st.record);
  auto timeout = std::chrono::duration_cast<caf::timespan>(
    std::chrono::duration<double>(cfg.round_timeout));
  self->delayed_send(self, timeout, timer_tick{timer_kind::round_timeout, ++st.epoch, {}});
}

// Picks the clients for the round: exactly the active ones among
// selected_clients when given, else a random sample of at most max_clients.
void select_and_send(self_ptr self, std::vector<active_client> active) {
  auto& cfg = self->state.job.config;
  std::vector<active_client> chosen;
  if (!cfg.selected_clients.empty()) {
    for (auto& c : active)
      if (std::find(cfg.selected_clients.begin(), cfg.selected_clients.end(),
                    c.info.client_id)
          != cfg.selected_clients.end())
        chosen.push_back(c);
    if (static_cast<int64_t>(chosen.size()) < cfg.clients_required) {
      fail(self, "only " + std::to_string(chosen.size())
                   + " of the selected_clients are active, clients_required "
                     "is "
                   + std::to_string(cfg.clients_required));
      return;
    }
  } else {
    auto k = std::min<size_t>(active.size(),
                              static_cast<size_t>(cfg.max_clients));
    std::mt19937_64 gen{std::random_device{}()};
    std::sample(active.begin(), active.end(), std::back_inserter(chosen), k,
                gen);
  }
  send_tasks(self, std::move(chosen));
}

void stage(self_ptr self, std::vector<active_client> active) {
  auto& st = self->state;
  st.current = round_state::phase::staging;
  auto t0 = self->clock().now();
  self->request(st.deps.staging, st.deps.settings.staging_timeout,
                caf::get_atom::value, st.job.config.model_id)
    .then(
      [self, t0, active](model_blob& blob) mutable {
        auto& st = self->state;
        st.record.time_model_load = seconds(self->clock().now() - t0);
        if (training(st)) {
          auto global = read_npz_bytes(*blob.bytes);
          if (!global) {
            fail(self, "global model " + blob.model_id
                         + " is not a valid model: "
                         + error_detail(global.error()));
            return;
          }
          if (auto err = st.pending_agg->begin(*global)) {
            fail(self, "aggregator: " + render(err));
            return;
          }
          st.agg = self->spawn(aggregator_actor_impl, st.pending_agg,
                               st.deps.models);
        }
        select_and_send(self, std::move(active));
      },
      [self](caf::error& err) {
        fail(self, "staging failed: " + render(err));
      });
}

void wait_for_clients(self_ptr self) {
  auto& st = self->state;
  auto& cfg = st.job.config;
  auto wait = st.deps.settings.client_wait_timeout;
  auto n = cfg.clients_required;
  auto role = training(st) ? "trainers" : "validators";
  auto on_clients = [self, n, wait, role](std::vector<active_client>& xs) {
    if (static_cast<int64_t>(xs.size()) < n) {
      fail(self, "too few active " + std::string{role} + ": "
                   + std::to_string(xs.size()) + " active, clients_required "
                   + "is " + std::to_string(n) + " (waited "
                   + num(seconds(wait)) + " s)");
      return;
    }
    stage(self, std::move(xs));
  };
  auto on_error = [self](caf::error& err) {
    fail(self, "cannot list active clients: " + render(err));
  };
  // The directory answers by itself after `wait`; the request's own bound
  // only guards against a directory that died.
  auto bound = wait + st.deps.settings.request_timeout;
  if (training(st))
    self->request(st.deps.clients, bound, trainers_atom::value, n, wait)
      .then(on_clients, on_error);
  else
    self->request(st.deps.clients, bound, validators_atom::value, n, wait)
      .then(on_clients, on_error);
}

constexpr auto of_update = metrics::round_kind::training;
constexpr auto of_validation = metrics::round_kind::validation;

// A stale model update (`what` of_update) or validation: counted here, as
// the round record does not list it.
update_verdict stale(metrics::round_kind what, const std::string& reason) {
  metrics::count_rejection(what, metrics::rejection::stale);
  return {false, "stale update: " + reason};
}

// An answer that cannot be accepted (a model update in a validation round or
// the other way round, another base model than the round's): when its
// sender owns the task it names, that task is rejected with the reason (no
// other answer will come, so the round must not wait for one); otherwise
// it is stale.
update_verdict refuse_answer(self_ptr self, metrics::round_kind what,
                             const std::string& correlation_id,
                             const std::string& client_id,
                             const std::string& reason) {
  auto& st = self->state;
  std::string why_not;
  if (correlation_id.empty() || st.current != round_state::phase::running
      || !st.refuse(correlation_id, client_id, reason, why_not))
    return stale(what, reason);
  auto& t = st.tasks.at(correlation_id);
  self->send(t.session, finish_atom::value, correlation_id);
  check_close(self);
  return {false, reason};
}

// The verdict on an update whose aggregation finished after the round had
// ended without it.
update_verdict closed_before_aggregated(const round_state& st) {
  return stale(of_update, "round " + st.job.config.round_id
                            + " ended before the update was aggregated");
}

} // namespace

std::pair<const std::string, round_task_entry>*
round_state::find_open(const std::string& correlation_id,
                       const std::string& client_id, std::string& reason) {
  auto& round_id = job.config.round_id;
  auto i = tasks.find(correlation_id);
  if (i == tasks.end()) {
    reason = "correlation id " + correlation_id + " is not a task of round "
             + round_id;
    return nullptr;
  }
  if (i->second.client.client_id != client_id) {
    reason = "task " + correlation_id + " of round " + round_id
             + " belongs to client " + i->second.client.client_id + ", not "
             + client_id;
    return nullptr;
  }
  if (!is_outstanding(i->second.state)) {
    reason = "task " + correlation_id + " of round " + round_id
             + " was already answered or cancelled";
    return nullptr;
  }
  return &*i;
}

round_task_entry* round_state::match(const std::string& correlation_id,
                                     const std::string& client_id,
                                     const std::string& model_id,
                                     std::string& reason,
                                     std::string* matched_id) {
  auto& round_id = job.config.round_id;
  if (!correlation_id.empty()) {
    auto* x = find_open(correlation_id, client_id, reason);
    if (!x)
      return nullptr;
    if (model_id != job.config.model_id) {
      reason = "client " + client_id + " trained from model " + model_id
               + ", round " + round_id + " uses " + job.config.model_id;
      return nullptr;
    }
    if (matched_id)
      *matched_id = x->first;
    return &x->second;
  }
  // An empty correlation id: the client's outstanding task on this model.
  if (model_id == job.config.model_id)
    for (auto& [cid, task] : tasks)
      if (task.client.client_id == client_id && is_outstanding(task.state)) {
        if (matched_id)
          *matched_id = cid;
        return &task;
      }
  reason = "client " + client_id + " has no outstanding task on model "
           + model_id + " in round " + round_id;
  return nullptr;
}

bool round_state::refuse(const std::string& correlation_id,
                         const std::string& client_id,
                         const std::string& reason, std::string& why_not) {
  auto* x = find_open(correlation_id, client_id, why_not);
  if (!x)
    return false;
  set(x->second, outcome::rejected);
  record.clients_rejected.push_back({client_id, reason});
  return true;
}

round_task_entry& round_state::add_task(const std::string& correlation_id,
                                        round_task_entry entry) {
  entry.state = outcome::pending;
  auto [i, added] = tasks.emplace(correlation_id, std::move(entry));
  if (added)
    ++outstanding;
  return i->second;
}

void round_state::set(round_task_entry& task, outcome to) {
  auto was = is_outstanding(task.state);
  auto is = is_outstanding(to);
  if (was && !is)
    --outstanding;
  else if (!was && is)
    ++outstanding;
  if (task.state == outcome::answering)
    --answering;
  if (to == outcome::answering)
    ++answering;
  task.state = to;
}

round_actor::behavior_type round_impl(round_actor::stateful_pointer<round_state> self,
                                      job_record job, round_deps deps,
                                      round_report_actor report_to) {
  auto& st = self->state;
  st.job = std::move(job);
  st.deps = std::move(deps);
  st.report_to = std::move(report_to);
  auto& cfg = st.job.config;
  auto& rec = st.record;
  rec.round_id = cfg.round_id;
  rec.session_id = cfg.session_id;
  rec.job_id = st.job.job_id;
  rec.config = cfg;
  rec.status = round_status::running;
  rec.base_model_id = cfg.model_id;
  rec.timeout = cfg.round_timeout;
  rec.nr_required_updates = cfg.clients_required;
  rec.started_at = unix_now();
  // Configuration errors fail the round before anyone is asked anything.
  if (auto err = validate(cfg)) {
    fail(self, render(err));
  } else if (cfg.model_id.empty()) {
    fail(self, "round config has no model_id");
  } else if (training(st)) {
    auto agg = make_aggregator(cfg.aggregator, cfg.aggregator_kwargs,
                               st.deps.optimizer);
    if (!agg)
      fail(self, "aggregator: " + render(agg.error()));
    else
      st.pending_agg = std::shared_ptr<aggregator>{std::move(*agg)};
  }
  if (st.current != round_state::phase::done)
    wait_for_clients(self);
  return {
    [self](const model_update& u) -> caf::result<update_verdict> {
      auto& st = self->state;
      if (!training(st))
        return refuse_answer(self, of_update, u.correlation_id, u.client_id,
                             "round " + st.job.config.round_id
                               + " is a validation round, it takes no model "
                                 "update");
      if (st.current != round_state::phase::running)
        return stale(of_update, "round " + st.job.config.round_id
                                    + " is not accepting model updates");
      std::string reason;
      std::string cid;
      auto* task = st.match(u.correlation_id, u.client_id, u.model_id, reason,
                            &cid);
      if (!task)
        return refuse_answer(self, of_update, u.correlation_id, u.client_id,
                             reason);
      st.set(*task, outcome::answering);
      if (!u.model_update_id.empty())
        st.update_ids.push_back(u.model_update_id);
      auto rp = self->make_response_promise<update_verdict>();
      self->request(st.agg, st.deps.settings.request_timeout, u)
        .then(
          [self, rp, cid, u](update_verdict& v) mutable {
            auto& st = self->state;
            if (st.current == round_state::phase::done) {
              self->send(st.tasks.at(cid).session, finish_atom::value, cid);
              rp.deliver(closed_before_aggregated(st));
              return;
            }
            st.fold_seconds += v.fold_seconds;
            auto& t = st.tasks.at(cid);
            if (v.accepted) {
              st.set(t, outcome::accepted);
              ++st.accepted;
              st.record.clients_accepted.push_back(u.client_id);
              st.record.num_examples += u.num_examples;
            } else {
              st.set(t, outcome::rejected);
              st.record.clients_rejected.push_back({u.client_id, v.reason});
            }
            self->send(t.session, finish_atom::value, cid);
            rp.deliver(v);
            check_close(self);
          },
          [self, rp, cid, u](caf::error& err) mutable {
            auto& st = self->state;
            if (st.current == round_state::phase::done) {
              self->send(st.tasks.at(cid).session, finish_atom::value, cid);
              rp.deliver(closed_before_aggregated(st));
              return;
            }
            auto& t = st.tasks.at(cid);
            st.set(t, outcome::rejected);
            auto why = "aggregator failed: " + render(err);
            st.record.clients_rejected.push_back({u.client_id, why});
            rp.deliver(update_verdict{false, why});
            check_close(self);
          });
      return rp;
    },
    [self](const model_validation& v) -> caf::result<update_verdict> {
      auto& st = self->state;
      if (training(st))
        return refuse_answer(self, of_validation, v.correlation_id,
                             v.client_id,
                             "round " + st.job.config.round_id
                               + " is a training round, it takes no "
                                 "validation");
      if (st.current != round_state::phase::running)
        return stale(of_validation, "round " + st.job.config.round_id
                                    + " is not accepting validations");
      std::string reason;
      std::string cid;
      auto* task = st.match(v.correlation_id, v.client_id, v.model_id, reason,
                            &cid);
      if (!task)
        return refuse_answer(self, of_validation, v.correlation_id,
                             v.client_id, reason);
      validation_record vr;
      vr.validation_id = cid;
      vr.model_id = v.model_id;
      vr.client_id = v.client_id;
      vr.client_name = v.client_name;
      vr.correlation_id = cid;
      vr.session_id = st.job.config.session_id;
      vr.round_id = st.job.config.round_id;
      vr.metrics_json = v.data;
      vr.received_at = unix_now();
      st.record.validations.push_back(vr);
      if (auto err = st.deps.state->put(vr)) {
        st.set(*task, outcome::rejected);
        auto why = "cannot store the validation: " + render(err);
        st.record.clients_rejected.push_back({v.client_id, why});
        check_close(self);
        return update_verdict{false, why};
      }
      st.set(*task, outcome::accepted);
      ++st.accepted;
      st.record.clients_accepted.push_back(v.client_id);
      self->send(task->session, finish_atom::value, cid);
      check_close(self);
      return update_verdict{true, {}};
    },
    [self](const task_cancelled& tc) {
      auto& st = self->state;
      if (st.current == round_state::phase::done)
        return;
      auto i = st.tasks.find(tc.correlation_id);
      if (i == st.tasks.end())
        return;
      auto& t = i->second;
      if (round_state::is_outstanding(t.state)) {
        st.set(t, outcome::cancelled);
        if (tc.failed)
          st.record.clients_rejected.push_back({t.client.client_id,
                                                tc.reason});
        else
          st.record.clients_silent.push_back(t.client.client_id);
      }
      check_close(self);
    },
    [self](const task_refused& x) {
      auto& st = self->state;
      if (st.current != round_state::phase::running)
        return;
      std::string why_not;
      if (!st.refuse(x.correlation_id, x.client_id, x.reason, why_not)) {
        std::cerr << "round " << st.job.config.round_id
                  << ": ignored the edge's refusal of client '" << x.client_id
                  << "' (" << x.reason << "): " << why_not << std::endl;
        return;
      }
      auto& t = st.tasks.at(x.correlation_id);
      self->send(t.session, finish_atom::value, x.correlation_id);
      check_close(self);
    },
    [self](terminate_atom) { fail(self, "terminated"); },
    [self](finish_atom) {
      if (self->state.current == round_state::phase::done)
        housekeep(self);
    },
    [self](const timer_tick& tick) {
      auto& st = self->state;
      if (tick.epoch != st.epoch)
        return;
      if (tick.kind == timer_kind::round_finish) {
        if (st.current == round_state::phase::done)
          housekeep(self);
        return;
      }
      if (tick.kind != timer_kind::round_timeout
          || st.current != round_state::phase::running)
        return;
      close_round(self, "round_timeout of "
                          + num(st.job.config.round_timeout) + " s passed");
    },
  };
}

} // namespace rondo
