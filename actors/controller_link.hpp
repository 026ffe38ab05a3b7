#pragma once

// A combiner's link to its controller over the CAF middleman: connects,
// joins the controller on the combiner's behalf, notices when the
// controller goes away (a down message; with the middleman heartbeat also a
// frozen one) and connects again with back-off. While connected it is the
// combiner's remote model source: staging fetches global models from the
// controller through it, chunk by chunk.

#include "actors/actors.hpp"

#include <caf/timespan.hpp>

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace rondo {

namespace storage {
class model_store;
} // namespace storage

/// Where the controller is and how to reach it.
struct controller_link_config {
  /// The combiner id announced when joining.
  std::string combiner_id = "combiner";
  /// The controller's published host and port (`rondo controller`).
  std::string host = "127.0.0.1";
  uint16_t port = 0;
  /// Bound on connecting and on each request to the controller (join, one
  /// model chunk). Default 10 s.
  caf::timespan request_timeout = std::chrono::seconds(10);
  /// Back-off between connection attempts: starts at `retry_min`, doubles
  /// per failed attempt up to `retry_max`. Defaults 0.5 s and 10 s.
  caf::timespan retry_min = std::chrono::milliseconds(500);
  caf::timespan retry_max = std::chrono::seconds(10);
  /// Connect through CAF's OpenSSL module (mutual TLS): the actor system
  /// must have loaded it with a certificate, key and CA
  /// (apps::enable_middleman). A handshake that fails (the controller's
  /// certificate does not verify, or it rejects ours) fails the attempt,
  /// which is retried with the same back-off.
  bool tls = false;
};

/// The link's interface.
/// - (get, model_id) -> model_blob: a model_source_actor: fetches the model
///   from the controller into the combiner's store, chunk by chunk;
///   ec::invalid_state while not connected.
/// - (join, combiner, info, interrupted): start linking `combiner` to the
///   controller, announcing `info` (where clients reach it) on every join;
///   sent once, after the combiner is spawned with this link as its source
///   and its client port is bound. `interrupted` holds the terminal records
///   of the rounds this combiner's restart cut short
///   (close_interrupted_jobs): they go with the first join the controller
///   accepts, and with no later one.
/// - status_record: a client's status event, from the combiner: sent on to
///   the controller while joined; dropped (and counted in the log) while
///   not.
/// - timer_tick: internal (reconnect).
using controller_link_actor = caf::typed_actor<
  caf::replies_to<caf::get_atom, std::string>::with<model_blob>,
  caf::reacts_to<caf::join_atom, combiner_actor, combiner_info,
                 std::vector<round_record>>,
  caf::reacts_to<status_record>, caf::reacts_to<timer_tick>>;

struct controller_link_state {
  static inline constexpr const char* name = "controller-link";
  controller_link_config cfg;
  std::shared_ptr<storage::model_store> models;
  combiner_actor combiner;
  /// What the combiner announces when it joins.
  combiner_info info;
  /// Rounds the restart interrupted, not yet accepted by a controller.
  std::vector<round_record> interrupted;
  /// The controller while joined; invalid otherwise.
  controller_actor controller;
  /// Fetches models from `controller`; replaced on every join.
  model_source_actor source;
  /// Current back-off.
  caf::timespan backoff{0};
  /// Bumped per connection attempt: stale retry ticks are ignored.
  uint64_t epoch = 0;
  /// Consecutive failed attempts (logged on the first, every tenth and
  /// whenever the reason changes).
  uint64_t failures = 0;
  /// The reason of the last failed attempt; empty while joined.
  std::string last_failure;
  /// Status events dropped while not joined, since the last log line.
  uint64_t statuses_dropped = 0;
};

/// Spawn with the combiner's model store; then send (join, combiner).
/// Errors are logged to stderr and retried; the link never gives up while
/// the combiner lives (it quits when the combiner goes down).
controller_link_actor::behavior_type
controller_link(controller_link_actor::stateful_pointer<controller_link_state>
                  self,
                controller_link_config cfg,
                std::shared_ptr<storage::model_store> models);

} // namespace rondo
