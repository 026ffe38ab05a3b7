#pragma once

// Internal to gateway/*.cpp (includes gRPC and the generated FEDn code):
// the state the edge's services share, and the building blocks of their
// handlers:
// - `pending`: a call the edge must end itself when it stops (open streams,
//   unary calls waiting for an actor);
// - `deferred_call`: a unary call completed later from an actor's reply
//   handler, exactly once, whichever comes first of the reply, a
//   cancellation, shutdown, or the bridge actor dropping it unanswered;
// - `stream_channel` / `stream_reactor`: a server stream with its own queue
//   and one write in flight, pushed from any thread;
// - `ask`: a one-shot bridge actor that sends one request and runs the
//   reply (or error) handler on a CAF thread.

#include "actors/actors.hpp"
#include "actors/type_ids.hpp"
#include "gateway/edge.hpp"

#include "fedn.grpc.pb.h"
#include "fedn.pb.h"

#include <caf/actor_system.hpp>
#include <caf/event_based_actor.hpp>
#include <caf/exit_reason.hpp>
#include <caf/send.hpp>

#include <grpcpp/server_context.h>
#include <grpcpp/support/server_callback.h>
#include <grpcpp/support/status.h>

#include <spdlog/spdlog.h>

#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <vector>

namespace rondo::gateway::detail {

/// A call the edge ends itself on shutdown.
class pending {
public:
  virtual ~pending() = default;
  /// Ends the call with `why` unless it has ended. Thread-safe; idempotent.
  virtual void cancel(const grpc::Status& why) = 0;
};

class authenticator;

/// Who a FEDn client is: `id` keys its session; `name` is for display.
struct client_identity {
  std::string id;
  std::string name;
};

/// Identifies the caller: `sender.client_id`, else the call's `client`
/// metadata, else `sender.name` (FEDn 0.24's client names itself in
/// ModelValidation only by sender.name, its id travelling as the `client`
/// metadata). `id` is empty when none is set; `name` is sender.name, else
/// the id.
client_identity identify(const fedn::Client& sender,
                         const grpc::CallbackServerContext* ctx);

/// What the edge tells the combiner about a client on first contact.
client_info to_info(const client_identity& who);

/// State shared by the services and the bridge actors (which may outlive
/// the edge object briefly, hence shared ownership).
class edge_core : public std::enable_shared_from_this<edge_core> {
public:
  edge_core(caf::actor_system& sys, combiner_actor combiner,
            std::shared_ptr<storage::model_store> models,
            std::shared_ptr<storage::state_store> state, edge_config cfg);

  caf::actor_system& sys;
  const combiner_actor combiner;
  const std::shared_ptr<storage::model_store> models;
  const std::shared_ptr<storage::state_store> state;
  const edge_config cfg;
  /// Token and rights checks (gateway/auth.hpp); never null.
  const std::shared_ptr<authenticator> auth;

  /// Remembers that `model_id` went to a client as a task's global model:
  /// a client-role caller may download it. Keeps the newest 4096 ids.
  /// Thread-safe.
  void sent_global_model(const std::string& model_id);

  /// Whether `model_id` went to a client in a task (see above).
  bool is_global_model(const std::string& model_id);

  /// Global models of at most this many bytes are served from memory.
  static constexpr uint64_t hot_model_max_bytes = uint64_t{64} << 20;

  /// The whole bytes of global model `model_id` (one sent in a task) when
  /// it is at most hot_model_max_bytes: read from the store and verified
  /// once, then shared by every download of it (a round's clients all
  /// fetch the same model at once). The newest two are kept. Null for
  /// another model or a larger one (stream those from the store).
  /// @returns the store's error (ec::not_found, ec::corrupt). Thread-safe.
  caf::expected<std::shared_ptr<const std::string>>
  hot_model(const std::string& model_id);

  /// Registers a call to end on shutdown. @returns false (registering
  /// nothing) once the edge is stopping.
  bool enroll(const std::shared_ptr<pending>& x);

  /// Forgets a registered call (it ended). Unknown calls are ignored.
  void withdraw(const pending* x);

  /// Refuses new registrations and cancels every registered call with `why`.
  void stop_all(const grpc::Status& why);

  /// The cached session of a client; an invalid handle when not cached.
  client_session_actor cached_session(const std::string& client_id);

  /// What runs with a client's session once it is known.
  using session_handler = std::function<void(const client_session_actor&)>;

  /// What runs when a client's session cannot be had, with the reason.
  using failure_handler = std::function<void(const std::string&)>;

  /// Runs `ok` with the client's session: at once (on this thread) when it
  /// is cached and no lookup of that client is in flight, else once the
  /// combiner answered the lookup (on a CAF thread; the session is cached
  /// then). Runs `fail` with a reason when the combiner does not answer
  /// within `request_timeout`. On first contact `info` (name and roles) is
  /// what the combiner learns of the client; afterwards its roles are the
  /// ones last announced (see `announce`), whatever `info` says.
  void with_session(const client_info& info, session_handler ok,
                    failure_handler fail);

  /// As `with_session`, and `info`'s roles become the client's: the roles a
  /// client announces when it opens its TaskStream (FEDn's
  /// ClientAvailableMessage.data). When they differ from what the combiner
  /// has, `ok` runs only after the combiner took them, so a task stream is
  /// never offered under stale roles. Lookups of one client are serialized:
  /// a lookup racing an announcement (e.g. a first heartbeat) cannot
  /// overwrite the announced roles.
  void announce(const client_info& info, session_handler ok,
                failure_handler fail);

  /// The client was seen: a heartbeat to its session. O(1) and
  /// fire-and-forget when the session is cached.
  void touch(const client_info& info);

  /// Remembers that `client_id` uploaded `model_id` through this edge (a
  /// model update no round has taken yet). Thread-safe.
  void uploaded(const std::string& model_id, const std::string& client_id);

  /// A round took the model update `model_id`: it is no longer the edge's
  /// to delete. Thread-safe.
  void update_taken(const std::string& model_id);

  /// Whether `client_id` uploaded `model_id` through this edge and no
  /// round took it; if so the edge forgets it (the caller deletes it).
  bool take_rejected_upload(const std::string& model_id,
                            const std::string& client_id);

  /// This combiner as a FEDn `Client` (role COMBINER).
  fedn::Client me() const;

private:
  std::mutex globals_mtx_;
  std::unordered_set<std::string> globals_;
  std::deque<std::string> globals_order_;
  /// Held while a hot model is read, so that a round's simultaneous
  /// downloads read it once.
  std::mutex hot_mtx_;
  /// The newest hot models, newest last.
  std::deque<std::pair<std::string, std::shared_ptr<const std::string>>>
    hot_;
  std::mutex uploads_mtx_;
  /// Model id -> the client that uploaded it, until a round takes it or its
  /// ModelUpdate is rejected.
  std::unordered_map<std::string, std::string> uploads_;
  std::mutex pending_mtx_;
  bool stopping_ = false;
  std::unordered_map<const pending*, std::weak_ptr<pending>> pending_;
  /// One client as the edge knows it.
  struct client_entry {
    /// The client's session; invalid until a lookup succeeded.
    client_session_actor session;
    /// What the combiner is told (or was told last) of the client.
    client_info info;
    /// A lookup is in flight; callers queue behind it.
    bool in_flight = false;
    /// `info` changed while the lookup was in flight: look up again.
    bool stale = false;
    /// Callers waiting for the lookup in flight.
    std::vector<std::pair<session_handler, failure_handler>> waiters;
  };

  void lookup(const client_info& info, session_handler ok,
              failure_handler fail, bool announced);

  /// Sends the lookup of `client_id` (its entry's info) to the combiner.
  /// Called with `sessions_mtx_` not held.
  void send_lookup(const std::string& client_id, client_info info);

  /// The combiner answered the lookup of `client_id`.
  void lookup_done(const std::string& client_id,
                   caf::expected<client_session_actor> result);

  std::mutex sessions_mtx_;
  std::unordered_map<std::string, client_entry> sessions_;
};

// -- unary calls answered later ---------------------------------------------------

/// The once-only completion of a unary call; see `deferred_call`.
class call_state : public pending {
public:
  void attach(grpc::ServerUnaryReactor* reactor) {
    reactor_ = reactor;
  }

  void cancel(const grpc::Status& why) override {
    finish(why, nullptr);
  }

  /// Whether the call has been finished.
  bool finished() {
    std::lock_guard<std::mutex> guard{mtx_};
    return done_;
  }

  /// Runs `f` once the call has finished (at once if it has): the bridge
  /// actor serving the call uses it to quit when the call ends some other
  /// way (cancelled, shutdown), so no actor outlives its call.
  void on_finish(std::function<void()> f) {
    {
      std::lock_guard<std::mutex> guard{mtx_};
      if (!done_) {
        hook_ = std::move(f);
        return;
      }
    }
    f();
  }

protected:
  explicit call_state(std::weak_ptr<edge_core> core) : core_(std::move(core)) {
  }

  /// Fills the response (under the lock) and finishes the call, once.
  /// @returns false when the call had already finished (nothing done).
  bool finish(grpc::Status st, const std::function<void()>& fill) {
    std::function<void()> hook;
    {
      std::lock_guard<std::mutex> guard{mtx_};
      if (done_)
        return false;
      done_ = true;
      if (fill)
        fill();
      hook.swap(hook_);
    }
    if (auto core = core_.lock())
      core->withdraw(this);
    reactor_->Finish(std::move(st));
    if (hook)
      hook();
    return true;
  }

private:
  std::mutex mtx_;
  bool done_ = false;
  std::function<void()> hook_;
  grpc::ServerUnaryReactor* reactor_ = nullptr;
  std::weak_ptr<edge_core> core_;
};

/// A unary call whose response is written later, from an actor's reply
/// handler. Owned by the bridge actor's handlers: if they are dropped
/// without replying, the destructor finishes the call with the fallback
/// (default INTERNAL "the combiner did not answer"), so no call is left
/// open (a gRPC server cannot shut down while one is).
template <class Response>
class deferred_call final : public call_state {
public:
  deferred_call(std::weak_ptr<edge_core> core, Response* response)
    : call_state(std::move(core)), response_(response) {
  }

  ~deferred_call() override {
    finish(fallback_status_, [this] {
      if (fallback_fill_)
        fallback_fill_(*response_);
    });
  }

  /// Sets what the call answers when it is dropped unanswered.
  void set_fallback(grpc::Status st, std::function<void(Response&)> fill) {
    fallback_status_ = std::move(st);
    fallback_fill_ = std::move(fill);
  }

  /// Writes the response with `fill(Response&)` and finishes with `st`.
  /// @returns false when the call had already finished.
  template <class F>
  bool reply(F&& fill, grpc::Status st = grpc::Status::OK) {
    return finish(std::move(st), [&] { fill(*response_); });
  }

  /// Finishes with an error status and no response.
  bool fail(grpc::Status st) {
    return finish(std::move(st), nullptr);
  }

private:
  Response* response_;
  grpc::Status fallback_status_{grpc::StatusCode::INTERNAL,
                                "the combiner did not answer"};
  std::function<void(Response&)> fallback_fill_;
};

/// The reactor of a deferred unary call: forwards a cancellation.
class unary_reactor final : public grpc::ServerUnaryReactor {
public:
  explicit unary_reactor(std::weak_ptr<pending> call) : call_(std::move(call)) {
  }

  void OnCancel() override {
    if (auto call = call_.lock())
      call->cancel(grpc::Status(grpc::StatusCode::CANCELLED,
                                "the call was cancelled"));
  }

  void OnDone() override {
    delete this;
  }

private:
  std::weak_ptr<pending> call_;
};

/// Starts a deferred unary call. @returns the call (null when the edge is
/// stopping: the call is then already finished with UNAVAILABLE) and the
/// reactor the handler must return.
template <class Response>
std::pair<std::shared_ptr<deferred_call<Response>>, grpc::ServerUnaryReactor*>
defer(const std::shared_ptr<edge_core>& core, Response* response) {
  auto call = std::make_shared<deferred_call<Response>>(core, response);
  auto* reactor = new unary_reactor(call);
  call->attach(reactor);
  if (!core->enroll(call)) {
    call->fail(grpc::Status(grpc::StatusCode::UNAVAILABLE,
                            "combiner " + core->cfg.combiner_id
                              + " is shutting down"));
    return {nullptr, reactor};
  }
  return {std::move(call), reactor};
}

// -- bridge actors -----------------------------------------------------------------

/// Makes the actor at `addr` quit once `call` has finished.
inline void quit_with(call_state& call, caf::actor_addr addr) {
  call.on_finish([addr = std::move(addr)] {
    caf::anon_send_exit(addr, caf::exit_reason::user_shutdown);
  });
}

/// Spawns a one-shot bridge actor that sends `xs...` to `dest` as a request
/// with `timeout` and runs `ok(reply)` or `err(caf::error&)` on a CAF
/// thread. The actor ends with the reply, or when `call` (may be null)
/// finishes first.
template <class Dest, class OnOk, class OnErr, class... Ts>
void ask(caf::actor_system& sys, const std::shared_ptr<call_state>& call,
         const Dest& dest, caf::timespan timeout, OnOk ok, OnErr err,
         Ts... xs) {
  auto bridge = sys.spawn([dest, timeout, ok = std::move(ok),
                           err = std::move(err),
                           xs...](caf::event_based_actor* self) mutable {
    self->request(dest, timeout, std::move(xs)...)
      .then(std::move(ok), std::move(err));
  });
  if (call)
    quit_with(*call, bridge.address());
}

// -- server streams with a queue --------------------------------------------------

/// A server stream's queue: messages pushed from any thread are written in
/// order with one write in flight; StartWrite and Finish run outside the
/// lock. The reactor pointer is used only until Finish, and OnDone (which
/// deletes the reactor) comes after Finish, so the channel may outlive it.
template <class Msg>
class stream_channel final : public pending {
public:
  explicit stream_channel(grpc::ServerWriteReactor<Msg>* owner)
    : owner_(owner) {
  }

  /// Queues `msg` for writing. @returns false (dropping it) once the stream
  /// is ending.
  bool push(Msg msg) {
    {
      std::lock_guard<std::mutex> guard{mtx_};
      if (ending_)
        return false;
      if (writing_) {
        queue_.push_back(std::move(msg));
        return true;
      }
      writing_ = true;
      in_flight_ = std::move(msg);
    }
    owner_->StartWrite(&in_flight_);
    return true;
  }

  /// Ends the stream with `why` after the write in flight (queued messages
  /// are dropped).
  void cancel(const grpc::Status& why) override {
    static_cast<void>(end(why));
  }

  /// `cancel`. @returns whether this call ended the stream (false when it
  /// was already ending).
  bool end(const grpc::Status& why) {
    bool finish_now = false;
    {
      std::lock_guard<std::mutex> guard{mtx_};
      if (ending_)
        return false;
      ending_ = true;
      status_ = why;
      queue_.clear();
      if (!writing_ && !finished_)
        finish_now = finished_ = true;
    }
    if (finish_now)
      owner_->Finish(status_);
    return true;
  }

  /// The reactor's OnWriteDone.
  void on_write_done(bool ok) {
    enum { nothing, write, finish } next = nothing;
    {
      std::lock_guard<std::mutex> guard{mtx_};
      writing_ = false;
      if (!ok && !ending_) {
        ending_ = true;
        status_ = grpc::Status(grpc::StatusCode::CANCELLED,
                               "the stream broke");
        queue_.clear();
      }
      if (ending_) {
        if (!finished_) {
          finished_ = true;
          next = finish;
        }
      } else if (!queue_.empty()) {
        writing_ = true;
        in_flight_ = std::move(queue_.front());
        queue_.pop_front();
        next = write;
      }
    }
    if (next == write)
      owner_->StartWrite(&in_flight_);
    else if (next == finish)
      owner_->Finish(status_);
  }

private:
  std::mutex mtx_;
  grpc::ServerWriteReactor<Msg>* owner_;
  std::deque<Msg> queue_;
  Msg in_flight_;
  bool writing_ = false;
  bool ending_ = false;
  bool finished_ = false;
  grpc::Status status_;
};

/// A server-streaming reactor backed by a `stream_channel`. Subclasses
/// override `on_done` to release what they hold; the reactor deletes itself
/// in OnDone.
template <class Msg>
class stream_reactor : public grpc::ServerWriteReactor<Msg> {
public:
  explicit stream_reactor(std::shared_ptr<edge_core> core)
    : core_(std::move(core)),
      channel_(std::make_shared<stream_channel<Msg>>(this)) {
  }

  /// Registers the stream to be ended on shutdown; ends it at once with
  /// UNAVAILABLE when the edge is stopping. @returns whether it stays open.
  bool enroll() {
    if (core_->enroll(channel_))
      return true;
    channel_->cancel(grpc::Status(grpc::StatusCode::UNAVAILABLE,
                                  "combiner " + core_->cfg.combiner_id
                                    + " is shutting down"));
    return false;
  }

  const std::shared_ptr<stream_channel<Msg>>& channel() const {
    return channel_;
  }

  void OnWriteDone(bool ok) override {
    channel_->on_write_done(ok);
  }

  void OnCancel() override {
    channel_->cancel(grpc::Status(grpc::StatusCode::CANCELLED,
                                  "the stream was cancelled"));
  }

  void OnDone() override {
    core_->withdraw(channel_.get());
    on_done();
    delete this;
  }

protected:
  virtual void on_done() {
  }

  std::shared_ptr<edge_core> core_;
  std::shared_ptr<stream_channel<Msg>> channel_;
};

// -- services ---------------------------------------------------------------------

/// fedn.Connector (client_services.cpp).
std::unique_ptr<grpc::Service>
make_connector_service(std::shared_ptr<edge_core> core);

/// fedn.Combiner (client_services.cpp).
std::unique_ptr<grpc::Service>
make_combiner_service(std::shared_ptr<edge_core> core);

/// fedn.ModelService (model_service.cpp).
std::unique_ptr<grpc::Service>
make_model_service(std::shared_ptr<edge_core> core);

/// fedn.Control (control_service.cpp).
std::unique_ptr<grpc::Service>
make_control_service(std::shared_ptr<edge_core> core);

} // namespace rondo::gateway::detail
