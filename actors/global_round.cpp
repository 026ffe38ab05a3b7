#include "actors/global_round.hpp"

#include "actors/model_transfer.hpp"
#include "actors/type_ids.hpp"
#include "api/metrics.hpp"
#include "messages/error.hpp"
#include "messages/ids.hpp"
#include "model/aggregator.hpp"
#include "model/npz.hpp"
#include "storage/model_store.hpp"
#include "storage/state_store.hpp"
#include "storage/update_cache.hpp"

#include <caf/actor_cast.hpp>
#include <caf/send.hpp>
#include <caf/stateful_actor.hpp>
#include <caf/typed_event_based_actor.hpp>

#include <spdlog/spdlog.h>

#include <algorithm>
#include <sstream>

namespace rondo {

namespace {

using self_ptr = global_round_actor::stateful_pointer<global_round_state>;
using phase = global_round_state::phase;

/// Bound on fetching one combiner model (each chunk is bounded by the
/// request timeout).
constexpr auto fetch_bound = std::chrono::seconds(7200);

std::string secs_text(double s) {
  std::ostringstream os;
  os << s;
  return os.str();
}

caf::timespan seconds(double s) {
  return std::chrono::duration_cast<caf::timespan>(
    std::chrono::duration<double>(s));
}

std::string joined(const std::vector<std::string>& xs) {
  std::string out;
  for (auto& x : xs)
    out += (out.empty() ? "" : ", ") + x;
  return out;
}

round_record& record(self_ptr self) {
  return self->state.setup.round;
}

bool predicting(const global_round_state& st) {
  return !st.setup.prediction_id.empty();
}

// Stores the round record as far as it got: a restarted controller reads
// it to know whether the round's model was committed.
void persist(self_ptr self) {
  auto& st = self->state;
  if (predicting(st))
    return;
  if (auto err = st.deps.state->put(st.setup.round))
    spdlog::error("controller: cannot store the progress of round {}: {}",
                  st.setup.round.round_id, render(err));
}

// Removes a model the round no longer needs; a failure only costs disk.
void drop_model(global_round_state& st, const std::string& id,
                const char* what) {
  if (auto err = st.deps.models->remove(id))
    spdlog::warn("controller: cannot remove {} {}: {}", what, id,
                 render(err));
}

// Stops the report actors of the phase that ended.
void close_phase(self_ptr self) {
  auto& st = self->state;
  for (auto& sink : st.report_sinks)
    // Not exit_reason::normal: an actor ignores a normal exit message (and
    // drops its link), so the sink would live on.
    self->send_exit(sink, caf::exit_reason::kill);
  st.report_sinks.clear();
  ++st.epoch;
}

// Copies each combiner's part of the phase into the round's record.
void keep_combiner_parts(global_round_state& st) {
  auto& r = st.setup.round;
  r.combiners.clear();
  for (auto& [id, rep] : st.reports)
    r.combiners.push_back(rep);
}

// The round's terminal record, stored with its validations in one synced
// batch; the round then reports it and quits.
round_record conclude(self_ptr self, round_status status,
                      const std::string& reason) {
  auto& st = self->state;
  auto training_phase = st.current != phase::validating;
  close_phase(self);
  auto& r = record(self);
  r.status = status;
  r.reason = reason;
  if (status != round_status::success)
    r.model_id.clear();
  r.ended_at = unix_now();
  r.validations = st.validations;
  // The combiners' parts of the training phase (the validation phase kept
  // them before its reports replaced them).
  if (training_phase && !predicting(st))
    keep_combiner_parts(st);
  st.current = phase::done;
  if (!predicting(st)) {
    metrics::count_round(r, metrics::round_kind::training);
    storage::state_batch batch;
    batch.put(r);
    for (auto& v : st.validations)
      batch.put(v);
    if (auto err = st.deps.state->commit(batch))
      spdlog::error("controller: cannot store round {}: {}", r.round_id,
                    render(err));
    spdlog::info("controller: round {} {}{}", r.round_id, to_string(status),
                 reason.empty() ? "" : ": " + reason);
  }
  return r;
}

void end_round(self_ptr self, round_status status, const std::string& reason) {
  auto r = conclude(self, status, reason);
  self->send(self->state.deps.parent, std::move(r));
  self->quit();
}

// A report actor for one combiner in the current phase: forwards the
// combiner's progress record and its terminal record.
round_report_actor report_sink(self_ptr self, const std::string& cid) {
  auto me = caf::actor_cast<global_round_actor>(self);
  auto epoch = self->state.epoch;
  // Linked: a sink dies with the round (a sink that was serialized to a
  // remote combiner stays in CAF's registry until it exits).
  auto sink = self->spawn<caf::linked>(
    [me, cid, epoch](round_report_actor::pointer rs)
      -> round_report_actor::behavior_type {
      return {
        [=](const round_record& r) {
          rs->send(me, combiner_round_done{cid, epoch, r});
          if (r.status == round_status::success
              || r.status == round_status::failed)
            rs->quit();
        },
      };
    });
  self->state.report_sinks.push_back(sink);
  return sink;
}

// Pushes `cfg` to each named combiner; their reports arrive as
// combiner_round_done. Arms the phase timer.
void push_round(self_ptr self, const std::vector<std::string>& ids,
                const round_config& cfg) {
  auto& st = self->state;
  st.reports.clear();
  for (auto& cid : ids) {
    st.reports[cid] = combiner_report{cid, round_status::running, {}, {}, 0};
    auto epoch = st.epoch;
    self
      ->request(st.setup.combiners.at(cid), st.deps.request_timeout, cfg,
                report_sink(self, cid))
      .then([](const std::string&) {},
            [self, cid, epoch](caf::error& err) {
              // Reported like any other failure of the combiner's part.
              combiner_round_done done{cid, epoch, {}};
              done.record.status = round_status::failed;
              done.record.reason = "cannot push the round: " + render(err);
              self->send(self, done);
            });
  }
  auto bound = seconds(cfg.round_timeout + st.setup.session.grace)
               + st.deps.client_wait;
  self->delayed_send(self, bound,
                     timer_tick{timer_kind::phase_timeout, st.epoch, {}});
}

round_config combiner_round(const global_round_state& st, round_task task) {
  auto& s = st.setup.session;
  round_config c;
  c.round_id = st.setup.round.round_id;
  if (task == round_task::validation)
    c.round_id += "-validation";
  c.session_id = st.setup.round.session_id;
  c.model_id = task == round_task::validation ? st.setup.round.model_id
                                              : st.setup.round.base_model_id;
  c.task = task;
  c.round_timeout = s.round_timeout;
  c.buffer_size = s.buffer_size;
  c.clients_required = task == round_task::training ? s.clients_required : 1;
  c.clients_requested = s.clients_requested;
  c.max_clients = s.clients_requested;
  c.client_settings = s.client_settings;
  c.delete_models_storage = s.delete_models_storage;
  c.selected_clients = s.selected_clients;
  // Combiners average plainly; the session's aggregator runs here.
  c.aggregator = "fedavg";
  c.validate = false;
  return c;
}

// Why no validation of the round's model arrived, from the validation
// phase's combiner parts.
std::string validation_failure(const global_round_state& st) {
  std::string out;
  for (auto& [id, rep] : st.reports) {
    if (!out.empty())
      out += "; ";
    out += id + ": "
           + (rep.reason.empty() ? std::string{to_string(rep.status)}
                                 : rep.reason);
  }
  return "no validation accepted" + (out.empty() ? "" : " (" + out + ")");
}

void start_validation(self_ptr self) {
  auto& st = self->state;
  close_phase(self);
  keep_combiner_parts(st);
  st.current = phase::validating;
  std::vector<std::string> ids;
  for (auto& [id, c] : st.setup.combiners)
    ids.push_back(id);
  if (ids.empty()) {
    record(self).validation_failure
      = "no validation: no combiner connected";
    end_round(self, round_status::success, {});
    return;
  }
  persist(self);
  push_round(self, ids, combiner_round(st, round_task::validation));
}

// Commits the reduced model (its bytes, then the trail entry and the
// round's progress in one synced batch) and moves on to validation or the
// round's end.
void commit_model(self_ptr self, const model& reduced) {
  auto& st = self->state;
  auto& r = record(self);
  auto bytes = write_npz_bytes(reduced);
  auto id = new_id();
  if (!bytes) {
    end_round(self, round_status::failed,
              "cannot encode the reduced model: " + render(bytes.error()));
    return;
  }
  if (auto info = st.deps.models->put(id, *bytes); !info) {
    end_round(self, round_status::failed,
              "cannot store the reduced model: " + render(info.error()));
    return;
  }
  model_record trail{id, r.base_model_id, r.session_id, r.round_id,
                     unix_now()};
  r.model_id = id;
  keep_combiner_parts(st);
  storage::state_batch batch;
  batch.put(trail);
  batch.put(r);
  if (auto err = st.deps.state->commit(batch)) {
    drop_model(st, id, "uncommitted model");
    end_round(self, round_status::failed,
              "cannot commit the model trail: " + render(err));
    return;
  }
  if (st.setup.session.validate)
    start_validation(self);
  else
    end_round(self, round_status::success, {});
}

// Fetches and folds in the successful combiners' models one at a time.
void reduce_next(self_ptr self, std::shared_ptr<aggregator> agg,
                 std::vector<std::string> todo) {
  auto& st = self->state;
  if (todo.empty()) {
    auto result = agg->finish();
    if (!result) {
      end_round(self, round_status::failed,
                "reducing combiner models failed: "
                  + render(result.error()));
      return;
    }
    commit_model(self, *result);
    return;
  }
  auto cid = todo.back();
  todo.pop_back();
  auto& rep = st.reports.at(cid);
  auto fail_part = [self, cid](const std::string& why) {
    auto& rep = self->state.reports.at(cid);
    rep.status = round_status::failed;
    rep.reason = why;
  };
  auto i = st.setup.combiners.find(cid);
  if (i == st.setup.combiners.end()) {
    fail_part("combiner lost");
    reduce_next(self, agg, std::move(todo));
    return;
  }
  auto fetcher = self->spawn<caf::linked>(
    model_fetcher, caf::actor_cast<chunk_source_actor>(i->second),
    rep.model_id, st.deps.models, st.deps.request_timeout);
  auto epoch = st.epoch;
  self->request(fetcher, fetch_bound, caf::get_atom::value)
    .then(
      [self, agg, todo, cid, epoch, fail_part](std::string& id) mutable {
        auto& st = self->state;
        if (epoch != st.epoch)
          return;
        // Decoded chunk by chunk from the store: the combiner's model is
        // never whole in memory as bytes.
        auto decoded = storage::read_decoded(*st.deps.models, id);
        drop_model(st, id, "fetched combiner model");
        caf::error err;
        if (!decoded)
          err = decoded.error();
        else
          err = agg->add(**decoded, st.reports.at(cid).num_examples);
        if (err)
          fail_part("its model was rejected: " + render(err));
        reduce_next(self, agg, std::move(todo));
      },
      [self, agg, todo, epoch, fail_part](caf::error& err) mutable {
        if (epoch != self->state.epoch)
          return;
        fail_part("cannot fetch its model: " + render(err));
        reduce_next(self, agg, std::move(todo));
      });
}

std::string reasons(const std::map<std::string, combiner_report>& reports) {
  std::string out;
  for (auto& [id, rep] : reports) {
    if (rep.status == round_status::success)
      continue;
    if (!out.empty())
      out += "; ";
    out += id + ": " + (rep.reason.empty() ? "no report" : rep.reason);
  }
  return out;
}

void reduce(self_ptr self) {
  auto& st = self->state;
  // The last report stored the round's parts already (on_report).
  st.current = phase::reducing;
  std::vector<std::string> ok;
  for (auto& [id, rep] : st.reports)
    if (rep.status == round_status::success)
      ok.push_back(id);
  if (ok.empty()) {
    end_round(self, round_status::failed,
              "no combiner succeeded: " + reasons(st.reports));
    return;
  }
  auto agg = make_aggregator(st.setup.session.aggregator,
                             st.setup.session.aggregator_kwargs,
                             st.setup.optimizer);
  auto global_bytes = st.deps.models->get(record(self).base_model_id);
  caf::expected<model> global = caf::make_error(caf::sec::none);
  if (global_bytes)
    global = read_npz_bytes(*global_bytes);
  caf::error err;
  if (!agg)
    err = agg.error();
  else if (!global_bytes)
    err = global_bytes.error();
  else if (!global)
    err = global.error();
  else
    err = (*agg)->begin(*global);
  if (err) {
    end_round(self, round_status::failed, "cannot reduce: " + render(err));
    return;
  }
  reduce_next(self, std::shared_ptr<aggregator>{std::move(*agg)},
              std::move(ok));
}

// Stores the clients' answers of the prediction run that ended.
void finish_prediction(self_ptr self) {
  auto& st = self->state;
  storage::state_batch batch;
  for (auto& v : st.validations) {
    prediction_record p;
    p.key = v.correlation_id.empty() ? new_id() : v.correlation_id;
    p.prediction_id = st.setup.prediction_id;
    p.model_id = v.model_id;
    p.data = v.metrics_json;
    p.correlation_id = v.correlation_id;
    p.client_id = v.client_id;
    p.client_name = v.client_name;
    p.timestamp = v.received_at;
    batch.put(p);
  }
  if (auto err = st.deps.state->commit(batch))
    spdlog::error("controller: cannot store prediction {}: {}",
                  st.setup.prediction_id, render(err));
  spdlog::info("controller: prediction {} ended: {} answers",
               st.setup.prediction_id, st.validations.size());
  end_round(self, st.validations.empty() ? round_status::failed
                                         : round_status::success,
            st.validations.empty() ? "no client answered" : "");
}

// The phase's reports are all in (or overdue): move on.
void phase_complete(self_ptr self) {
  auto& st = self->state;
  switch (st.current) {
    case phase::training:
      reduce(self);
      return;
    case phase::predicting:
      finish_prediction(self);
      return;
    case phase::validating:
      // Validation outcomes do not fail the round (its model is
      // committed); their absence is recorded.
      if (st.validations.empty())
        record(self).validation_failure = validation_failure(st);
      end_round(self, round_status::success, {});
      return;
    default:
      return;
  }
}

// The clients that had a combiner's tasks, as its progress reported them.
std::string clients_of(const global_round_state& st, const std::string& cid) {
  auto i = st.asked.find(cid);
  if (i == st.asked.end() || i->second.empty())
    return "no client had its tasks yet";
  return std::to_string(i->second.size()) + " client(s) had its tasks: "
         + joined(i->second);
}

// Reacts to one combiner's report (progress or terminal).
void on_report(self_ptr self, const combiner_round_done& done) {
  auto& st = self->state;
  if (done.epoch != st.epoch
      || (st.current != phase::training && st.current != phase::validating
          && st.current != phase::predicting))
    return;
  auto i = st.reports.find(done.combiner_id);
  if (i == st.reports.end() || i->second.status != round_status::running)
    return;
  auto& r = record(self);
  if (done.record.status == round_status::running
      || done.record.status == round_status::pending) {
    // Progress: the clients that got the combiner's tasks.
    if (st.current == phase::training) {
      auto& xs = st.asked[done.combiner_id];
      xs = done.record.clients_selected;
      persist(self);
    }
    return;
  }
  auto& rep = i->second;
  rep.status = done.record.status;
  rep.reason = done.record.reason;
  rep.model_id = done.record.model_id;
  rep.num_examples = done.record.num_examples;
  if (st.current == phase::training) {
    r.nr_expected_updates += done.record.nr_expected_updates;
    r.nr_aggregated_models += done.record.nr_aggregated_models;
    r.num_examples += rep.status == round_status::success
                        ? done.record.num_examples
                        : 0;
    // The terminal record lists the clients asked; those of a progress
    // report are replaced by it.
    st.asked.erase(done.combiner_id);
    for (auto& c : done.record.clients_accepted)
      r.clients_accepted.push_back(c);
    for (auto& c : done.record.clients_rejected)
      r.clients_rejected.push_back(c);
    for (auto& c : done.record.clients_selected)
      r.clients_selected.push_back(c);
    for (auto& c : done.record.clients_silent)
      r.clients_silent.push_back(c);
    keep_combiner_parts(st);
    persist(self);
  } else {
    // Kept under the controller's round (the combiner ran it as
    // "<round>-validation").
    for (auto& v : done.record.validations) {
      st.validations.push_back(v);
      if (st.current == phase::validating)
        st.validations.back().round_id = r.round_id;
    }
  }
  auto all = std::none_of(st.reports.begin(), st.reports.end(), [](auto& kv) {
    return kv.second.status == round_status::running;
  });
  if (all)
    phase_complete(self);
}

// A combiner part that ends without its combiner's report: the clients
// its progress named are listed as selected and silent.
void fail_part_unreported(self_ptr self, const std::string& cid,
                          const std::string& why) {
  auto& st = self->state;
  auto i = st.reports.find(cid);
  if (i == st.reports.end() || i->second.status != round_status::running)
    return;
  combiner_round_done lost{cid, st.epoch, {}};
  lost.record.status = round_status::failed;
  lost.record.reason = why;
  if (st.current == phase::training) {
    lost.record.reason += " (" + clients_of(st, cid) + ")";
    if (auto a = st.asked.find(cid); a != st.asked.end()) {
      lost.record.clients_selected = a->second;
      lost.record.clients_silent = a->second;
    }
  }
  on_report(self, lost);
}

// Every phase ends: a report that never came counts as a failure.
void on_phase_timeout(self_ptr self) {
  auto& st = self->state;
  std::vector<std::string> overdue;
  for (auto& [id, rep] : st.reports)
    if (rep.status == round_status::running)
      overdue.push_back(id);
  for (auto& id : overdue) {
    // Stop the orphaned round at the combiner.
    if (auto i = st.setup.combiners.find(id); i != st.setup.combiners.end())
      caf::anon_send(i->second, caf::flush_atom::value);
    fail_part_unreported(self, id,
                         "no report within the round timeout and grace");
    if (st.current == phase::done)
      return;
  }
}

// Tells the controller whether the round is picking combiners (FEDn's
// "instructing").
void instructing(self_ptr self, bool yes) {
  self->send(self->state.deps.parent, status_atom::value, yes);
}

void select_combiners(self_ptr self) {
  auto& st = self->state;
  st.current = phase::selecting;
  if (st.setup.combiners.empty()) {
    // Wait (bounded) for a combiner to join; the join starts selection.
    self->delayed_send(self, st.deps.client_wait,
                       timer_tick{timer_kind::no_combiner, st.epoch, {}});
    return;
  }
  if (predicting(st)) {
    instructing(self, false);
    st.current = phase::predicting;
    round_config c;
    c.round_id = record(self).round_id;
    c.session_id = st.setup.prediction_id;
    c.model_id = record(self).base_model_id;
    c.task = round_task::prediction;
    c.clients_required = 1;
    c.validate = false;
    std::vector<std::string> ids;
    for (auto& [id, handle] : st.setup.combiners)
      ids.push_back(id);
    push_round(self, ids, c);
    return;
  }
  auto n = st.setup.session.clients_required;
  auto pending = std::make_shared<size_t>(st.setup.combiners.size());
  auto eligible = std::make_shared<std::vector<std::string>>();
  auto counts = std::make_shared<std::string>();
  auto epoch = st.epoch;
  auto done = [self, pending, eligible, counts, epoch] {
    if (--*pending > 0 || epoch != self->state.epoch)
      return;
    if (eligible->empty()) {
      end_round(self, round_status::failed,
                "no combiner has clients_required active trainers ("
                  + *counts + ")");
      return;
    }
    self->state.current = phase::training;
    instructing(self, false);
    std::sort(eligible->begin(), eligible->end());
    push_round(self, *eligible,
               combiner_round(self->state, round_task::training));
  };
  for (auto& [id, handle] : st.setup.combiners) {
    auto cid = id;
    self
      ->request(handle, st.deps.client_wait + st.deps.request_timeout,
                trainers_atom::value, n, st.deps.client_wait)
      .then(
        [eligible, counts, cid, n, done](std::vector<active_client>& xs) {
          if (static_cast<int64_t>(xs.size()) >= n)
            eligible->push_back(cid);
          *counts += (counts->empty() ? "" : ", ") + cid + ": "
                     + std::to_string(xs.size()) + " active";
          done();
        },
        [counts, cid, done](caf::error& err) {
          *counts += (counts->empty() ? "" : ", ") + cid + ": "
                     + render(err);
          done();
        });
  }
}

} // namespace

global_round_actor::behavior_type
global_round_impl(global_round_actor::stateful_pointer<global_round_state> self,
                  global_round_deps deps, global_round_setup setup) {
  auto& st = self->state;
  st.deps = std::move(deps);
  st.setup = std::move(setup);
  if (!predicting(st)) {
    st.setup.round.config = combiner_round(st, round_task::training);
    persist(self);
  }
  select_combiners(self);
  return {
    [self](const combiner_round_done& done) { on_report(self, done); },
    [self](caf::join_atom, const std::string& cid, combiner_actor& handle) {
      auto& st = self->state;
      st.setup.combiners[cid] = handle;
      if (st.current == phase::selecting && st.setup.combiners.size() == 1)
        select_combiners(self);
    },
    [self](lost_atom, const std::string& cid) {
      auto& st = self->state;
      st.setup.combiners.erase(cid);
      fail_part_unreported(self, cid, "combiner " + cid + " lost");
    },
    [self](terminate_atom) -> round_record {
      auto& st = self->state;
      if (st.current == phase::done)
        return st.setup.round;
      // Combiners still working on the round are told to stop: their
      // parts end here, with the round.
      for (auto& [cid, rep] : st.reports)
        if (rep.status == round_status::running) {
          rep.status = round_status::failed;
          rep.reason = "terminated";
          if (auto i = st.setup.combiners.find(cid);
              i != st.setup.combiners.end())
            caf::anon_send(i->second, caf::flush_atom::value);
        }
      // During validation the round's model is committed already: the
      // round stands, without its validations.
      auto committed = st.current == phase::validating;
      if (committed)
        record(self).validation_failure = "terminated before validations "
                                           "arrived";
      auto r = conclude(self,
                        committed ? round_status::success
                                  : round_status::failed,
                        committed ? "" : "terminated");
      self->quit();
      return r;
    },
    [self](const timer_tick& tick) {
      auto& st = self->state;
      if (tick.epoch != st.epoch)
        return;
      switch (tick.kind) {
        case timer_kind::no_combiner:
          if (st.current == phase::selecting && st.setup.combiners.empty())
            end_round(self, round_status::failed,
                      "no combiner connected within "
                        + secs_text(std::chrono::duration<double>(
                                      st.deps.client_wait)
                                      .count())
                        + " s");
          return;
        case timer_kind::phase_timeout:
          if (st.current == phase::training
              || st.current == phase::validating
              || st.current == phase::predicting)
            on_phase_timeout(self);
          return;
        default:
          return;
      }
    },
  };
}

} // namespace rondo
