// When a client leaves its combiner (client_config::reassign_after_s and
// reassign_on_drain): the decision itself, and fedn_client::run against a
// small in-process gRPC combiner that goes away or says it is draining.

#include "client/fedn_client.hpp"
#include "client/stop_source.hpp"

#include "messages/error.hpp"

#include "fedn.grpc.pb.h"
#include "fedn.pb.h"

#include <doctest/doctest.h>
#include <grpcpp/grpcpp.h>

#include <chrono>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>

using namespace rondo;
using namespace rondo::client;

namespace {

using steady = std::chrono::steady_clock;

double seconds_since(steady::time_point t0) {
  return std::chrono::duration<double>(steady::now() - t0).count();
}

/// A combiner that answers heartbeats and either keeps each TaskStream
/// open (sending nothing) until `close` or refuses it as a drained
/// combiner does.
class fake_combiner final : public fedn::Combiner::Service,
                            public fedn::Connector::Service {
public:
  explicit fake_combiner(bool draining) : draining_(draining) {
    grpc::ServerBuilder builder;
    builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(),
                             &port_);
    builder.RegisterService(static_cast<fedn::Combiner::Service*>(this));
    builder.RegisterService(static_cast<fedn::Connector::Service*>(this));
    server_ = builder.BuildAndStart();
  }

  ~fake_combiner() override {
    close();
  }

  uint16_t port() const {
    return static_cast<uint16_t>(port_);
  }

  /// Ends the open streams and stops serving (the combiner is gone).
  void close() {
    {
      std::lock_guard<std::mutex> guard{mtx_};
      if (closed_)
        return;
      closed_ = true;
    }
    cv_.notify_all();
    server_->Shutdown(std::chrono::system_clock::now()
                      + std::chrono::seconds{5});
  }

  /// Waits (at most `timeout`) until `n` TaskStreams were opened.
  bool wait_streams(int n, std::chrono::seconds timeout) {
    std::unique_lock<std::mutex> lock{mtx_};
    return cv_.wait_for(lock, timeout, [&] { return streams_ >= n; });
  }

  int streams() {
    std::lock_guard<std::mutex> guard{mtx_};
    return streams_;
  }

  int heartbeats() {
    std::lock_guard<std::mutex> guard{mtx_};
    return heartbeats_;
  }

  grpc::Status TaskStream(grpc::ServerContext* ctx,
                          const fedn::ClientAvailableMessage*,
                          grpc::ServerWriter<fedn::TaskRequest>*) override {
    std::unique_lock<std::mutex> lock{mtx_};
    ++streams_;
    cv_.notify_all();
    if (draining_)
      return {grpc::StatusCode::UNAVAILABLE,
              "combiner test-combiner is draining; ask the controller for "
              "another combiner"};
    // Open until the combiner closes or the client cancels (bounded).
    auto deadline = steady::now() + std::chrono::seconds{60};
    while (!closed_ && !ctx->IsCancelled() && steady::now() < deadline)
      cv_.wait_for(lock, std::chrono::milliseconds{50});
    return {grpc::StatusCode::UNAVAILABLE, "combiner shutting down"};
  }

  grpc::Status SendHeartbeat(grpc::ServerContext*, const fedn::Heartbeat*,
                             fedn::Response*) override {
    std::lock_guard<std::mutex> guard{mtx_};
    ++heartbeats_;
    return grpc::Status::OK;
  }

private:
  bool draining_;
  int port_ = 0;
  std::unique_ptr<grpc::Server> server_;
  std::mutex mtx_;
  std::condition_variable cv_;
  bool closed_ = false;
  int streams_ = 0;
  int heartbeats_ = 0;
};

client_config config_for(uint16_t port) {
  client_config cfg;
  cfg.name = "client-1";
  cfg.client_id = "0b7e6c3a-0000-4000-8000-00000000000a";
  cfg.port = port;
  cfg.heartbeat_interval_s = 0.2;
  cfg.backoff_initial_s = 0.1;
  cfg.backoff_max_s = 0.2;
  return cfg;
}

/// Runs a client in a thread; its stop is requested `stop_after` after
/// start at the latest, so `result` always returns.
class running_client {
public:
  running_client(client_config cfg, std::chrono::seconds stop_after)
    : client_(std::move(cfg), compute_package{}, stop_) {
    thread_ = std::thread{[this, stop_after] {
      std::thread watchdog{[this, stop_after] {
        if (!done_.wait_for(stop_after))
          stop_.request_stop();
      }};
      outcome_ = client_.run();
      done_.request_stop();
      watchdog.join();
    }};
  }

  ~running_client() {
    stop_.request_stop();
    if (thread_.joinable())
      thread_.join();
  }

  /// Whether run has returned.
  bool finished() const {
    return done_.stop_requested();
  }

  /// Waits for run's result.
  caf::expected<run_outcome>& result() {
    if (thread_.joinable())
      thread_.join();
    return *outcome_;
  }

  /// Requests stop (as a signal does).
  void stop() {
    stop_.request_stop();
  }

private:
  stop_source stop_;
  stop_source done_;
  fedn_client client_;
  std::optional<caf::expected<run_outcome>> outcome_;
  std::thread thread_;
};

} // namespace

TEST_CASE("client reassign: a combiner silent for reassign_after is "
          "unreachable") {
  reachability r{10, 100};
  CHECK(!r.unreachable(100));
  CHECK(!r.unreachable(109.9));
  CHECK(r.unreachable(110));
  CHECK(r.silent_for(112) == doctest::Approx(12));
  // A heartbeat that succeeds is contact: the count starts again.
  r.heartbeat_ok(111);
  CHECK(!r.unreachable(120.5));
  CHECK(r.unreachable(121));
}

TEST_CASE("client reassign: an open task stream keeps the combiner "
          "reachable without heartbeats") {
  reachability r{10, 0};
  r.stream_open(true, 1);
  CHECK(r.silent_for(50) == 0);
  CHECK(!r.unreachable(50));
  // Seen closed at 60: the silence counts from there.
  r.stream_open(false, 60);
  CHECK(!r.unreachable(69));
  CHECK(r.unreachable(70));
}

TEST_CASE("client reassign: reassign_after 0 never leaves") {
  reachability r{0, 0};
  CHECK(!r.unreachable(1e9));
}

TEST_CASE("client reassign: only UNAVAILABLE saying 'is draining' is a "
          "drain") {
  auto unavailable = static_cast<int>(grpc::StatusCode::UNAVAILABLE);
  CHECK(is_drain_refusal(unavailable, "combiner A is draining"));
  CHECK(!is_drain_refusal(unavailable, "failed to connect to all addresses; "
                                       "Connection refused"));
  CHECK(!is_drain_refusal(static_cast<int>(grpc::StatusCode::CANCELLED),
                          "combiner A is draining"));
  CHECK(!is_drain_refusal(0, ""));
}

TEST_CASE("client reassign: reassign_after must exceed the heartbeat "
          "interval") {
  auto cfg = config_for(12080);
  cfg.heartbeat_interval_s = 2;
  cfg.reassign_after_s = 2;
  auto err = validate(cfg);
  REQUIRE(err);
  CHECK(err == ec::invalid_config);
  CHECK(render(err).find("reassign-after") != std::string::npos);
  CHECK(render(err).find("heartbeat interval") != std::string::npos);
  cfg.reassign_after_s = -1;
  CHECK(validate(cfg) == ec::invalid_config);
  cfg.reassign_after_s = 0;
  CHECK(!validate(cfg));
  cfg.reassign_after_s = 10;
  CHECK(!validate(cfg));
}

TEST_CASE("client reassign: run leaves a combiner that went away after "
          "reassign_after") {
  auto combiner = std::make_unique<fake_combiner>(false);
  auto cfg = config_for(combiner->port());
  cfg.reassign_after_s = 1.5;
  running_client client{cfg, std::chrono::seconds{30}};
  REQUIRE(combiner->wait_streams(1, std::chrono::seconds{10}));
  // Connected (stream open, heartbeats answered) for longer than
  // reassign_after: the client stays.
  std::this_thread::sleep_for(std::chrono::milliseconds{2500});
  CHECK(!client.finished());
  CHECK(combiner->heartbeats() >= 5);
  auto gone = steady::now();
  combiner.reset();
  auto& outcome = client.result();
  auto took = seconds_since(gone);
  REQUIRE(outcome);
  CHECK(outcome->end == run_end::unreachable);
  CHECK(outcome->leave());
  CHECK(outcome->detail.find("no heartbeat succeeded") != std::string::npos);
  // 1.5 s of silence, found by a heartbeat (every 0.2 s, each failing
  // fast against a closed port).
  CHECK(took >= 1.5);
  CHECK(took < 6);
}

TEST_CASE("client reassign: without reassign_after the client keeps "
          "retrying a combiner that went away") {
  auto combiner = std::make_unique<fake_combiner>(false);
  auto cfg = config_for(combiner->port());
  running_client client{cfg, std::chrono::seconds{30}};
  REQUIRE(combiner->wait_streams(1, std::chrono::seconds{10}));
  combiner.reset();
  std::this_thread::sleep_for(std::chrono::seconds{3});
  CHECK(!client.finished());
  client.stop();
  auto& outcome = client.result();
  REQUIRE(outcome);
  CHECK(outcome->end == run_end::stopped);
}

TEST_CASE("client reassign: run leaves a draining combiner at once") {
  fake_combiner combiner{true};
  auto cfg = config_for(combiner.port());
  cfg.reassign_on_drain = true;
  auto t0 = steady::now();
  running_client client{cfg, std::chrono::seconds{30}};
  auto& outcome = client.result();
  REQUIRE(outcome);
  CHECK(outcome->end == run_end::draining);
  CHECK(outcome->detail.find("is draining") != std::string::npos);
  CHECK(combiner.streams() == 1);
  CHECK(seconds_since(t0) < 5);
}

TEST_CASE("client reassign: without reassign_on_drain a draining "
          "combiner's refusal is retried") {
  fake_combiner combiner{true};
  auto cfg = config_for(combiner.port());
  running_client client{cfg, std::chrono::seconds{30}};
  REQUIRE(combiner.wait_streams(3, std::chrono::seconds{10}));
  CHECK(!client.finished());
  client.stop();
  auto& outcome = client.result();
  REQUIRE(outcome);
  CHECK(outcome->end == run_end::stopped);
}
