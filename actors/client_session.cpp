#include "actors/client_session.hpp"

#include "messages/error.hpp"
#include "messages/ids.hpp"

#include <caf/actor_system.hpp>
#include <caf/stateful_actor.hpp>
#include <caf/system_messages.hpp>
#include <caf/typed_event_based_actor.hpp>

#include <utility>

namespace rondo {

caf::error validate(const client_session_config& cfg) {
  if (cfg.liveness_timeout.count() <= 0)
    return caf::make_error(ec::invalid_config,
                           "client session liveness_timeout must be > 0, got "
                             + std::to_string(cfg.liveness_timeout.count())
                             + " ns");
  return caf::none;
}

// -- client_session_state: handlers --------------------------------------------

void client_session_state::heartbeat() {
  seen_(self->clock().now());
}

void client_session_state::open(task_sink_actor sink) {
  if (sink && !refusal_.empty()) {
    self->send_exit(sink, caf::make_error(ec::invalid_state, refusal_));
    seen_(self->clock().now());
    return;
  }
  if (sink_) {
    // Another TaskStream of this client id (a reconnect after a half-open
    // connection, or a second process with the same id): the newer one
    // wins. The old sink must stop, or its gRPC stream stays open as a
    // zombie whose client waits for tasks that never come; its edge then
    // finishes that stream with the exit reason.
    auto old = sink_;
    end_stream_("client " + info.client_id
                + " opened a new task stream; the old one was ended");
    self->send_exit(old, caf::make_error(ec::terminated,
                                         std::string{replaced_reason}));
  }
  sink_ = std::move(sink);
  if (sink_)
    self->monitor(sink_);
  seen_(self->clock().now());
  report_();
}

void client_session_state::close(const std::string& reason) {
  if (!sink_)
    return;
  end_stream_(reason);
  // The stream was open until now: the client was last seen now.
  seen_(self->clock().now());
}

bool client_session_state::assign(client_task task, round_actor round) {
  if (!sink_)
    return false;
  auto [i, inserted] = tasks_.emplace(task.correlation_id, std::move(round));
  if (!inserted)
    return false;
  self->send(sink_, std::move(task));
  return true;
}

void client_session_state::finish(const std::string& correlation_id) {
  tasks_.erase(correlation_id);
}

void client_session_state::fail(const std::string& correlation_id,
                                const std::string& reason) {
  auto i = tasks_.find(correlation_id);
  if (i == tasks_.end())
    return;
  self->send(i->second, task_cancelled{correlation_id, info.client_id,
                                       reason, true});
  tasks_.erase(i);
}

void client_session_state::drain(bool on, const std::string& reason) {
  refusal_ = on ? reason : std::string{};
  if (!on || !sink_)
    return;
  auto old = sink_;
  close("client " + info.client_id + "'s task stream ended: " + reason);
  self->send_exit(old, caf::make_error(ec::invalid_state, reason));
}

void client_session_state::on_down(const caf::down_msg& msg) {
  if (!sink_ || msg.source != sink_.address())
    return;
  close("client " + info.client_id + "'s task stream ended: its edge actor "
        + "is down (" + self->system().render(msg.reason) + ")");
}

void client_session_state::on_timer(const timer_tick& tick) {
  if (tick.kind != timer_kind::liveness || tick.epoch != epoch_ || !check_pending_)
    return;
  check_pending_ = false;
  // An open stream is continuous presence; closing it re-arms the check.
  if (sink_)
    return;
  auto due = last_seen_ + cfg.liveness_timeout;
  if (due > self->clock().now())
    arm_(due);
  else
    set_active_(false);
}

client_record client_session_state::record() const {
  client_record r;
  r.client_id = info.client_id;
  r.name = info.name;
  r.trainer = info.trainer;
  r.validator = info.validator;
  r.status = active_ ? "online" : "offline";
  if (sink_) {
    r.last_seen = unix_now();
  } else if (seen_once_) {
    // Translate the actor-clock age of the sighting to wall-clock time (the
    // actor clock is monotonic, and virtual in tests).
    auto age = std::chrono::duration<double>(self->clock().now() - last_seen_);
    r.last_seen = unix_now() - age.count();
  }
  return r;
}

// -- client_session_state: private ---------------------------------------------

void client_session_state::seen_(caf::actor_clock::time_point now) {
  last_seen_ = now;
  seen_once_ = true;
  set_active_(true);
  if (!sink_ && !check_pending_)
    arm_(now + cfg.liveness_timeout);
}

void client_session_state::end_stream_(const std::string& reason) {
  for (auto& [correlation_id, round] : tasks_)
    self->send(round, task_cancelled{correlation_id, info.client_id, reason});
  tasks_.clear();
  self->demonitor(sink_.address());
  sink_ = nullptr;
  report_();
}

void client_session_state::arm_(caf::actor_clock::time_point at) {
  check_pending_ = true;
  self->scheduled_send(self, at, timer_tick{timer_kind::liveness, ++epoch_, {}});
}

void client_session_state::set_active_(bool value) {
  active_ = value;
  report_();
}

void client_session_state::report_() {
  bool streaming = static_cast<bool>(sink_);
  if (active_ == reported_active_ && streaming == reported_streaming_)
    return;
  reported_active_ = active_;
  reported_streaming_ = streaming;
  self->send(listener, client_activity{info, active_, streaming});
}

// -- behavior -------------------------------------------------------------------

client_session_actor::behavior_type
client_session(client_session_actor::stateful_pointer<client_session_state> self,
               client_info info, activity_listener_actor listener,
               client_session_config cfg) {
  auto& st = self->state;
  st.self = self;
  st.info = std::move(info);
  st.listener = std::move(listener);
  st.cfg = cfg;
  if (auto err = validate(cfg))
    self->quit(std::move(err));
  self->set_down_handler(
    [self](const caf::down_msg& msg) { self->state.on_down(msg); });
  return {
    [self](heartbeat_atom) { self->state.heartbeat(); },
    [self](caf::open_atom, task_sink_actor& sink) {
      self->state.open(std::move(sink));
    },
    [self](caf::close_atom) {
      self->state.close("client " + self->state.info.client_id
                        + " closed its task stream");
    },
    [self](client_task& task, round_actor& round) {
      return self->state.assign(std::move(task), std::move(round));
    },
    [self](finish_atom, const std::string& correlation_id) {
      self->state.finish(correlation_id);
    },
    [self](failed_atom, const std::string& correlation_id,
           const std::string& reason) {
      self->state.fail(correlation_id, reason);
    },
    [self](caf::get_atom) { return self->state.record(); },
    [self](drain_atom, bool on, const std::string& reason) {
      self->state.drain(on, reason);
    },
    [self](const timer_tick& tick) { self->state.on_timer(tick); },
  };
}

} // namespace rondo
