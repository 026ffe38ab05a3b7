#pragma once

// One client's session: tracks whether the client is active (FEDn: seen
// within the last 10 s, by a heartbeat or an open TaskStream), forwards the
// tasks rounds assign to the client's task stream, and tells a round when
// its task can no longer be answered because the stream ended.
//
// Liveness uses at most one pending self-addressed timer per session, armed
// only when the client was seen and no check is pending; a heartbeat only
// stores a time stamp. 10 000 idle-but-alive sessions therefore cost one
// timer message each per liveness_timeout, not one per heartbeat.

#include "actors/actors.hpp"
#include "actors/type_ids.hpp"
#include "messages/combiner_messages.hpp"
#include "messages/records.hpp"

#include <caf/actor_clock.hpp>
#include <caf/error.hpp>
#include <caf/fwd.hpp>
#include <caf/timespan.hpp>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <string>
#include <unordered_map>

namespace rondo {

/// Options of a client session.
struct client_session_config {
  /// How long a client stays active after it was last seen (its last
  /// heartbeat, or the end of its task stream); must be > 0. While the task
  /// stream is open the client counts as seen continuously.
  /// Default: 10 s, as FEDn's combiner.
  caf::timespan liveness_timeout = std::chrono::seconds(10);
};

/// Checks a session configuration.
/// @returns `ec::invalid_config` naming the option and its value, or none.
caf::error validate(const client_session_config& cfg);

/// State of a client session. The handlers of `client_session` only call
/// these methods; they use `self` for the clock and for sending, so they
/// need a running actor (tests drive them on the deterministic scheduler).
struct client_session_state {
  static inline constexpr const char* name = "client-session";

  /// The `what` of this actor's liveness timer ticks.

  /// The text of the exit reason (`ec::terminated`) a replaced stream's
  /// sink gets; the edge ends that gRPC stream with it.
  static inline constexpr const char* replaced_reason
    = "replaced by a newer task stream of the same client";

  // -- handlers ---------------------------------------------------------------

  /// The client was seen now (a heartbeat): it becomes active if it was
  /// not, and a liveness check is armed if none is pending and no stream is
  /// open.
  void heartbeat();

  /// The client's task stream opened; later tasks go to `sink`. An open
  /// stream keeps the client active without heartbeats. If a stream was
  /// already open it is replaced: its outstanding tasks are cancelled
  /// (their rounds get `task_cancelled`) and its sink is sent an exit with
  /// `ec::terminated` and `replaced_reason`, so that the edge finishes the
  /// old gRPC stream (its client, if still there, sees the stream end and
  /// reconnects) instead of leaving it open with no tasks ever coming. An
  /// invalid `sink` means "no stream": an open stream ends as on replacement
  /// and the call counts as a heartbeat. The sink is monitored; its
  /// termination counts as `close`.
  void open(task_sink_actor sink);

  /// The task stream ended (client gone or call cancelled): every
  /// outstanding task is cancelled (its round gets `task_cancelled` with
  /// `reason`) and forgotten, and the sink is dropped. The client stays
  /// active until `liveness_timeout` after now. No effect when no stream is
  /// open.
  void close(const std::string& reason);

  /// Delivers a task of `round` to the client.
  /// @returns true when the task was forwarded to the open stream (and is
  ///          now outstanding until `finish` or the stream ends); false,
  ///          with nothing sent and nothing remembered, when no stream is
  ///          open, or when a task with the same correlation id is already
  ///          outstanding (correlation ids are unique per task: a duplicate
  ///          is refused so the client never runs a task twice and one id
  ///          never maps to two rounds; the first assignment stays as it
  ///          was).
  bool assign(client_task task, round_actor round);

  /// Forgets the outstanding task `correlation_id` without telling its
  /// round (the round ended or got the answer). Unknown ids are ignored.
  void finish(const std::string& correlation_id);

  /// The client reported that outstanding task `correlation_id` failed
  /// (its entry point failed or timed out): the task's round gets
  /// `task_cancelled` with `failed` set and `reason`, and the task is
  /// forgotten, so the round need not wait for it. Unknown ids (not this
  /// client's, or already answered) are ignored.
  void fail(const std::string& correlation_id, const std::string& reason);

  /// The combiner is draining (`on`) or no longer: while on, the open
  /// stream ends as on `close` and its sink is sent an exit with
  /// `ec::invalid_state` and `reason` (the edge finishes the gRPC stream
  /// UNAVAILABLE with that text), and `open` refuses every new sink the
  /// same way (counting it as a heartbeat). Off lifts the refusal.
  void drain(bool on, const std::string& reason);

  /// Handles the down message of a monitored sink: when it is the open
  /// stream's sink, the stream ended (as `close`); else ignored.
  void on_down(const caf::down_msg& msg);

  /// Handles a liveness timer tick; ignores ticks of other timers and stale
  /// ones (an older epoch). Re-arms for the rest of the window when the
  /// client was seen since the check was armed; marks the client inactive
  /// when the window has passed and no stream is open.
  void on_timer(const timer_tick& tick);

  /// The client as listings show it: status "online" while active, else
  /// "offline"; `last_seen` in Unix seconds (now while the stream is open;
  /// 0 if the client was never seen).
  client_record record() const;

  // -- observers --------------------------------------------------------------

  /// Whether the client counts as active (online).
  bool active() const {
    return active_;
  }

  /// Whether a task stream is open.
  bool stream_open() const {
    return static_cast<bool>(sink_);
  }

  /// Number of outstanding tasks (delivered, neither finished nor
  /// cancelled).
  size_t outstanding() const {
    return tasks_.size();
  }

  /// Whether task streams are refused (the combiner is draining).
  bool draining() const {
    return !refusal_.empty();
  }

  /// Whether a liveness check is pending (at most one ever is).
  bool check_pending() const {
    return check_pending_;
  }

  // -- member variables -------------------------------------------------------

  /// The actor; set by `client_session` before any handler runs.
  client_session_actor::stateful_pointer<client_session_state> self = nullptr;
  /// The client, as announced when the session was spawned.
  client_info info;
  /// Receives `client_activity` on every change of `active()`.
  activity_listener_actor listener;
  client_session_config cfg;

private:
  /// Records a sighting at `now`; activates; arms a check if needed.
  void seen_(caf::actor_clock::time_point now);

  /// Cancels every outstanding task with `reason` and drops the sink.
  void end_stream_(const std::string& reason);

  /// Arms the liveness check to fire at `at`.
  void arm_(caf::actor_clock::time_point at);

  /// Sets `active_` and tells the listener if it changed.
  void set_active_(bool value);

  /// Tells the listener when `active_` or the stream's state changed since
  /// the last report.
  void report_();

  /// The open stream's sink; invalid when no stream is open.
  task_sink_actor sink_;
  /// Why task streams are refused (the combiner is draining); empty when
  /// they are taken.
  std::string refusal_;
  /// Outstanding tasks: correlation id -> the round that assigned it.
  std::unordered_map<std::string, round_actor> tasks_;
  /// Actor-clock time of the last sighting (meaningful once seen_once_).
  caf::actor_clock::time_point last_seen_;
  /// Tags liveness ticks; only the tick of the latest arm counts.
  uint64_t epoch_ = 0;
  bool active_ = false;
  /// What the listener was told last.
  bool reported_active_ = false;
  bool reported_streaming_ = false;
  bool seen_once_ = false;
  bool check_pending_ = false;
};

/// The session of one client.
/// - (heartbeat): the client is alive now.
/// - (open, sink): the task stream opened (see `client_session_state::open`).
/// - (close): the stream ended; outstanding tasks are cancelled with reason
///   "client <id> closed its task stream".
/// - (client_task, round) -> bool: see `client_session_state::assign`.
/// - (finish, correlation_id): forget a task without cancelling it.
/// - (get) -> client_record: see `client_session_state::record`.
/// - (drain, on, reason): see `client_session_state::drain`.
/// - timer_tick: internal liveness check.
/// A new session is inactive until its first heartbeat or open; the
/// listener gets `client_activity{info, true}` on each inactive-to-active
/// change and `client_activity{info, false}` on each active-to-inactive
/// change, never a repeat of the current value.
/// @param info the client (its `client_id` names it in cancellations).
/// @param listener receives activity changes (usually the combiner; may be
///        invalid: then changes are not reported).
/// @param cfg options; an invalid configuration stops the actor at once
///        with `ec::invalid_config`.
client_session_actor::behavior_type
client_session(client_session_actor::stateful_pointer<client_session_state> self,
               client_info info, activity_listener_actor listener,
               client_session_config cfg);

} // namespace rondo
