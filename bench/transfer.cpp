// bench_transfer: model upload and download throughput over loopback through
// a real `rondo combiner` process (FEDn's ModelService, 1 MiB chunks), and
// the combiner's memory: its peak RSS (VmHWM) and its RSS after each
// transfer, to show that a transfer does not hold the model in memory.
//
// Usage: bench_transfer [--size-mib 1024] [--reps 2] [--rondo PATH]
//                       [--dir DIR] [--chunk-kib 1024] [--sync-uploads]
// Each repetition uploads a new model of --size-mib MiB (incompressible
// bytes) and downloads it back, verifying size and XXH3-64 checksum. The
// reported rates are the best of the repetitions; RSS figures are read from
// /proc/<combiner pid>/status, the combiner's CPU time per step from
// /proc/<pid>/stat (on a shared machine the rates are bounded by the CPU
// time the combiner gets; cpu_s_per_gb is not). After each repetition a
// `disk` row shows what the disk itself does in the combiner's folder
// (bench/disk_baseline.hpp: O_DIRECT writes and one fdatasync, as the store
// writes a large model, then O_DIRECT reads): an upload, which is durable
// when it returns, cannot beat it. Last line:
//   upload_gbps=… download_gbps=… peak_rss_mb=… disk_write_gbps=…
//   disk_read_gbps=…
// (GB = 1e9 bytes; the best of the repetitions).

#include "bench/disk_baseline.hpp"
#include "fedn.grpc.pb.h"
#include "fedn.pb.h"

#include <CLI/CLI.hpp>

#include <grpcpp/channel.h>
#include <grpcpp/client_context.h>
#include <grpcpp/create_channel.h>
#include <grpcpp/security/credentials.h>

#include <xxhash.h>

#include <fcntl.h>
#include <malloc.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

extern char** environ;

namespace fs = std::filesystem;

namespace {

using clock_type = std::chrono::steady_clock;

/// Seconds from `t0` to now.
double seconds_since(clock_type::time_point t0) {
  return std::chrono::duration<double>(clock_type::now() - t0).count();
}

/// Prints `what` and exits with status 1.
[[noreturn]] void die(const std::string& what) {
  std::cerr << "bench_transfer: " << what << "\n";
  std::exit(1);
}

/// A `kB` line of /proc/<pid>/status (VmHWM, VmRSS) in MiB; -1 if absent.
double proc_status_mib(pid_t pid, const std::string& key) {
  std::ifstream in{"/proc/" + std::to_string(pid) + "/status"};
  std::string line;
  while (std::getline(in, line))
    if (line.rfind(key + ":", 0) == 0) {
      std::istringstream fields{line.substr(key.size() + 1)};
      double kib = 0;
      fields >> kib;
      return kib / 1024.0;
    }
  return -1;
}

/// CPU seconds (user + system) the process has used so far; -1 if unknown.
double proc_cpu_seconds(pid_t pid) {
  std::ifstream in{"/proc/" + std::to_string(pid) + "/stat"};
  std::string line;
  if (!std::getline(in, line))
    return -1;
  // Fields after the command name (which may hold spaces) in parentheses:
  // state is field 3, utime and stime are fields 14 and 15.
  auto close = line.rfind(')');
  if (close == std::string::npos)
    return -1;
  std::istringstream fields{line.substr(close + 2)};
  std::string field;
  double utime = 0;
  double stime = 0;
  for (int i = 3; i <= 15 && fields >> field; ++i) {
    if (i == 14)
      utime = std::stod(field);
    else if (i == 15)
      stime = std::stod(field);
  }
  return (utime + stime) / static_cast<double>(sysconf(_SC_CLK_TCK));
}

/// The combiner process under test, stopped (SIGTERM) on destruction.
class combiner_process {
public:
  /// `sync_uploads`: start it with --sync-uploads.
  combiner_process(const std::string& rondo, const fs::path& dir,
                   bool sync_uploads) {
    auto port_file = dir / "combiner.port";
    auto log = dir / "combiner.log";
    std::vector<std::string> args{rondo,
                                  "combiner",
                                  "--host",
                                  "127.0.0.1",
                                  "--port",
                                  "0",
                                  "--db",
                                  (dir / "db").string(),
                                  "--name",
                                  "bench-combiner",
                                  "--max-model-bytes",
                                  std::to_string(uint64_t{1} << 40),
                                  "--port-file",
                                  port_file.string(),
                                  "--log-level",
                                  "warn"};
    if (sync_uploads)
      args.emplace_back("--sync-uploads");
    std::vector<char*> argv;
    for (auto& a : args)
      argv.push_back(a.data());
    argv.push_back(nullptr);
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_addopen(&actions, 1, log.c_str(),
                                     O_WRONLY | O_CREAT | O_TRUNC, 0644);
    posix_spawn_file_actions_adddup2(&actions, 1, 2);
    auto rc = posix_spawn(&pid_, rondo.c_str(), &actions, nullptr,
                          argv.data(), environ);
    posix_spawn_file_actions_destroy(&actions);
    if (rc != 0)
      die("cannot start " + rondo + ": " + std::strerror(rc));
    // The combiner writes the port file once it listens (bounded wait).
    auto t0 = clock_type::now();
    while (seconds_since(t0) < 30) {
      int status = 0;
      if (waitpid(pid_, &status, WNOHANG) == pid_) {
        pid_ = -1;
        die("the combiner exited at start; see " + log.string());
      }
      std::ifstream in{port_file};
      if (in >> port_ && port_ > 0)
        return;
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    die("the combiner wrote no port file within 30 s; see " + log.string());
  }

  ~combiner_process() {
    if (pid_ <= 0)
      return;
    kill(pid_, SIGTERM);
    int status = 0;
    waitpid(pid_, &status, 0);
  }

  combiner_process(const combiner_process&) = delete;
  combiner_process& operator=(const combiner_process&) = delete;

  /// The combiner's process id.
  pid_t pid() const {
    return pid_;
  }

  /// The port the combiner listens on (127.0.0.1).
  int port() const {
    return port_;
  }

private:
  pid_t pid_ = -1;
  int port_ = 0;
};

/// `count` distinct blocks of incompressible bytes; a model is these
/// blocks in turn.
std::vector<std::string> make_blocks(size_t count, size_t bytes) {
  std::vector<std::string> blocks(count, std::string(bytes, '\0'));
  std::mt19937_64 gen{42};
  for (auto& b : blocks)
    for (size_t i = 0; i + 8 <= b.size(); i += 8) {
      auto x = gen();
      std::memcpy(b.data() + i, &x, 8);
    }
  return blocks;
}

/// One upload or download as measured by the client.
struct transfer {
  /// Wall time from the call's start to its final status.
  double seconds = 0;
  /// Model bytes moved (the chunks' data).
  uint64_t bytes = 0;
  /// XXH3-64 of those bytes in order.
  uint64_t checksum = 0;
};

/// Uploads `chunks` chunks (the `blocks` in turn) as model `id`, as a FEDn
/// client does: IN_PROGRESS chunks, then the OK terminator. Exits on error.
transfer upload(fedn::ModelService::Stub& stub, const std::string& id,
                const std::vector<std::string>& blocks, size_t chunks) {
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now()
                   + std::chrono::minutes(10));
  ctx.AddMetadata("client", "bench");
  fedn::ModelResponse response;
  auto h = XXH3_createState();
  XXH3_64bits_reset(h);
  transfer t;
  auto t0 = clock_type::now();
  auto writer = stub.Upload(&ctx, &response);
  fedn::ModelRequest req;
  req.set_id(id);
  req.set_status(fedn::IN_PROGRESS);
  bool ok = true;
  for (size_t i = 0; ok && i < chunks; ++i) {
    auto& block = blocks[i % blocks.size()];
    XXH3_64bits_update(h, block.data(), block.size());
    req.set_data(block);
    ok = writer->Write(req);
    t.bytes += block.size();
  }
  if (ok) {
    fedn::ModelRequest end;
    end.set_id(id);
    end.set_status(fedn::OK);
    writer->Write(end);
  }
  writer->WritesDone();
  auto st = writer->Finish();
  t.seconds = seconds_since(t0);
  t.checksum = XXH3_64bits_digest(h);
  XXH3_freeState(h);
  if (!st.ok() || response.status() != fedn::OK)
    die("upload of " + id + " failed: " + st.error_message() + " "
        + response.message());
  return t;
}

/// Downloads model `id` to nowhere, hashing it. Exits on error.
transfer download(fedn::ModelService::Stub& stub, const std::string& id) {
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now()
                   + std::chrono::minutes(10));
  ctx.AddMetadata("client", "bench");
  fedn::ModelRequest req;
  req.set_id(id);
  auto h = XXH3_createState();
  XXH3_64bits_reset(h);
  transfer t;
  bool done = false;
  auto t0 = clock_type::now();
  auto reader = stub.Download(&ctx, req);
  fedn::ModelResponse m;
  while (reader->Read(&m)) {
    if (m.status() == fedn::IN_PROGRESS) {
      XXH3_64bits_update(h, m.data().data(), m.data().size());
      t.bytes += m.data().size();
    } else if (m.status() == fedn::OK) {
      done = true;
    } else {
      die("download of " + id + " failed: " + m.message());
    }
  }
  auto st = reader->Finish();
  t.seconds = seconds_since(t0);
  t.checksum = XXH3_64bits_digest(h);
  XXH3_freeState(h);
  if (!st.ok() || !done)
    die("download of " + id + " did not complete: " + st.error_message());
  return t;
}

} // namespace

int main(int argc, char** argv) {
  CLI::App app{"Model upload/download throughput through a rondo combiner "
               "process over loopback, and the combiner's RSS"};
  size_t size_mib = 1024;
  size_t reps = 2;
  size_t chunk_kib = 1024;
  std::string rondo = RONDO_BINARY_DIR "/apps/rondo";
  std::string dir_arg;
  bool sync_uploads = false;
  app.add_option("--size-mib", size_mib, "Model size in MiB")
    ->capture_default_str()
    ->check(CLI::PositiveNumber);
  app.add_option("--reps", reps, "Upload+download repetitions (new model "
                                 "each)")
    ->capture_default_str()
    ->check(CLI::PositiveNumber);
  app.add_option("--chunk-kib", chunk_kib,
                 "Upload chunk size in KiB (FEDn: 1024)")
    ->capture_default_str()
    ->check(CLI::Range(1, 4096));
  app.add_option("--rondo", rondo, "The rondo executable")
    ->capture_default_str();
  app.add_option("--dir", dir_arg,
                 "Working directory for the combiner's database (default: a "
                 "new one under the temp dir, removed at exit)");
  app.add_flag("--sync-uploads", sync_uploads,
               "Start the combiner with --sync-uploads: each upload is "
               "synced to disk before it is answered");
  CLI11_PARSE(app, argc, argv);
  // The client keeps its freed buffers as the combiner does (see
  // apps::keep_freed_memory), so that the download rate shows the
  // combiner's, not this process's page faults.
  mallopt(M_MMAP_THRESHOLD, 32 << 20);
  mallopt(M_TRIM_THRESHOLD, 128 << 20);

  auto chunk = chunk_kib << 10;
  auto total = uint64_t{size_mib} << 20;
  auto chunks = static_cast<size_t>((total + chunk - 1) / chunk);
  fs::path dir = dir_arg.empty()
                   ? fs::temp_directory_path()
                       / ("rondo-bench-transfer-" + std::to_string(getpid()))
                   : fs::path{dir_arg};
  fs::create_directories(dir);
  auto blocks = make_blocks(64, chunk);

  double best_up = 0;
  double best_down = 0;
  double best_disk_write = 0;
  double best_disk_read = 0;
  double peak_rss = 0;
  {
    combiner_process combiner{rondo, dir, sync_uploads};
    auto pid = combiner.pid();
    grpc::ChannelArguments args;
    args.SetMaxReceiveMessageSize(16 << 20);
    args.SetMaxSendMessageSize(16 << 20);
    auto channel = grpc::CreateCustomChannel(
      "127.0.0.1:" + std::to_string(combiner.port()),
      grpc::InsecureChannelCredentials(), args);
    if (!channel->WaitForConnected(std::chrono::system_clock::now()
                                   + std::chrono::seconds(30)))
      die("cannot connect to the combiner");
    auto stub = fedn::ModelService::NewStub(channel);
    std::printf("combiner pid %d on port %d; model %zu MiB in %zu chunks of "
                "%zu KiB; %zu repetitions; uploads %s\n",
                static_cast<int>(pid), combiner.port(), size_mib, chunks,
                chunk_kib, reps,
                sync_uploads ? "synced (--sync-uploads)"
                             : "unsynced (the default)");
    // cpu_s: the combiner's CPU time (user + system) during the step;
    // cpu_s_per_gb shows what the rate would be with a core to itself.
    std::printf("%-10s %8s %7s %8s %11s %9s %9s\n", "step", "seconds",
                "GB/s", "cpu_s", "cpu_s_per_gb", "rss_mb", "hwm_mb");
    auto cpu = proc_cpu_seconds(pid);
    auto row = [pid, &cpu](const std::string& step, const transfer* t) {
      auto now = proc_cpu_seconds(pid);
      auto used = now - cpu;
      cpu = now;
      if (t)
        std::printf("%-10s %8.2f %7.3f %8.2f %11.2f %9.1f %9.1f\n",
                    step.c_str(), t->seconds, t->bytes / t->seconds / 1e9,
                    used, used / (t->bytes / 1e9),
                    proc_status_mib(pid, "VmRSS"),
                    proc_status_mib(pid, "VmHWM"));
      else
        std::printf("%-10s %8s %7s %8s %11s %9.1f %9.1f\n", step.c_str(),
                    "-", "-", "-", "-", proc_status_mib(pid, "VmRSS"),
                    proc_status_mib(pid, "VmHWM"));
      std::fflush(stdout);
    };
    row("start", nullptr);
    for (size_t r = 0; r < reps; ++r) {
      auto id = "bench-model-" + std::to_string(r);
      auto up = upload(*stub, id, blocks, chunks);
      row("upload", &up);
      auto down = download(*stub, id);
      row("download", &down);
      if (down.bytes != up.bytes || down.checksum != up.checksum)
        die("model " + id + " came back different: "
            + std::to_string(down.bytes) + " of " + std::to_string(up.bytes)
            + " bytes, checksums differ or not");
      best_up = std::max(best_up, up.bytes / up.seconds / 1e9);
      best_down = std::max(best_down, down.bytes / down.seconds / 1e9);
      rondo::bench::disk_seconds disk;
      try {
        disk = rondo::bench::measure_disk((dir / "disk-baseline").string(),
                                          size_mib);
      } catch (const std::runtime_error& e) {
        die(e.what());
      }
      double gb = double(size_mib + size_mib % 2) * (1 << 20) / 1e9;
      std::printf("%-10s %8.2f %7.3f %8s %11s   (O_DIRECT write + "
                  "fdatasync; read: %.2f s, %.3f GB/s)\n",
                  "disk", disk.write, gb / disk.write, "-", "-", disk.read,
                  gb / disk.read);
      std::fflush(stdout);
      // The disk row's CPU is not the combiner's.
      cpu = proc_cpu_seconds(pid);
      best_disk_write = std::max(best_disk_write, gb / disk.write);
      best_disk_read = std::max(best_disk_read, gb / disk.read);
    }
    peak_rss = proc_status_mib(pid, "VmHWM");
  }
  if (dir_arg.empty())
    fs::remove_all(dir);
  std::printf("targets: >= 1 GB/s each way; peak RSS well below the model "
              "size (%zu MiB)\n",
              size_mib);
  std::printf("upload_gbps=%.3f download_gbps=%.3f peak_rss_mb=%.1f "
              "disk_write_gbps=%.3f disk_read_gbps=%.3f\n",
              best_up, best_down, peak_rss, best_disk_write, best_disk_read);
  return 0;
}
