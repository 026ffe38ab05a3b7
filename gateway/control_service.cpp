// fedn.Control: FEDn's controller-to-combiner API, which also lets scripts
// and integration tests run rounds against a standalone combiner.
//
// Start: the parameters are a round config as key/value strings (FEDn's
// form, parsed by parse_round_config). The round is queued on the combiner;
// the reply is ControlResponse{message = job id, parameter job_id}. With
// the extra parameter `wait` = "true" (removed from the config) the reply
// comes when that round has ended, bounded by round_timeout +
// client_wait_timeout + start_wait_margin, and carries the round record as
// parameters: job_id, round_id, session_id, status ("success"/"failed"),
// reason, model_id, base_model_id, nr_expected_updates,
// nr_required_updates, nr_aggregated_models, num_examples, timeout,
// time_combination, time_model_load, time_model_aggregation,
// time_exec_training, time_model_write, started_at, ended_at, and as JSON lists
// clients_selected, clients_accepted, clients_silent, clients_rejected
// ([{"client_id", "reason"}]) and validations ([{"client_id", "model_id",
// "correlation_id", "metrics"}]). A failed round is still status OK (the
// call did what it was asked); its `status` parameter says "failed".
// Errors: INVALID_ARGUMENT (bad config, a parameter given twice),
// DEADLINE_EXCEEDED (the wait ran out; the round goes on), UNAVAILABLE
// (the combiner did not answer, or the edge is stopping), INTERNAL (the
// combiner could not persist the job).
//
// Stop and FlushAggregationQueue: flush the combiner's queue (terminate
// the running round, fail queued jobs); message "flushed <n> jobs",
// parameter dropped=<n>. SetAggregator: "error: ..." (the aggregator is a
// round config key). SetServerFunctions: "not supported: ...". Both OK.

#include "gateway/auth.hpp"
#include "gateway/edge_core.hpp"
#include "messages/error.hpp"

#include <caf/actor_cast.hpp>
#include <caf/atom.hpp>
#include <caf/sec.hpp>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <map>

namespace rondo::gateway::detail {

namespace {

using control_call = deferred_call<fedn::ControlResponse>;

grpc::StatusCode to_code(const caf::error& err) {
  if (err.category() == caf::atom("rondo")) {
    auto code = static_cast<ec>(err.code());
    if (code == ec::invalid_config || code == ec::invalid_argument)
      return grpc::StatusCode::INVALID_ARGUMENT;
    return grpc::StatusCode::INTERNAL;
  }
  return grpc::StatusCode::UNAVAILABLE;
}

void add(fedn::ControlResponse& r, const std::string& key,
         const std::string& value) {
  auto* p = r.add_parameter();
  p->set_key(key);
  p->set_value(value);
}

std::string num(double x) {
  return nlohmann::json(x).dump();
}

std::string list(const std::vector<std::string>& xs) {
  return nlohmann::json(xs).dump();
}

/// The round record as parameters (see the file comment).
void fill(fedn::ControlResponse& r, const round_record& rec) {
  r.set_message(rec.job_id);
  add(r, "job_id", rec.job_id);
  add(r, "round_id", rec.round_id);
  add(r, "session_id", rec.session_id);
  add(r, "status", to_string(rec.status));
  add(r, "reason", rec.reason);
  add(r, "model_id", rec.model_id);
  add(r, "base_model_id", rec.base_model_id);
  add(r, "nr_expected_updates", std::to_string(rec.nr_expected_updates));
  add(r, "nr_required_updates", std::to_string(rec.nr_required_updates));
  add(r, "nr_aggregated_models", std::to_string(rec.nr_aggregated_models));
  add(r, "num_examples", num(rec.num_examples));
  add(r, "timeout", num(rec.timeout));
  add(r, "time_combination", num(rec.time_combination));
  add(r, "time_model_load", num(rec.time_model_load));
  add(r, "time_model_aggregation", num(rec.time_model_aggregation));
  add(r, "time_exec_training", num(rec.time_exec_training));
  add(r, "time_model_write", num(rec.time_model_write));
  add(r, "started_at", num(rec.started_at));
  add(r, "ended_at", num(rec.ended_at));
  add(r, "clients_selected", list(rec.clients_selected));
  add(r, "clients_accepted", list(rec.clients_accepted));
  add(r, "clients_silent", list(rec.clients_silent));
  auto rejected = nlohmann::json::array();
  for (auto& x : rec.clients_rejected)
    rejected.push_back({{"client_id", x.client_id}, {"reason", x.reason}});
  add(r, "clients_rejected", rejected.dump());
  auto validations = nlohmann::json::array();
  for (auto& v : rec.validations) {
    auto metrics = nlohmann::json::parse(v.metrics_json, nullptr, false);
    if (metrics.is_discarded())
      metrics = v.metrics_json;
    validations.push_back({{"client_id", v.client_id},
                           {"model_id", v.model_id},
                           {"correlation_id", v.correlation_id},
                           {"metrics", metrics}});
  }
  add(r, "validations", validations.dump());
}

bool truthy(std::string x) {
  std::transform(x.begin(), x.end(), x.begin(),
                 [](unsigned char c) { return std::tolower(c); });
  return x == "true" || x == "1" || x == "yes";
}

class control_service final : public fedn::Control::CallbackService {
public:
  explicit control_service(std::shared_ptr<edge_core> core)
    : core_(std::move(core)) {
  }

  grpc::ServerUnaryReactor* Start(grpc::CallbackServerContext* ctx,
                                  const fedn::ControlRequest* req,
                                  fedn::ControlResponse* response) override {
    if (auto st = admit(*core_, ctx, "/fedn.Control/Start"); !st.ok())
      return refuse_unary(ctx, st);
    std::map<std::string, std::string> kv;
    bool wait = false;
    for (auto& p : req->parameter()) {
      if (p.key() == "wait") {
        wait = truthy(p.value());
        continue;
      }
      if (!kv.emplace(p.key(), p.value()).second)
        return finish_now(ctx, grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                                            "parameter '" + p.key()
                                              + "' given twice"));
    }
    auto cfg = parse_round_config(kv);
    if (!cfg)
      return finish_now(ctx,
                        grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                                     "bad round config: "
                                       + error_detail(cfg.error())));
    auto [call, reactor] = defer(core_, response);
    if (!call)
      return reactor;
    auto round_id = cfg->round_id;
    if (!wait) {
      ask(
        core_->sys, call, core_->combiner, core_->cfg.request_timeout,
        [call, round_id](std::string& job_id) {
          spdlog::info("edge: Control.Start queued round {} as job {}",
                       round_id, job_id);
          call->reply([&](fedn::ControlResponse& r) {
            r.set_message(job_id);
            add(r, "job_id", job_id);
          });
        },
        [call](caf::error& err) {
          call->fail(grpc::Status(to_code(err), "cannot queue the round: "
                                                  + error_detail(err)));
        },
        std::move(*cfg), round_report_actor{});
      return reactor;
    }
    start_and_wait(std::move(call), std::move(*cfg));
    return reactor;
  }

  grpc::ServerUnaryReactor* Stop(grpc::CallbackServerContext* ctx,
                                 const fedn::ControlRequest*,
                                 fedn::ControlResponse* response) override {
    if (auto st = admit(*core_, ctx, "/fedn.Control/Stop"); !st.ok())
      return refuse_unary(ctx, st);
    return flush(response);
  }

  grpc::ServerUnaryReactor*
  FlushAggregationQueue(grpc::CallbackServerContext* ctx,
                        const fedn::ControlRequest*,
                        fedn::ControlResponse* response) override {
    if (auto st = admit(*core_, ctx, "/fedn.Control/FlushAggregationQueue");
        !st.ok())
      return refuse_unary(ctx, st);
    return flush(response);
  }

  grpc::ServerUnaryReactor*
  SetAggregator(grpc::CallbackServerContext* ctx, const fedn::ControlRequest*,
                fedn::ControlResponse* response) override {
    if (auto st = admit(*core_, ctx, "/fedn.Control/SetAggregator"); !st.ok())
      return refuse_unary(ctx, st);
    response->set_message("error: combiner " + core_->cfg.combiner_id
                          + " takes the aggregator from each round config "
                            "(key 'aggregator'), not from SetAggregator");
    return finish_now(ctx, grpc::Status::OK);
  }

  grpc::ServerUnaryReactor*
  SetServerFunctions(grpc::CallbackServerContext* ctx,
                     const fedn::ControlRequest*,
                     fedn::ControlResponse* response) override {
    if (auto st = admit(*core_, ctx, "/fedn.Control/SetServerFunctions");
        !st.ok())
      return refuse_unary(ctx, st);
    response->set_message("not supported: combiner " + core_->cfg.combiner_id
                          + " does not run server functions");
    return finish_now(ctx, grpc::Status::OK);
  }

private:
  static grpc::ServerUnaryReactor* finish_now(grpc::CallbackServerContext* ctx,
                                              grpc::Status st) {
    if (!st.ok())
      spdlog::warn("edge: Control: {}", st.error_message());
    auto* reactor = ctx->DefaultReactor();
    reactor->Finish(std::move(st));
    return reactor;
  }

  grpc::ServerUnaryReactor* flush(fedn::ControlResponse* response) {
    auto [call, reactor] = defer(core_, response);
    if (!call)
      return reactor;
    ask(
      core_->sys, call, core_->combiner, core_->cfg.request_timeout,
      [call](uint64_t dropped) {
        spdlog::info("edge: Control flushed {} jobs", dropped);
        call->reply([&](fedn::ControlResponse& r) {
          r.set_message("flushed " + std::to_string(dropped) + " jobs");
          add(r, "dropped", std::to_string(dropped));
        });
      },
      [call](caf::error& err) {
        call->fail(grpc::Status(to_code(err),
                                "cannot flush the queue: " + error_detail(err)));
      },
      caf::flush_atom::value);
    return reactor;
  }

  /// One actor per waiting call: it queues the round with itself as the
  /// report actor and answers when the round's terminal record arrives
  /// (its progress record is skipped), or when the bound passes (a timer
  /// message to itself).
  void start_and_wait(std::shared_ptr<control_call> call, round_config cfg) {
    auto bound = std::chrono::duration_cast<caf::timespan>(
                   std::chrono::duration<double>(cfg.round_timeout))
                 + core_->cfg.client_wait_timeout
                 + core_->cfg.start_wait_margin;
    auto combiner = core_->combiner;
    auto timeout = core_->cfg.request_timeout;
    auto waiter = core_->sys.spawn([call, cfg = std::move(cfg), bound,
                                    combiner, timeout](
                                     caf::event_based_actor* self) mutable
                                   -> caf::behavior {
      auto round_id = cfg.round_id;
      auto me = caf::actor_cast<round_report_actor>(self);
      self->request(combiner, timeout, std::move(cfg), std::move(me))
        .then(
          [round_id](std::string& job_id) {
            spdlog::info("edge: Control.Start queued round {} as job {}; "
                         "waiting for its end",
                         round_id, job_id);
          },
          [self, call](caf::error& err) {
            call->fail(grpc::Status(to_code(err), "cannot queue the round: "
                                                    + error_detail(err)));
            self->quit();
          });
      self->delayed_send(self, bound, caf::timeout_atom::value);
      return {
        [self, call](const round_record& rec) {
          // The round's progress (its tasks are out): wait for its end.
          if (rec.status == round_status::running)
            return;
          spdlog::info("edge: round {} (job {}) ended: {} {}", rec.round_id,
                       rec.job_id, to_string(rec.status), rec.reason);
          call->reply([&](fedn::ControlResponse& r) { fill(r, rec); });
          self->quit();
        },
        [self, call, bound, round_id](caf::timeout_atom) {
          auto secs = std::chrono::duration_cast<std::chrono::seconds>(bound);
          call->fail(grpc::Status(grpc::StatusCode::DEADLINE_EXCEEDED,
                                  "round " + round_id + " did not end within "
                                    + std::to_string(secs.count())
                                    + " s; it goes on"));
          self->quit();
        },
      };
    });
    quit_with(*call, waiter.address());
  }

  std::shared_ptr<edge_core> core_;
};

} // namespace

std::unique_ptr<grpc::Service>
make_control_service(std::shared_ptr<edge_core> core) {
  return std::make_unique<control_service>(std::move(core));
}

} // namespace rondo::gateway::detail
