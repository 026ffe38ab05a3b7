#include "client/fedn_client.hpp"

#include "client/runner.hpp"
#include "client/stop_source.hpp"
#include "messages/error.hpp"
#include "messages/ids.hpp"

#include "fedn.grpc.pb.h"
#include "fedn.pb.h"

#include <google/protobuf/util/time_util.h>
#include <grpcpp/grpcpp.h>
#include <spdlog/spdlog.h>

#include <stdlib.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <mutex>
#include <optional>
#include <set>
#include <sstream>
#include <thread>

namespace rondo::client {

namespace {

namespace fs = std::filesystem;
using steady = std::chrono::steady_clock;

double seconds_since(steady::time_point t0) {
  return std::chrono::duration<double>(steady::now() - t0).count();
}

std::chrono::nanoseconds to_duration(double s) {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
    std::chrono::duration<double>(s));
}

std::string describe(const grpc::Status& st) {
  static const char* names[] = {
    "OK",          "CANCELLED",           "UNKNOWN",
    "INVALID_ARGUMENT", "DEADLINE_EXCEEDED", "NOT_FOUND",
    "ALREADY_EXISTS",   "PERMISSION_DENIED", "RESOURCE_EXHAUSTED",
    "FAILED_PRECONDITION", "ABORTED",      "OUT_OF_RANGE",
    "UNIMPLEMENTED", "INTERNAL",           "UNAVAILABLE",
    "DATA_LOSS",   "UNAUTHENTICATED"};
  auto code = static_cast<int>(st.error_code());
  std::string out = code >= 0 && code <= 16 ? names[code]
                                            : "code " + std::to_string(code);
  if (!st.error_message().empty())
    out += " (" + st.error_message() + ")";
  return out;
}

const char* task_kind(fedn::StatusType type) {
  switch (type) {
    case fedn::MODEL_UPDATE: return "training";
    case fedn::MODEL_VALIDATION: return "validation";
    case fedn::MODEL_PREDICTION: return "prediction";
    default: return "unsupported";
  }
}

caf::expected<std::string> read_file(const fs::path& path) {
  std::ifstream in{path, std::ios::binary};
  if (!in)
    return caf::make_error(ec::not_found, path.string() + " does not exist");
  std::stringstream buf;
  buf << in.rdbuf();
  return buf.str();
}

caf::error write_file(const fs::path& path, const std::string& text) {
  std::ofstream out{path, std::ios::binary | std::ios::trunc};
  out << text;
  out.close();
  if (!out)
    return caf::make_error(ec::storage_error,
                           "cannot write " + path.string());
  return caf::none;
}

/// One temporary directory per task, removed on destruction.
class task_dir {
public:
  static caf::expected<std::unique_ptr<task_dir>>
  make(const fs::path& parent) {
    std::error_code err;
    auto base = parent.empty() ? fs::temp_directory_path(err) : parent;
    if (err)
      base = "/tmp";
    auto tmpl = (base / "rondo-task-XXXXXX").string();
    if (::mkdtemp(tmpl.data()) == nullptr)
      return caf::make_error(ec::storage_error,
                             "cannot create a task directory in " +
                               base.string() + ": " + std::strerror(errno));
    return std::unique_ptr<task_dir>{new task_dir(tmpl)};
  }
  ~task_dir() {
    std::error_code err;
    fs::remove_all(path_, err);
    if (err)
      spdlog::warn("cannot remove task directory {}: {}", path_.string(),
                   err.message());
  }
  task_dir(const task_dir&) = delete;
  task_dir& operator=(const task_dir&) = delete;
  const fs::path& path() const {
    return path_;
  }

private:
  explicit task_dir(fs::path p) : path_(std::move(p)) {
  }
  fs::path path_;
};

} // namespace

bool uses_tls(const client_config& cfg) {
  return cfg.tls || !cfg.tls_ca_pem.empty() || !cfg.tls_cert_pem.empty();
}

caf::error validate(const client_config& cfg) {
  auto bad = [](const std::string& what) {
    return caf::make_error(ec::invalid_config, what);
  };
  if (cfg.name.empty())
    return bad("client name must not be empty");
  if (cfg.client_id.empty())
    return bad("client id must not be empty");
  if (cfg.host.empty())
    return bad("combiner host must not be empty");
  if (cfg.port == 0)
    return bad("combiner port must be > 0");
  if (!(cfg.task_timeout_s > 0))
    return bad("task timeout must be > 0 s");
  if (!(cfg.kill_grace_s >= 0))
    return bad("kill grace must be >= 0 s");
  if (!(cfg.heartbeat_interval_s > 0))
    return bad("heartbeat interval must be > 0 s");
  if (!(cfg.backoff_initial_s > 0) || !(cfg.backoff_max_s >= cfg.backoff_initial_s))
    return bad("reconnect back-off must satisfy 0 < initial <= max");
  if (!(cfg.rpc_timeout_s > 0) || !(cfg.transfer_timeout_s > 0))
    return bad("call timeouts must be > 0 s");
  if (!(cfg.unknown_model_wait_s >= 0))
    return bad("unknown-model wait must be >= 0 s");
  if (cfg.chunk_bytes == 0)
    return bad("chunk size must be > 0");
  if (!(cfg.reassign_after_s >= 0) || !std::isfinite(cfg.reassign_after_s))
    return bad("reassign-after must be >= 0 s (0: never)");
  if (cfg.reassign_after_s > 0
      && !(cfg.reassign_after_s > cfg.heartbeat_interval_s)) {
    char text[160];
    std::snprintf(text, sizeof text,
                  "reassign-after (%g s) must be > the heartbeat interval "
                  "(%g s): failed heartbeats are what shows the combiner "
                  "unreachable",
                  cfg.reassign_after_s, cfg.heartbeat_interval_s);
    return bad(text);
  }
  if (cfg.tls_cert_pem.empty() != cfg.tls_key_pem.empty())
    return bad("a client certificate needs its key (--cert with --key)");
  if (cfg.auth_scheme.empty() || cfg.auth_scheme.find(' ') != std::string::npos)
    return bad("the auth scheme must be one word");
  if (cfg.token.find_first_of(" \r\n") != std::string::npos)
    return bad("the token must not contain spaces or line breaks");
  return caf::none;
}

bool is_drain_refusal(int status_code, const std::string& message) {
  return status_code == static_cast<int>(grpc::StatusCode::UNAVAILABLE)
         && message.find("is draining") != std::string::npos;
}

reachability::reachability(double reassign_after_s, double now)
  : reassign_after_s_(reassign_after_s), last_contact_(now) {
}

void reachability::heartbeat_ok(double now) {
  last_contact_ = std::max(last_contact_, now);
}

void reachability::stream_open(bool open, double now) {
  // A stream seen closed was open at some moment since it was last seen
  // open; `now` bounds that moment.
  if (open || stream_open_)
    last_contact_ = std::max(last_contact_, now);
  stream_open_ = open;
}

double reachability::silent_for(double now) const {
  return stream_open_ ? 0.0 : std::max(0.0, now - last_contact_);
}

bool reachability::unreachable(double now) const {
  return reassign_after_s_ > 0 && silent_for(now) >= reassign_after_s_;
}

const char* to_string(run_end end) {
  switch (end) {
    case run_end::stopped: return "stopped";
    case run_end::unreachable: return "unreachable";
    case run_end::draining: return "draining";
  }
  return "unknown";
}

struct fedn_client::impl {
  client_config cfg;
  compute_package pkg;
  stop_source& external_stop;
  /// Requested by `external_stop` or when `run` ends; every wait, call and
  /// entry-point run observes it.
  stop_source halt;
  /// A gRPC channel to the combiner and its stubs.
  struct link {
    std::shared_ptr<grpc::Channel> channel;
    std::unique_ptr<fedn::Combiner::Stub> combiner;
    std::unique_ptr<fedn::Connector::Stub> connector;
    std::unique_ptr<fedn::ModelService::Stub> models;
  };
  /// Guards `link_`.
  std::mutex link_mtx;
  /// The current channel: `connect` replaces it before each reconnect
  /// attempt; a call uses the one current when it starts (`current()`).
  std::shared_ptr<const link> link_;
  fedn::Client self;
  std::string target;
  std::atomic<uint64_t> tasks{0};
  /// Calls in flight, cancelled when `halt` is requested.
  std::mutex calls_mtx;
  std::set<grpc::ClientContext*> calls;
  /// The first call the combiner refused for the token (UNAUTHENTICATED or
  /// PERMISSION_DENIED): `run` stops and returns it.
  std::mutex refusal_mtx;
  std::optional<std::pair<std::string, grpc::Status>> refusal;
  /// When `run` began; `clock()` counts from here.
  steady::time_point started = steady::now();
  /// Whether the TaskStream call runs (set by `serve_stream`).
  std::atomic<bool> in_stream{false};
  /// Guards `reach`, `last_failure` and `leaving`.
  std::mutex reach_mtx;
  reachability reach;
  /// The last failed call's status, for the reason of leaving.
  std::string last_failure;
  /// Set once the client decided to leave the combiner; `run` returns it.
  std::optional<run_outcome> leaving;

  impl(client_config c, compute_package p, stop_source& stop)
    : cfg(std::move(c)),
      pkg(std::move(p)),
      external_stop(stop),
      reach(cfg.reassign_after_s, 0.0) {
    self.set_role(fedn::CLIENT);
    self.set_name(cfg.name);
    self.set_client_id(cfg.client_id);
    target = cfg.host.find(':') != std::string::npos && cfg.host[0] != '['
               ? "[" + cfg.host + "]"
               : cfg.host;
    target += ":" + std::to_string(cfg.port);
  }

  /// A ClientContext with the `client` metadata and an optional deadline,
  /// registered for cancellation while it lives.
  class call {
  public:
    call(impl& owner, std::optional<double> deadline_s) : owner_(owner) {
      ctx.AddMetadata("client", owner_.cfg.client_id);
      if (!owner_.cfg.token.empty())
        ctx.AddMetadata("authorization",
                        owner_.cfg.auth_scheme + " " + owner_.cfg.token);
      if (deadline_s)
        ctx.set_deadline(std::chrono::system_clock::now()
                         + to_duration(*deadline_s));
      {
        std::lock_guard<std::mutex> guard{owner_.calls_mtx};
        owner_.calls.insert(&ctx);
      }
      if (owner_.halt.stop_requested())
        ctx.TryCancel();
    }
    ~call() {
      std::lock_guard<std::mutex> guard{owner_.calls_mtx};
      owner_.calls.erase(&ctx);
    }
    call(const call&) = delete;
    call& operator=(const call&) = delete;
    grpc::ClientContext ctx;

  private:
    impl& owner_;
  };

  /// `describe(st)` and, for failures a setting explains, what to check.
  std::string explain(const grpc::Status& st) const {
    auto text = describe(st);
    auto says = [&st](const char* what) {
      return st.error_message().find(what) != std::string::npos;
    };
    // Refused tokens (UNAUTHENTICATED, PERMISSION_DENIED) never get here:
    // `refused` stops the client with refusal_error's explanation.
    if (st.error_code() != grpc::StatusCode::UNAVAILABLE)
      return text;
    if (says("Connection refused"))
      text += "; is the combiner running and listening on this port?";
    else if (says("replaced by a newer task stream"))
      text += "; another process is connected with this client id "
              "(--client-id, or --name with a token naming a client): each "
              "running client needs its own id";
    else if (says("is not in peer certificate"))
      text += "; the combiner's certificate does not name the host this "
              "client connects to (--host " + cfg.host + "): it must list "
              "that host (rondo certs issue DIR NAME --host " + cfg.host + ")";
    else if (!uses_tls(cfg))
      text += "; if the combiner serves TLS, this plaintext client is "
              "refused at the handshake: pass --ca FILE";
    else
      text += "; if the TLS handshake failed: --ca must be the CA that "
              "signed the combiner's certificate (for --host), and a "
              "combiner requiring client certificates needs --cert and "
              "--key";
    return text;
  }

  /// When `st` refuses the token (UNAUTHENTICATED or PERMISSION_DENIED, on
  /// any call and at any time, e.g. a token that expired while connected):
  /// remembers the first such refusal and stops the client, since retrying
  /// with the same token cannot help. @returns whether `st` was one.
  bool refused(const grpc::Status& st, const std::string& what) {
    auto code = st.error_code();
    if (code != grpc::StatusCode::UNAUTHENTICATED
        && code != grpc::StatusCode::PERMISSION_DENIED)
      return false;
    {
      std::lock_guard<std::mutex> guard{refusal_mtx};
      if (!refusal)
        refusal.emplace(what, st);
    }
    halt.request_stop();
    return true;
  }

  /// The error `run` returns for `refusal`; none when there was none.
  caf::error refusal_error() {
    std::lock_guard<std::mutex> guard{refusal_mtx};
    if (!refusal)
      return caf::none;
    auto& [what, st] = *refusal;
    auto denied = st.error_code() == grpc::StatusCode::PERMISSION_DENIED;
    std::string text = "the combiner " + target + " refused this client's "
                       + "token (" + what + "): " + describe(st);
    if (denied)
      text += "; the token's role or client does not allow this (a token "
              "naming a client acts only as that client id: --client-id)";
    else if (cfg.token.empty())
      text += "; the combiner requires a token: pass --token or "
              "--token-file";
    else
      text += "; get a new token (rondo token create; check it with rondo "
              "token verify) and check --auth-scheme";
    return caf::make_error(denied ? ec::permission_denied
                                  : ec::unauthenticated,
                           std::move(text));
  }

  /// Seconds since `started`.
  double clock() const {
    return seconds_since(started);
  }

  /// Decides to leave the combiner (the first decision wins): `run` stops
  /// serving it (a running entry point too) and returns `why`.
  void leave(run_end why, std::string detail) {
    {
      std::lock_guard<std::mutex> guard{reach_mtx};
      if (leaving || halt.stop_requested())
        return;
      leaving = run_outcome{why, detail};
    }
    spdlog::warn("leaving combiner {} ({}): {}", target, to_string(why),
                 detail);
    halt.request_stop();
  }

  /// Records a heartbeat's result and whether a task stream is open now;
  /// leaves the combiner once `reach` says it is unreachable.
  /// @returns whether the client leaves.
  bool note_heartbeat(const grpc::Status& st) {
    auto now = clock();
    // The TaskStream call runs on a connected channel: the stream is open
    // (a refused one ends at once and is seen closed at the next check).
    auto open = in_stream.load()
                && current()->channel->GetState(false) == GRPC_CHANNEL_READY;
    std::string detail;
    {
      std::lock_guard<std::mutex> guard{reach_mtx};
      if (st.ok())
        reach.heartbeat_ok(now);
      else
        last_failure = "heartbeat failed: " + describe(st);
      reach.stream_open(open, now);
      if (!reach.unreachable(now))
        return false;
      char text[96];
      std::snprintf(text, sizeof text,
                    "%.1f s (reassign after %g s)", reach.silent_for(now),
                    cfg.reassign_after_s);
      detail = std::string{"no heartbeat succeeded and no task stream was "
                           "open for "}
               + text + "; last: " + last_failure;
    }
    leave(run_end::unreachable, std::move(detail));
    return true;
  }

  void cancel_calls() {
    std::lock_guard<std::mutex> guard{calls_mtx};
    for (auto* ctx : calls)
      ctx->TryCancel();
  }

  /// The current channel and stubs (see `connect`).
  std::shared_ptr<const link> current() {
    std::lock_guard<std::mutex> guard{link_mtx};
    return link_;
  }

  /// Makes a new channel the current one. `run` calls it at start and
  /// before each reconnect attempt, as a new client process would: an old
  /// TLS channel to a combiner that was killed and restarted kept failing
  /// its handshakes for minutes (seen: 30 s to over 4 min after the
  /// restart), while a new channel connected at once.
  void connect() {
    grpc::ChannelArguments args;
    args.SetInt(GRPC_ARG_KEEPALIVE_TIME_MS, 5000);
    args.SetInt(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, 10000);
    args.SetInt(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
    args.SetInt(GRPC_ARG_HTTP2_MAX_PINGS_WITHOUT_DATA, 0);
    args.SetMaxReceiveMessageSize(8 << 20);
    // A channel of its own: it shares no subchannel, and so no connection
    // or reconnect back-off, with an earlier channel (to this combiner or
    // to the one the client left).
    args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
    // gRPC's own reconnect back-off (within one channel) follows ours.
    auto initial_ms = static_cast<int>(cfg.backoff_initial_s * 1000);
    args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, initial_ms);
    args.SetInt(GRPC_ARG_MIN_RECONNECT_BACKOFF_MS, initial_ms);
    args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS,
                static_cast<int>(cfg.backoff_max_s * 1000));
    std::shared_ptr<grpc::ChannelCredentials> creds;
    if (uses_tls(cfg)) {
      grpc::SslCredentialsOptions opts;
      opts.pem_root_certs = cfg.tls_ca_pem;
      opts.pem_private_key = cfg.tls_key_pem;
      opts.pem_cert_chain = cfg.tls_cert_pem;
      creds = grpc::SslCredentials(opts);
    } else {
      creds = grpc::InsecureChannelCredentials();
    }
    auto fresh = std::make_shared<link>();
    fresh->channel = grpc::CreateCustomChannel(target, creds, args);
    fresh->combiner = fedn::Combiner::NewStub(fresh->channel);
    fresh->connector = fedn::Connector::NewStub(fresh->channel);
    fresh->models = fedn::ModelService::NewStub(fresh->channel);
    std::lock_guard<std::mutex> guard{link_mtx};
    link_ = std::move(fresh);
  }

  // -- heartbeats ------------------------------------------------------------

  void heartbeat_loop() {
    std::optional<bool> reachable; // unknown until the first heartbeat
    do {
      fedn::Heartbeat hb;
      *hb.mutable_sender() = self;
      fedn::Response resp;
      grpc::Status st;
      {
        call c{*this, std::min(cfg.rpc_timeout_s,
                               std::max(cfg.heartbeat_interval_s, 5.0))};
        st = current()->connector->SendHeartbeat(&c.ctx, hb, &resp);
      }
      if (halt.stop_requested() || refused(st, "heartbeat"))
        break;
      if (st.ok() && reachable != true)
        spdlog::info("connected to combiner {} as '{}' (client id {})",
                     target, cfg.name, cfg.client_id);
      else if (!st.ok() && reachable != false)
        spdlog::warn("combiner {} unreachable: heartbeat failed: {}", target,
                     explain(st));
      reachable = st.ok();
      if (note_heartbeat(st))
        break;
    } while (!halt.wait_for(to_duration(cfg.heartbeat_interval_s)));
  }

  // -- status ----------------------------------------------------------------

  void send_status(fedn::LogLevel level, const std::string& text,
                   const fedn::TaskRequest& task) {
    fedn::Status s;
    *s.mutable_sender() = self;
    s.set_status(to_valid_utf8(text));
    s.set_log_level(level);
    s.set_data(task.data());
    s.set_correlation_id(task.correlation_id());
    *s.mutable_timestamp() = google::protobuf::util::TimeUtil::GetCurrentTime();
    s.set_type(task.type());
    s.set_session_id(task.session_id());
    fedn::Response resp;
    call c{*this, cfg.rpc_timeout_s};
    auto st = current()->connector->SendStatus(&c.ctx, s, &resp);
    if (!st.ok() && !refused(st, "status") && !halt.stop_requested())
      spdlog::warn("SendStatus for task {} failed: {}", task.correlation_id(),
                   describe(st));
  }

  // -- model transfer --------------------------------------------------------

  /// Downloads model `model_id` into `to`; returns seconds.
  caf::expected<double> download(const std::string& model_id,
                                 const fs::path& to) {
    auto t0 = steady::now();
    std::ofstream out{to, std::ios::binary | std::ios::trunc};
    if (!out)
      return caf::make_error(ec::storage_error,
                             "cannot create " + to.string());
    fedn::ModelRequest req;
    *req.mutable_sender() = self;
    req.set_id(model_id);
    call c{*this, cfg.transfer_timeout_s};
    auto l = current();
    auto reader = l->models->Download(&c.ctx, req);
    fedn::ModelResponse part;
    bool complete = false;
    std::string failure;
    uint64_t bytes = 0;
    while (reader->Read(&part)) {
      auto status = part.status();
      if (status == fedn::IN_PROGRESS || status == fedn::IN_PROGRESS_OK
          || status == fedn::OK) {
        out.write(part.data().data(),
                  static_cast<std::streamsize>(part.data().size()));
        bytes += part.data().size();
        if (status == fedn::OK) {
          complete = true;
          break;
        }
      } else if (status == fedn::FAILED) {
        failure = "combiner has no model " + model_id;
        if (!part.message().empty())
          failure += ": " + part.message();
        break;
      } else if (status == fedn::UNKNOWN) {
        if (seconds_since(t0) >= cfg.unknown_model_wait_s) {
          failure = "model " + model_id + " still not available after " +
                    std::to_string(cfg.unknown_model_wait_s) + " s";
          break;
        }
      }
    }
    if (complete || !failure.empty())
      c.ctx.TryCancel(); // we stop reading; do not wait for the stream end
    auto st = reader->Finish();
    refused(st, "download");
    if (!failure.empty())
      return caf::make_error(ec::not_found, failure);
    if (!complete) {
      if (halt.stop_requested())
        return caf::make_error(ec::terminated, "download cancelled");
      return caf::make_error(ec::unspecified,
                             "download of model " + model_id + " failed: " +
                               (st.ok() ? std::string{"stream ended "
                                                      "without OK"}
                                        : describe(st)));
    }
    out.close();
    if (!out)
      return caf::make_error(ec::storage_error,
                             "cannot write " + to.string());
    auto secs = seconds_since(t0);
    spdlog::debug("downloaded model {} ({} bytes) in {:.3f} s", model_id,
                  bytes, secs);
    return secs;
  }

  /// Uploads the file `from` as model `id`; returns seconds.
  caf::expected<double> upload(const fs::path& from, const std::string& id) {
    auto t0 = steady::now();
    std::ifstream in{from, std::ios::binary};
    if (!in)
      return caf::make_error(ec::not_found, from.string() + " does not exist");
    fedn::ModelResponse resp;
    call c{*this, cfg.transfer_timeout_s};
    auto l = current();
    auto writer = l->models->Upload(&c.ctx, &resp);
    fedn::ModelRequest req;
    *req.mutable_sender() = self;
    req.set_id(id);
    std::string buf(cfg.chunk_bytes, '\0');
    bool broken = false;
    while (!broken) {
      in.read(buf.data(), static_cast<std::streamsize>(buf.size()));
      auto n = static_cast<size_t>(in.gcount());
      if (n == 0)
        break;
      req.set_data(buf.data(), n);
      req.set_status(fedn::IN_PROGRESS);
      broken = !writer->Write(req);
    }
    if (!broken && in.bad())
      return caf::make_error(ec::storage_error,
                             "cannot read " + from.string());
    if (!broken) {
      req.clear_data();
      req.set_status(fedn::OK);
      broken = !writer->Write(req);
    }
    if (!broken)
      writer->WritesDone();
    auto st = writer->Finish();
    if (!st.ok()) {
      if (refused(st, "upload") || halt.stop_requested())
        return caf::make_error(ec::terminated, "upload cancelled");
      return caf::make_error(ec::unspecified, "upload of model update " + id +
                                                " failed: " + describe(st));
    }
    if (resp.status() != fedn::OK)
      return caf::make_error(ec::unspecified,
                             "combiner did not store model update " + id +
                               " (status " +
                               fedn::ModelStatus_Name(resp.status()) +
                               (resp.message().empty()
                                  ? std::string{}
                                  : ": " + resp.message()) +
                               ")");
    return seconds_since(t0);
  }

  // -- tasks -----------------------------------------------------------------

  run_options entry_options() {
    run_options o;
    o.timeout_s = cfg.task_timeout_s;
    o.kill_grace_s = cfg.kill_grace_s;
    o.stop = &halt;
    return o;
  }

  caf::error train(const fedn::TaskRequest& task, steady::time_point t0) {
    auto data = parse_task_data(task.data(), true);
    if (!data)
      return data.error();
    auto dir = task_dir::make(cfg.work_dir);
    if (!dir)
      return dir.error();
    auto in = (*dir)->path() / "in.npz";
    auto out = (*dir)->path() / "out.npz";
    auto meta_in = fs::path{in.string() + "-metadata"};
    auto meta_out = fs::path{out.string() + "-metadata"};
    training_timings timings;
    auto fetched = download(task.model_id(), in);
    if (!fetched)
      return fetched.error();
    timings.fetch_model = *fetched;
    if (auto err = write_file(meta_in, data->client_settings))
      return err;
    auto trained = run_entry_point(pkg, entry_point_names::train,
                                   {in.string(), out.string()},
                                   entry_options());
    if (!trained)
      return trained.error();
    timings.exec_training = *trained;
    std::error_code fs_err;
    if (!fs::is_regular_file(out, fs_err) || fs::file_size(out, fs_err) == 0)
      return caf::make_error(ec::invalid_argument,
                             "train wrote no output model at " + out.string());
    auto md_text = read_file(meta_out);
    if (!md_text)
      return caf::make_error(ec::invalid_argument,
                             "train wrote no valid num_examples: " +
                               meta_out.string() + " does not exist");
    auto md = parse_training_metadata(*md_text, meta_out.string());
    if (!md)
      return md.error();
    auto update_id = new_id();
    auto uploaded = upload(out, update_id);
    if (!uploaded)
      return uploaded.error();
    timings.upload_model = *uploaded;
    timings.processing_time = seconds_since(t0);
    fedn::ModelUpdate update;
    *update.mutable_sender() = self;
    *update.mutable_receiver() = task.sender();
    update.set_model_id(task.model_id());
    update.set_model_update_id(update_id);
    update.set_correlation_id(task.correlation_id());
    update.set_timestamp(iso_timestamp(std::chrono::system_clock::now()));
    update.set_meta(make_model_update_meta(*md, task.data(), timings));
    fedn::Response resp;
    call c{*this, cfg.rpc_timeout_s};
    auto st = current()->combiner->SendModelUpdate(&c.ctx, update, &resp);
    refused(st, "model update");
    if (!st.ok())
      return caf::make_error(ec::unspecified,
                             "SendModelUpdate failed: " + describe(st));
    spdlog::info("round {}: model update {} sent (num_examples {}, fetch "
                 "{:.2f} s, train {:.2f} s, upload {:.2f} s); combiner: {}",
                 data->round_id, update_id, md->num_examples,
                 timings.fetch_model, timings.exec_training,
                 timings.upload_model, resp.response());
    return caf::none;
  }

  /// Download, run `entry` in -> out, return out's text.
  caf::expected<std::string> run_on_model(const fedn::TaskRequest& task,
                                          const char* entry,
                                          fs::path& out_name) {
    auto dir = task_dir::make(cfg.work_dir);
    if (!dir)
      return dir.error();
    auto in = (*dir)->path() / "in.npz";
    auto out = (*dir)->path() / "out.json";
    out_name = out;
    auto fetched = download(task.model_id(), in);
    if (!fetched)
      return fetched.error();
    auto ran = run_entry_point(pkg, entry, {in.string(), out.string()},
                               entry_options());
    if (!ran)
      return ran.error();
    auto text = read_file(out);
    if (!text)
      return caf::make_error(ec::invalid_argument, std::string{entry} +
                                                     " wrote no output at " +
                                                     out.string());
    return text;
  }

  caf::error validate_model(const fedn::TaskRequest& task) {
    fs::path out;
    auto text = run_on_model(task, entry_point_names::validate, out);
    if (!text)
      return text.error();
    auto metrics = parse_metrics(*text, out.string());
    if (!metrics)
      return metrics.error();
    fedn::ModelValidation v;
    *v.mutable_sender() = self;
    *v.mutable_receiver() = task.sender();
    v.set_model_id(task.model_id());
    v.set_data(*metrics);
    v.set_correlation_id(task.correlation_id());
    *v.mutable_timestamp() = google::protobuf::util::TimeUtil::GetCurrentTime();
    v.set_session_id(task.session_id());
    fedn::Response resp;
    call c{*this, cfg.rpc_timeout_s};
    auto st = current()->combiner->SendModelValidation(&c.ctx, v, &resp);
    refused(st, "validation");
    if (!st.ok())
      return caf::make_error(ec::unspecified,
                             "SendModelValidation failed: " + describe(st));
    spdlog::info("validation of model {} sent: {}", task.model_id(),
                 *metrics);
    return caf::none;
  }

  caf::error predict(const fedn::TaskRequest& task) {
    if (pkg.find(entry_point_names::predict) == nullptr)
      return caf::make_error(ec::invalid_config,
                             "fedn.yaml has no 'predict' entry point");
    fs::path out;
    auto text = run_on_model(task, entry_point_names::predict, out);
    if (!text)
      return text.error();
    auto prediction = parse_prediction(*text, out.string());
    if (!prediction)
      return prediction.error();
    fedn::ModelPrediction p;
    *p.mutable_sender() = self;
    *p.mutable_receiver() = task.sender();
    p.set_model_id(task.model_id());
    p.set_data(*prediction);
    p.set_correlation_id(task.correlation_id());
    *p.mutable_timestamp() = google::protobuf::util::TimeUtil::GetCurrentTime();
    p.set_prediction_id(task.session_id());
    fedn::Response resp;
    call c{*this, cfg.rpc_timeout_s};
    auto st = current()->combiner->SendModelPrediction(&c.ctx, p, &resp);
    refused(st, "prediction");
    if (!st.ok())
      return caf::make_error(ec::unspecified,
                             "SendModelPrediction failed: " + describe(st));
    spdlog::info("prediction with model {} sent", task.model_id());
    return caf::none;
  }

  void handle_task(const fedn::TaskRequest& task) {
    auto t0 = steady::now();
    auto kind = task_kind(task.type());
    spdlog::info("task {} ({}, model {}, session {}) received",
                 task.correlation_id(), kind, task.model_id(),
                 task.session_id());
    send_status(fedn::INFO, std::string{kind} + " task received", task);
    caf::error err;
    switch (task.type()) {
      case fedn::MODEL_UPDATE:
        err = cfg.roles.trainer
                ? train(task, t0)
                : caf::make_error(ec::invalid_state,
                                  "this client is not a trainer");
        break;
      case fedn::MODEL_VALIDATION:
        err = cfg.roles.validator
                ? validate_model(task)
                : caf::make_error(ec::invalid_state,
                                  "this client is not a validator");
        break;
      case fedn::MODEL_PREDICTION:
        err = predict(task);
        break;
      default:
        err = caf::make_error(ec::invalid_argument,
                              "unsupported task type " +
                                fedn::StatusType_Name(task.type()));
    }
    auto secs = seconds_since(t0);
    if (err && halt.stop_requested()) {
      // Stopping or leaving the combiner: nothing is sent for the task
      // (its status call would be cancelled too).
      spdlog::warn("task {} ({}) abandoned after {:.2f} s: the client is "
                   "stopping or leaving combiner {} ({})",
                   task.correlation_id(), kind, secs, target, render(err));
      return;
    }
    if (err) {
      auto text = std::string{kind} + " task failed: " + render(err);
      spdlog::error("task {} failed after {:.2f} s: {}", task.correlation_id(),
                    secs, render(err));
      send_status(fedn::ERROR, text, task);
    } else {
      spdlog::info("task {} ({}) done in {:.2f} s", task.correlation_id(), kind,
                   secs);
      send_status(fedn::INFO, std::string{kind} + " task done", task);
    }
  }

  // -- the task stream -------------------------------------------------------

  struct stream_outcome {
    /// Delivered a task or stayed open long enough: reset the back-off.
    bool progress = false;
    /// max_tasks reached.
    bool done = false;
    grpc::Status status;
  };

  stream_outcome serve_stream() {
    stream_outcome result;
    auto opened = steady::now();
    fedn::ClientAvailableMessage hello;
    *hello.mutable_sender() = self;
    hello.set_data(make_roles_json(cfg.roles));
    hello.set_timestamp(iso_timestamp(std::chrono::system_clock::now()));
    call c{*this, std::nullopt};
    in_stream = true;
    auto l = current();
    auto reader = l->combiner->TaskStream(&c.ctx, hello);
    fedn::TaskRequest task;
    bool stopped_early = false;
    while (reader->Read(&task)) {
      result.progress = true;
      handle_task(task);
      auto n = ++tasks;
      if (cfg.max_tasks > 0 && n >= cfg.max_tasks) {
        spdlog::info("handled {} task(s): --max-tasks reached", n);
        result.done = true;
      }
      if (result.done || halt.stop_requested()) {
        stopped_early = true;
        break;
      }
    }
    if (stopped_early)
      c.ctx.TryCancel();
    result.status = reader->Finish();
    in_stream = false;
    if (seconds_since(opened) >= cfg.stable_stream_s)
      result.progress = true;
    return result;
  }

  caf::expected<run_outcome> run() {
    if (auto err = validate(cfg))
      return err;
    started = steady::now();
    stop_callback link{external_stop, [this] { halt.request_stop(); }};
    stop_callback cancel{halt, [this] { cancel_calls(); }};
    connect();
    spdlog::info("client '{}' (id {}) serving {}{} for combiner {} ({}{}); "
                 "package {}",
                 cfg.name, cfg.client_id, cfg.roles.trainer ? "training " : "",
                 cfg.roles.validator ? "validation" : "", target,
                 uses_tls(cfg) ? (cfg.tls_cert_pem.empty() ? "TLS" : "mutual TLS")
                            : "plaintext",
                 cfg.token.empty() ? "" : ", with a token", pkg.dir.string());
    std::thread heartbeats{[this] { heartbeat_loop(); }};
    auto backoff = cfg.backoff_initial_s;
    for (bool first = true; !halt.stop_requested(); first = false) {
      if (!first)
        connect();
      auto outcome = serve_stream();
      if (outcome.done || halt.stop_requested())
        break;
      if (refused(outcome.status, "task stream"))
        break;
      if (cfg.reassign_on_drain
          && is_drain_refusal(static_cast<int>(outcome.status.error_code()),
                              outcome.status.error_message())) {
        leave(run_end::draining,
              "the task stream ended: " + describe(outcome.status));
        break;
      }
      if (!outcome.status.ok()) {
        std::lock_guard<std::mutex> guard{reach_mtx};
        last_failure = "task stream ended: " + describe(outcome.status);
      }
      if (outcome.progress)
        backoff = cfg.backoff_initial_s;
      spdlog::warn("task stream to {} ended: {}; reconnecting in {:.1f} s",
                   target, explain(outcome.status), backoff);
      if (halt.wait_for(to_duration(backoff)))
        break;
      backoff = std::min(backoff * 2, cfg.backoff_max_s);
    }
    halt.request_stop();
    heartbeats.join();
    if (auto err = refusal_error())
      return err;
    {
      std::lock_guard<std::mutex> guard{reach_mtx};
      if (leaving)
        return *leaving;
    }
    spdlog::info("client '{}' stopped after {} task(s) from combiner {}",
                 cfg.name, tasks.load(), target);
    return run_outcome{};
  }
};

fedn_client::fedn_client(client_config cfg, compute_package pkg,
                         stop_source& stop)
  : impl_(std::make_unique<impl>(std::move(cfg), std::move(pkg), stop)) {
}

fedn_client::~fedn_client() = default;

caf::expected<run_outcome> fedn_client::run() {
  return impl_->run();
}

uint64_t fedn_client::tasks_handled() const {
  return impl_->tasks.load();
}

} // namespace rondo::client
