#pragma once

// Every typed actor interface of the combiner, in one place. Each actor has
// its own header with its state, config and behavior; this file is the
// protocol. Handlers marked "internal" are self-messages (timers).
//
// Conventions: a request always carries a finite timeout; errors are
// `caf::error`s with a `rondo::ec` code and a readable reason.

#include "messages/combiner_messages.hpp"
#include "messages/controller_messages.hpp"
#include "messages/records.hpp"
#include "messages/round_config.hpp"

#include <caf/atom.hpp>
#include <caf/replies_to.hpp>
#include <caf/timespan.hpp>
#include <caf/typed_actor.hpp>

#include <string>
#include <vector>

namespace rondo {

/// Atoms of Rondo's protocols (CAF's own are reused where they fit:
/// caf::get_atom, caf::flush_atom, caf::open_atom, caf::close_atom,
/// caf::tick_atom, caf::wait_for_atom, caf::subscribe_atom).
using terminate_atom = caf::atom_constant<caf::atom("terminate")>;
using finish_atom = caf::atom_constant<caf::atom("finish")>;
using heartbeat_atom = caf::atom_constant<caf::atom("heartbeat")>;
using trainers_atom = caf::atom_constant<caf::atom("trainers")>;
using validators_atom = caf::atom_constant<caf::atom("validator")>;
using clients_atom = caf::atom_constant<caf::atom("clients")>;
using session_atom = caf::atom_constant<caf::atom("session")>;
using models_atom = caf::atom_constant<caf::atom("models")>;
using failed_atom = caf::atom_constant<caf::atom("failed")>;
using combiners_atom = caf::atom_constant<caf::atom("combiners")>;
using committed_atom = caf::atom_constant<caf::atom("committed")>;
using prune_atom = caf::atom_constant<caf::atom("prune")>;
using drain_atom = caf::atom_constant<caf::atom("drain")>;

/// Where clients reach a combiner, as it announces itself when it joins
/// the controller (FEDn's combiner address, fqdn, ip and port, which
/// `POST /api/v1/clients/add` hands to clients).
struct combiner_info {
  std::string combiner_id;
  /// The host clients dial (`rondo combiner --advertise-host`; default its
  /// --host, or the machine's hostname when --host is 0.0.0.0 or ::).
  std::string host;
  /// A fully qualified name behind a TLS proxy on port 443; "" when none
  /// (FEDn's client dials fqdn:443 whenever fqdn is set).
  std::string fqdn;
  /// The combiner's --host when it names one address; "" for a wildcard
  /// (0.0.0.0, ::).
  std::string ip;
  /// The client-facing gRPC port.
  uint16_t port = 0;
  /// The port serves TLS (the combiner has --cert/--key).
  bool tls = false;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, combiner_info& x) {
  return f(caf::meta::type_name("rondo.combiner_info"), x.combiner_id,
           x.host, x.fqdn, x.ip, x.port, x.tls);
}
using status_atom = caf::atom_constant<caf::atom("status")>;
using prediction_atom = caf::atom_constant<caf::atom("prediction")>;

// -- parts that several interfaces share -------------------------------------

/// Answers (get, model_id, chunk index) -> model_chunk: a stored model
/// chunk by chunk (messages/controller_messages.hpp model_chunk). Part of
/// the combiner (its aggregates) and the controller (global models).
using chunk_source_actor = caf::typed_actor<
  caf::replies_to<caf::get_atom, std::string, uint64_t>::with<model_chunk>>;

/// Takes clients' answers to tasks and answers each with a verdict:
/// - model_update -> update_verdict: a trainer's model update.
/// - model_validation -> update_verdict: a validator's metrics.
/// - task_refused: the edge refused a client's answer to a task (bad meta,
///   num_examples <= 0, ...): the round holding the task resolves it as
///   rejected at once, provided the refused client owns it.
/// Part of the round, the round queue and the combiner.
using update_sink_actor = caf::typed_actor<
  caf::replies_to<model_update>::with<update_verdict>,
  caf::replies_to<model_validation>::with<update_verdict>,
  caf::reacts_to<task_refused>>;

/// Owns a deadline: timer_tick (internal, a delayed message to itself;
/// its kind says which deadline).
using timer_owner_actor = caf::typed_actor<caf::reacts_to<timer_tick>>;

/// The edge's end of one client's task stream: receives the tasks the
/// client's session forwards. The edge writes them to the gRPC stream.
using task_sink_actor = caf::typed_actor<caf::reacts_to<client_task>>;

/// Receives a client session's liveness changes: the subset of
/// combiner_actor a session needs (a combiner handle converts to it).
/// - client_activity: the client became active or inactive.
using activity_listener_actor
  = caf::typed_actor<caf::reacts_to<client_activity>>;

/// Receives the status events clients send (FEDn's SendStatus): the
/// combiner's controller link, the controller.
using status_sink_actor = caf::typed_actor<caf::reacts_to<status_record>>;

/// Receives the records of every round a job was pushed for: first a
/// progress record (status running, clients_selected filled) once the round
/// has sent its tasks, then its terminal record. A round that ends before
/// sending tasks reports only its terminal record.
using round_report_actor = caf::typed_actor<caf::reacts_to<round_record>>;

/// Supplies models that are neither cached nor in the local store (e.g. the
/// controller's global model).
/// - (get, model_id) -> model_blob, or an error (ec::not_found, ...).
using model_source_actor
  = caf::typed_actor<caf::replies_to<caf::get_atom, std::string>::with<
    model_blob>>;

/// One round: runs one job through its state machine to a terminal state.
/// - model_update -> update_verdict: a client's update, from the combiner.
/// - model_validation -> update_verdict: a validator's metrics.
/// - task_refused: the edge refused the client's answer to a task: the
///   task is rejected with the reason (clients_rejected) and the round
///   closes if nothing else is outstanding; ignored unless the refused
///   client owns the task.
/// - task_cancelled: a selected client's task ended without an answer.
/// - terminate: stop now; records Failed("terminated").
/// The round reports to its report actor (the queue) a copy of its record
/// with status running and clients_selected once its tasks are sent, and
/// its terminal record when it ends.
/// - (finish): from the round queue: the round's terminal record is
///   durably recorded and reported. The round then tells the sessions of
///   its unanswered tasks to forget them, removes its model updates (when
///   delete_models_storage is set) and quits. Without it the round does so
///   request_timeout after it reported.
/// - timer_tick: internal (client wait, round timeout, the finish bound).
using round_actor = update_sink_actor::extend_with<timer_owner_actor>::extend<
  caf::reacts_to<task_cancelled>, caf::reacts_to<terminate_atom>,
  caf::reacts_to<finish_atom>>;

/// One client's session: liveness, role, outstanding tasks.
/// - (heartbeat): the client is alive now.
/// - (open, task_sink): the client's task stream opened.
/// - (close): the stream ended (client gone or cancelled): outstanding tasks
///   are cancelled and their rounds told.
/// - (client_task, round_actor) -> bool: deliver a task of that round; false
///   (with nothing sent) when no stream is open.
/// - (finish, correlation_id): the round ended: forget the task.
/// - (failed, correlation_id, reason): the client reported the task failed:
///   its round is told at once (task_cancelled with `failed`).
/// - (get) -> client_record: status for listings.
/// - (drain, on, reason): the combiner is draining (on) or no longer
///   (off): while on, the open stream ends and every new one is refused,
///   each with `reason` (the edge ends the gRPC stream UNAVAILABLE).
/// - timer_tick: internal liveness check.
using client_session_actor = timer_owner_actor::extend<
  caf::reacts_to<heartbeat_atom>, caf::reacts_to<caf::open_atom, task_sink_actor>,
  caf::reacts_to<caf::close_atom>,
  caf::replies_to<client_task, round_actor>::with<bool>,
  caf::reacts_to<finish_atom, std::string>,
  caf::reacts_to<failed_atom, std::string, std::string>,
  caf::replies_to<caf::get_atom>::with<client_record>,
  caf::reacts_to<drain_atom, bool, std::string>>;

/// An active client and its session, as the combiner hands them to rounds.
struct active_client {
  client_info info;
  client_session_actor session;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, active_client& x) {
  return f(caf::meta::type_name("rondo.active_client"), x.info, x.session);
}

/// Aggregates one training round's updates as they arrive.
/// - model_update -> update_verdict: take the decoded update from the
///   update cache (else decode it from the model store), validate it
///   against the global model, fold it in (or reject it and leave the
///   aggregate as it was); the verdict says how long the fold took.
/// - (finish, new_model_id) -> (model_record, aggregate_seconds,
///   write_seconds): compute the aggregate, then write it to the model
///   store under new_model_id, with the seconds each step took; the record
///   carries no parent/session (the round fills them). Fails with
///   ec::aggregation_failed when no update was accepted or the result is
///   not finite.
using aggregator_actor = caf::typed_actor<
  caf::replies_to<model_update>::with<update_verdict>,
  caf::replies_to<finish_atom, std::string>::with<model_record, double,
                                                  double>>;

/// Makes models available to rounds: memory cache, else the model store,
/// else a model source, with bounded retries.
/// - (get, model_id) -> model_blob; ec::staging_failed after the last try.
/// - timer_tick: internal retry.
/// - (committed, model_id): the controller committed model_id as the
///   global model: the memory cache drops every other model.
using staging_actor = model_source_actor::extend_with<timer_owner_actor>::
  extend<caf::reacts_to<committed_atom, std::string>>;

/// The combiner's round queue: persists jobs, runs them one at a time.
/// - (round_config, round_report_actor) -> job id: accept a job; the report
///   actor (may be invalid) gets the round's terminal record.
/// - model_update / model_validation -> update_verdict: forwarded to the
///   running round; rejected as stale when none runs.
/// - task_refused: forwarded to the running round; dropped (logged) when
///   none runs.
/// - (flush) -> number of jobs dropped: terminate the running round and
///   fail every queued job with "terminated".
/// - (get, job_id) -> job_record.
/// - round_record: internal, from the running round. A progress record
///   (status running, sent once the round's tasks are out) is persisted
///   (one write, so that a restart knows which clients had tasks) and
///   passed on to the job's pusher. The terminal record is persisted with
///   the job's end (one synced write), then reported to the pusher, then
///   the round gets `finish`. On start, a job that was running when the
///   process died is recorded Failed("interrupted: ...") with the
///   clients_selected of its persisted progress (round_queue.hpp
///   close_interrupted_jobs), and queued jobs run again.
using round_queue_actor = update_sink_actor::extend<
  caf::replies_to<round_config, round_report_actor>::with<std::string>,
  caf::replies_to<caf::flush_atom>::with<uint64_t>,
  caf::replies_to<caf::get_atom, std::string>::with<job_record>,
  caf::reacts_to<round_record>>;

/// The combiner: owns client sessions and the round queue.
/// - client_info -> client_session_actor: a client connects (existing
///   session for a known client_id, else a new one).
/// - client_activity: internal, from sessions.
/// - (trainers, n, wait) -> vector<active_client>: the active trainers as
///   soon as at least n are active, or whatever is active once `wait` has
///   passed (a timer; the requester compares the count). Likewise
///   (validators, n, wait).
/// - (get, clients) -> vector<client_record>: every known client.
/// - round_config, model_update, model_validation, task_refused, flush: as
///   the queue's.
/// - (get, model_id, chunk index) -> model_chunk: its stored models, chunk
///   by chunk, for the controller to fetch aggregates.
/// - status_record: a client's status event, from the edge; passed on to
///   the status sink, if any (dropped otherwise).
/// - (subscribe, status_sink): where status events go from now on (the
///   controller link subscribes itself).
/// - (committed, model_id): the controller committed model_id as the
///   global model: the combiner drops its other staged global models and
///   its aggregates (store and staging cache), keeping model_id and every
///   model a queued or running job starts from.
/// - (drain, on): from the controller, once no running round includes the
///   combiner: on, release the clients (each open task stream ends, and
///   new ones are refused, with gRPC status UNAVAILABLE and "combiner <id>
///   is draining: ..."; heartbeats are still answered); off, take task
///   streams again.
using combiner_actor = chunk_source_actor::extend_with<
  update_sink_actor, timer_owner_actor>::extend<
  caf::replies_to<client_info>::with<client_session_actor>,
  caf::reacts_to<client_activity>,
  caf::replies_to<trainers_atom, int64_t, caf::timespan>::with<
    std::vector<active_client>>,
  caf::replies_to<validators_atom, int64_t, caf::timespan>::with<
    std::vector<active_client>>,
  caf::replies_to<caf::get_atom, clients_atom>::with<
    std::vector<client_record>>,
  caf::replies_to<round_config, round_report_actor>::with<std::string>,
  caf::replies_to<caf::flush_atom>::with<uint64_t>,
  caf::reacts_to<status_record>,
  caf::reacts_to<caf::subscribe_atom, status_sink_actor>,
  caf::reacts_to<committed_atom, std::string>,
  caf::reacts_to<drain_atom, bool>>;

/// A combiner as the controller knows it: announced address, whether it is
/// connected now, and how many clients the controller assigned to it.
struct combiner_status {
  combiner_info info;
  /// Connected now; a lost combiner stays known (alive false) until it
  /// joins again.
  bool alive = false;
  /// Unix seconds of its last join.
  double joined_at = 0;
  /// Clients the controller assigned to it (client_assignment_record).
  uint64_t clients_assigned = 0;
  /// Its handle while alive; invalid otherwise.
  combiner_actor handle;
  /// Being drained (scale-in): no client is assigned to it and no new
  /// round includes it. Set and cleared by the operator (POST
  /// /api/v1/combiners/{id}/drain, /undrain); a combiner starts not
  /// draining whenever it (re)joins. Kept in the controller's memory only.
  bool draining = false;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, combiner_status& x) {
  return f(caf::meta::type_name("rondo.combiner_status"), x.info, x.alive,
           x.joined_at, x.clients_assigned, x.handle, x.draining);
}

/// The controller: owns sessions, combiner membership and the global model
/// trail; each global round runs in its own actor (actors/global_round.hpp)
/// across the combiners and reduces their models. A session that was
/// running when the controller stopped resumes when it starts again (from
/// its last committed global model; a round cut short is re-run under a
/// new round id; round ids are never reused).
/// - (join, combiner_info, combiner, interrupted) -> ok: a combiner
///   (re)joins and announces where clients reach it; it is monitored and
///   marked dead (no longer used) when it goes down. `interrupted` holds
///   the terminal records (Failed, "interrupted") of the rounds its
///   restart cut short, each reported once: the controller records them
///   against its rounds.
/// - (put, client_assignment_record) -> combiner_status: assign a client
///   (FEDn's clients/add): to its combiner_preferred when that one is
///   alive and not draining, else to the alive, not draining combiner with
///   the fewest assigned clients (ties: the smallest id); the assignment
///   is stored (synced).
///   ec::not_found "combiner <id> not found or unavailable" for a
///   preferred one that is not alive; ec::invalid_state "no combiner
///   available" when none is.
/// - (get, combiners) -> every combiner known since start, by id.
/// - (drain, combiner_id, on) -> combiner_status: drain a combiner (on) or
///   stop draining it (off); see controller_state::drain. ec::not_found
///   "no combiner <id>" for an id that never joined.
/// - (get, model_id, chunk index) -> model_chunk: global models for
///   combiners' staging.
/// - session_config -> session id: start a session (one at a time;
///   ec::invalid_state while one runs). A stored session with the config's
///   id starts if pending, and continues if it ended: its next rounds start
///   from the model of its last successful round.
/// - (get, session, id) -> session_report (ec::not_found: "no session
///   <id>").
/// - (get, session) -> every session's record, oldest first.
/// - (wait_for, session id, n) -> session_report: answers once more than n
///   of the session's rounds ended (counted by position: every round it
///   started, failed and re-run ones included), or the session is not
///   running (the requester's timeout bounds the wait). The report holds
///   only the rounds from position n on (first_round n), so a follower
///   reads what is new.
/// - (terminate, session id) -> session_report: stop the session now.
/// - (put, model_blob) -> model_record: add a seed model to the trail.
/// - (get, models) -> the trail, oldest first.
/// - (put, session, session_config, name) -> session_record: store a
///   pending session (FEDn's POST /sessions/) that `session_config` starts
///   later (ec::already_exists for a known id, ec::invalid_config).
/// - (get, status) -> FEDn's controller state: "idle" (no session runs),
///   "instructing" (picking combiners for a round), "monitoring" (a round
///   is at the combiners or being reduced or validated).
/// - status_record: a client's status event from a combiner: stored (the
///   newest controller_config::max_statuses are kept).
/// - (prediction, prediction_id, model_id) -> prediction_id: run a
///   prediction round of `model_id` ("" the newest model) at every
///   combiner; each client's answer is stored as a prediction_record
///   (ec::invalid_state while a session or a prediction runs or with no
///   combiner; ec::not_found for an unknown model).
/// - (prune, keep) -> removed model ids: keep the newest `keep` (>= 1)
///   models of the trail and every protected one (a session's current
///   global model, a pending or running session's seed, the model a running
///   round started from); delete the others' bytes (their trail records
///   stay). ec::invalid_argument for keep 0.
/// - round_record: internal, the terminal record of the running global
///   round (actors/global_round.hpp), already stored by it.
/// - (status, bool): internal, the running global round is picking
///   combiners (true) or past that (false).
using controller_actor = chunk_source_actor::extend<
  caf::replies_to<caf::join_atom, combiner_info, combiner_actor,
                  std::vector<round_record>>::with<caf::ok_atom>,
  caf::replies_to<caf::put_atom, client_assignment_record>::with<
    combiner_status>,
  caf::replies_to<caf::get_atom, combiners_atom>::with<
    std::vector<combiner_status>>,
  caf::replies_to<drain_atom, std::string, bool>::with<combiner_status>,
  caf::replies_to<session_config>::with<std::string>,
  caf::replies_to<caf::get_atom, session_atom, std::string>::with<
    session_report>,
  caf::replies_to<caf::get_atom, session_atom>::with<
    std::vector<session_record>>,
  caf::replies_to<caf::wait_for_atom, std::string, uint64_t>::with<
    session_report>,
  caf::replies_to<terminate_atom, std::string>::with<session_report>,
  caf::replies_to<caf::put_atom, model_blob>::with<model_record>,
  caf::replies_to<caf::get_atom, models_atom>::with<
    std::vector<model_record>>,
  caf::replies_to<caf::put_atom, session_atom, session_config,
                  std::string>::with<session_record>,
  caf::replies_to<caf::get_atom, status_atom>::with<std::string>,
  caf::reacts_to<status_record>,
  caf::replies_to<prediction_atom, std::string, std::string>::with<
    std::string>,
  caf::replies_to<prune_atom, uint64_t>::with<std::vector<std::string>>,
  caf::reacts_to<round_record>, caf::reacts_to<status_atom, bool>>;

} // namespace rondo
