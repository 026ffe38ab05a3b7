// bench_round_overhead: the combiner's own cost per round and per client,
// in process, on CAF's real threaded scheduler.
//
// For each client count K (default 1, 100 and 10 000 in turn) a fresh
// combiner (combiner_impl with its default combiner_config) runs over a
// fresh RocksDB database, and K mock clients drive it the way the gRPC edge
// would:
//
// 1. RSS per idle session. K clients connect (client_info -> session) and
//    send one heartbeat; the driver then asks every session for its record
//    and waits for all K answers, so every session exists, has handled its
//    heartbeat (armed its liveness timer, told the combiner it is active),
//    and no task stream is open. VmRSS of /proc/self/status is read before
//    (after malloc_trim, so freed memory of an earlier K does not hide the
//    growth) and after; the difference divided by K is the figure. It
//    includes everything a session costs: the session actor, its pending
//    timer, the combiner's entry. K = 1 is below page granularity (noise).
// 2. Rounds. K mock clients (event-based task sinks) open their task
//    streams. Before each round the driver writes K identical small update
//    models (--params float32 values) to the model store under per-round
//    ids, so the clients' uploads are NOT part of any measured time (a real
//    client uploads before it sends its ModelUpdate). The driver pushes a
//    training round with buffer_size = clients_required = max_clients = K.
//    A mock client answers its task at once by handing its model_update to
//    one "edge" actor (the gRPC edge's stand-in), which requests the
//    combiner's verdict and is also the round's reporter. The edge runs
//    detached (its own thread), so it stamps (steady_clock) the arrival of
//    the last accepted verdict and of the terminal record without waiting
//    in a scheduler queue behind the round that produced them.
//    - close latency (the measure and target): from the round
//      taking the buffer_size-th accepted update (the aggregator has folded
//      it and replied; the round closes in that same handler) to the new
//      model stored (the aggregator's reply that the model is committed),
//      by the round's own clock: its record's time_combination minus
//      time_exec_training (both count from the tasks going out; FEDn's
//      names). It covers the round's request to the aggregator, finishing
//      the aggregate, encoding it, the synced model write and the reply.
//    - recorded latency: from the last accepted verdict's arrival at the
//      edge to the terminal record's arrival there (both stamped by the
//      edge's steady_clock). It adds persisting the job and round record
//      (one synced write of every client list: ~280 KB at 10 000 clients;
//      the queue reports only what is recorded) and the report. The
//      round's per-client housekeeping (sessions forget unanswered tasks;
//      its updates are removed: delete_models_storage, the default;
//      --keep-updates turns it off) starts once the record is reported, so
//      it is in neither figure; it overlaps the next round's unmeasured
//      uploads and can still slow the edge on a busy 2-core machine. With
//      10 000 verdicts to handle the edge can lag: a sample comes out near
//      0 when the last verdict's stamp lags, far above the median when the
//      record's does.
//    - round time: push request sent -> terminal record arrived.
//    Each round starts from the model the previous one produced. Median and
//    p99 (nearest rank) are over --rounds rounds.
//
// Every wait is bounded by --timeout; on a timeout or any failure the
// benchmark stops with a message and exit code 1. The database lives under
// --dir: /dev/shm (RAM) by default when it exists, since with a disk the
// combiner's synced RocksDB writes (one fsync each: 7 ms on the 2-core
// reference VM's ext4) dominate and the benchmark would measure the disk.
//
// Output: figures per K, each block ending in a line of key=value pairs
//   clients=K close_ms_median=.. close_ms_p99=.. recorded_ms_median=..
//   recorded_ms_p99=.. round_s=.. rss_kib_per_session=..   (one line)
// (round_s is the median round time); the last line is the last K's.
// Targets (from the issue): close_ms_median <= 2; rss_kib_per_session <= 20
// at 10 000 sessions.

#include "actors/combiner.hpp"
#include "actors/type_ids.hpp"
#include "messages/error.hpp"
#include "model/npz.hpp"
#include "model/tensor.hpp"
#include "storage/database.hpp"
#include "storage/model_store.hpp"
#include "storage/state_store.hpp"

#include <caf/actor_cast.hpp>
#include <caf/actor_system.hpp>
#include <caf/actor_system_config.hpp>
#include <caf/after.hpp>
#include <caf/scoped_actor.hpp>
#include <caf/stateful_actor.hpp>
#include <caf/typed_event_based_actor.hpp>

#include <CLI/CLI.hpp>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <malloc.h>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

using namespace rondo;
namespace fs = std::filesystem;

namespace {

using clock_type = std::chrono::steady_clock;

struct options {
  /// Client counts to run, in order.
  std::vector<int64_t> clients{1, 100, 10000};
  /// Rounds per client count; 0: 20 for K <= 100, else 5.
  int rounds = 0;
  /// float32 values of the model.
  int64_t params = 100;
  /// Bound on every single wait, seconds.
  double timeout_s = 60;
  /// Parent of the temporary database directory.
  std::string dir;
  /// Sets delete_models_storage = false (default: true, as FEDn's).
  bool keep_updates = false;
};

/// steady_clock now, in nanoseconds (sent between actors as an int64_t).
int64_t now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             clock_type::now().time_since_epoch())
      .count();
}

double ms_between(int64_t from_ns, int64_t to_ns) {
  return static_cast<double>(to_ns - from_ns) / 1e6;
}

/// VmRSS of this process in KiB.
double rss_kib() {
  std::ifstream in{"/proc/self/status"};
  std::string line;
  while (std::getline(in, line))
    if (line.rfind("VmRSS:", 0) == 0)
      return std::stod(line.substr(6));
  throw std::runtime_error("no VmRSS in /proc/self/status");
}

/// Nearest-rank percentile (0 < p <= 1) of a non-empty sample.
double percentile(std::vector<double> xs, double p) {
  std::sort(xs.begin(), xs.end());
  auto rank = static_cast<size_t>(std::ceil(p * xs.size()));
  return xs[std::max<size_t>(rank, 1) - 1];
}

/// The id a mock client's update of a round is stored under.
std::string update_id(const std::string &round_id,
                      const std::string &client_id) {
  return "update-" + round_id + "-" + client_id;
}

/// A model of one float32 tensor of `params` values, as npz bytes.
std::string small_model(int64_t params, double value) {
  auto t = make_tensor("0", dtype::f32, {static_cast<uint64_t>(params)},
                       std::vector<double>(params, value));
  if (!t)
    throw std::runtime_error("make_tensor: " + render(t.error()));
  model m;
  m.push_back(std::move(*t));
  auto bytes = write_npz_bytes(m);
  if (!bytes)
    throw std::runtime_error("write_npz_bytes: " + render(bytes.error()));
  return std::move(*bytes);
}

/// The driver: gets, per round, the round's terminal record, the number of
/// accepted updates, the steady_clock times (ns) the last accepted verdict
/// and the record arrived at the edge, and the first rejection's reason
/// (empty if none). Bench-only, so not in actors/actors.hpp.
using round_timing_actor = caf::typed_actor<
    caf::reacts_to<round_record, int64_t, int64_t, int64_t, std::string>>;

/// Stands for the gRPC edge: sends every client's model update to the
/// combiner; the driver pushes rounds with it as their reporter.
/// - model_update: forward; stamp the verdict's arrival.
/// - round_record: the terminal one: stamp it; send the round's timing to
///   the driver; reset (a progress record, status running, is skipped).
using edge_actor = caf::typed_actor<caf::reacts_to<model_update>,
                                    caf::reacts_to<round_record>>;

struct edge_state {
  static inline constexpr const char *name = "bench-edge";
  int64_t accepted = 0;
  int64_t last_accepted_ns = 0;
  std::string first_rejection;
};

/// Spawned detached: a verdict or record wakes the edge's own thread at
/// once, so both ends of the close latency are stamped by one thread that
/// does nothing else, instead of in a scheduler queue behind the round
/// that produced them (stamped in mock clients on the scheduler, the last
/// verdict could arrive after the record).
edge_actor::behavior_type edge(edge_actor::stateful_pointer<edge_state> self,
                               combiner_actor combiner,
                               round_timing_actor driver,
                               caf::timespan timeout) {
  return {
      [=](model_update &u) {
        auto rejected = [self](std::string reason) {
          if (self->state.first_rejection.empty())
            self->state.first_rejection = std::move(reason);
        };
        self->request(combiner, timeout, std::move(u))
            .then(
                [=](update_verdict &v) {
                  auto t = now_ns();
                  if (!v.accepted)
                    return rejected(std::move(v.reason));
                  self->state.last_accepted_ns = t;
                  ++self->state.accepted;
                },
                [=](caf::error &err) { rejected(render(err)); });
      },
      [=](round_record &rec) {
        // The round's progress (its tasks are out), not its end.
        if (rec.status == round_status::running)
          return;
        auto t = now_ns();
        auto &st = self->state;
        self->send(driver, std::move(rec), st.accepted, st.last_accepted_ns, t,
                   std::move(st.first_rejection));
        st = edge_state{};
      },
  };
}

/// A mock client's end of its task stream: answers every task at once with
/// the update the driver stored for it.
task_sink_actor::behavior_type mock_client(task_sink_actor::pointer self,
                                           std::string client_id,
                                           edge_actor edge) {
  return {
      [=](const client_task &task) {
        self->send(
            edge, model_update{client_id, task.correlation_id, task.model_id,
                               update_id(task.round_id, client_id), 1.0, "{}"});
      },
  };
}

/// A fresh directory under `parent`, removed with the object.
class temp_dir {
public:
  explicit temp_dir(const std::string &parent) {
    std::random_device rd;
    for (;;) {
      path_ =
          (fs::path{parent} / ("rondo-bench-" + std::to_string(rd()))).string();
      if (fs::create_directories(path_))
        break;
    }
  }
  ~temp_dir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  temp_dir(const temp_dir &) = delete;
  temp_dir &operator=(const temp_dir &) = delete;

  const std::string &str() const {
    return path_;
  }

private:
  std::string path_;
};

/// What one round measured.
struct round_sample {
  double close_ms = 0;
  double recorded_ms = 0;
  double round_s = 0;
  double upload_s = 0;
};

caf::actor_system_config &registered(caf::actor_system_config &cfg) {
  register_actor_types(cfg);
  return cfg;
}

/// One combiner with K clients over a fresh database; the destructor stops
/// every actor it spawned before the actor system goes away.
class combiner_bench {
public:
  combiner_bench(const options &opts, int64_t clients)
      : opts_(opts), clients_(clients),
        bound_(std::chrono::duration_cast<caf::timespan>(
            std::chrono::duration<double>(opts.timeout_s))),
        dir_(opts.dir), sys_(registered(cfg_)), self_(sys_) {
    auto db = storage::database::open(dir_.str());
    if (!db)
      throw std::runtime_error(render(db.error()));
    auto models = storage::model_store::open(*db);
    auto state = storage::state_store::open(*db);
    if (!models || !state)
      throw std::runtime_error("cannot open the stores in " + dir_.str());
    models_ = *models;
    update_bytes_ = small_model(opts.params, 1.0);
    model_id_ = "m0";
    put(model_id_, small_model(opts.params, 0.0));
    combiner_ = sys_.spawn(combiner_impl, combiner_config{}, models_, *state,
                           model_source_actor{});
    for (int64_t i = 0; i < clients_; ++i)
      client_ids_.push_back("client-" + std::to_string(i));
  }

  ~combiner_bench() {
    self_->send_exit(combiner_, caf::exit_reason::user_shutdown);
    for (auto &m : mocks_)
      self_->send_exit(m, caf::exit_reason::user_shutdown);
    if (edge_)
      self_->send_exit(edge_, caf::exit_reason::user_shutdown);
  }

  combiner_bench(const combiner_bench &) = delete;
  combiner_bench &operator=(const combiner_bench &) = delete;

  const std::string &dir() const {
    return dir_.str();
  }

  /// Connects every client with one heartbeat and no task stream; returns
  /// the RSS growth per session in KiB.
  double connect_idle_sessions() {
    malloc_trim(0);
    auto before = rss_kib();
    {
      using connect_handle =
          decltype(self_->request(combiner_, bound_, client_info{}));
      std::vector<connect_handle> connecting;
      for (auto &id : client_ids_)
        connecting.push_back(self_->request(combiner_, bound_,
                                            client_info{id, id, true, false}));
      for (auto &rh : connecting)
        rh.receive([&](client_session_actor &s) { sessions_.push_back(s); },
                   [&](caf::error &err) { note("connecting", err); });
      check();
      using record_handle =
          decltype(self_->request(sessions_[0], bound_, caf::get_atom::value));
      std::vector<record_handle> asking;
      for (auto &s : sessions_) {
        self_->send(s, heartbeat_atom::value);
        asking.push_back(self_->request(s, bound_, caf::get_atom::value));
      }
      for (auto &rh : asking)
        rh.receive(
            [&](client_record &r) {
              if (r.status != "online")
                note("client " + r.client_id + " after its heartbeat",
                     "status " + r.status);
            },
            [&](caf::error &err) { note("asking a session", err); });
      check();
    }
    auto after = rss_kib();
    return (after - before) / static_cast<double>(clients_);
  }

  /// Spawns a mock client per session and opens its task stream. The open
  /// reaches each session before any task: the push that leads to the
  /// tasks is sent after it.
  void open_streams() {
    edge_ = sys_.spawn<caf::detached>(
        edge, combiner_, caf::actor_cast<round_timing_actor>(self_), bound_);
    for (size_t i = 0; i < sessions_.size(); ++i) {
      mocks_.push_back(sys_.spawn(mock_client, client_ids_[i], edge_));
      self_->send(sessions_[i], caf::open_atom::value, mocks_.back());
    }
  }

  /// Runs round `index` (1-based) from the current model.
  round_sample run_round(int index) {
    round_sample out;
    auto round_id = std::to_string(index);
    auto t0 = clock_type::now();
    for (auto &id : client_ids_)
      put(update_id(round_id, id), update_bytes_);
    out.upload_s =
        std::chrono::duration<double>(clock_type::now() - t0).count();
    round_config c;
    c.round_id = round_id;
    c.session_id = "bench";
    c.model_id = model_id_;
    c.round_timeout = opts_.timeout_s;
    c.buffer_size = clients_;
    c.clients_required = clients_;
    c.clients_requested = clients_;
    c.max_clients = clients_;
    c.delete_models_storage = !opts_.keep_updates;
    auto pushed = now_ns();
    self_->request(combiner_, bound_, std::move(c), round_report_actor{edge_})
        .receive([](std::string &) {},
                 [&](caf::error &err) { note("pushing the round", err); });
    check();
    round_record rec;
    int64_t accepted = 0;
    int64_t last_accepted = 0;
    int64_t reported = 0;
    std::string rejection;
    self_->receive(
        [&](round_record &r, int64_t n, int64_t last, int64_t at,
            std::string &why) {
          rec = std::move(r);
          accepted = n;
          last_accepted = last;
          reported = at;
          rejection = std::move(why);
        },
        caf::after(bound_) >>
            [&] {
              note("round " + round_id,
                   "no record after " + std::to_string(opts_.timeout_s) + " s");
            });
    check();
    if (!rejection.empty())
      throw std::runtime_error("round " + round_id +
                               ": an update was rejected: " + rejection);
    if (rec.status != round_status::success || accepted != clients_ ||
        rec.nr_aggregated_models != clients_)
      throw std::runtime_error("round " + round_id + " did not aggregate " +
                               std::to_string(clients_) + " updates (" +
                               std::to_string(accepted) +
                               " accepted): " + rec.reason);
    model_id_ = rec.model_id;
    // The round's own clock: time_exec_training ends when the round took
    // the buffer_size-th accepted update and closed; time_combination
    // ends when the aggregator replied that the new model is stored.
    out.close_ms = (rec.time_combination - rec.time_exec_training) * 1e3;
    out.recorded_ms = ms_between(last_accepted, reported);
    out.round_s = ms_between(pushed, reported) / 1e3;
    return out;
  }

private:
  // Failures inside a CAF receive are noted and thrown after it returns
  // (never thrown through CAF); the first one wins.
  void note(const std::string &what, const std::string &why) {
    if (error_.empty())
      error_ = what + ": " + why;
  }

  void note(const std::string &what, const caf::error &err) {
    note(what, render(err));
  }

  void check() {
    if (!error_.empty())
      throw std::runtime_error(error_);
  }

  void put(const std::string &id, const std::string &bytes) {
    if (auto info = models_->put(id, bytes); !info)
      throw std::runtime_error("storing " + id + ": " + render(info.error()));
  }

  const options &opts_;
  int64_t clients_;
  caf::timespan bound_;
  temp_dir dir_;
  caf::actor_system_config cfg_;
  caf::actor_system sys_;
  caf::scoped_actor self_;
  std::shared_ptr<storage::model_store> models_;
  std::string update_bytes_;
  std::string model_id_;
  combiner_actor combiner_;
  std::vector<std::string> client_ids_;
  std::vector<client_session_actor> sessions_;
  edge_actor edge_;
  std::vector<task_sink_actor> mocks_;
  std::string error_;
};

/// Runs every round for K clients and prints its block of figures.
void run(const options &opts, int64_t clients) {
  int rounds = opts.rounds > 0 ? opts.rounds : (clients <= 100 ? 20 : 5);
  combiner_bench bench{opts, clients};
  std::printf("== %lld clients, %d rounds, %lld float32 params, database in "
              "%s\n",
              static_cast<long long>(clients), rounds,
              static_cast<long long>(opts.params), bench.dir().c_str());
  auto t0 = clock_type::now();
  auto rss = bench.connect_idle_sessions();
  auto connect_s = std::chrono::duration<double>(clock_type::now() - t0);
  std::printf("idle sessions: %lld connected in %.3f s, %.2f KiB RSS per "
              "session (target <= 20 KiB at 10000)\n",
              static_cast<long long>(clients), connect_s.count(), rss);
  bench.open_streams();
  std::vector<double> close_ms;
  std::vector<double> recorded_ms;
  std::vector<double> round_s;
  std::vector<double> upload_s;
  for (int r = 1; r <= rounds; ++r) {
    auto s = bench.run_round(r);
    close_ms.push_back(s.close_ms);
    recorded_ms.push_back(s.recorded_ms);
    round_s.push_back(s.round_s);
    upload_s.push_back(s.upload_s);
  }
  auto close_median = percentile(close_ms, 0.5);
  auto close_p99 = percentile(close_ms, 0.99);
  auto round_median = percentile(round_s, 0.5);
  auto recorded_median = percentile(recorded_ms, 0.5);
  auto recorded_p99 = percentile(recorded_ms, 0.99);
  std::printf("close latency, last accepted update -> new model stored: "
              "median %.3f ms, p99 %.3f ms, min %.3f ms (target median <= "
              "2 ms): %s\n",
              close_median, close_p99, percentile(close_ms, 0),
              close_median <= 2.0 ? "met" : "MISSED");
  std::printf("last accepted update -> round recorded (synced) and "
              "reported: median %.3f ms, p99 %.3f ms, min %.3f ms\n",
              recorded_median, recorded_p99, percentile(recorded_ms, 0));
  std::printf("round time: median %.4f s, p99 %.4f s, min %.4f s\n",
              round_median, percentile(round_s, 0.99), percentile(round_s, 0));
  std::printf("update uploads before each round (not measured): median "
              "%.4f s for %lld models\n",
              percentile(upload_s, 0.5), static_cast<long long>(clients));
  std::printf("clients=%lld close_ms_median=%.3f close_ms_p99=%.3f "
              "recorded_ms_median=%.3f recorded_ms_p99=%.3f round_s=%.4f "
              "rss_kib_per_session=%.2f\n",
              static_cast<long long>(clients), close_median, close_p99,
              recorded_median, recorded_p99, round_median, rss);
  std::fflush(stdout);
}

} // namespace

int main(int argc, char **argv) {
  options opts;
  opts.dir =
      fs::exists("/dev/shm") ? "/dev/shm" : fs::temp_directory_path().string();
  int64_t single = 0;
  CLI::App app{"Combiner overhead per round and per idle client session"};
  app.add_option("--clients", single,
                 "run only this many clients (default: 1, 100, 10000)")
      ->check(CLI::PositiveNumber);
  app.add_option("--rounds", opts.rounds,
                 "rounds per client count (default 20 for <= 100 clients, "
                 "else 5)")
      ->check(CLI::PositiveNumber);
  app.add_option("--params", opts.params, "float32 values of the model")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  app.add_option("--timeout", opts.timeout_s, "bound on every wait, seconds")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  app.add_option("--dir", opts.dir, "where the temporary database goes")
      ->capture_default_str()
      ->check(CLI::ExistingDirectory);
  app.add_flag("--keep-updates", opts.keep_updates,
               "keep the rounds' model updates (delete_models_storage = "
               "false) to see what removing them costs");
  CLI11_PARSE(app, argc, argv);
  if (single > 0)
    opts.clients = {single};
  try {
    for (auto k : opts.clients)
      run(opts, k);
  } catch (const std::exception &e) {
    std::fprintf(stderr, "bench_round_overhead: %s\n", e.what());
    return 1;
  }
  return 0;
}
