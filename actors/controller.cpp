#include "actors/controller.hpp"

#include "actors/model_transfer.hpp"
#include "actors/type_ids.hpp"
#include "messages/error.hpp"
#include "messages/ids.hpp"
#include "model/aggregator.hpp"
#include "model/npz.hpp"
#include "storage/model_store.hpp"
#include "storage/state_store.hpp"
#include "storage/trail.hpp"

#include <caf/actor_cast.hpp>
#include <caf/send.hpp>
#include <caf/stateful_actor.hpp>
#include <caf/system_messages.hpp>
#include <caf/typed_event_based_actor.hpp>

#include <spdlog/spdlog.h>

#include <algorithm>
#include <optional>

namespace rondo {

namespace {

using self_ptr = controller_actor::stateful_pointer<controller_state>;

/// The persisted counter numbering round ids.
constexpr const char* next_round_counter = "next_round";

bool running(const controller_state& st) {
  return st.record.status == session_status::running;
}

// Answers the waiters whose condition holds.
void serve_waiters(self_ptr self) {
  auto& st = self->state;
  auto ended = !running(st);
  auto done = st.rounds_ended();
  for (auto i = st.waiters.begin(); i != st.waiters.end();) {
    if (i->session_id == st.record.session_id
        && (ended || done > i->after_rounds)) {
      auto rep = st.report(i->session_id, i->after_rounds);
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
    spdlog::error("controller: cannot store session {}: {}",
                  self->state.record.session_id, render(err));
}

void end_session(self_ptr self, session_status status,
                 const std::string& reason) {
  auto& st = self->state;
  st.record.status = status;
  st.record.reason = reason;
  st.record.ended_at = unix_now();
  st.record.current_round_id.clear();
  save_session(self);
  spdlog::info("controller: session {} {}{}", st.record.session_id,
               to_string(status), reason.empty() ? "" : ": " + reason);
  serve_waiters(self);
}

// Counts a session round's terminal record into the session record.
void count_round(controller_state& st, const round_record& r) {
  ++st.record.rounds_done;
  if (r.status == round_status::success) {
    ++st.record.rounds_succeeded;
    if (!r.model_id.empty())
      st.record.global_model_id = r.model_id;
  }
  st.record.current_round_id.clear();
}

void start_round(self_ptr self);

// Tells the draining combiners that no running round includes to release
// their clients (each once).
void release_drained(self_ptr self) {
  for (auto& c : self->state.take_releasable()) {
    if (!c.handle)
      continue;
    spdlog::info("controller: combiner {} is draining and in no running "
                 "round: told to release its clients",
                 c.info.combiner_id);
    self->send(c.handle, drain_atom::value, true);
  }
}

// The running global round (or prediction run) is over: the combiners it
// included and that are draining release their clients now.
void round_over(self_ptr self) {
  auto& st = self->state;
  st.round = nullptr;
  st.instructing = false;
  st.round_combiners.clear();
  release_drained(self);
}

// A session round ended: its record is stored already (by the round).
void on_round_end(self_ptr self, const round_record& r) {
  auto& st = self->state;
  count_round(st, r);
  if (r.status == round_status::success && !r.model_id.empty())
    // The combiners keep only what they still need of earlier rounds.
    for (auto& [cid, handle] : st.combiners)
      caf::anon_send(handle, committed_atom::value, r.model_id);
  if (!st.terminating.empty()) {
    end_session(self, session_status::terminated, "terminated");
    auto rep = st.report(st.record.session_id);
    for (auto& rp : st.terminating)
      if (rep)
        rp.deliver(*rep);
      else
        rp.deliver(rep.error());
    st.terminating.clear();
    return;
  }
  if (r.status == round_status::failed && st.session.stop_on_failure) {
    end_session(self, session_status::failed,
                "round " + r.round_id + " failed: " + r.reason);
    return;
  }
  // start_round stores the session record (with the next round, or its
  // end); waiters read the record in memory.
  serve_waiters(self);
  start_round(self);
}

// Spawns the global round actor for `setup`.
void spawn_round(self_ptr self, global_round_setup setup) {
  auto& st = self->state;
  global_round_deps deps;
  deps.parent = caf::actor_cast<controller_actor>(self);
  deps.models = st.models;
  deps.state = st.state;
  deps.request_timeout = st.cfg.request_timeout;
  deps.client_wait = st.cfg.client_wait;
  setup.combiners = st.serving_combiners();
  st.round_combiners.clear();
  for (auto& [cid, handle] : setup.combiners)
    st.round_combiners.insert(cid);
  st.instructing = true;
  // Linked: a round dies with the controller, and a round that dies on
  // an error takes the controller down instead of leaving it waiting.
  st.round = self->spawn<caf::linked>(global_round_impl, std::move(deps),
                                      std::move(setup));
}

// Starts the session's next round, or ends the session when it ran its
// rounds; either way the session record is stored (one synced write).
void start_round(self_ptr self) {
  auto& st = self->state;
  st.round = nullptr;
  if (st.record.rounds_done >= st.session.rounds) {
    if (st.record.rounds_succeeded == 0)
      end_session(self, session_status::failed,
                  "no round succeeded ("
                    + std::to_string(st.record.rounds_done) + " failed)");
    else
      end_session(self, session_status::finished, {});
    return;
  }
  global_round_setup setup;
  auto& r = setup.round;
  r.round_id = std::to_string(st.next_round);
  r.session_id = st.record.session_id;
  r.base_model_id = st.record.global_model_id;
  r.timeout = st.session.round_timeout;
  r.nr_required_updates = st.session.clients_required;
  r.status = round_status::running;
  r.started_at = unix_now();
  // The round id, its place in the session and the session's progress in
  // one synced batch: a round id is never used twice, and a restarted
  // controller finds the round in progress.
  st.record.current_round_id = r.round_id;
  storage::state_batch batch;
  batch.put_counter(next_round_counter, st.next_round + 1);
  batch.add_session_round(st.record.session_id, st.record.round_count,
                          r.round_id);
  ++st.record.round_count;
  batch.put(st.record);
  if (auto err = st.state->commit(batch)) {
    --st.record.round_count;
    end_session(self, session_status::failed,
                "cannot store the start of round " + r.round_id + ": "
                  + render(err));
    return;
  }
  ++st.next_round;
  setup.session = st.session;
  setup.optimizer = st.optimizer;
  spawn_round(self, std::move(setup));
}

// The newest model of the trail that a session may start from: a seed (no
// round) or the model of a round recorded as a success. A model whose
// round never ended is skipped. "" when there is none.
std::string newest_model(controller_state& st) {
  auto trail = st.state->list<model_record>();
  if (!trail) {
    spdlog::error("controller: cannot read the model trail: {}",
                  render(trail.error()));
    return {};
  }
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

// The global model a stored session resumes from: its last committed
// global model; for records written before the session kept it, the model
// of its last successful round, else its seed.
std::string resume_model(controller_state& st, const session_record& rec) {
  if (!rec.global_model_id.empty())
    return rec.global_model_id;
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
  rec.global_model_id = cfg.model_id;
  rec.created_at = unix_now();
  if (auto err = st.state->put(rec))
    return err;
  return rec;
}

caf::error busy(const controller_state& st) {
  if (running(st))
    return caf::make_error(ec::invalid_state,
                           "session " + st.record.session_id
                             + " is still running");
  if (!st.prediction_id.empty())
    return caf::make_error(ec::invalid_state,
                           "prediction " + st.prediction_id
                             + " is still running");
  return caf::none;
}

// Starts a new session, a stored pending one, or continues a stored one
// that ended (its rounds go on from its last committed global model).
caf::result<std::string> start_session(self_ptr self, session_config cfg) {
  auto& st = self->state;
  if (auto err = busy(st))
    return err;
  std::optional<session_record> stored;
  if (!cfg.session_id.empty())
    if (auto rec = st.state->get<session_record>(cfg.session_id))
      stored = std::move(*rec);
  if (stored && stored->status != session_status::pending)
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
  st.record.global_model_id = cfg.model_id;
  // The counters count this run of the session: `rounds` more rounds.
  st.record.rounds_done = 0;
  st.record.rounds_succeeded = 0;
  st.record.current_round_id.clear();
  st.optimizer = std::make_shared<optimizer_state>();
  // Stored by start_round, with its first round or its end.
  spdlog::info("controller: session {} started from model {} ({} rounds)",
               cfg.session_id, cfg.model_id, cfg.rounds);
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
    spdlog::error("controller: cannot store a status event of client {}: {}",
                  x.sender_client_id, render(err));
}

// Runs a prediction round of `model_id` at every combiner.
caf::result<std::string> start_prediction(self_ptr self,
                                          const std::string& prediction_id,
                                          std::string model_id) {
  auto& st = self->state;
  if (prediction_id.empty())
    return caf::make_error(ec::invalid_argument, "prediction_id is empty");
  if (auto err = busy(st))
    return err;
  auto serving = st.serving_combiners().size();
  if (serving == 0)
    return caf::make_error(ec::invalid_state,
                           st.combiners.empty()
                             ? "no combiner connected: a prediction needs one"
                             : "every connected combiner is draining: a "
                               "prediction needs one that is not");
  if (model_id.empty())
    model_id = newest_model(st);
  if (auto have = st.models->exists(model_id); !have || !*have)
    return caf::make_error(ec::not_found,
                           model_id.empty() ? std::string{"no model yet"}
                                            : "model " + model_id
                                                + " does not exist");
  st.prediction_id = prediction_id;
  global_round_setup setup;
  setup.round.round_id = "prediction-" + prediction_id;
  setup.round.session_id = prediction_id;
  setup.round.base_model_id = model_id;
  setup.round.status = round_status::running;
  setup.round.started_at = unix_now();
  setup.prediction_id = prediction_id;
  spdlog::info("controller: prediction {} of model {} at {} combiner(s)",
               prediction_id, model_id, serving);
  spawn_round(self, std::move(setup));
  return prediction_id;
}

// The stored round `id` of a session that was running when the
// controller stopped, settled: a round whose model was committed counts as
// a success (its validation, if any, is recorded as interrupted); one cut
// short before that is recorded Failed and does not count (the session
// re-runs it under a new round id).
void settle_interrupted_round(controller_state& st, const std::string id) {
  auto r = st.state->get<round_record>(id);
  if (!r) {
    spdlog::error("controller: cannot read round {} of session {} that was "
                  "in progress: {}",
                  id, st.record.session_id, render(r.error()));
    st.record.current_round_id.clear();
    return;
  }
  if (r->status == round_status::success
      || r->status == round_status::failed) {
    // It ended, but the controller stopped before counting it.
    count_round(st, *r);
    return;
  }
  r->ended_at = unix_now();
  if (!r->model_id.empty()) {
    r->status = round_status::success;
    if (st.session.validate)
      r->validation_failure = "validation interrupted by a controller "
                              "restart";
    count_round(st, *r);
  } else {
    r->status = round_status::failed;
    r->reason = "interrupted by a controller restart (the session runs it "
                "again under a new round id)";
    st.record.current_round_id.clear();
  }
  if (auto err = st.state->put(*r))
    spdlog::error("controller: cannot store interrupted round {}: {}", id,
                  render(err));
  spdlog::info("controller: round {} of session {} was in progress at the "
               "restart: {}",
               id, st.record.session_id,
               r->status == round_status::success
                 ? "its model " + r->model_id + " was committed: success"
                 : "failed, to be run again");
}

// Resumes the session that was running when the controller stopped (the
// newest, should several be marked running; the others end failed).
void resume_session(self_ptr self) {
  auto& st = self->state;
  auto sessions = st.state->list<session_record>();
  if (!sessions) {
    spdlog::error("controller: cannot read the sessions, none resumed: {}",
                  render(sessions.error()));
    return;
  }
  std::vector<session_record*> live;
  for (auto& s : *sessions)
    if (s.status == session_status::running)
      live.push_back(&s);
  if (live.empty())
    return;
  std::sort(live.begin(), live.end(), [](auto* x, auto* y) {
    return x->created_at > y->created_at;
  });
  for (size_t i = 1; i < live.size(); ++i) {
    live[i]->status = session_status::failed;
    live[i]->reason = "interrupted by a restart while session "
                      + live[0]->session_id + " was running too";
    live[i]->ended_at = unix_now();
    if (auto err = st.state->put(*live[i]))
      spdlog::error("controller: cannot store session {}: {}",
                    live[i]->session_id, render(err));
  }
  auto cfg = parse_session_config_json(live[0]->config_json);
  st.record = *live[0];
  if (!cfg) {
    end_session(self, session_status::failed,
                "cannot resume after a restart: its stored config is "
                "invalid: "
                  + render(cfg.error()));
    return;
  }
  st.session = *cfg;
  if (!st.record.current_round_id.empty())
    settle_interrupted_round(st, st.record.current_round_id);
  st.record.global_model_id = resume_model(st, st.record);
  // FedOpt's server moments are not persisted: they start over.
  st.optimizer = std::make_shared<optimizer_state>();
  spdlog::info("controller: resuming session {} after a restart: {} of {} "
               "rounds done, from model {}",
               st.record.session_id, st.record.rounds_done,
               st.session.rounds, st.record.global_model_id);
  st.resumed = true;
  start_round(self);
}

// A restarted combiner's report of rounds its restart cut short: recorded
// against the controller's rounds that already ended (the running round
// learned of the loss when the combiner went down).
void note_interrupted(self_ptr self, const std::string& cid,
                      const std::vector<round_record>& interrupted) {
  auto& st = self->state;
  for (auto& x : interrupted) {
    auto id = x.round_id;
    if (auto n = id.rfind("-validation"); n != std::string::npos
                                          && n + 11 == id.size())
      id.resize(n);
    spdlog::info("controller: combiner {} reports its round {} interrupted "
                 "by its restart: {}",
                 cid, x.round_id, x.reason);
    if (id == st.record.current_round_id)
      continue;
    auto r = st.state->get<round_record>(id);
    if (!r)
      continue;
    bool changed = false;
    for (auto& part : r->combiners)
      if (part.combiner_id == cid && part.status != round_status::success
          && part.reason.find("restarted") == std::string::npos) {
        part.reason += (part.reason.empty() ? "" : "; ")
                       + std::string{"the combiner restarted and reported "
                                     "its part interrupted"};
        changed = true;
      }
    for (auto& c : x.clients_selected)
      if (std::find(r->clients_selected.begin(), r->clients_selected.end(), c)
          == r->clients_selected.end()) {
        r->clients_selected.push_back(c);
        r->clients_silent.push_back(c);
        changed = true;
      }
    if (changed)
      if (auto err = st.state->put(*r))
        spdlog::error("controller: cannot store round {}: {}", id,
                      render(err));
  }
}

// FEDn's ReducerState names.
std::string controller_status(const controller_state& st) {
  if (!st.round)
    return "idle";
  return st.instructing ? "instructing" : "monitoring";
}

} // namespace

uint64_t controller_state::rounds_ended() const {
  auto count = record.round_ids.size() + record.round_count;
  return record.current_round_id.empty() ? count : count - 1;
}

caf::expected<session_report>
controller_state::report(const std::string& session_id, uint64_t from) {
  session_report out;
  if (session_id == record.session_id && !record.session_id.empty()) {
    out.session = record;
  } else {
    auto rec = state->get<session_record>(session_id);
    if (!rec && rec.error() == ec::not_found)
      return caf::make_error(ec::not_found, "no session " + session_id);
    if (!rec)
      return rec.error();
    out.session = std::move(*rec);
  }
  out.first_round = from;
  auto ids = state->round_ids_of(out.session, from);
  if (!ids)
    return ids.error();
  for (auto& id : *ids) {
    auto r = state->get<round_record>(id);
    if (!r)
      return r.error();
    out.rounds.push_back(std::move(*r));
  }
  if (from == 0)
    out.session.round_ids = std::move(*ids);
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
    if (!i->second.draining)
      chosen = &i->second;
    else
      spdlog::info("controller: client {} prefers combiner {}, which is "
                   "draining: it gets the least loaded other one",
                   rec.client_id, rec.combiner_preferred);
  }
  if (chosen == nullptr) {
    uint64_t least = 0;
    std::string draining;
    for (auto& [id, c] : known_combiners) {
      if (c.alive && c.draining)
        draining += (draining.empty() ? "" : ", ") + id;
      if (!c.alive || c.draining)
        continue;
      auto n = (*counts)[id];
      if (chosen == nullptr || n < least) {
        chosen = &c;
        least = n;
      }
    }
    if (chosen == nullptr)
      return caf::make_error(ec::invalid_state,
                             "no combiner available"
                               + (draining.empty()
                                    ? std::string{}
                                    : " (draining: " + draining + ")"));
  }
  rec.combiner_id = chosen->info.combiner_id;
  rec.assigned_at = unix_now();
  if (auto err = state->put(rec))
    return err;
  auto out = *chosen;
  out.clients_assigned = (*counts)[rec.combiner_id] + 1;
  return out;
}

caf::expected<combiner_status>
controller_state::drain(const std::string& id, bool on) {
  auto i = known_combiners.find(id);
  if (i == known_combiners.end())
    return caf::make_error(ec::not_found, "no combiner " + id);
  auto counts = assigned_counts(*state);
  if (!counts)
    return counts.error();
  i->second.draining = on;
  if (!on)
    released.erase(id);
  auto out = i->second;
  out.clients_assigned = (*counts)[id];
  return out;
}

std::vector<combiner_status> controller_state::take_releasable() {
  std::vector<combiner_status> out;
  for (auto& [id, c] : known_combiners)
    if (c.draining && c.alive && round_combiners.count(id) == 0
        && released.insert(id).second)
      out.push_back(c);
  return out;
}

std::map<std::string, combiner_actor>
controller_state::serving_combiners() const {
  std::map<std::string, combiner_actor> out;
  for (auto& [id, handle] : combiners)
    if (auto i = known_combiners.find(id);
        i == known_combiners.end() || !i->second.draining)
      out.emplace(id, handle);
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
  // Round ids continue from the persisted counter; a database from before
  // the counter derives it from its round records once.
  auto counter = st.state->counter(next_round_counter, 0);
  if (!counter)
    spdlog::error("controller: cannot read the round counter ({}); "
                  "deriving it from the stored rounds",
                  render(counter.error()));
  if (counter && *counter > 0) {
    st.next_round = *counter;
  } else if (auto rounds = st.state->list<round_record>()) {
    for (auto& r : *rounds)
      st.next_round = std::max<uint64_t>(st.next_round,
                                         std::strtoull(r.round_id.c_str(),
                                                       nullptr, 10)
                                           + 1);
  } else {
    spdlog::error("controller: cannot read the stored rounds: {}; round "
                  "ids may repeat",
                  render(rounds.error()));
  }
  if (auto statuses = st.state->list<status_record>()) {
    std::sort(statuses->begin(), statuses->end(), [](auto& x, auto& y) {
      return x.timestamp < y.timestamp;
    });
    for (auto& x : *statuses)
      st.statuses.push_back(x.status_id);
  } else {
    spdlog::error("controller: cannot read the stored status events: {}",
                  render(statuses.error()));
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
      spdlog::warn("controller: combiner {} lost: {}", cid, render(dm.reason));
      if (st.round)
        self->send(st.round, lost_atom::value, cid);
      return;
    }
  });
  resume_session(self);
  return {
    [self](caf::join_atom, const combiner_info& info, combiner_actor& handle,
           const std::vector<round_record>& interrupted) -> caf::ok_atom {
      auto& st = self->state;
      auto& cid = info.combiner_id;
      if (st.resumed && st.known_combiners.count(cid) == 0) {
        // Its running round belongs to the controller that stopped (the
        // resumed session runs it again): drop it rather than queue the
        // new round behind it.
        spdlog::info("controller: combiner {} joins after the restart: its "
                     "rounds of before are dropped",
                     cid);
        caf::anon_send(handle, caf::flush_atom::value);
      }
      if (auto i = st.combiners.find(cid); i != st.combiners.end())
        self->demonitor(i->second.address());
      st.combiners[cid] = handle;
      // A (re)joining combiner starts not draining. One that kept running
      // across a reconnect or a controller restart may still be draining
      // at its end: it takes task streams again.
      st.known_combiners[cid] = combiner_status{info, true, unix_now(), 0,
                                                handle};
      st.released.erase(cid);
      self->send(handle, drain_atom::value, false);
      self->monitor(handle);
      spdlog::info("controller: combiner {} joined (clients reach it at "
                   "{}:{}{})",
                   cid, info.host, info.port, info.tls ? ", TLS" : "");
      note_interrupted(self, cid, interrupted);
      if (st.round) {
        st.round_combiners.insert(cid);
        self->send(st.round, caf::join_atom::value, cid, handle);
      }
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
    [self](drain_atom, const std::string& id,
           bool on) -> caf::result<combiner_status> {
      auto& st = self->state;
      auto k = st.known_combiners.find(id);
      auto was = k != st.known_combiners.end() && k->second.draining;
      auto out = st.drain(id, on);
      if (!out)
        return out.error();
      if (on && !was)
        spdlog::info("controller: combiner {} is draining: no new clients or "
                     "rounds{}",
                     id,
                     st.round_combiners.count(id) != 0
                       ? "; it releases its clients when the running round "
                         "ends"
                       : "");
      if (!on && was) {
        spdlog::info("controller: combiner {} is no longer draining", id);
        if (out->handle)
          self->send(out->handle, drain_atom::value, false);
      }
      release_drained(self);
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
      auto& st = self->state;
      auto sessions = st.state->list<session_record>();
      if (!sessions)
        return sessions.error();
      for (auto& s : *sessions) {
        if (s.session_id == st.record.session_id)
          s = st.record;
        auto ids = st.state->round_ids_of(s);
        if (!ids)
          return ids.error();
        s.round_ids = std::move(*ids);
      }
      std::sort(sessions->begin(), sessions->end(), [](auto& x, auto& y) {
        return x.created_at < y.created_at;
      });
      return std::move(*sessions);
    },
    [self](caf::wait_for_atom, const std::string& id,
           uint64_t after_rounds) -> caf::result<session_report> {
      auto& st = self->state;
      auto live = st.record.session_id == id && running(st);
      if (!live || st.rounds_ended() > after_rounds) {
        auto rep = st.report(id, after_rounds);
        if (!rep)
          return rep.error();
        return std::move(*rep);
      }
      auto rp = self->make_response_promise<session_report>();
      st.waiters.push_back({id, after_rounds, rp});
      return rp;
    },
    [self](terminate_atom,
           const std::string& id) -> caf::result<session_report> {
      auto& st = self->state;
      if (st.record.session_id == id && running(st)) {
        for (auto& [cid, handle] : st.combiners)
          caf::anon_send(handle, caf::flush_atom::value);
        if (st.round && st.prediction_id.empty()) {
          // The round ends now; the session ends with its record.
          auto rp = self->make_response_promise<session_report>();
          st.terminating.push_back(rp);
          if (st.terminating.size() == 1)
            self->request(st.round, st.cfg.request_timeout,
                          terminate_atom::value)
              .then(
                [self](round_record& r) {
                  // Empty when the round's own report came first.
                  if (self->state.terminating.empty())
                    return;
                  round_over(self);
                  on_round_end(self, r);
                },
                [self](caf::error& err) {
                  auto& st = self->state;
                  if (st.terminating.empty())
                    return;
                  round_over(self);
                  spdlog::error("controller: the running round did not "
                                "stop: {}",
                                render(err));
                  end_session(self, session_status::terminated,
                              "terminated");
                  for (auto& p : st.terminating)
                    p.deliver(err);
                  st.terminating.clear();
                });
          return rp;
        }
        end_session(self, session_status::terminated, "terminated");
      } else if (auto stored = st.state->get<session_record>(id);
                 stored && stored->status == session_status::pending) {
        // A pending session that will not start: its seed is no longer
        // protected from pruning.
        stored->status = session_status::terminated;
        stored->reason = "terminated before it started";
        stored->ended_at = unix_now();
        if (auto err = st.state->put(*stored))
          return err;
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
    [self](prune_atom, uint64_t keep) -> caf::result<std::vector<std::string>> {
      // Protects the model the running (or next) round starts from.
      auto& st = self->state;
      auto removed = storage::prune_trail(*st.state, *st.models, keep,
                                          {st.record.global_model_id});
      if (!removed)
        return removed.error();
      spdlog::info("controller: pruned {} model(s), kept the newest {}",
                   removed->size(), keep);
      return std::move(*removed);
    },
    [self](const round_record& r) {
      auto& st = self->state;
      if (self->current_sender() != st.round.address())
        return;
      round_over(self);
      if (!st.prediction_id.empty()) {
        st.prediction_id.clear();
        return;
      }
      on_round_end(self, r);
    },
    [self](status_atom, bool instructing) {
      auto& st = self->state;
      if (self->current_sender() == st.round.address())
        st.instructing = instructing;
    },
  };
}

} // namespace rondo
