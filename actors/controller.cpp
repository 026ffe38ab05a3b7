#include "actors/controller.hpp"

#include "actors/model_transfer.hpp"
#include "actors/type_ids.hpp"
#include "api/metrics.hpp"
#include "messages/error.hpp"
#include "messages/ids.hpp"
#include "model/aggregator.hpp"
#include "model/npz.hpp"
#include "storage/model_store.hpp"
#include "storage/update_cache.hpp"
#include "storage/state_store.hpp"
#include "storage/trail.hpp"

#include <caf/actor_cast.hpp>
#include <caf/send.hpp>
#include <caf/stateful_actor.hpp>
#include <caf/system_messages.hpp>
#include <caf/typed_event_based_actor.hpp>

#include <algorithm>
#include <iostream>
#include <optional>
#include <sstream>

namespace rondo {

namespace {

using self_ptr = controller_actor::stateful_pointer<controller_state>;
using stage = controller_state::stage;

/// Bound on fetching one combiner model (each chunk is bounded by the
/// request timeout).
constexpr auto fetch_bound = std::chrono::seconds(7200);

void log(const std::string& what) {
  std::cerr << "controller: " << what << std::endl;
}

std::string secs_text(double s) {
  std::ostringstream os;
  os << s;
  return os.str();
}

caf::timespan seconds(double s) {
  return std::chrono::duration_cast<caf::timespan>(
    std::chrono::duration<double>(s));
}

void start_round(self_ptr self);

// Answers the waiters whose condition holds.
void serve_waiters(self_ptr self) {
  auto& st = self->state;
  auto ended = st.record.status != session_status::running;
  for (auto i = st.waiters.begin(); i != st.waiters.end();) {
    if (i->session_id == st.record.session_id
        && (ended || st.rounds_done > i->after_rounds)) {
      auto rep = st.report(i->session_id);
      if (rep)
        i->promise.deliver(std::move(*rep));
      else
        i->promise.deliver(rep.error());
      i = st.waiters.erase(i);
    } else {
      ++i;
    }
  }
}

void save_session(self_ptr self) {
  if (auto err = self->state.state->put(self->state.record))
    log("cannot store session " + self->state.record.session_id + ": "
        + render(err));
}

void end_session(self_ptr self, session_status status,
                 const std::string& reason) {
  auto& st = self->state;
  st.current = stage::idle;
  ++st.epoch;
  st.record.status = status;
  st.record.reason = reason;
  st.record.ended_at = unix_now();
  save_session(self);
  serve_waiters(self);
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

// Copies each combiner's report of the phase into the round's record.
void keep_combiner_parts(controller_state& st) {
  st.round.combiners.clear();
  for (auto& [id, rep] : st.reports)
    st.round.combiners.push_back(rep);
}

// Records the round's end and moves the session on.
void end_round(self_ptr self, round_status status, const std::string& reason,
               const std::string& model_id = {}) {
  auto& st = self->state;
  close_phase(self);
  auto& r = st.round;
  r.status = status;
  r.reason = reason;
  r.model_id = model_id;
  r.ended_at = unix_now();
  r.validations = st.validations;
  metrics::count_round(r, metrics::round_kind::training);
  // The combiners' parts of the training phase (start_validation kept
  // them before the validation phase replaced the reports).
  if (st.current != stage::validating)
    keep_combiner_parts(st);
  storage::state_batch batch;
  batch.put(r);
  for (auto& v : st.validations)
    batch.put(v);
  st.record.round_ids.push_back(r.round_id);
  batch.put(st.record);
  if (auto err = st.state->commit(batch))
    log("cannot store round " + r.round_id + ": " + render(err));
  ++st.rounds_done;
  if (status == round_status::success)
    ++st.rounds_succeeded;
  log("round " + r.round_id + " " + to_string(status)
      + (reason.empty() ? "" : ": " + reason));
  serve_waiters(self);
  if (status == round_status::failed && st.session.stop_on_failure) {
    end_session(self, session_status::failed,
                "round " + r.round_id + " failed: " + reason);
    return;
  }
  start_round(self);
}

// A report actor for one combiner in the current phase.
round_report_actor report_sink(self_ptr self, const std::string& cid) {
  auto me = caf::actor_cast<controller_actor>(self);
  auto epoch = self->state.epoch;
  // Linked: a sink dies with the controller (a sink that was serialized to
  // a remote combiner stays in CAF's registry, and one alive when the actor
  // system shuts down crashes it).
  auto sink = self->spawn<caf::linked>(
    [me, cid, epoch](round_report_actor::pointer rs)
      -> round_report_actor::behavior_type {
      return {
        [=](const round_record& r) {
          rs->send(me, combiner_round_done{cid, epoch, r});
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
      ->request(st.combiners.at(cid), st.cfg.request_timeout, cfg,
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
  auto bound = seconds(cfg.round_timeout + st.session.grace)
               + st.cfg.client_wait;
  self->delayed_send(self, bound, timer_tick{timer_kind::phase_timeout, st.epoch, {}});
}

round_config combiner_round(const controller_state& st, round_task task) {
  round_config c;
  c.round_id = st.round.round_id;
  if (task == round_task::validation)
    c.round_id += "-validation";
  c.session_id = st.record.session_id;
  c.model_id = st.global_model;
  c.task = task;
  c.round_timeout = st.session.round_timeout;
  c.buffer_size = st.session.buffer_size;
  c.clients_required = task == round_task::training
                         ? st.session.clients_required
                         : 1;
  c.clients_requested = st.session.clients_requested;
  c.max_clients = st.session.clients_requested;
  c.client_settings = st.session.client_settings;
  c.delete_models_storage = st.session.delete_models_storage;
  c.selected_clients = st.session.selected_clients;
  // Combiners average plainly; the session's aggregator runs here.
  c.aggregator = "fedavg";
  c.validate = false;
  return c;
}

void start_validation(self_ptr self) {
  auto& st = self->state;
  close_phase(self);
  keep_combiner_parts(st);
  st.current = stage::validating;
  std::vector<std::string> ids;
  for (auto& [id, c] : st.combiners)
    ids.push_back(id);
  if (ids.empty()) {
    end_round(self, round_status::success, {}, st.global_model);
    return;
  }
  push_round(self, ids, combiner_round(st, round_task::validation));
}

// Commits the reduced model and moves on to validation or the next round.
void commit_model(self_ptr self, const model& reduced) {
  auto& st = self->state;
  auto bytes = write_npz_bytes(reduced);
  auto id = new_id();
  if (!bytes) {
    end_round(self, round_status::failed,
              "cannot encode the reduced model: " + render(bytes.error()));
    return;
  }
  if (auto info = st.models->put(id, *bytes); !info) {
    end_round(self, round_status::failed,
              "cannot store the reduced model: " + render(info.error()));
    return;
  }
  model_record trail{id, st.global_model, st.record.session_id,
                     st.round.round_id, unix_now()};
  if (auto err = st.state->put(trail)) {
    static_cast<void>(st.models->remove(id));
    end_round(self, round_status::failed,
              "cannot commit the model trail: " + render(err));
    return;
  }
  st.global_model = id;
  st.round.model_id = id;
  if (st.session.validate)
    start_validation(self);
  else
    end_round(self, round_status::success, {}, id);
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
  auto i = st.combiners.find(cid);
  auto fail_part = [self, cid](const std::string& why) {
    auto& rep = self->state.reports.at(cid);
    rep.status = round_status::failed;
    rep.reason = why;
  };
  if (i == st.combiners.end()) {
    fail_part("combiner lost");
    reduce_next(self, agg, std::move(todo));
    return;
  }
  auto fetcher = self->spawn<caf::linked>(model_fetcher,
                             caf::actor_cast<chunk_source_actor>(i->second),
                             rep.model_id, st.models, st.cfg.request_timeout);
  auto epoch = st.epoch;
  self->request(fetcher, fetch_bound, caf::get_atom::value)
    .then(
      [self, agg, todo, cid, epoch, fail_part](std::string& id) mutable {
        auto& st = self->state;
        if (epoch != st.epoch)
          return;
        // Decoded chunk by chunk from the store: the combiner's model is
        // never whole in memory as bytes.
        auto decoded = storage::read_decoded(*st.models, id);
        static_cast<void>(st.models->remove(id));
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
  st.current = stage::reducing;
  std::vector<std::string> ok;
  for (auto& [id, rep] : st.reports)
    if (rep.status == round_status::success)
      ok.push_back(id);
  if (ok.empty()) {
    end_round(self, round_status::failed,
              "no combiner succeeded: " + reasons(st.reports));
    return;
  }
  auto agg = make_aggregator(st.session.aggregator,
                             st.session.aggregator_kwargs, st.optimizer);
  auto global_bytes = st.models->get(st.global_model);
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
    end_round(self, round_status::failed,
              "cannot reduce: " + render(err));
    return;
  }
  reduce_next(self, std::shared_ptr<aggregator>{std::move(*agg)},
              std::move(ok));
}

// Stores the clients' answers of the prediction run that ended.
void finish_prediction(self_ptr self) {
  auto& st = self->state;
  close_phase(self);
  storage::state_batch batch;
  for (auto& v : st.validations) {
    prediction_record p;
    p.key = v.correlation_id.empty() ? new_id() : v.correlation_id;
    p.prediction_id = st.prediction_id;
    p.model_id = v.model_id;
    p.data = v.metrics_json;
    p.correlation_id = v.correlation_id;
    p.client_id = v.client_id;
    p.client_name = v.client_name;
    p.timestamp = v.received_at;
    batch.put(p);
  }
  if (auto err = st.state->commit(batch))
    log("cannot store prediction " + st.prediction_id + ": " + render(err));
  log("prediction " + st.prediction_id + " ended: "
      + std::to_string(st.validations.size()) + " answers");
  st.validations.clear();
  st.current = stage::idle;
}

// Reacts to one combiner's report in the training, validation or
// prediction phase.
void on_report(self_ptr self, const combiner_round_done& done) {
  auto& st = self->state;
  if (done.epoch != st.epoch
      || (st.current != stage::training && st.current != stage::validating
          && st.current != stage::predicting))
    return;
  auto i = st.reports.find(done.combiner_id);
  if (i == st.reports.end() || i->second.status != round_status::running)
    return;
  auto& rep = i->second;
  rep.status = done.record.status;
  rep.reason = done.record.reason;
  rep.model_id = done.record.model_id;
  rep.num_examples = done.record.num_examples;
  if (st.current == stage::training) {
    st.round.nr_expected_updates += done.record.nr_expected_updates;
    st.round.nr_aggregated_models += done.record.nr_aggregated_models;
    st.round.num_examples += rep.status == round_status::success
                               ? done.record.num_examples
                               : 0;
    for (auto& c : done.record.clients_accepted)
      st.round.clients_accepted.push_back(c);
    for (auto& c : done.record.clients_rejected)
      st.round.clients_rejected.push_back(c);
    for (auto& c : done.record.clients_selected)
      st.round.clients_selected.push_back(c);
    for (auto& c : done.record.clients_silent)
      st.round.clients_silent.push_back(c);
  } else {
    // Kept under the controller's round (the combiner ran it as
    // "<round>-validation").
    for (auto& v : done.record.validations) {
      st.validations.push_back(v);
      if (st.current == stage::validating)
        st.validations.back().round_id = st.round.round_id;
    }
  }
  auto all = std::none_of(st.reports.begin(), st.reports.end(), [](auto& kv) {
    return kv.second.status == round_status::running;
  });
  if (!all)
    return;
  if (st.current == stage::training) {
    reduce(self);
  } else if (st.current == stage::predicting) {
    finish_prediction(self);
  } else {
    // Validation outcomes do not fail the round; they are recorded.
    end_round(self, round_status::success, {}, st.global_model);
  }
}

// Every phase ends: a report that never came counts as a failure.
void on_phase_timeout(self_ptr self) {
  auto& st = self->state;
  for (auto& [id, rep] : st.reports) {
    if (rep.status != round_status::running)
      continue;
    rep.status = round_status::failed;
    rep.reason = "no report within the round timeout and grace";
    // Stop the orphaned round at the combiner.
    if (auto i = st.combiners.find(id); i != st.combiners.end())
      caf::anon_send(i->second, caf::flush_atom::value);
  }
  if (st.current == stage::training)
    reduce(self);
  else if (st.current == stage::predicting)
    finish_prediction(self);
  else
    end_round(self, round_status::success, {}, st.global_model);
}

void select_combiners(self_ptr self) {
  auto& st = self->state;
  st.current = stage::selecting;
  if (st.combiners.empty()) {
    // Wait (bounded) for a combiner to join; the join starts selection.
    self->delayed_send(self, st.cfg.client_wait,
                       timer_tick{timer_kind::no_combiner, st.epoch, {}});
    return;
  }
  auto n = st.session.clients_required;
  auto pending = std::make_shared<size_t>(st.combiners.size());
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
    self->state.current = stage::training;
    std::sort(eligible->begin(), eligible->end());
    push_round(self, *eligible,
               combiner_round(self->state, round_task::training));
  };
  for (auto& [id, handle] : st.combiners) {
    auto cid = id;
    self
      ->request(handle, st.cfg.client_wait + st.cfg.request_timeout,
                trainers_atom::value, n, st.cfg.client_wait)
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

void start_round(self_ptr self) {
  auto& st = self->state;
  if (st.rounds_done >= st.session.rounds) {
    if (st.rounds_succeeded == 0)
      end_session(self, session_status::failed,
                  "no round succeeded (" + std::to_string(st.rounds_done)
                    + " failed)");
    else
      end_session(self, session_status::finished, {});
    return;
  }
  close_phase(self);
  st.round = round_record{};
  st.round.round_id = std::to_string(st.next_round++);
  st.round.session_id = st.record.session_id;
  st.round.base_model_id = st.global_model;
  st.round.timeout = st.session.round_timeout;
  st.round.nr_required_updates = st.session.clients_required;
  st.round.status = round_status::running;
  st.round.started_at = unix_now();
  st.round.config = combiner_round(st, round_task::training);
  st.reports.clear();
  st.validations.clear();
  select_combiners(self);
}

// The newest model of the trail that a session may start from: a seed (no
// round) or the model of a round recorded as a success. A model whose
// round never ended (the controller stopped during its validation) is
// skipped. "" when there is none.
std::string newest_model(controller_state& st) {
  auto trail = st.state->list<model_record>();
  if (!trail)
    return {};
  std::sort(trail->begin(), trail->end(), [](auto& x, auto& y) {
    return x.committed_at > y.committed_at;
  });
  for (auto& m : *trail) {
    if (m.round_id.empty())
      return m.model_id;
    auto r = st.state->get<round_record>(m.round_id);
    if (r && r->status == round_status::success && r->model_id == m.model_id)
      return m.model_id;
  }
  return {};
}

// The global model a stored session resumes from: the model of its last
// successful round, else its seed.
std::string resume_model(controller_state& st, const session_record& rec) {
  for (auto i = rec.round_ids.rbegin(); i != rec.round_ids.rend(); ++i) {
    auto r = st.state->get<round_record>(*i);
    if (r && r->status == round_status::success && !r->model_id.empty())
      return r->model_id;
  }
  return rec.seed_model_id;
}

// Checks a session config and fills in its id and model; the errors name
// the key.
caf::error prepare(controller_state& st, session_config& cfg) {
  if (auto err = validate(cfg))
    return err;
  if (auto agg = make_aggregator(cfg.aggregator, cfg.aggregator_kwargs); !agg)
    return agg.error();
  if (cfg.session_id.empty())
    cfg.session_id = new_id();
  if (cfg.model_id.empty())
    cfg.model_id = newest_model(st);
  if (cfg.model_id.empty())
    return caf::make_error(ec::not_found,
                           "no seed model: add one with `rondo seed "
                           "<file.npz>` first");
  if (auto have = st.models->exists(cfg.model_id); !have || !*have)
    return caf::make_error(ec::not_found,
                           "model " + cfg.model_id + " does not exist");
  return caf::none;
}

// Stores a pending session (FEDn's POST /sessions/).
caf::result<session_record> create_session(self_ptr self, session_config cfg,
                                           const std::string& name) {
  auto& st = self->state;
  if (auto err = prepare(st, cfg))
    return err;
  if (st.state->get<session_record>(cfg.session_id))
    return caf::make_error(ec::already_exists,
                           "session " + cfg.session_id + " already exists");
  session_record rec;
  rec.session_id = cfg.session_id;
  rec.name = name;
  rec.config_json = to_json(cfg);
  rec.status = session_status::pending;
  rec.seed_model_id = cfg.model_id;
  rec.created_at = unix_now();
  if (auto err = st.state->put(rec))
    return err;
  return rec;
}

// Starts a new session, a stored pending one, or continues a stored one
// that ended (its rounds go on from the model of its last successful
// round).
caf::result<std::string> start_session(self_ptr self, session_config cfg) {
  auto& st = self->state;
  if (st.record.status == session_status::running)
    return caf::make_error(ec::invalid_state,
                           "session " + st.record.session_id
                             + " is still running");
  if (st.current == stage::predicting)
    return caf::make_error(ec::invalid_state,
                           "prediction " + st.prediction_id
                             + " is still running");
  std::optional<session_record> stored;
  if (!cfg.session_id.empty())
    if (auto rec = st.state->get<session_record>(cfg.session_id))
      stored = std::move(*rec);
  if (stored && !stored->round_ids.empty())
    cfg.model_id = resume_model(st, *stored);
  else if (stored && cfg.model_id.empty())
    cfg.model_id = stored->seed_model_id;
  if (auto err = prepare(st, cfg))
    return err;
  st.session = cfg;
  if (stored) {
    st.record = std::move(*stored);
    st.record.reason.clear();
    st.record.ended_at = 0;
  } else {
    st.record = session_record{};
    st.record.session_id = cfg.session_id;
    st.record.seed_model_id = cfg.model_id;
    st.record.created_at = unix_now();
  }
  st.record.config_json = to_json(cfg);
  st.record.status = session_status::running;
  st.optimizer = std::make_shared<optimizer_state>();
  st.global_model = cfg.model_id;
  st.rounds_done = 0;
  st.rounds_succeeded = 0;
  save_session(self);
  start_round(self);
  return cfg.session_id;
}

// Stores a client's status event, keeping the newest max_statuses.
void store_status(self_ptr self, status_record x) {
  auto& st = self->state;
  x.status_id = new_id();
  storage::state_batch batch;
  batch.put(x);
  st.statuses.push_back(x.status_id);
  while (st.statuses.size() > st.cfg.max_statuses) {
    batch.erase<status_record>(st.statuses.front());
    st.statuses.pop_front();
  }
  if (auto err = st.state->commit(batch))
    log("cannot store a status event of client " + x.sender_client_id + ": "
        + render(err));
}

// Runs a prediction round of `model_id` at every combiner.
caf::result<std::string> start_prediction(self_ptr self,
                                          const std::string& prediction_id,
                                          std::string model_id) {
  auto& st = self->state;
  if (prediction_id.empty())
    return caf::make_error(ec::invalid_argument, "prediction_id is empty");
  if (st.current != stage::idle || st.record.status == session_status::running)
    return caf::make_error(ec::invalid_state,
                           st.current == stage::predicting
                             ? "prediction " + st.prediction_id
                                 + " is still running"
                             : "session " + st.record.session_id
                                 + " is still running");
  if (st.combiners.empty())
    return caf::make_error(ec::invalid_state,
                           "no combiner connected: a prediction needs one");
  if (model_id.empty())
    model_id = newest_model(st);
  if (auto have = st.models->exists(model_id); !have || !*have)
    return caf::make_error(ec::not_found,
                           model_id.empty() ? std::string{"no model yet"}
                                            : "model " + model_id
                                                + " does not exist");
  close_phase(self);
  st.current = stage::predicting;
  st.prediction_id = prediction_id;
  st.validations.clear();
  round_config c;
  c.round_id = "prediction-" + prediction_id;
  c.session_id = prediction_id;
  c.model_id = model_id;
  c.task = round_task::prediction;
  c.clients_required = 1;
  c.validate = false;
  std::vector<std::string> ids;
  for (auto& [id, handle] : st.combiners)
    ids.push_back(id);
  log("prediction " + prediction_id + " of model " + model_id + " at "
      + std::to_string(ids.size()) + " combiner(s)");
  push_round(self, ids, c);
  return prediction_id;
}

// FEDn's ReducerState names.
std::string controller_status(const controller_state& st) {
  switch (st.current) {
    case stage::idle: return "idle";
    case stage::selecting: return "instructing";
    default: return "monitoring";
  }
}

} // namespace

caf::expected<session_report>
controller_state::report(const std::string& session_id) {
  auto rec = state->get<session_record>(session_id);
  if (!rec && rec.error() == ec::not_found)
    return caf::make_error(ec::not_found, "no session " + session_id);
  if (!rec)
    return rec.error();
  session_report out;
  out.session = std::move(*rec);
  for (auto& id : out.session.round_ids) {
    auto r = state->get<round_record>(id);
    if (r)
      out.rounds.push_back(std::move(*r));
  }
  // The round in progress, as far as it got (not yet in round_ids: a round
  // that just ended is there already, while its phase is being closed).
  auto& ids = out.session.round_ids;
  if (session_id == record.session_id && current != stage::idle
      && std::find(ids.begin(), ids.end(), round.round_id) == ids.end())
    out.rounds.push_back(round);
  return out;
}

caf::expected<std::map<std::string, uint64_t>>
assigned_counts(storage::state_store& state) {
  auto all = state.list<client_assignment_record>();
  if (!all)
    return all.error();
  std::map<std::string, uint64_t> out;
  for (auto& a : *all)
    ++out[a.combiner_id];
  return out;
}

caf::expected<combiner_status>
controller_state::assign(client_assignment_record rec) {
  auto counts = assigned_counts(*state);
  if (!counts)
    return counts.error();
  // A client that is assigned again does not count against its old
  // combiner.
  if (auto old = state->get<client_assignment_record>(rec.client_id))
    --(*counts)[old->combiner_id];
  const combiner_status* chosen = nullptr;
  if (!rec.combiner_preferred.empty()) {
    auto i = known_combiners.find(rec.combiner_preferred);
    if (i == known_combiners.end() || !i->second.alive)
      return caf::make_error(ec::not_found,
                             "combiner " + rec.combiner_preferred
                               + " not found or unavailable");
    chosen = &i->second;
  } else {
    uint64_t least = 0;
    for (auto& [id, c] : known_combiners) {
      if (!c.alive)
        continue;
      auto n = (*counts)[id];
      if (chosen == nullptr || n < least) {
        chosen = &c;
        least = n;
      }
    }
    if (chosen == nullptr)
      return caf::make_error(ec::invalid_state, "no combiner available");
  }
  rec.combiner_id = chosen->info.combiner_id;
  rec.assigned_at = unix_now();
  if (auto err = state->put(rec))
    return err;
  auto out = *chosen;
  out.clients_assigned = (*counts)[rec.combiner_id] + 1;
  return out;
}

caf::expected<std::vector<combiner_status>>
controller_state::combiner_statuses() {
  auto counts = assigned_counts(*state);
  if (!counts)
    return counts.error();
  std::vector<combiner_status> out;
  for (auto& [id, c] : known_combiners) {
    out.push_back(c);
    out.back().clients_assigned = (*counts)[id];
  }
  return out;
}

controller_actor::behavior_type
controller_impl(controller_actor::stateful_pointer<controller_state> self,
                controller_config cfg,
                std::shared_ptr<storage::model_store> models,
                std::shared_ptr<storage::state_store> state) {
  auto& st = self->state;
  st.cfg = cfg;
  st.models = std::move(models);
  st.state = std::move(state);
  if (auto rounds = st.state->list<round_record>())
    for (auto& r : *rounds)
      st.next_round = std::max<uint64_t>(st.next_round,
                                         std::strtoull(r.round_id.c_str(),
                                                       nullptr, 10)
                                           + 1);
  if (auto statuses = st.state->list<status_record>()) {
    std::sort(statuses->begin(), statuses->end(), [](auto& x, auto& y) {
      return x.timestamp < y.timestamp;
    });
    for (auto& x : *statuses)
      st.statuses.push_back(x.status_id);
  }
  // A session that was running when the process died is over.
  if (auto sessions = st.state->list<session_record>())
    for (auto& s : *sessions)
      if (s.status == session_status::running) {
        s.status = session_status::failed;
        s.reason = "interrupted by restart";
        s.ended_at = unix_now();
        static_cast<void>(st.state->put(s));
      }
  self->set_down_handler([self](const caf::down_msg& dm) {
    auto& st = self->state;
    for (auto i = st.combiners.begin(); i != st.combiners.end(); ++i) {
      if (i->second.address() != dm.source)
        continue;
      auto cid = i->first;
      st.combiners.erase(i);
      if (auto k = st.known_combiners.find(cid);
          k != st.known_combiners.end()) {
        k->second.alive = false;
        k->second.handle = nullptr;
      }
      log("combiner " + cid + " lost: " + render(dm.reason));
      combiner_round_done lost{cid, st.epoch, {}};
      lost.record.status = round_status::failed;
      lost.record.reason = "combiner lost";
      on_report(self, lost);
      return;
    }
  });
  return {
    [self](caf::join_atom, const combiner_info& info, combiner_actor& handle,
           const std::vector<round_record>&) -> caf::ok_atom {
      auto& st = self->state;
      auto& cid = info.combiner_id;
      if (auto i = st.combiners.find(cid); i != st.combiners.end())
        self->demonitor(i->second.address());
      st.combiners[cid] = handle;
      st.known_combiners[cid] = combiner_status{info, true, unix_now(), 0,
                                                handle};
      self->monitor(handle);
      log("combiner " + cid + " joined (clients reach it at " + info.host
          + ":" + std::to_string(info.port) + (info.tls ? ", TLS" : "")
          + ")");
      if (st.current == stage::selecting
          && st.combiners.size() == 1)
        select_combiners(self);
      return caf::ok_atom::value;
    },
    [self](caf::put_atom,
           client_assignment_record& rec) -> caf::result<combiner_status> {
      auto out = self->state.assign(std::move(rec));
      if (!out)
        return out.error();
      return std::move(*out);
    },
    [self](caf::get_atom,
           combiners_atom) -> caf::result<std::vector<combiner_status>> {
      auto out = self->state.combiner_statuses();
      if (!out)
        return out.error();
      return std::move(*out);
    },
    [self](caf::get_atom, const std::string& model_id,
           uint64_t index) -> caf::result<model_chunk> {
      auto chunk = read_model_chunk(*self->state.models, model_id, index);
      if (!chunk)
        return chunk.error();
      return std::move(*chunk);
    },
    [self](session_config& cfg) { return start_session(self, cfg); },
    [self](caf::get_atom, session_atom,
           const std::string& id) -> caf::result<session_report> {
      auto rep = self->state.report(id);
      if (!rep)
        return rep.error();
      return std::move(*rep);
    },
    [self](caf::get_atom, session_atom)
      -> caf::result<std::vector<session_record>> {
      auto sessions = self->state.state->list<session_record>();
      if (!sessions)
        return sessions.error();
      std::sort(sessions->begin(), sessions->end(), [](auto& x, auto& y) {
        return x.created_at < y.created_at;
      });
      return std::move(*sessions);
    },
    [self](caf::wait_for_atom, const std::string& id,
           uint64_t after_rounds) -> caf::result<session_report> {
      auto& st = self->state;
      auto running = st.record.session_id == id
                     && st.record.status == session_status::running;
      if (!running || st.rounds_done > static_cast<int64_t>(after_rounds)) {
        auto rep = st.report(id);
        if (!rep)
          return rep.error();
        return std::move(*rep);
      }
      auto rp = self->make_response_promise<session_report>();
      st.waiters.push_back({id, static_cast<int64_t>(after_rounds), rp});
      return rp;
    },
    [self](terminate_atom,
           const std::string& id) -> caf::result<session_report> {
      auto& st = self->state;
      if (st.record.session_id == id
          && st.record.status == session_status::running) {
        for (auto& [cid, handle] : st.combiners)
          caf::anon_send(handle, caf::flush_atom::value);
        if (st.current != stage::idle) {
          // Combiners still working on the round are told to stop (flush
          // above): their parts end here, with the round.
          for (auto& [cid, rep] : st.reports)
            if (rep.status == round_status::running) {
              rep.status = round_status::failed;
              rep.reason = "terminated";
            }
          st.session.stop_on_failure = true;
          end_round(self, round_status::failed, "terminated");
        }
        end_session(self, session_status::terminated, "terminated");
      }
      auto rep = st.report(id);
      if (!rep)
        return rep.error();
      return std::move(*rep);
    },
    [self](caf::put_atom, model_blob& blob) -> caf::result<model_record> {
      auto& st = self->state;
      if (!blob.bytes)
        return caf::make_error(ec::invalid_argument, "seed model is empty");
      auto m = read_npz_bytes(*blob.bytes);
      if (!m)
        return caf::make_error(ec::malformed_model,
                               "seed model is not a valid model: "
                                 + error_detail(m.error()));
      if (m->empty())
        return caf::make_error(ec::malformed_model,
                               "seed model has no tensors");
      auto id = blob.model_id.empty() ? new_id() : blob.model_id;
      if (auto info = st.models->put(id, *blob.bytes); !info)
        return info.error();
      model_record rec{id, {}, {}, {}, unix_now()};
      if (auto err = st.state->put(rec))
        return err;
      return rec;
    },
    [self](caf::get_atom, models_atom) -> caf::result<std::vector<model_record>> {
      auto trail = self->state.state->list<model_record>();
      if (!trail)
        return trail.error();
      std::sort(trail->begin(), trail->end(), [](auto& x, auto& y) {
        return x.committed_at < y.committed_at;
      });
      return std::move(*trail);
    },
    [self](caf::put_atom, session_atom, session_config& cfg,
           const std::string& name) {
      return create_session(self, std::move(cfg), name);
    },
    [self](caf::get_atom, status_atom) {
      return controller_status(self->state);
    },
    [self](status_record& x) { store_status(self, std::move(x)); },
    [self](prediction_atom, const std::string& prediction_id,
           std::string& model_id) {
      return start_prediction(self, prediction_id, std::move(model_id));
    },
    [self](const combiner_round_done& done) { on_report(self, done); },
    [self](prune_atom, uint64_t keep) -> caf::result<std::vector<std::string>> {
      // Protects the model the running (or next) round starts from.
      return storage::prune_trail(*self->state.state, *self->state.models,
                                  keep, {self->state.global_model});
    },
    [self](const timer_tick& tick) {
      auto& st = self->state;
      if (tick.epoch != st.epoch)
        return;
      if (tick.kind == timer_kind::no_combiner && st.current == stage::selecting
          && st.combiners.empty())
        end_round(self, round_status::failed,
                  "no combiner connected within "
                    + secs_text(std::chrono::duration<double>(
                                  st.cfg.client_wait)
                                  .count())
                    + " s");
      else if (tick.kind == timer_kind::phase_timeout
               && (st.current == stage::training
                   || st.current == stage::validating
                   || st.current == stage::predicting))
        on_phase_timeout(self);
    },
  };
}

} // namespace rondo
