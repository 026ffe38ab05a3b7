#include "actors/controller_link.hpp"

#include "actors/model_transfer.hpp"
#include "actors/type_ids.hpp"
#include "messages/error.hpp"

#include <caf/actor_system.hpp>
#include <caf/event_based_actor.hpp>
#include <caf/io/middleman.hpp>
#include <caf/io/middleman_actor.hpp>
#include <caf/openssl/manager.hpp>
#include <caf/sec.hpp>
#include <caf/stateful_actor.hpp>
#include <caf/typed_event_based_actor.hpp>

#include <algorithm>
#include <set>
#include <iostream>

namespace rondo {

namespace {

using self_ptr
  = controller_link_actor::stateful_pointer<controller_link_state>;

std::string where(const controller_link_state& st) {
  return st.cfg.host + ":" + std::to_string(st.cfg.port);
}

void log(const controller_link_state& st, const std::string& what) {
  std::cerr << "combiner " << st.cfg.combiner_id << ": " << what
            << std::endl;
}

void connect(self_ptr self);

/// Schedules the next attempt after the current back-off, then doubles it.
void retry(self_ptr self, const std::string& why) {
  auto& st = self->state;
  using std::chrono::duration_cast;
  using std::chrono::milliseconds;
  // The first failure, every tenth, and any with a new reason (the
  // controller went from down to refusing us, say).
  auto fresh = why != st.last_failure;
  st.last_failure = why;
  if (st.failures++ % 10 == 0 || fresh)
    log(st, "cannot join the controller at " + where(st) + ": " + why
              + " (next try in "
              + std::to_string(duration_cast<milliseconds>(st.backoff).count())
              + " ms; back-off doubles up to "
              + std::to_string(
                duration_cast<milliseconds>(st.cfg.retry_max).count())
              + " ms)");
  self->delayed_send(self, st.backoff, timer_tick{timer_kind::reconnect, ++st.epoch, {}});
  st.backoff = std::min(st.backoff * 2, st.cfg.retry_max);
}

void joined(self_ptr self, controller_actor ctrl) {
  auto& st = self->state;
  st.controller = ctrl;
  st.failures = 0;
  st.last_failure.clear();
  st.backoff = st.cfg.retry_min;
  self->monitor(ctrl);
  if (!st.interrupted.empty()) {
    log(st, "reported " + std::to_string(st.interrupted.size())
              + " round(s) interrupted by the restart to the controller");
    st.interrupted.clear();
  }
  if (st.source)
    self->send_exit(st.source, caf::exit_reason::kill);
  st.source = self->spawn<caf::linked>(chunked_model_source,
                          caf::actor_cast<chunk_source_actor>(ctrl),
                          st.models, st.cfg.request_timeout);
  log(st, "joined the controller at " + where(st));
}

void connect(self_ptr self) {
  auto& st = self->state;
  auto& sys = self->home_system();
  auto mm = st.cfg.tls ? sys.openssl_manager().actor_handle()
                       : sys.middleman().actor_handle();
  self
    ->request(mm, st.cfg.request_timeout, caf::connect_atom::value,
              st.cfg.host, st.cfg.port)
    .then(
      [self](const caf::node_id&, caf::strong_actor_ptr& ptr,
             const std::set<std::string>& ifs) {
        auto& st = self->state;
        if (!ptr)
          return retry(self, "no actor is published there");
        if (!self->home_system().assignable<controller_actor>(ifs))
          return retry(self, "the actor published there is not a Rondo "
                             "controller (its interface differs)");
        auto ctrl = caf::actor_cast<controller_actor>(std::move(ptr));
        // The interrupted rounds stay with the link until a join carrying
        // them is accepted.
        self
          ->request(ctrl, st.cfg.request_timeout, caf::join_atom::value,
                    st.info, st.combiner, st.interrupted)
          .then([self, ctrl](caf::ok_atom) { joined(self, ctrl); },
                [self](caf::error& err) {
                  retry(self, "join refused: " + render(err));
                });
      },
      [self](caf::error& err) {
        // CAF tells a failed TLS handshake from any other early close by
        // no more than this code.
        auto tls_hint = self->state.cfg.tls
                            && err == caf::sec::disconnect_during_handshake
                          ? " (the TLS handshake failed: the controller's "
                            "certificate does not verify against --ca, or "
                            "it refused ours)"
                          : "";
        retry(self, render(err) + tls_hint);
      });
}

} // namespace

controller_link_actor::behavior_type
controller_link(self_ptr self, controller_link_config cfg,
                std::shared_ptr<storage::model_store> models) {
  auto& st = self->state;
  st.cfg = std::move(cfg);
  st.models = std::move(models);
  st.backoff = st.cfg.retry_min;
  self->set_down_handler([self](const caf::down_msg& dm) {
    auto& st = self->state;
    if (dm.source == st.combiner.address()) {
      self->quit(dm.reason);
      return;
    }
    if (dm.source != st.controller.address())
      return;
    log(st, "lost the controller at " + where(st) + ": "
              + render(dm.reason) + "; reconnecting");
    st.controller = nullptr;
    if (st.source)
      self->send_exit(st.source, caf::exit_reason::kill);
    st.source = nullptr;
    st.backoff = st.cfg.retry_min;
    connect(self);
  });
  return {
    [self](caf::get_atom, std::string& model_id) -> caf::result<model_blob> {
      auto& st = self->state;
      if (!st.source)
        return caf::make_error(ec::invalid_state,
                               "not connected to the controller at "
                                 + where(st) + ", cannot fetch model "
                                 + model_id);
      return self->delegate(st.source, caf::get_atom::value,
                            std::move(model_id));
    },
    [self](caf::join_atom, combiner_actor& combiner, combiner_info& info,
           std::vector<round_record>& interrupted) {
      auto& st = self->state;
      if (st.combiner)
        return;
      st.combiner = std::move(combiner);
      st.info = std::move(info);
      st.interrupted = std::move(interrupted);
      st.info.combiner_id = st.cfg.combiner_id;
      self->monitor(st.combiner);
      self->send(st.combiner, caf::subscribe_atom::value,
                 caf::actor_cast<status_sink_actor>(self));
      connect(self);
    },
    [self](status_record& x) {
      auto& st = self->state;
      if (st.controller) {
        self->send(st.controller, std::move(x));
        return;
      }
      // Status events are informational; one line per 100 dropped.
      if (st.statuses_dropped++ % 100 == 0)
        log(st, "not joined to the controller: dropping clients' status "
                "events ("
                  + std::to_string(st.statuses_dropped) + " so far)");
    },
    [self](const timer_tick& tick) {
      if (tick.kind == timer_kind::reconnect
          && tick.epoch == self->state.epoch && !self->state.controller)
        connect(self);
    },
  };
}

} // namespace rondo
