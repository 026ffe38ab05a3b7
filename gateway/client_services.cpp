// The services FEDn clients call: fedn.Connector (liveness, status, client
// listings) and fedn.Combiner (the task stream and the clients' answers).
//
// Every Combiner Send* call finishes with gRPC status OK, because FEDn
// clients treat an error status as a broken connection (they disconnect, or
// sleep and resend on UNAVAILABLE); they ignore the response text, which
// says what happened for logs and tests:
//   "accepted"            the combiner took the answer;
//   "rejected: <reason>"  the combiner's round refused it (unknown or
//                         foreign task, stale, bad model, ...);
//   "error: <reason>"     the edge refused the input before it reached the
//                         combiner (no client id, malformed meta, ...), or
//                         the combiner did not answer in time;
//   "stored ..."          metrics, attributes and telemetry.
// Refused inputs and rejected updates are logged with their reason.

#include "gateway/auth.hpp"
#include "gateway/edge_core.hpp"
#include "gateway/wire.hpp"
#include "messages/error.hpp"
#include "messages/ids.hpp"
#include "storage/state_store.hpp"
#include "storage/model_store.hpp"

#include <caf/actor_cast.hpp>
#include <caf/exit_reason.hpp>
#include <caf/send.hpp>
#include <caf/system_messages.hpp>
#include <caf/typed_event_based_actor.hpp>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <optional>

namespace rondo::gateway::detail {

namespace {

// A client's Status as the controller stores it (FEDn's status fields; enum
// values by their FEDn names). The sender's client id is the one the edge
// checked.
status_record to_status_record(const fedn::Status& x,
                               const std::string& client_id) {
  status_record r;
  r.status = x.status();
  r.log_level = fedn::LogLevel_Name(x.log_level());
  r.type = fedn::StatusType_Name(x.type());
  r.data = x.data();
  r.correlation_id = x.correlation_id();
  r.session_id = x.session_id();
  r.extra = x.extra();
  r.sender_name = x.sender().name();
  r.sender_role = fedn::Role_Name(x.sender().role());
  r.sender_client_id = client_id;
  r.timestamp = x.has_timestamp()
                  ? static_cast<double>(x.timestamp().seconds())
                      + x.timestamp().nanos() / 1e9
                  : unix_now();
  return r;
}


/// Finishes a unary call at once with status OK and `text` as response.
grpc::ServerUnaryReactor* answer_now(grpc::CallbackServerContext* ctx,
                                     fedn::Response* response,
                                     const edge_core& core,
                                     const std::string& text) {
  *response->mutable_sender() = core.me();
  response->set_response(text);
  auto* reactor = ctx->DefaultReactor();
  reactor->Finish(grpc::Status::OK);
  return reactor;
}

/// An input the edge refuses: logged, answered "error: <reason>" (OK).
grpc::ServerUnaryReactor* refuse(grpc::CallbackServerContext* ctx,
                                 fedn::Response* response,
                                 const edge_core& core, const char* call,
                                 const std::string& client_id,
                                 const std::string& reason) {
  spdlog::warn("edge: refused {} from client '{}': {}", call, client_id,
               reason);
  return answer_now(ctx, response, core, "error: " + reason);
}

/// Tells the combiner that the edge refused `owner`'s answer to the task
/// `correlation_id`, so that the task's round rejects it at once with
/// `reason` instead of waiting out its round_timeout. `owner` is the client
/// the edge authenticated (the token's client) or, without such a token,
/// identified; the round acts only when `owner` owns the task. Nothing is
/// sent when either is empty (nothing names a task or an owner).
void report_refusal(edge_core& core, const std::string& correlation_id,
                    const std::string& owner, const std::string& reason) {
  if (correlation_id.empty() || owner.empty())
    return;
  caf::anon_send(core.combiner,
                 task_refused{correlation_id, owner, "refused at the edge: "
                                                       + reason});
}

/// `refuse` for an answer to a task (a ModelUpdate, ModelValidation or
/// ModelPrediction): the round holding the task is told (report_refusal).
grpc::ServerUnaryReactor*
refuse_answer(grpc::CallbackServerContext* ctx, fedn::Response* response,
              edge_core& core, const char* call, const std::string& owner,
              const std::string& correlation_id, const std::string& reason) {
  report_refusal(core, correlation_id, owner, reason);
  return refuse(ctx, response, core, call, owner, reason);
}

/// `refuse_unary` for an answer to a task that failed its token check:
/// when the token names a client (the caller is authenticated as it, e.g.
/// it claimed to be another client), that client's task is resolved
/// (report_refusal); an unauthenticated caller changes nothing.
grpc::ServerUnaryReactor* deny_answer(grpc::CallbackServerContext* ctx,
                                      edge_core& core, const caller& c,
                                      const std::string& correlation_id,
                                      const grpc::Status& st) {
  if (c.checked)
    report_refusal(core, correlation_id, c.client, st.error_message());
  return refuse_unary(ctx, st);
}

const char* no_client_id = "the sender has no client_id or name and the call "
                           "has no 'client' metadata";

fedn::StatusType to_wire(round_task kind) {
  switch (kind) {
    case round_task::training: return fedn::MODEL_UPDATE;
    case round_task::validation: return fedn::MODEL_VALIDATION;
    case round_task::prediction: return fedn::MODEL_PREDICTION;
  }
  return fedn::MODEL_UPDATE;
}

/// A task as the FEDn client expects it on its TaskStream.
fedn::TaskRequest to_task_request(const client_task& task,
                                  const client_identity& who,
                                  const fedn::Client& me) {
  fedn::TaskRequest r;
  *r.mutable_sender() = me;
  auto* to = r.mutable_receiver();
  to->set_name(who.name);
  to->set_client_id(who.id);
  to->set_role(fedn::CLIENT);
  r.set_model_id(task.model_id);
  r.set_data(task.data);
  r.set_correlation_id(task.correlation_id);
  r.set_session_id(task.session_id);
  r.set_timestamp(fedn_timestamp_now());
  r.set_type(to_wire(task.kind));
  return r;
}

/// After the combiner's verdict on the ModelUpdate naming `model_id`: an
/// accepted update is the round's from now on; a rejected one that
/// `client_id` uploaded through this edge is deleted unless
/// `keep_rejected_updates` (nothing else will ever read it).
void settle_upload(edge_core& core, const std::string& model_id,
                   const std::string& client_id, bool accepted) {
  if (accepted) {
    core.update_taken(model_id);
    return;
  }
  if (!core.take_rejected_upload(model_id, client_id))
    return;
  if (core.cfg.keep_rejected_updates) {
    // Decoded on upload and held in memory: write it to the store.
    if (auto err = core.models->keep(model_id))
      spdlog::warn("edge: cannot keep rejected model update {}: {}",
                   model_id, render(err));
    return;
  }
  if (auto err = core.models->remove(model_id))
    spdlog::warn("edge: cannot delete rejected model update {}: {}",
                 model_id, render(err));
  else
    spdlog::info("edge: deleted rejected model update {} of client '{}'",
                 model_id, client_id);
}

/// Asks the combiner for the verdict on `msg` (a model_update or a
/// model_validation) and answers the call with it. For a model update,
/// `update_model_id` names its model for settle_upload.
template <class Msg>
void ask_verdict(const std::shared_ptr<edge_core>& core,
                 std::shared_ptr<deferred_call<fedn::Response>> call,
                 const char* what, Msg msg,
                 std::string update_model_id = {}) {
  auto me = core->me();
  call->set_fallback(grpc::Status::OK, [me](fedn::Response& r) {
    *r.mutable_sender() = me;
    r.set_response("error: the combiner did not answer");
  });
  auto client_id = msg.client_id;
  auto correlation_id = msg.correlation_id;
  ask(
    core->sys, call, core->combiner, core->cfg.update_timeout,
    [core, call, me, what, client_id, correlation_id,
     update_model_id](update_verdict& v) {
      if (!update_model_id.empty())
        settle_upload(*core, update_model_id, client_id, v.accepted);
      if (v.accepted)
        spdlog::info("edge: accepted {} of client '{}' (correlation id {})",
                     what, client_id, correlation_id);
      else
        spdlog::warn("edge: rejected {} of client '{}' (correlation id "
                     "{}): {}",
                     what, client_id, correlation_id, v.reason);
      call->reply([&](fedn::Response& r) {
        *r.mutable_sender() = me;
        r.set_response(v.accepted ? std::string{"accepted"}
                                  : "rejected: " + v.reason);
      });
    },
    [call, me, what, client_id](caf::error& err) {
      auto reason = "the combiner did not take the " + std::string{what}
                    + ": " + render(err);
      spdlog::error("edge: {} of client '{}': {}", what, client_id, reason);
      call->reply([&](fedn::Response& r) {
        *r.mutable_sender() = me;
        r.set_response("error: " + reason);
      });
    },
    std::move(msg));
}

/// Stores a metric record and answers "stored ...".
grpc::ServerUnaryReactor* store_metric(grpc::CallbackServerContext* ctx,
                                       fedn::Response* response,
                                       edge_core& core, const char* call,
                                       const metric_record& rec,
                                       const std::string& what) {
  if (auto err = core.state->put(rec)) {
    // Still status OK: telemetry must never break a FEDn client's loop.
    spdlog::error("edge: cannot store {} of client '{}': {}", call,
                  rec.client_id, render(err));
    return answer_now(ctx, response, core,
                      "error: cannot store " + what + ": " + render(err));
  }
  return answer_now(ctx, response, core,
                    "stored " + std::to_string(rec.values.size()) + " "
                      + what + " as " + rec.metric_id);
}

/// Parses a whole string as a finite number.
bool parse_number(const std::string& text, double& out) {
  if (text.empty())
    return false;
  char* end = nullptr;
  out = std::strtod(text.c_str(), &end);
  return end == text.c_str() + text.size() && std::isfinite(out);
}

// -- task stream --------------------------------------------------------------------

/// One client's TaskStream: a task-sink actor receives the client_tasks
/// its session forwards and queues them on this stream. Opening sends
/// (open, sink) and a heartbeat to the session; the stream's end (client
/// gone, cancelled, shutdown) stops the sink, and the session, which
/// monitors the sink, treats that as the stream's close. (An explicit
/// close_atom could close a newer stream of the same client that opened in
/// between; the sink's down message names the stream that ended.) The other
/// way round, a sink stopped by someone else (the session, when a newer
/// stream of the same client replaces this one) finishes the stream with
/// UNAVAILABLE and the exit reason, so the client sees it end.
class task_stream final : public stream_reactor<fedn::TaskRequest> {
public:
  /// @param roles what the client announced (ClientAvailableMessage.data).
  /// @param expires when the token that opened the stream expires
  ///        (seconds since the epoch); none: never. The stream then ends
  ///        with UNAUTHENTICATED, as a new call with that token would.
  task_stream(std::shared_ptr<edge_core> core, client_identity who,
              client_roles roles, std::optional<int64_t> expires)
    : stream_reactor(std::move(core)),
      who_(std::move(who)),
      roles_(roles),
      expires_(expires) {
  }

  void begin() {
    if (!enroll())
      return;
    auto ch = channel_;
    auto who = who_;
    auto me = core_->me();
    auto expires = expires_;
    std::weak_ptr<edge_core> weak_core = core_;
    sink_ = core_->sys.spawn(
      [ch, who, me, weak_core, expires](
        task_sink_actor::pointer self) -> task_sink_actor::behavior_type {
        // The token that opened the stream expires: the sink exits with
        // ec::unauthenticated (a delayed exit to itself, a timer), which
        // ends the stream below and closes it for the session.
        if (expires) {
          auto left = std::max<int64_t>(*expires - security::unix_now(), 0);
          // An exit is a system message, outside the typed interface.
          caf::delayed_anon_send(
            caf::actor_cast<caf::actor>(self), std::chrono::seconds{left},
            caf::exit_msg{self->address(),
                          caf::make_error(ec::unauthenticated,
                                          "the token of this task stream "
                                          "expired at "
                                            + security::utc_text(*expires)
                                            + "; get a new token")});
        }
        // The sink stops when the stream ended (then this is a no-op) or
        // when the session ends the stream, e.g. because a newer TaskStream
        // of the same client replaced it: finish the gRPC stream then, or
        // its client would wait forever on a stream nothing writes to.
        self->attach_functor([ch, who](const caf::error& reason) {
          if (!reason || reason == caf::exit_reason::user_shutdown)
            return;
          auto why = error_detail(reason);
          auto code = reason == ec::unauthenticated
                        ? grpc::StatusCode::UNAUTHENTICATED
                        : grpc::StatusCode::UNAVAILABLE;
          if (ch->end(grpc::Status(code, why)))
            spdlog::warn("edge: ended the task stream of client '{}' ({}): {}",
                         who.id, who.name, why);
        });
        return {
          [ch, who, me, weak_core](const client_task& task) {
            // A client-role caller may download the models of its tasks.
            if (auto core = weak_core.lock())
              core->sent_global_model(task.model_id);
            if (!ch->push(to_task_request(task, who, me)))
              spdlog::warn("edge: task {} for client '{}' dropped: its task "
                           "stream is ending",
                           task.correlation_id, who.id);
          },
        };
      });
    auto sink = sink_;
    auto info = to_info(who_);
    info.trainer = roles_.trainer;
    info.validator = roles_.validator;
    core_->announce(
      info,
      [sink](const client_session_actor& session) {
        caf::anon_send(session, heartbeat_atom::value);
        caf::anon_send(session, caf::open_atom::value, sink);
      },
      [ch, who](const std::string& reason) {
        spdlog::error("edge: task stream of client '{}': {}", who.id, reason);
        ch->cancel(grpc::Status(grpc::StatusCode::UNAVAILABLE, reason));
      });
    spdlog::info("edge: task stream of client '{}' ({}) opened; serves {}",
                 who_.id, who_.name,
                 roles_.trainer && roles_.validator ? "training and validation"
                 : roles_.trainer                   ? "training only"
                 : roles_.validator                 ? "validation only"
                                                    : "no task kind");
  }

protected:
  void on_done() override {
    if (sink_)
      caf::anon_send_exit(sink_, caf::exit_reason::user_shutdown);
    spdlog::info("edge: task stream of client '{}' ended", who_.id);
  }

private:
  client_identity who_;
  client_roles roles_;
  std::optional<int64_t> expires_;
  task_sink_actor sink_;
};

/// A stream that never carries anything: open until the client cancels it
/// or the edge stops (AllianceStatusStream; FEDn clients do not call it).
class idle_stream final : public stream_reactor<fedn::Status> {
public:
  using stream_reactor::stream_reactor;
};

// -- fedn.Connector -----------------------------------------------------------------

class connector_service final : public fedn::Connector::CallbackService {
public:
  explicit connector_service(std::shared_ptr<edge_core> core)
    : core_(std::move(core)) {
  }

  /// Kept open (nothing to report) until cancelled or shutdown.
  grpc::ServerWriteReactor<fedn::Status>*
  AllianceStatusStream(grpc::CallbackServerContext* ctx,
                       const fedn::ClientAvailableMessage*) override {
    if (auto st = admit(*core_, ctx, "/fedn.Connector/AllianceStatusStream");
        !st.ok())
      return new refused_stream<fedn::Status>(st);
    auto* s = new idle_stream(core_);
    s->enroll();
    return s;
  }

  /// Must succeed: FEDn clients' task loop dies when it fails. A status
  /// with log level ERROR (a failed task) is logged as a warning, naming
  /// the client, the task's correlation id and the client's text; others
  /// at debug level only.
  grpc::ServerUnaryReactor* SendStatus(grpc::CallbackServerContext* ctx,
                                       const fedn::Status* req,
                                       fedn::Response* response) override {
    auto who = identify(req->sender(), ctx);
    if (auto st = admit_as(*core_, ctx, "/fedn.Connector/SendStatus", who);
        !st.ok())
      return refuse_unary(ctx, st);
    if (req->log_level() == fedn::ERROR) {
      spdlog::warn("edge: client '{}' reports ERROR for task {}: {}", who.id,
                   req->correlation_id(), req->status());
      // The task's round need not wait for this client any longer.
      if (!who.id.empty() && !req->correlation_id().empty()) {
        auto reason = "task failed at the client: " + req->status();
        core_->with_session(
          to_info(who),
          [corr = req->correlation_id(), reason](
            const client_session_actor& session) {
            caf::anon_send(session, failed_atom::value, corr, reason);
          },
          [](const std::string&) {});
      }
    } else
      spdlog::debug("edge: status of client '{}': {} {}", who.id,
                    req->status(), req->data());
    caf::anon_send(core_->combiner, to_status_record(*req, who.id));
    return answer_now(ctx, response, *core_, "status received");
  }

  /// The combiner's clients that are online.
  grpc::ServerUnaryReactor*
  ListActiveClients(grpc::CallbackServerContext* ctx,
                    const fedn::ListClientsRequest*,
                    fedn::ClientList* response) override {
    if (auto st = admit(*core_, ctx, "/fedn.Connector/ListActiveClients");
        !st.ok())
      return refuse_unary(ctx, st);
    auto [call, reactor] = defer(core_, response);
    if (!call)
      return reactor;
    ask(
      core_->sys, call, core_->combiner, core_->cfg.request_timeout,
      [call](std::vector<client_record>& xs) {
        call->reply([&](fedn::ClientList& out) {
          for (auto& x : xs) {
            if (x.status != "online")
              continue;
            auto* c = out.add_client();
            c->set_client_id(x.client_id);
            c->set_name(x.name);
            c->set_role(fedn::CLIENT);
          }
        });
      },
      [call](caf::error& err) {
        call->fail(grpc::Status(grpc::StatusCode::UNAVAILABLE,
                                "cannot list the combiner's clients: "
                                  + render(err)));
      },
      caf::get_atom::value, clients_atom::value);
    return reactor;
  }

  grpc::ServerUnaryReactor*
  AcceptingClients(grpc::CallbackServerContext* ctx,
                   const fedn::ConnectionRequest*,
                   fedn::ConnectionResponse* response) override {
    if (auto st = admit(*core_, ctx, "/fedn.Connector/AcceptingClients");
        !st.ok())
      return refuse_unary(ctx, st);
    response->set_status(fedn::ACCEPTING);
    auto* reactor = ctx->DefaultReactor();
    reactor->Finish(grpc::Status::OK);
    return reactor;
  }

  /// O(1), nothing written: a heartbeat to the client's session (looked up
  /// once, on first contact).
  grpc::ServerUnaryReactor* SendHeartbeat(grpc::CallbackServerContext* ctx,
                                          const fedn::Heartbeat* req,
                                          fedn::Response* response) override {
    auto who = identify(req->sender(), ctx);
    if (auto st = admit_as(*core_, ctx, "/fedn.Connector/SendHeartbeat", who);
        !st.ok())
      return refuse_unary(ctx, st);
    if (who.id.empty())
      return refuse(ctx, response, *core_, "SendHeartbeat", who.id,
                    no_client_id);
    core_->touch(to_info(who));
    return answer_now(ctx, response, *core_, "heartbeat received");
  }

  grpc::ServerUnaryReactor* ReassignClient(grpc::CallbackServerContext* ctx,
                                           const fedn::ReassignRequest*,
                                           fedn::Response* response) override {
    if (auto st = admit(*core_, ctx, "/fedn.Connector/ReassignClient");
        !st.ok())
      return refuse_unary(ctx, st);
    return answer_now(ctx, response, *core_,
                      "not supported: combiner " + core_->cfg.combiner_id
                        + " does not reassign clients");
  }

  grpc::ServerUnaryReactor*
  ReconnectClient(grpc::CallbackServerContext* ctx,
                  const fedn::ReconnectRequest*,
                  fedn::Response* response) override {
    if (auto st = admit(*core_, ctx, "/fedn.Connector/ReconnectClient");
        !st.ok())
      return refuse_unary(ctx, st);
    return answer_now(ctx, response, *core_,
                      "not supported: combiner " + core_->cfg.combiner_id
                        + " does not reconnect clients");
  }

private:
  std::shared_ptr<edge_core> core_;
};

// -- fedn.Combiner ------------------------------------------------------------------

class combiner_service final : public fedn::Combiner::CallbackService {
public:
  explicit combiner_service(std::shared_ptr<edge_core> core)
    : core_(std::move(core)) {
  }

  /// Open until the client goes, the call is cancelled or the edge stops;
  /// INVALID_ARGUMENT at once when nothing identifies the client. The
  /// roles in `data` (see `parse_roles_json`) become the client's: a
  /// validator-only client is never selected for training.
  grpc::ServerWriteReactor<fedn::TaskRequest>*
  TaskStream(grpc::CallbackServerContext* ctx,
             const fedn::ClientAvailableMessage* req) override {
    auto who = identify(req->sender(), ctx);
    caller c;
    if (auto st = admit_as(*core_, ctx, "/fedn.Combiner/TaskStream", who, &c);
        !st.ok())
      return new refused_stream<fedn::TaskRequest>(st);
    auto* s = new task_stream(core_, who, parse_roles_json(req->data()),
                              c.expires);
    if (who.id.empty()) {
      spdlog::warn("edge: refused TaskStream: {}", no_client_id);
      s->channel()->cancel(
        grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, no_client_id));
      return s;
    }
    s->begin();
    return s;
  }

  /// Checked here (client id, model ids, the update model is stored, meta
  /// with a finite num_examples > 0); then the combiner's round decides
  /// (unknown task, foreign client, stale, bad model). See the file comment
  /// for the response texts.
  grpc::ServerUnaryReactor* SendModelUpdate(grpc::CallbackServerContext* ctx,
                                            const fedn::ModelUpdate* req,
                                            fedn::Response* response) override {
    const char* call_name = "SendModelUpdate";
    auto who = identify(req->sender(), ctx);
    auto& cid = req->correlation_id();
    caller c;
    if (auto st = admit_as(*core_, ctx, "/fedn.Combiner/SendModelUpdate", who,
                           &c);
        !st.ok())
      return deny_answer(ctx, *core_, c, cid, st);
    auto refuse_update = [&](const std::string& reason) {
      return refuse_answer(ctx, response, *core_, call_name, who.id, cid,
                           reason);
    };
    if (who.id.empty())
      return refuse(ctx, response, *core_, call_name, who.id, no_client_id);
    if (req->model_id().empty())
      return refuse_update("model_id (the global model trained from) is "
                           "empty");
    if (req->model_update_id().empty())
      return refuse_update("model_update_id is empty");
    auto n = parse_num_examples(req->meta());
    if (!n)
      return refuse_update(error_detail(n.error()));
    auto stored = core_->models->exists(req->model_update_id());
    if (!stored)
      return refuse(ctx, response, *core_, call_name, who.id,
                    "cannot look up model update " + req->model_update_id()
                      + ": " + error_detail(stored.error()));
    if (!*stored)
      return refuse_update("model update " + req->model_update_id()
                           + " was not uploaded");
    auto [call, reactor] = defer(core_, response);
    if (!call)
      return reactor;
    core_->touch(to_info(who));
    model_update u;
    u.client_id = who.id;
    u.correlation_id = req->correlation_id();
    u.model_id = req->model_id();
    u.model_update_id = req->model_update_id();
    u.num_examples = *n;
    u.meta = req->meta();
    auto model_id = u.model_update_id;
    ask_verdict(core_, std::move(call), "model update", std::move(u),
                std::move(model_id));
    return reactor;
  }

  /// `data` must be a JSON object of metrics; the round records it.
  grpc::ServerUnaryReactor*
  SendModelValidation(grpc::CallbackServerContext* ctx,
                      const fedn::ModelValidation* req,
                      fedn::Response* response) override {
    model_validation v;
    v.correlation_id = req->correlation_id();
    v.model_id = req->model_id();
    v.session_id = req->session_id();
    v.data = req->data();
    return validation(ctx, req->sender(), response, "SendModelValidation",
                      "/fedn.Combiner/SendModelValidation", "validation",
                      std::move(v));
  }

  /// As a validation: `data` (the prediction output, a JSON object) goes
  /// to the round as a model_validation; `prediction_id` stands in for the
  /// session id, which ModelPrediction does not carry.
  grpc::ServerUnaryReactor*
  SendModelPrediction(grpc::CallbackServerContext* ctx,
                      const fedn::ModelPrediction* req,
                      fedn::Response* response) override {
    model_validation v;
    v.correlation_id = req->correlation_id();
    v.model_id = req->model_id();
    v.session_id = req->prediction_id();
    v.data = req->data();
    return validation(ctx, req->sender(), response, "SendModelPrediction",
                      "/fedn.Combiner/SendModelPrediction", "prediction",
                      std::move(v));
  }

  /// Split learning is out of scope: acknowledged, nothing happens.
  grpc::ServerUnaryReactor*
  SendBackwardCompletion(grpc::CallbackServerContext* ctx,
                         const fedn::BackwardCompletion* req,
                         fedn::Response* response) override {
    auto who = identify(req->sender(), ctx);
    if (auto st = admit_as(*core_, ctx,
                           "/fedn.Combiner/SendBackwardCompletion", who);
        !st.ok())
      return refuse_unary(ctx, st);
    spdlog::info("edge: ignored BackwardCompletion of client '{}' (gradient "
                 "{}): split learning is not supported",
                 who.id, req->gradient_id());
    return answer_now(ctx, response, *core_,
                      "ignored: split learning is not supported by combiner "
                        + core_->cfg.combiner_id);
  }

  /// One metric_record (metric_id = a new UUID) with the model, round,
  /// session and step as sent. Needs at least one metric; keys non-empty.
  grpc::ServerUnaryReactor* SendModelMetric(grpc::CallbackServerContext* ctx,
                                            const fedn::ModelMetric* req,
                                            fedn::Response* response) override {
    const char* call_name = "SendModelMetric";
    auto who = identify(req->sender(), ctx);
    if (auto st = admit_as(*core_, ctx, "/fedn.Combiner/SendModelMetric", who);
        !st.ok())
      return refuse_unary(ctx, st);
    if (who.id.empty())
      return refuse(ctx, response, *core_, call_name, who.id, no_client_id);
    if (req->metrics_size() == 0)
      return refuse(ctx, response, *core_, call_name, who.id,
                    "the message carries no metrics");
    metric_record rec;
    rec.metric_id = new_id();
    rec.client_id = who.id;
    rec.model_id = req->model_id();
    rec.round_id = req->round_id();
    rec.session_id = req->session_id();
    if (req->has_step())
      rec.step = req->step().value();
    for (auto& m : req->metrics()) {
      if (m.key().empty())
        return refuse(ctx, response, *core_, call_name, who.id,
                      "a metric has an empty key");
      rec.values[m.key()] = m.value();
    }
    rec.received_at = unix_now();
    return store_metric(ctx, response, *core_, call_name, rec, "metrics");
  }

  /// Stored as a metric_record with metric_id "attributes:<uuid>": an
  /// attribute whose value is a number is stored as that number under its
  /// key; any other as key "<key>=<value>" with value 1 (the "info metric"
  /// convention), since metric records hold numbers only.
  grpc::ServerUnaryReactor*
  SendAttributeMessage(grpc::CallbackServerContext* ctx,
                       const fedn::AttributeMessage* req,
                       fedn::Response* response) override {
    const char* call_name = "SendAttributeMessage";
    auto who = identify(req->sender(), ctx);
    if (auto st = admit_as(*core_, ctx, "/fedn.Combiner/SendAttributeMessage", who);
        !st.ok())
      return refuse_unary(ctx, st);
    if (who.id.empty())
      return refuse(ctx, response, *core_, call_name, who.id, no_client_id);
    if (req->attributes_size() == 0)
      return refuse(ctx, response, *core_, call_name, who.id,
                    "the message carries no attributes");
    metric_record rec;
    rec.metric_id = "attributes:" + new_id();
    rec.client_id = who.id;
    for (auto& a : req->attributes()) {
      if (a.key().empty())
        return refuse(ctx, response, *core_, call_name, who.id,
                      "an attribute has an empty key");
      double x = 0;
      if (parse_number(a.value(), x))
        rec.values[a.key()] = x;
      else
        rec.values[a.key() + "=" + a.value()] = 1.0;
    }
    rec.received_at = unix_now();
    return store_metric(ctx, response, *core_, call_name, rec, "attributes");
  }

  /// Stored as a metric_record with metric_id "telemetry:<uuid>".
  grpc::ServerUnaryReactor*
  SendTelemetryMessage(grpc::CallbackServerContext* ctx,
                       const fedn::TelemetryMessage* req,
                       fedn::Response* response) override {
    const char* call_name = "SendTelemetryMessage";
    auto who = identify(req->sender(), ctx);
    if (auto st = admit_as(*core_, ctx, "/fedn.Combiner/SendTelemetryMessage", who);
        !st.ok())
      return refuse_unary(ctx, st);
    if (who.id.empty())
      return refuse(ctx, response, *core_, call_name, who.id, no_client_id);
    if (req->telemetries_size() == 0)
      return refuse(ctx, response, *core_, call_name, who.id,
                    "the message carries no telemetry");
    metric_record rec;
    rec.metric_id = "telemetry:" + new_id();
    rec.client_id = who.id;
    for (auto& t : req->telemetries()) {
      if (t.key().empty())
        return refuse(ctx, response, *core_, call_name, who.id,
                      "a telemetry entry has an empty key");
      rec.values[t.key()] = t.value();
    }
    rec.received_at = unix_now();
    return store_metric(ctx, response, *core_, call_name, rec, "telemetry");
  }

private:
  grpc::ServerUnaryReactor* validation(grpc::CallbackServerContext* ctx,
                                       const fedn::Client& sender,
                                       fedn::Response* response,
                                       const char* call_name,
                                       const char* method, const char* what,
                                       model_validation v) {
    auto who = identify(sender, ctx);
    caller c;
    if (auto st = admit_as(*core_, ctx, method, who, &c); !st.ok())
      return deny_answer(ctx, *core_, c, v.correlation_id, st);
    if (who.id.empty())
      return refuse(ctx, response, *core_, call_name, who.id, no_client_id);
    if (v.model_id.empty())
      return refuse_answer(ctx, response, *core_, call_name, who.id,
                           v.correlation_id, "model_id is empty");
    if (auto err = check_json_object(v.data, "data"))
      return refuse_answer(ctx, response, *core_, call_name, who.id,
                           v.correlation_id, error_detail(err));
    auto [call, reactor] = defer(core_, response);
    if (!call)
      return reactor;
    core_->touch(to_info(who));
    v.client_id = who.id;
    v.client_name = who.name;
    ask_verdict(core_, std::move(call), what, std::move(v));
    return reactor;
  }

  std::shared_ptr<edge_core> core_;
};

} // namespace

std::unique_ptr<grpc::Service>
make_connector_service(std::shared_ptr<edge_core> core) {
  return std::make_unique<connector_service>(std::move(core));
}

std::unique_ptr<grpc::Service>
make_combiner_service(std::shared_ptr<edge_core> core) {
  return std::make_unique<combiner_service>(std::move(core));
}

} // namespace rondo::gateway::detail
