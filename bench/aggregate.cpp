// bench_aggregate: Rondo's FedAvg throughput on STORED npz update files,
// against the machine's read bandwidth over the same bytes in the same run
// and against numpy doing FEDn's increment_average on the same files
// (STORED and DEFLATE). Rondo is timed twice: add() per update (updates
// arriving one at a time) and add_batch() of all N (updates that have all
// arrived; rondo_* in the summary). Prints figures, then a key=value
// summary line.
//
// Usage: bench_aggregate [-N 10] [-P 25000000] [--quick] [--dir /tmp]
//                        [--repeat 3] [--no-numpy] [--dir /dev/shm]
// Space: about (2N + 1) · 4P bytes under --dir while it runs (N STORED and N
// DEFLATE updates and the base), deleted at exit: ~2.0 GB by default. The
// default --dir is /dev/shm (tmpfs, i.e. RAM) when it exists, else /tmp: on
// a disk, writeback of the just-written files competes with the timed runs.
// All timings are on a warm page cache: the files were just written, and
// every method reads the same files; the best of --repeat runs counts.

#include "messages/error.hpp"
#include "model/aggregator.hpp"
#include "model/npz.hpp"

#include <CLI/CLI.hpp>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fcntl.h>
#include <functional>
#include <sys/mman.h>
#include <sys/resource.h>
#include <unistd.h>

using namespace rondo;
namespace fs = std::filesystem;

namespace {

using clock_type = std::chrono::steady_clock;

double seconds_of(const std::function<void()>& fn) {
  auto t0 = clock_type::now();
  fn();
  return std::chrono::duration<double>(clock_type::now() - t0).count();
}

// CPU seconds (user + system, all threads) this process used so far.
double cpu_seconds() {
  rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  auto s = [](const timeval& tv) {
    return static_cast<double>(tv.tv_sec) + tv.tv_usec / 1e6;
  };
  return s(ru.ru_utime) + s(ru.ru_stime);
}

// The best wall time of `repeat` runs of `fn`, and the CPU seconds of that
// run in `cpu` when given.
double best_of(int repeat, const std::function<void()>& fn,
               double* cpu = nullptr) {
  double best = 1e300;
  for (int i = 0; i < repeat; ++i) {
    auto c0 = cpu_seconds();
    auto t = seconds_of(fn);
    if (t < best) {
      best = t;
      if (cpu != nullptr)
        *cpu = cpu_seconds() - c0;
    }
  }
  return best;
}

[[noreturn]] void die(const std::string& what) {
  std::fprintf(stderr, "bench_aggregate: %s\n", what.c_str());
  std::exit(1);
}

// A model of P float32 parameters split over tensors sized like a small
// network's layers (40 %, 25 %, ... of P), filled from an LCG.
model make_model(uint64_t p, uint64_t seed) {
  static const double share[] = {0.4, 0.25, 0.15, 0.1, 0.05, 0.03, 0.015};
  model m;
  uint64_t left = p;
  for (size_t i = 0; i <= std::size(share); ++i) {
    uint64_t n = i < std::size(share) ? static_cast<uint64_t>(p * share[i])
                                      : left;
    left -= n;
    tensor t{tensor_info{std::to_string(i), dtype::f32, {n}}};
    uint64_t x = seed * 6364136223846793005ull + i;
    for (uint64_t j = 0; j < n; ++j) {
      x = x * 6364136223846793005ull + 1442695040888963407ull;
      t.f32()[j] = static_cast<float>(static_cast<int32_t>(x >> 32)) * 1e-10f;
    }
    m.push_back(std::move(t));
  }
  return m;
}

// Sum of floats with 16 independent lanes (vectorizes; not latency-bound).
float sum_floats(const float* x, size_t n) {
  float lanes[16] = {};
  size_t i = 0;
  for (; i + 16 <= n; i += 16)
    for (int k = 0; k < 16; ++k)
      lanes[k] += x[i + k];
  float s = 0;
  for (; i < n; ++i)
    s += x[i];
  for (float l : lanes)
    s += l;
  return s;
}

volatile float sink;

// Streaming read of a whole file with pread into a 1 MiB buffer, summing it.
void read_sum(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY);
  if (fd < 0)
    die("cannot open " + path);
  static std::vector<float> buf(1u << 18);
  float s = 0;
  off_t off = 0;
  for (;;) {
    auto got = ::pread(fd, buf.data(), buf.size() * sizeof(float), off);
    if (got <= 0)
      break;
    s += sum_floats(buf.data(), static_cast<size_t>(got) / sizeof(float));
    off += got;
  }
  ::close(fd);
  sink = s;
}

// The same over mmap windows of 16 MiB.
void map_sum(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY);
  auto size = static_cast<uint64_t>(fs::file_size(path));
  const uint64_t window = 16u << 20;
  float s = 0;
  for (uint64_t off = 0; off < size; off += window) {
    auto len = std::min(window, size - off);
    void* p = ::mmap(nullptr, len, PROT_READ, MAP_SHARED | MAP_POPULATE, fd,
                     static_cast<off_t>(off));
    if (p == MAP_FAILED)
      die("mmap failed");
    s += sum_floats(static_cast<const float*>(p), len / sizeof(float));
    ::munmap(p, len);
  }
  ::close(fd);
  sink = s;
}

double peak_rss_mb() {
  rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  return static_cast<double>(ru.ru_maxrss) / 1024.0;
}

// Runs the numpy script over `files`; returns its key=value output.
std::string run_numpy(const std::vector<std::string>& files,
                      const std::vector<double>& ns,
                      const std::string& rondo_result) {
  std::string cmd = "/usr/bin/python3 " RONDO_SOURCE_DIR
                    "/bench/fedn_increment_average.py "
                    + rondo_result;
  for (size_t i = 0; i < files.size(); ++i)
    cmd += " " + files[i] + ":" + std::to_string(static_cast<int>(ns[i]));
  std::string out;
  if (auto* pipe = ::popen(cmd.c_str(), "r")) {
    char line[256];
    while (std::fgets(line, sizeof line, pipe))
      out += line;
    if (::pclose(pipe) != 0)
      out.clear();
  }
  return out;
}

double value_of(const std::string& text, const std::string& key) {
  auto pos = text.find(key + "=");
  return pos == std::string::npos ? -1
                                  : std::atof(text.c_str() + pos
                                              + key.size() + 1);
}

} // namespace

int main(int argc, char** argv) {
  CLI::App app{"FedAvg throughput on STORED npz files vs read bandwidth and "
               "numpy (FEDn's increment_average)"};
  int n_updates = 10;
  uint64_t params = 25'000'000;
  bool quick = false;
  bool no_numpy = false;
  int repeat = 3;
  std::string base_dir = fs::is_directory("/dev/shm") ? "/dev/shm" : "/tmp";
  app.add_option("-N", n_updates, "Number of updates")->capture_default_str();
  app.add_option("-P", params, "float32 parameters per model")
    ->capture_default_str();
  app.add_flag("--quick", quick, "Small run for smoke tests (N=3, P=1e6)");
  app.add_flag("--no-numpy", no_numpy, "Skip the numpy comparison");
  app.add_option("--repeat", repeat, "Timed runs; the best counts")
    ->capture_default_str();
  app.add_option("--dir", base_dir, "Where to put the temporary files")
    ->capture_default_str();
  CLI11_PARSE(app, argc, argv);
  if (quick) {
    n_updates = 3;
    params = 1'000'000;
    repeat = 2;
  }
  if (n_updates < 1 || params < 16)
    die("need N >= 1 and P >= 16");
  std::string tmpl = (fs::path{base_dir} / "rondo-bench-XXXXXX").string();
  if (::mkdtemp(tmpl.data()) == nullptr)
    die("cannot create a directory under " + base_dir);
  fs::path dir{tmpl};
  struct cleanup {
    fs::path dir;
    ~cleanup() {
      std::error_code ignored;
      fs::remove_all(dir, ignored);
    }
  } remove_at_exit{dir};

  auto model_mb = static_cast<double>(params) * 4 / 1e6;
  std::printf("N=%d updates of P=%llu float32 (%.1f MB each) in %s\n",
              n_updates, static_cast<unsigned long long>(params), model_mb,
              dir.c_str());
  // Files: the base, N STORED updates, N DEFLATE copies (zlib level 1).
  std::vector<std::string> stored, deflated;
  std::vector<double> ns;
  npz_options deflate;
  deflate.compression = npz_compression::deflate;
  deflate.deflate_level = 1;
  auto base_path = (dir / "base.npz").string();
  auto write_time = seconds_of([&] {
    if (auto err = write_npz_file(make_model(params, 0), base_path))
      die(render(err));
    for (int k = 0; k < n_updates; ++k) {
      auto m = make_model(params, static_cast<uint64_t>(k) + 1);
      stored.push_back((dir / ("u" + std::to_string(k) + ".npz")).string());
      deflated.push_back((dir / ("u" + std::to_string(k) + "z.npz")).string());
      ns.push_back(100 + 10 * k);
      if (auto err = write_npz_file(m, stored.back()))
        die(render(err));
      if (!no_numpy)
        if (auto err = write_npz_file(m, deflated.back(), deflate))
          die(render(err));
    }
  });
  uint64_t update_bytes = 0, disk_bytes = 0;
  for (auto& f : stored)
    update_bytes += fs::file_size(f);
  for (auto& e : fs::directory_iterator(dir))
    disk_bytes += e.file_size();
  std::printf("wrote the files in %.1f s; %.0f MB on disk; update bytes "
              "(STORED) %.0f MB\n",
              write_time, disk_bytes / 1e6, update_bytes / 1e6);

  // Read bandwidth: a plain streaming sum over the same bytes, two ways.
  auto all = [&](void (*fn)(const std::string&)) {
    return [&stored, fn] {
      for (auto& f : stored)
        fn(f);
    };
  };
  all(read_sum)(); // warm the page cache
  double read_cpu = 0;
  auto read_s = best_of(repeat, all(read_sum), &read_cpu);
  auto map_s = best_of(repeat, all(map_sum));
  auto gb = static_cast<double>(update_bytes) / 1e9;
  auto read_gbps = gb / std::min(read_s, map_s);
  std::printf("read bandwidth (streaming sum, one thread): pread %.2f GB/s "
              "(%.3f CPU s/GB), mmap %.2f GB/s; using the faster, %.2f "
              "GB/s\n",
              gb / read_s, read_cpu / gb, gb / map_s, read_gbps);

  // Rondo: FedAvg folding each STORED file straight from its bytes, once
  // with add() per update as they would arrive one at a time, once with
  // add_batch() over all N as if they had all arrived.
  // Of the best run: CPU seconds (all threads) and the time finish() took.
  struct rondo_run {
    double seconds = 1e300;
    double cpu = 0;
    double finish = 0;
  };
  model result;
  auto run_rondo = [&](bool batch) {
    rondo_run best;
    for (int r = 0; r < repeat; ++r) {
      result.clear();
      auto agg = make_aggregator("fedavg");
      if (!agg)
        die(render(agg.error()));
      auto base = read_npz_file(base_path); // untimed: the combiner has it
      if (!base)
        die(render(base.error()));
      auto c0 = cpu_seconds();
      auto t0 = clock_type::now();
      if (auto err = (*agg)->begin(*base))
        die(render(err));
      base->clear(); // FedAvg keeps only the metadata
      std::vector<std::unique_ptr<npz_reader>> readers;
      std::vector<weighted_update> updates;
      for (size_t k = 0; k < stored.size(); ++k) {
        auto reader = npz_reader::open_file(stored[k]);
        if (!reader)
          die(render(reader.error()));
        if (!batch) {
          if (auto err = (*agg)->add(**reader, ns[k]))
            die(render(err));
          continue;
        }
        updates.push_back(weighted_update{reader->get(), ns[k]});
        readers.push_back(std::move(*reader)); // an open file, no data
      }
      for (auto& err : (*agg)->add_batch(updates))
        if (err)
          die(render(err));
      auto t1 = clock_type::now();
      auto out = (*agg)->finish();
      if (!out)
        die(render(out.error()));
      auto t2 = clock_type::now();
      result = std::move(*out);
      auto took = std::chrono::duration<double>(t2 - t0).count();
      if (took < best.seconds)
        best = rondo_run{took, cpu_seconds() - c0,
                         std::chrono::duration<double>(t2 - t1).count()};
    }
    return best;
  };
  auto add_run = run_rondo(false);
  auto batch_run = run_rondo(true);
  auto rondo_add_s = add_run.seconds;
  auto rondo_s = batch_run.seconds;
  auto rondo_add_gbps = gb / rondo_add_s;
  auto rondo_gbps = gb / rondo_s;
  std::printf("rondo fedavg, add() per update: %.3f s (finish %.3f s; %.3f "
              "CPU s/GB), %.2f GB/s of update bytes = %.2f x the read "
              "bandwidth\n",
              rondo_add_s, add_run.finish, add_run.cpu / gb, rondo_add_gbps,
              rondo_add_gbps / read_gbps);
  std::printf("rondo fedavg, add_batch() of all %d: %.3f s (finish %.3f s; "
              "%.3f CPU s/GB), %.2f GB/s of update bytes = %.2f x the read "
              "bandwidth\n",
              n_updates, rondo_s, batch_run.finish, batch_run.cpu / gb,
              rondo_gbps, rondo_gbps / read_gbps);
  auto result_path = (dir / "rondo_result.npz").string();
  if (auto err = write_npz_file(result, result_path))
    die(render(err));
  result.clear();
  auto rss = peak_rss_mb();

  double numpy_s = -1, numpy_deflate_s = -1, diff = -1;
  if (!no_numpy) {
    auto out = run_numpy(stored, ns, result_path);
    auto outz = run_numpy(deflated, ns, "-");
    numpy_s = value_of(out, "numpy_s");
    diff = value_of(out, "max_abs_diff");
    numpy_deflate_s = value_of(outz, "numpy_s");
    if (numpy_s < 0 || numpy_deflate_s < 0)
      std::printf("numpy: skipped (python3 with numpy failed)\n");
    else
      std::printf("numpy increment_average: STORED %.3f s (%.2f GB/s), "
                  "DEFLATE %.3f s; rondo (add_batch) is %.1f x faster on "
                  "STORED (add(): %.1f x), %.1f x on DEFLATE; max |rondo - "
                  "numpy| = %.3g\n",
                  numpy_s, gb / numpy_s, numpy_deflate_s, numpy_s / rondo_s,
                  numpy_s / rondo_add_s, numpy_deflate_s / rondo_s, diff);
  }
  std::printf("peak RSS %.1f MB = %.2f x the model size (%.1f MB)\n", rss,
              rss / model_mb, model_mb);
  std::printf("N=%d P=%llu rondo_gbps=%.3f read_gbps=%.3f pread_gbps=%.3f "
              "mmap_gbps=%.3f rondo_vs_read=%.3f rondo_s=%.4f "
              "rondo_add_gbps=%.3f rondo_add_vs_read=%.3f rondo_add_s=%.4f "
              "numpy_s=%.4f numpy_deflate_s=%.4f numpy_vs_rondo=%.2f "
              "numpy_vs_rondo_add=%.2f max_abs_diff=%.3g peak_rss_mb=%.1f "
              "rss_vs_model=%.2f disk_mb=%.0f read_cpu_s_per_gb=%.3f "
              "rondo_cpu_s_per_gb=%.3f rondo_add_cpu_s_per_gb=%.3f\n",
              n_updates, static_cast<unsigned long long>(params), rondo_gbps,
              read_gbps, gb / read_s, gb / map_s, rondo_gbps / read_gbps,
              rondo_s, rondo_add_gbps, rondo_add_gbps / read_gbps,
              rondo_add_s, numpy_s, numpy_deflate_s,
              numpy_s > 0 ? numpy_s / rondo_s : -1.0,
              numpy_s > 0 ? numpy_s / rondo_add_s : -1.0, diff, rss,
              rss / model_mb, disk_bytes / 1e6, read_cpu / gb,
              batch_run.cpu / gb, add_run.cpu / gb);
  return 0;
}
