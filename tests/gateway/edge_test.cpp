// The combiner's gRPC edge end to end: a real combiner on CAF's threaded
// scheduler, a real gRPC server on 127.0.0.1 (port 0), and FEDn clients
// played by gRPC's synchronous stubs. Every wait is bounded (gRPC deadlines,
// futures waited for with a timeout).

#include "actors/combiner.hpp"
#include "actors/type_ids.hpp"
#include "gateway/edge.hpp"
#include "gateway/wire.hpp"
#include "messages/error.hpp"
#include "model/npz.hpp"
#include "model/tensor.hpp"
#include "storage/database.hpp"
#include "storage/model_store.hpp"
#include "storage/state_store.hpp"
#include "tests/test_util.hpp"

#include "fedn.grpc.pb.h"
#include "fedn.pb.h"

#include <caf/actor_system.hpp>
#include <caf/actor_system_config.hpp>
#include <caf/after.hpp>
#include <caf/exit_reason.hpp>
#include <caf/scoped_actor.hpp>
#include <caf/send.hpp>
#include <caf/stateful_actor.hpp>
#include <caf/system_messages.hpp>
#include <caf/typed_event_based_actor.hpp>

#include <grpcpp/channel.h>
#include <grpcpp/client_context.h>
#include <grpcpp/create_channel.h>
#include <grpcpp/generic/generic_stub.h>
#include <grpcpp/security/credentials.h>

#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include <doctest/doctest.h>

#include <chrono>
#include <condition_variable>
#include <deque>
#include <future>
#include <map>
#include <mutex>
#include <optional>
#include <thread>

using namespace std::chrono_literals;
using namespace rondo;

namespace {

constexpr size_t mib = 1 << 20;

void set_deadline(grpc::ClientContext& ctx, std::chrono::seconds s) {
  ctx.set_deadline(std::chrono::system_clock::now() + s);
}

fedn::Client client(const std::string& id) {
  fedn::Client c;
  c.set_name(id);
  c.set_client_id(id);
  c.set_role(fedn::CLIENT);
  return c;
}

/// A one-tensor float32 model "0" with `n` copies of `value`.
std::string npz(size_t n, double value) {
  model m;
  auto t = make_tensor("0", dtype::f32, {n}, std::vector<double>(n, value));
  REQUIRE(t);
  m.push_back(std::move(*t));
  auto bytes = write_npz_bytes(m);
  REQUIRE(bytes);
  return *bytes;
}

/// The values of tensor "0" of an npz archive.
std::vector<double> values_of(const std::string& bytes) {
  auto m = read_npz_bytes(bytes);
  REQUIRE_MESSAGE(m, (m ? "" : render(m.error())));
  std::vector<double> out;
  for (uint64_t i = 0; i < (*m)[0].count(); ++i)
    out.push_back((*m)[0].at(i));
  return out;
}

bool all_near(const std::vector<double>& xs, size_t n, double y) {
  if (xs.size() != n)
    return false;
  for (auto x : xs)
    if (std::abs(x - y) > 1e-5 * (1 + std::abs(y)))
      return false;
  return true;
}

/// What a Download returned.
struct download_result {
  grpc::Status status;
  std::vector<fedn::ModelResponse> messages;
  /// The IN_PROGRESS chunks' data, concatenated.
  std::string bytes;
};

/// A FEDn client's TaskStream, read on its own thread.
class task_listener {
public:
  /// @param data the ClientAvailableMessage's data (the announced roles).
  task_listener(fedn::Combiner::Stub& stub, const std::string& id,
                const std::string& data = {}) {
    set_deadline(ctx_, 120s);
    ctx_.AddMetadata("client", id);
    fedn::ClientAvailableMessage hello;
    *hello.mutable_sender() = client(id);
    hello.set_data(data);
    reader_ = stub.TaskStream(&ctx_, hello);
    thread_ = std::thread{[this] {
      fedn::TaskRequest t;
      while (reader_->Read(&t)) {
        std::lock_guard<std::mutex> guard{mtx_};
        tasks_.push_back(t);
        cv_.notify_all();
      }
      std::lock_guard<std::mutex> guard{mtx_};
      ended_ = true;
      cv_.notify_all();
    }};
  }

  ~task_listener() {
    ctx_.TryCancel();
    if (thread_.joinable())
      thread_.join();
    if (!status_)
      static_cast<void>(reader_->Finish());
  }

  /// The stream's final status; call once `ended` is true.
  grpc::Status status() {
    if (!status_) {
      thread_.join();
      status_ = reader_->Finish();
    }
    return *status_;
  }

  /// The next task, or nothing when none came within `timeout` or the
  /// stream ended.
  std::optional<fedn::TaskRequest> next(std::chrono::seconds timeout) {
    std::unique_lock<std::mutex> lock{mtx_};
    cv_.wait_for(lock, timeout, [this] { return !tasks_.empty() || ended_; });
    if (tasks_.empty())
      return std::nullopt;
    auto t = tasks_.front();
    tasks_.pop_front();
    return t;
  }

  /// Ends the stream from the client side (the client goes away).
  void cancel() {
    ctx_.TryCancel();
  }

  /// Whether the stream ended within `timeout`.
  bool ended(std::chrono::seconds timeout) {
    std::unique_lock<std::mutex> lock{mtx_};
    return cv_.wait_for(lock, timeout, [this] { return ended_; });
  }

private:
  grpc::ClientContext ctx_;
  std::unique_ptr<grpc::ClientReader<fedn::TaskRequest>> reader_;
  std::thread thread_;
  std::mutex mtx_;
  std::condition_variable cv_;
  std::deque<fedn::TaskRequest> tasks_;
  bool ended_ = false;
  std::optional<grpc::Status> status_;
};

gateway::edge_config default_edge_config() {
  gateway::edge_config cfg;
  cfg.combiner_id = "edge-test";
  cfg.shutdown_grace = 2000ms;
  return cfg;
}

struct edge_fixture {
  test::temp_dir dir;
  caf::actor_system_config cfg;
  std::unique_ptr<caf::actor_system> sys;
  std::shared_ptr<storage::model_store> models;
  std::shared_ptr<storage::state_store> state;
  combiner_actor combiner;
  std::unique_ptr<gateway::combiner_edge> edge;
  uint16_t port = 0;
  std::shared_ptr<grpc::Channel> channel;
  std::unique_ptr<fedn::Connector::Stub> connector;
  std::unique_ptr<fedn::Combiner::Stub> combiner_stub;
  std::unique_ptr<fedn::ModelService::Stub> model_stub;
  std::unique_ptr<fedn::Control::Stub> control;

  explicit edge_fixture(gateway::edge_config ecfg = default_edge_config()) {
    spdlog::set_level(spdlog::level::err);
    register_actor_types(cfg);
    sys = std::make_unique<caf::actor_system>(cfg);
    auto db = storage::database::open(dir.sub("db"));
    REQUIRE(db);
    models = *storage::model_store::open(*db);
    state = *storage::state_store::open(*db);
    combiner_config ccfg;
    ccfg.combiner_id = ecfg.combiner_id;
    ccfg.rounds.client_wait_timeout = 20s;
    ccfg.staging.max_tries = 1;
    ecfg.client_wait_timeout = ccfg.rounds.client_wait_timeout;
    combiner = sys->spawn(combiner_impl, ccfg, models, state,
                          model_source_actor{});
    edge = std::make_unique<gateway::combiner_edge>(*sys, combiner, models,
                                                    state, ecfg);
    auto p = edge->start("127.0.0.1", 0);
    REQUIRE_MESSAGE(p, (p ? "" : render(p.error())));
    port = *p;
    REQUIRE(port != 0);
    CHECK(edge->port() == port);
    grpc::ChannelArguments args;
    args.SetMaxReceiveMessageSize(16 << 20);
    // FEDn clients' keepalive: a ping every 5 s, also without calls.
    args.SetInt(GRPC_ARG_KEEPALIVE_TIME_MS, 5000);
    args.SetInt(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
    channel = grpc::CreateCustomChannel("127.0.0.1:" + std::to_string(port),
                                        grpc::InsecureChannelCredentials(),
                                        args);
    connector = fedn::Connector::NewStub(channel);
    combiner_stub = fedn::Combiner::NewStub(channel);
    model_stub = fedn::ModelService::NewStub(channel);
    control = fedn::Control::NewStub(channel);
  }

  ~edge_fixture() {
    edge->stop();
    edge.reset();
    caf::scoped_actor self{*sys};
    self->monitor(combiner);
    self->send_exit(combiner, caf::exit_reason::user_shutdown);
    self->receive([](const caf::down_msg&) {},
                  caf::after(10s) >> [] { FAIL_CHECK("combiner did not stop"); });
    combiner = nullptr;
  }

  /// Uploads `bytes` as `id` in chunks of `chunk` bytes, with the
  /// terminator unless told otherwise; as FEDn's client `client` (call
  /// metadata) when given.
  grpc::Status upload(const std::string& id, const std::string& bytes,
                      size_t chunk = mib, bool terminator = true,
                      fedn::ModelResponse* out = nullptr,
                      const std::string& client = {}) {
    grpc::ClientContext ctx;
    set_deadline(ctx, 60s);
    if (!client.empty())
      ctx.AddMetadata("client", client);
    fedn::ModelResponse response;
    auto writer = model_stub->Upload(&ctx, &response);
    bool ok = true;
    for (size_t off = 0; ok && off < bytes.size(); off += chunk) {
      fedn::ModelRequest r;
      r.set_id(id);
      r.set_data(bytes.substr(off, chunk));
      r.set_status(fedn::IN_PROGRESS);
      ok = writer->Write(r);
    }
    if (ok && terminator) {
      fedn::ModelRequest r;
      r.set_id(id);
      r.set_status(fedn::OK);
      writer->Write(r);
    }
    writer->WritesDone();
    auto st = writer->Finish();
    if (out)
      *out = response;
    return st;
  }

  download_result download(const std::string& id) {
    grpc::ClientContext ctx;
    set_deadline(ctx, 60s);
    fedn::ModelRequest req;
    req.set_id(id);
    download_result result;
    auto reader = model_stub->Download(&ctx, req);
    fedn::ModelResponse m;
    while (reader->Read(&m)) {
      if (m.status() == fedn::IN_PROGRESS)
        result.bytes += m.data();
      result.messages.push_back(m);
    }
    result.status = reader->Finish();
    return result;
  }

  grpc::Status heartbeat(const std::string& id, fedn::Response* out) {
    grpc::ClientContext ctx;
    set_deadline(ctx, 10s);
    fedn::Heartbeat hb;
    *hb.mutable_sender() = client(id);
    return connector->SendHeartbeat(&ctx, hb, out);
  }

  /// Sends a ModelUpdate as a FEDn client does.
  std::string send_update(const std::string& id, const fedn::TaskRequest& task,
                          const std::string& update_id,
                          const std::string& meta,
                          std::string correlation_id = "*") {
    grpc::ClientContext ctx;
    set_deadline(ctx, 60s);
    ctx.AddMetadata("client", id);
    fedn::ModelUpdate u;
    *u.mutable_sender() = client(id);
    *u.mutable_receiver() = task.sender();
    u.set_model_id(task.model_id());
    u.set_model_update_id(update_id);
    u.set_correlation_id(correlation_id == "*" ? task.correlation_id()
                                               : correlation_id);
    u.set_timestamp(gateway::fedn_timestamp_now());
    u.set_meta(meta);
    u.set_config(task.data());
    fedn::Response response;
    auto st = combiner_stub->SendModelUpdate(&ctx, u, &response);
    REQUIRE_MESSAGE(st.ok(), st.error_message());
    return response.response();
  }

  /// Sends a ModelValidation of `data` for `task` from `sender`, with
  /// `client` metadata `metadata_client` (none when empty).
  std::string send_validation(const fedn::Client& sender,
                              const fedn::TaskRequest& task,
                              const std::string& data,
                              const std::string& metadata_client = {}) {
    grpc::ClientContext ctx;
    set_deadline(ctx, 30s);
    if (!metadata_client.empty())
      ctx.AddMetadata("client", metadata_client);
    fedn::ModelValidation mv;
    *mv.mutable_sender() = sender;
    mv.set_model_id(task.model_id());
    mv.set_correlation_id(task.correlation_id());
    mv.set_session_id(task.session_id());
    mv.set_data(data);
    fedn::Response resp;
    auto st = combiner_stub->SendModelValidation(&ctx, mv, &resp);
    REQUIRE_MESSAGE(st.ok(), st.error_message());
    return resp.response();
  }

  static std::string fedn_meta(double num_examples) {
    nlohmann::json meta = {
      {"training_metadata",
       {{"num_examples", num_examples}, {"batch_size", 32}, {"epochs", 1}}},
      {"config", "{}"},
      {"fetch_model", 0.01},
      {"exec_training", 0.2},
      {"upload_model", 0.01},
      {"processing_time", 0.22},
    };
    return meta.dump();
  }

  using start_result = std::pair<grpc::Status, fedn::ControlResponse>;

  /// Control.Start with `wait=true`, on its own thread.
  std::future<start_result>
  start_round(std::map<std::string, std::string> params) {
    params["wait"] = "true";
    return std::async(std::launch::async, [this, params] {
      grpc::ClientContext ctx;
      set_deadline(ctx, 120s);
      fedn::ControlRequest req;
      req.set_command(fedn::START);
      for (auto& [k, v] : params) {
        auto* p = req.add_parameter();
        p->set_key(k);
        p->set_value(v);
      }
      fedn::ControlResponse resp;
      auto st = control->Start(&ctx, req, &resp);
      return start_result{st, resp};
    });
  }

  static std::map<std::string, std::string>
  parameters(const fedn::ControlResponse& r) {
    std::map<std::string, std::string> out;
    for (auto& p : r.parameter())
      out[p.key()] = p.value();
    return out;
  }

  /// A training task received by `listener`, after checking its form.
  static fedn::TaskRequest expect_training_task(task_listener& listener,
                                                const std::string& client_id,
                                                const std::string& model_id) {
    auto task = listener.next(60s);
    REQUIRE(task);
    CHECK(task->type() == fedn::MODEL_UPDATE);
    CHECK(task->model_id() == model_id);
    CHECK(!task->correlation_id().empty());
    CHECK(task->session_id() == "s1");
    CHECK(task->sender().name() == "edge-test");
    CHECK(task->sender().role() == fedn::COMBINER);
    CHECK(task->receiver().client_id() == client_id);
    CHECK(task->receiver().role() == fedn::CLIENT);
    CHECK(!task->timestamp().empty());
    auto data = nlohmann::json::parse(task->data(), nullptr, false);
    REQUIRE(data.is_object());
    CHECK(data["round_id"] == "1");
    return *task;
  }
};

} // namespace

TEST_CASE("edge: parse_num_examples accepts FEDn meta and names what is "
          "wrong") {
  auto n = gateway::parse_num_examples(
    R"({"training_metadata": {"num_examples": 42, "epochs": 1}})");
  REQUIRE(n);
  CHECK(*n == 42);
  auto reason = [](const std::string& meta) {
    auto x = gateway::parse_num_examples(meta);
    REQUIRE(!x);
    return render(x.error());
  };
  CHECK(reason("nope").find("malformed meta: not JSON") != std::string::npos);
  CHECK(reason("[]").find("not a JSON object") != std::string::npos);
  CHECK(reason("{}").find("training_metadata is missing")
        != std::string::npos);
  CHECK(reason(R"({"training_metadata": {}})").find("num_examples is missing")
        != std::string::npos);
  CHECK(reason(R"({"training_metadata": {"num_examples": "7"}})")
          .find("is not a number")
        != std::string::npos);
  CHECK(reason(R"({"training_metadata": {"num_examples": 0}})")
          .find("finite number > 0, got 0")
        != std::string::npos);
  CHECK(reason(R"({"training_metadata": {"num_examples": -3.5}})")
          .find("got -3.5")
        != std::string::npos);
}

TEST_CASE("edge: a FedAvg round end to end over FEDn gRPC") {
  edge_fixture f;
  // The global model is over 1 MiB, so both transfers take several chunks.
  constexpr size_t n = 400000;
  auto global = npz(n, 0.0);
  REQUIRE(global.size() > 1 * mib);
  fedn::ModelResponse uploaded;
  auto st = f.upload("m0", global, mib, true, &uploaded);
  REQUIRE_MESSAGE(st.ok(), st.error_message());
  CHECK(uploaded.id() == "m0");
  CHECK(uploaded.status() == fedn::OK);
  task_listener a{*f.combiner_stub, "a"};
  task_listener b{*f.combiner_stub, "b"};
  auto started = f.start_round({{"round_id", "1"},
                                {"session_id", "s1"},
                                {"model_id", "m0"},
                                {"round_timeout", "60"},
                                {"clients_required", "2"},
                                {"client_settings", R"({"epochs": 1})"}});
  auto task_a = f.expect_training_task(a, "a", "m0");
  auto task_b = f.expect_training_task(b, "b", "m0");
  // Each client fetches the global model in chunks of at most 1 MiB.
  auto got = f.download("m0");
  REQUIRE(got.status.ok());
  REQUIRE(got.messages.size() >= 3);
  for (size_t i = 0; i + 1 < got.messages.size(); ++i) {
    CHECK(got.messages[i].status() == fedn::IN_PROGRESS);
    CHECK(got.messages[i].data().size() <= mib);
  }
  CHECK(got.messages.back().status() == fedn::OK);
  CHECK(got.messages.back().data().empty());
  CHECK(got.bytes == global);
  // Train (values 1 and 5), upload, report with FEDn's meta.
  REQUIRE(f.upload("update-a", npz(n, 1.0)).ok());
  REQUIRE(f.upload("update-b", npz(n, 5.0)).ok());
  CHECK(f.send_update("a", task_a, "update-a", f.fedn_meta(100))
        == "accepted");
  CHECK(f.send_update("b", task_b, "update-b", f.fedn_meta(300))
        == "accepted");
  REQUIRE(started.wait_for(60s) == std::future_status::ready);
  auto [status, response] = started.get();
  REQUIRE_MESSAGE(status.ok(), status.error_message());
  auto p = f.parameters(response);
  CHECK(response.message() == p["job_id"]);
  CHECK(p["status"] == "success");
  CHECK(p["reason"] == "");
  CHECK(p["round_id"] == "1");
  CHECK(p["nr_aggregated_models"] == "2");
  CHECK(p["num_examples"] == "400.0");
  CHECK(nlohmann::json::parse(p["clients_accepted"])
        == nlohmann::json({"a", "b"}));
  REQUIRE(!p["model_id"].empty());
  CHECK(p["model_id"] != "m0");
  // FedAvg weighted by num_examples: (100 * 1 + 300 * 5) / 400 = 4.
  auto result = f.download(p["model_id"]);
  REQUIRE(result.status.ok());
  CHECK(result.messages.back().status() == fedn::OK);
  CHECK(all_near(values_of(result.bytes), n, 4.0));
  // An answer after the round ended is stale: rejected, status still OK,
  // and the model it names, uploaded by that client, is deleted.
  REQUIRE(f.upload("update-late", npz(n, 9.0), mib, true, nullptr, "a").ok());
  REQUIRE(*f.models->exists("update-late"));
  auto late = f.send_update("a", task_a, "update-late", f.fedn_meta(10));
  CHECK(late.rfind("rejected: stale update", 0) == 0);
  CHECK(!*f.models->exists("update-late"));
  // A rejected ModelUpdate naming a model another client uploaded, or one
  // that came in another way, deletes nothing.
  REQUIRE(f.upload("update-of-b", npz(n, 9.0), mib, true, nullptr, "b").ok());
  CHECK(f.send_update("a", task_a, "update-of-b", f.fedn_meta(10))
          .rfind("rejected: stale update", 0)
        == 0);
  CHECK(*f.models->exists("update-of-b"));
  CHECK(f.send_update("a", task_a, "m0", f.fedn_meta(10))
          .rfind("rejected: stale update", 0)
        == 0);
  CHECK(*f.models->exists("m0"));
}

TEST_CASE("edge: keep_rejected_updates keeps a rejected update's model") {
  auto cfg = default_edge_config();
  cfg.keep_rejected_updates = true;
  edge_fixture f{cfg};
  REQUIRE(f.upload("kept", npz(4, 1.0), mib, true, nullptr, "a").ok());
  fedn::TaskRequest none;
  none.set_model_id("m0");
  none.set_correlation_id("no-such-task");
  CHECK(f.send_update("a", none, "kept", f.fedn_meta(10)).rfind("rejected", 0)
        == 0);
  CHECK(*f.models->exists("kept"));
}

TEST_CASE("edge: malformed meta and foreign updates never reach the "
          "aggregator, and a refused answer resolves its task at once") {
  edge_fixture f;
  REQUIRE(f.upload("m0", npz(4, 0.0)).ok());
  task_listener a{*f.combiner_stub, "a"};
  task_listener b{*f.combiner_stub, "b"};
  auto started = f.start_round({{"round_id", "1"},
                                {"session_id", "s1"},
                                {"model_id", "m0"},
                                {"round_timeout", "300"},
                                {"clients_required", "1"}});
  auto task = f.expect_training_task(a, "a", "m0");
  auto task_b = f.expect_training_task(b, "b", "m0");
  REQUIRE(f.upload("bad", npz(4, 1000.0)).ok());
  // Another client's refused answer naming a's task leaves the task alone.
  auto stranger = f.send_update("intruder", task, "bad", "{not json");
  CHECK(stranger.rfind("error: malformed meta: not JSON", 0) == 0);
  // A client that was not assigned the task.
  auto foreign = f.send_update("intruder", task, "bad", f.fedn_meta(5));
  CHECK(foreign.rfind("rejected: ", 0) == 0);
  CHECK(foreign.find("belongs to client a, not intruder")
        != std::string::npos);
  // A correlation id that is no task of the round.
  auto unknown = f.send_update("a", task, "bad", f.fedn_meta(5), "no-such");
  CHECK(unknown.rfind("rejected: ", 0) == 0);
  CHECK(unknown.find("not a task of round 1") != std::string::npos);
  // a's own refused answer rejects a's task with the reason.
  auto zero = f.send_update("a", task, "bad",
                            R"({"training_metadata": {"num_examples": 0}})");
  CHECK(zero.rfind("error: malformed meta: ", 0) == 0);
  CHECK(zero.find("num_examples") != std::string::npos);
  auto malformed = f.send_update("a", task, "bad", "{not json");
  CHECK(malformed.rfind("error: malformed meta: not JSON", 0) == 0);
  auto missing = f.send_update("a", task, "never-uploaded", f.fedn_meta(5));
  CHECK(missing == "error: model update never-uploaded was not uploaded");
  // b's answer is the only one aggregated, and the round ends with it, not
  // at its 300 s round_timeout.
  REQUIRE(f.upload("good", npz(4, 2.0)).ok());
  CHECK(f.send_update("b", task_b, "good", f.fedn_meta(10)) == "accepted");
  REQUIRE(started.wait_for(30s) == std::future_status::ready);
  auto [status, response] = started.get();
  REQUIRE_MESSAGE(status.ok(), status.error_message());
  auto p = f.parameters(response);
  CHECK(p["status"] == "success");
  CHECK(p["nr_aggregated_models"] == "1");
  CHECK(p["clients_silent"] == "[]");
  auto rejected = nlohmann::json::parse(p["clients_rejected"]);
  REQUIRE(rejected.size() == 1);
  CHECK(rejected[0]["client_id"] == "a");
  CHECK(rejected[0]["reason"].get<std::string>().rfind(
          "refused at the edge: malformed meta: training_metadata."
          "num_examples must be a finite number > 0, got 0",
          0)
        == 0);
  auto result = f.download(p["model_id"]);
  REQUIRE(result.status.ok());
  CHECK(all_near(values_of(result.bytes), 4, 2.0));
}

TEST_CASE("edge: validations shaped like FEDn 0.24's (sender.name only, the "
          "id in the client metadata) are accepted and stored") {
  edge_fixture f;
  REQUIRE(f.upload("m0", npz(4, 1.0)).ok());
  const std::string uid = "0d6f6c0e-5d0b-4b8e-9a51-3c1f2a4b6e7d";
  task_listener v{*f.combiner_stub, uid};
  auto val = f.start_round({{"round_id", "v1"},
                            {"session_id", "s1"},
                            {"model_id", "m0"},
                            {"task", "validation"},
                            {"round_timeout", "120"},
                            {"clients_required", "1"}});
  auto vt = v.next(60s);
  REQUIRE(vt);
  CHECK(vt->type() == fedn::MODEL_VALIDATION);
  // FEDn 0.24: the sender names itself only by name.
  fedn::Client sender;
  sender.set_name("cli24-1");
  sender.set_role(fedn::CLIENT);
  CHECK(f.send_validation(sender, *vt, R"({"test_accuracy": 0.75})", uid)
        == "accepted");
  REQUIRE(val.wait_for(60s) == std::future_status::ready);
  auto [st, vresp] = val.get();
  REQUIRE_MESSAGE(st.ok(), st.error_message());
  auto p = f.parameters(vresp);
  CHECK(p["status"] == "success");
  CHECK(nlohmann::json::parse(p["clients_accepted"])
        == nlohmann::json({uid}));
  auto stored = f.state->list<validation_record>();
  REQUIRE(stored);
  REQUIRE(stored->size() == 1);
  CHECK(stored->front().client_id == uid);
  CHECK(stored->front().client_name == "cli24-1");
  CHECK(stored->front().round_id == "v1");
  CHECK(stored->front().correlation_id == vt->correlation_id());
  CHECK(stored->front().metrics_json == R"({"test_accuracy": 0.75})");
}

TEST_CASE("edge: a task stream that ends mid-round cancels the client's "
          "task at once") {
  edge_fixture f;
  REQUIRE(f.upload("m0", npz(4, 0.0)).ok());
  task_listener a{*f.combiner_stub, "a"};
  auto started = f.start_round({{"round_id", "1"},
                                {"session_id", "s1"},
                                {"model_id", "m0"},
                                {"round_timeout", "300"},
                                {"clients_required", "1"}});
  f.expect_training_task(a, "a", "m0");
  a.cancel();
  REQUIRE(a.ended(10s));
  // The session saw the stream end (its sink stopped) and cancelled the
  // task: the round closes long before its 300 s timeout.
  REQUIRE(started.wait_for(30s) == std::future_status::ready);
  auto [status, response] = started.get();
  REQUIRE_MESSAGE(status.ok(), status.error_message());
  auto p = f.parameters(response);
  CHECK(p["status"] == "failed");
  CHECK(p["clients_silent"] == R"(["a"])");
  CHECK(p["nr_aggregated_models"] == "0");
}

TEST_CASE("edge: a newer task stream of the same client ends the old one "
          "with UNAVAILABLE and gets the tasks") {
  // A second process with the same client id and token: the first one's
  // stream must end (its client reconnects) rather than stay open as a
  // zombie that never gets a task again.
  edge_fixture f;
  REQUIRE(f.upload("m0", npz(4, 0.0)).ok());
  auto first = std::make_unique<task_listener>(*f.combiner_stub, "a");
  auto second = std::make_unique<task_listener>(*f.combiner_stub, "a");
  // Each stream reaches the session through its own bridge, so which one
  // the session sees second (the newer) is not fixed: exactly one ends.
  auto deadline = std::chrono::steady_clock::now() + 10s;
  while (!first->ended(0s) && !second->ended(0s)
         && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(10ms);
  REQUIRE((first->ended(0s) || second->ended(0s)));
  if (second->ended(0s))
    std::swap(first, second);
  auto st = first->status();
  CHECK(st.error_code() == grpc::StatusCode::UNAVAILABLE);
  CHECK(st.error_message()
        == "replaced by a newer task stream of the same client");
  first.reset();
  auto started = f.start_round({{"round_id", "1"},
                                {"session_id", "s1"},
                                {"model_id", "m0"},
                                {"round_timeout", "300"},
                                {"clients_required", "1"}});
  f.expect_training_task(*second, "a", "m0");
  CHECK_FALSE(second->ended(0s));
  second->cancel(); // the round ends at once (its task is cancelled)
  REQUIRE(started.wait_for(30s) == std::future_status::ready);
}

TEST_CASE("edge: download of an unknown model sends one FAILED then ends") {
  edge_fixture f;
  auto got = f.download("no-such-model");
  CHECK(got.status.ok());
  REQUIRE(got.messages.size() == 1);
  CHECK(got.messages[0].status() == fedn::FAILED);
  CHECK(got.messages[0].id() == "no-such-model");
  CHECK(got.messages[0].message().find("no-such-model") != std::string::npos);
  CHECK(got.messages[0].data().empty());
}

TEST_CASE("edge: an upload over max_model_bytes is refused and leaves "
          "nothing") {
  auto cfg = default_edge_config();
  cfg.max_model_bytes = 2500;
  edge_fixture f{cfg};
  auto bytes = test::random_bytes(3000);
  auto st = f.upload("too-big", bytes, 1000);
  CHECK(st.error_code() == grpc::StatusCode::RESOURCE_EXHAUSTED);
  CHECK(st.error_message().find("max_model_bytes") != std::string::npos);
  CHECK(!*f.models->exists("too-big"));
  // Exactly at the limit is fine.
  CHECK(f.upload("just-right", test::random_bytes(2500), 1000).ok());
  CHECK(*f.models->get("just-right") == test::random_bytes(2500));
  // The refused id is free again.
  CHECK(f.upload("too-big", test::random_bytes(100), 1000).ok());
}

TEST_CASE("edge: malformed uploads leave nothing visible") {
  edge_fixture f;
  auto bytes = test::random_bytes(5000);
  // The stream ends without the terminator.
  auto st = f.upload("partial", bytes, 1000, false);
  CHECK(st.error_code() == grpc::StatusCode::INVALID_ARGUMENT);
  CHECK(st.error_message().find("without a terminator") != std::string::npos);
  CHECK(!*f.models->exists("partial"));
  CHECK(f.download("partial").messages.at(0).status() == fedn::FAILED);
  // The id changes mid-stream.
  {
    grpc::ClientContext ctx;
    set_deadline(ctx, 30s);
    fedn::ModelResponse response;
    auto w = f.model_stub->Upload(&ctx, &response);
    fedn::ModelRequest r;
    r.set_id("x1");
    r.set_data("abc");
    r.set_status(fedn::IN_PROGRESS);
    w->Write(r);
    r.set_id("x2");
    w->Write(r);
    w->WritesDone();
    auto s = w->Finish();
    CHECK(s.error_code() == grpc::StatusCode::INVALID_ARGUMENT);
    CHECK(s.error_message().find("changed mid-stream") != std::string::npos);
    CHECK(!*f.models->exists("x1"));
    CHECK(!*f.models->exists("x2"));
  }
  // An existing id.
  REQUIRE(f.upload("taken", bytes).ok());
  auto again = f.upload("taken", test::random_bytes(10));
  CHECK(again.error_code() == grpc::StatusCode::ALREADY_EXISTS);
  CHECK(*f.models->get("taken") == bytes);
  // The partial upload did not block its id.
  CHECK(f.upload("partial", bytes, 1000).ok());
  CHECK(f.download("partial").bytes == bytes);
}

TEST_CASE("edge: heartbeats list clients and status metrics and telemetry "
          "are acknowledged") {
  edge_fixture f;
  fedn::Response r;
  REQUIRE(f.heartbeat("alice", &r).ok());
  CHECK(r.response() == "heartbeat received");
  CHECK(r.sender().role() == fedn::COMBINER);
  // The heartbeat reaches the session asynchronously: the listing is
  // eventually online; ask until it is (each call bounded, at most 50).
  bool online = false;
  for (int i = 0; i < 50 && !online; ++i) {
    grpc::ClientContext ctx;
    set_deadline(ctx, 10s);
    fedn::ListClientsRequest req;
    fedn::ClientList list;
    REQUIRE(f.connector->ListActiveClients(&ctx, req, &list).ok());
    online = list.client_size() == 1 && list.client(0).client_id() == "alice";
    if (!online)
      std::this_thread::yield();
  }
  CHECK(online);
  {
    grpc::ClientContext ctx;
    set_deadline(ctx, 10s);
    fedn::Status s;
    *s.mutable_sender() = client("alice");
    s.set_status("Training started");
    fedn::Response resp;
    CHECK(f.connector->SendStatus(&ctx, s, &resp).ok());
  }
  {
    grpc::ClientContext ctx;
    set_deadline(ctx, 10s);
    fedn::ConnectionRequest req;
    fedn::ConnectionResponse resp;
    REQUIRE(f.connector->AcceptingClients(&ctx, req, &resp).ok());
    CHECK(resp.status() == fedn::ACCEPTING);
  }
  {
    grpc::ClientContext ctx;
    set_deadline(ctx, 10s);
    fedn::ModelMetric m;
    *m.mutable_sender() = client("alice");
    auto* e = m.add_metrics();
    e->set_key("loss");
    e->set_value(0.5f);
    m.set_model_id("m0");
    m.set_round_id("3");
    m.mutable_step()->set_value(7);
    fedn::Response resp;
    REQUIRE(f.combiner_stub->SendModelMetric(&ctx, m, &resp).ok());
    CHECK(resp.response().rfind("stored 1 metrics", 0) == 0);
  }
  {
    grpc::ClientContext ctx;
    set_deadline(ctx, 10s);
    fedn::TelemetryMessage t;
    *t.mutable_sender() = client("alice");
    auto* e = t.add_telemetries();
    e->set_key("memory");
    e->set_value(0.25f);
    fedn::Response resp;
    REQUIRE(f.combiner_stub->SendTelemetryMessage(&ctx, t, &resp).ok());
    CHECK(resp.response().rfind("stored 1 telemetry", 0) == 0);
  }
  {
    grpc::ClientContext ctx;
    set_deadline(ctx, 10s);
    fedn::AttributeMessage at;
    *at.mutable_sender() = client("alice");
    auto* e = at.add_attributes();
    e->set_key("os");
    e->set_value("linux");
    e = at.add_attributes();
    e->set_key("gpus");
    e->set_value("2");
    fedn::Response resp;
    REQUIRE(f.combiner_stub->SendAttributeMessage(&ctx, at, &resp).ok());
    CHECK(resp.response().rfind("stored 2 attributes", 0) == 0);
  }
  {
    // Metrics without a sender are refused, with status OK.
    grpc::ClientContext ctx;
    set_deadline(ctx, 10s);
    fedn::ModelMetric m;
    m.add_metrics()->set_key("loss");
    fedn::Response resp;
    REQUIRE(f.combiner_stub->SendModelMetric(&ctx, m, &resp).ok());
    CHECK(resp.response().rfind("error: ", 0) == 0);
  }
  auto records = f.state->list<metric_record>();
  REQUIRE(records);
  REQUIRE(records->size() == 3);
  std::map<std::string, metric_record> by_kind;
  for (auto& rec : *records) {
    auto colon = rec.metric_id.find(':');
    by_kind[colon == std::string::npos ? "metric"
                                       : rec.metric_id.substr(0, colon)]
      = rec;
  }
  auto& metric = by_kind.at("metric");
  CHECK(metric.client_id == "alice");
  CHECK(metric.model_id == "m0");
  CHECK(metric.round_id == "3");
  CHECK(metric.step == 7);
  CHECK(metric.values.at("loss") == doctest::Approx(0.5));
  CHECK(by_kind.at("telemetry").values.at("memory") == doctest::Approx(0.25));
  auto& attrs = by_kind.at("attributes").values;
  CHECK(attrs.at("os=linux") == 1.0);
  CHECK(attrs.at("gpus") == 2.0);
}

TEST_CASE("edge: the health service answers SERVING") {
  edge_fixture f;
  grpc::GenericStub stub{f.channel};
  grpc::ClientContext ctx;
  set_deadline(ctx, 10s);
  // HealthCheckRequest{service: ""} is the empty message.
  grpc::ByteBuffer request;
  grpc::Slice empty{""};
  request = grpc::ByteBuffer{&empty, 1};
  grpc::ByteBuffer response;
  std::promise<grpc::Status> done;
  stub.UnaryCall(&ctx, "/grpc.health.v1.Health/Check", grpc::StubOptions{},
                 &request, &response,
                 [&done](grpc::Status st) { done.set_value(std::move(st)); });
  auto fut = done.get_future();
  REQUIRE(fut.wait_for(10s) == std::future_status::ready);
  auto st = fut.get();
  REQUIRE_MESSAGE(st.ok(), st.error_message());
  grpc::Slice out;
  REQUIRE(response.DumpToSingleSlice(&out).ok());
  // HealthCheckResponse{status: SERVING (1)}: field 1, varint 1.
  std::string bytes(reinterpret_cast<const char*>(out.begin()), out.size());
  CHECK(bytes == std::string("\x08\x01", 2));
}

TEST_CASE("edge: stop ends open task streams") {
  edge_fixture f;
  task_listener a{*f.combiner_stub, "a"};
  // Make sure the stream is open at the server: its session lists it online.
  fedn::Response r;
  REQUIRE(f.heartbeat("a", &r).ok());
  f.edge->stop();
  CHECK(a.ended(10s));
  // Stopped: new calls fail.
  CHECK(!f.heartbeat("b", &r).ok());
}

TEST_CASE("edge: a validator-only client never gets training tasks") {
  edge_fixture f;
  REQUIRE(f.upload("m0", npz(4, 1.0)).ok());
  // "v" is first seen through a heartbeat, which registers it with the
  // default roles (both); its TaskStream then announces validator only.
  fedn::Response r;
  REQUIRE(f.heartbeat("v", &r).ok());
  bool online = false;
  for (int i = 0; i < 50 && !online; ++i) {
    grpc::ClientContext ctx;
    set_deadline(ctx, 10s);
    fedn::ListClientsRequest req;
    fedn::ClientList list;
    REQUIRE(f.connector->ListActiveClients(&ctx, req, &list).ok());
    online = list.client_size() == 1 && list.client(0).client_id() == "v";
    if (!online)
      std::this_thread::yield();
  }
  REQUIRE(online);
  // The announcements as rondo client makes them (make_roles_json in
  // messages/combiner_messages.hpp; the format is checked in
  // roles_test.cpp).
  task_listener v{*f.combiner_stub, "v",
                  R"({"trainer":false,"validator":true})"};
  task_listener t{*f.combiner_stub, "t",
                  R"({"trainer":true,"validator":false})"};
  // A validation round that needs one validator: only "v" validates
  // (it also proves v's stream is open before the training round).
  auto val = f.start_round({{"round_id", "v1"},
                            {"session_id", "s1"},
                            {"model_id", "m0"},
                            {"task", "validation"},
                            {"round_timeout", "30"},
                            {"clients_required", "1"}});
  auto vt = v.next(60s);
  REQUIRE(vt);
  CHECK(vt->type() == fedn::MODEL_VALIDATION);
  CHECK(f.send_validation(client("v"), *vt, R"({"test_accuracy": 0.5})")
        == "accepted");
  REQUIRE(val.wait_for(60s) == std::future_status::ready);
  auto [vst, vresp] = val.get();
  REQUIRE_MESSAGE(vst.ok(), vst.error_message());
  CHECK(f.parameters(vresp)["status"] == "success");
  CHECK(nlohmann::json::parse(f.parameters(vresp)["clients_selected"])
        == nlohmann::json({"v"}));
  // A training round with room for every client: only "t" is asked.
  auto train = f.start_round({{"round_id", "1"},
                              {"session_id", "s1"},
                              {"model_id", "m0"},
                              {"round_timeout", "30"},
                              {"clients_required", "1"},
                              {"max_clients", "10"}});
  auto task = f.expect_training_task(t, "t", "m0");
  REQUIRE(f.upload("update-t", npz(4, 3.0)).ok());
  CHECK(f.send_update("t", task, "update-t", f.fedn_meta(10)) == "accepted");
  REQUIRE(train.wait_for(60s) == std::future_status::ready);
  auto [st, resp] = train.get();
  REQUIRE_MESSAGE(st.ok(), st.error_message());
  auto p = f.parameters(resp);
  CHECK(p["status"] == "success");
  CHECK(nlohmann::json::parse(p["clients_selected"])
        == nlohmann::json({"t"}));
  CHECK(p["nr_expected_updates"] == "1");
  CHECK(!v.next(0s));
}

TEST_CASE("edge: a second combiner cannot take a port that is in use") {
  edge_fixture f;
  gateway::combiner_edge second{*f.sys, f.combiner, f.models, f.state,
                                default_edge_config()};
  auto p = second.start("127.0.0.1", f.port);
  REQUIRE(!p);
  CHECK(p.error() == ec::invalid_config);
  CHECK(render(p.error()).find("cannot listen on 127.0.0.1:"
                                + std::to_string(f.port))
        != std::string::npos);
  second.stop();
  // The first one still serves.
  grpc::ClientContext ctx;
  set_deadline(ctx, 10s);
  fedn::ConnectionRequest req;
  fedn::ConnectionResponse resp;
  auto status = f.connector->AcceptingClients(&ctx, req, &resp);
  CHECK(status.ok());
}
