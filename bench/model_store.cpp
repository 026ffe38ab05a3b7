// bench_model_store: model store throughput, next to the disk's own.
//
// Large models (past 16 MiB, one file each): a model of --mb MiB written in
// 1 MiB pieces (as uploads arrive) and committed, then read back chunk by
// chunk and verified; next to the same number of bytes written by hand to
// the same folder with O_DIRECT 2 MiB writes and one fdatasync, and read
// back with O_DIRECT, in the same run. On a shared machine the disk's rate
// varies from run to run; the ratio store/disk is the figure to compare.
//
// Small models (at most 16 MiB, chunks in RocksDB): --small-models models
// of --small-mb MiB with `put`, read back with `get`, with chunks as plain
// SST values and as blob files (database_options::enable_blob_files).
//
// Usage: bench_model_store [--mb 1024] [--reps 2] [--small-mb 8]
//                          [--small-models 32] [--dir DIR]
// Rates are the best of --reps; GB = 1e9 bytes. Last line:
//   store_write_gbps=… disk_write_gbps=… write_ratio=… store_read_gbps=…
//   disk_read_gbps=… read_ratio=… small_sst_write_gbps=… …

#include "bench/disk_baseline.hpp"
#include "messages/error.hpp"
#include "storage/model_store.hpp"

#include <CLI/CLI.hpp>

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <iostream>
#include <random>

using namespace rondo;
using namespace rondo::storage;

namespace {

using clock_type = std::chrono::steady_clock;

double seconds_since(clock_type::time_point t0) {
  return std::chrono::duration<double>(clock_type::now() - t0).count();
}

[[noreturn]] void die(const std::string& what) {
  std::cerr << "bench_model_store: " << what << "\n";
  std::exit(1);
}

/// 1 MiB of incompressible bytes.
std::string make_piece() {
  std::string piece(1 << 20, '\0');
  std::mt19937_64 gen{1};
  for (size_t i = 0; i < piece.size(); i += 8) {
    auto x = gen();
    std::memcpy(piece.data() + i, &x, 8);
  }
  return piece;
}

std::shared_ptr<model_store> open_store(const std::string& dir, bool blobs) {
  std::filesystem::remove_all(dir);
  database_options opts;
  opts.path = dir;
  opts.enable_blob_files = blobs;
  auto db = database::open(opts);
  if (!db)
    die(render(db.error()));
  auto store = model_store::open(*db);
  if (!store)
    die(render(store.error()));
  return *store;
}

/// Seconds to write one model of `mb` MiB in 1 MiB pieces and commit it,
/// and to read it back (verified).
std::pair<double, double> store_seconds(model_store& store,
                                        const std::string& id, size_t mb,
                                        std::string piece) {
  auto t0 = clock_type::now();
  auto w = store.begin_write(id);
  if (!w)
    die(render(w.error()));
  for (size_t i = 0; i < mb; ++i) {
    piece[0] = static_cast<char>(i); // not all chunks identical
    if (auto err = (*w)->write(piece))
      die(render(err));
  }
  if (auto info = (*w)->commit(); !info)
    die(render(info.error()));
  double write_s = seconds_since(t0);
  t0 = clock_type::now();
  auto rd = store.open_read(id);
  if (!rd)
    die(render(rd.error()));
  std::string chunk;
  for (;;) {
    auto more = rd->next(chunk);
    if (!more)
      die(render(more.error()));
    if (!*more)
      break;
  }
  return {write_s, seconds_since(t0)};
}

struct small_result {
  double write_gbps = 0;
  double read_gbps = 0;
};

small_result small_models(const std::string& dir, bool blobs, size_t mb,
                          size_t models, const std::string& piece) {
  auto store = open_store(dir, blobs);
  std::string bytes;
  for (size_t i = 0; i < mb; ++i)
    bytes += piece;
  double gb = double(mb) * models * (1 << 20) / 1e9;
  auto t0 = clock_type::now();
  for (size_t m = 0; m < models; ++m) {
    bytes[0] = static_cast<char>(m);
    if (auto info = store->put("small-" + std::to_string(m), bytes); !info)
      die(render(info.error()));
  }
  small_result r;
  r.write_gbps = gb / seconds_since(t0);
  t0 = clock_type::now();
  for (size_t m = 0; m < models; ++m)
    if (auto got = store->get("small-" + std::to_string(m)); !got)
      die(render(got.error()));
  r.read_gbps = gb / seconds_since(t0);
  return r;
}

} // namespace

int main(int argc, char** argv) {
  CLI::App app{"Model store throughput, next to the disk's own"};
  size_t mb = 1024;
  size_t reps = 2;
  size_t small_mb = 8;
  size_t small_count = 32;
  std::string parent = std::filesystem::temp_directory_path().string();
  app.add_option("--mb", mb, "MiB of the large model")
    ->capture_default_str()
    ->check(CLI::Range(size_t{18}, size_t{1} << 20));
  app.add_option("--reps", reps, "Repetitions (best is reported)")
    ->capture_default_str()
    ->check(CLI::PositiveNumber);
  app.add_option("--small-mb", small_mb, "MiB per small model (at most 16)")
    ->capture_default_str()
    ->check(CLI::Range(1, 16));
  app.add_option("--small-models", small_count, "Number of small models")
    ->capture_default_str()
    ->check(CLI::PositiveNumber);
  app.add_option("--dir", parent,
                 "Where to make the scratch folder (rondo-bench-model-store-"
                 "<pid>, removed afterwards; nothing else is touched)")
    ->capture_default_str();
  CLI11_PARSE(app, argc, argv);
  // A folder of this run's own: two runs at once, or a --dir holding other
  // files, are left alone.
  auto dir = (std::filesystem::path{parent}
              / ("rondo-bench-model-store-" + std::to_string(::getpid())))
               .string();
  if (std::filesystem::exists(dir))
    die(dir + " already exists");
  mb += mb % 2; // whole 2 MiB blocks for the disk baseline
  auto piece = make_piece();
  double gb = double(mb) * (1 << 20) / 1e9;
  std::printf("large model: %zu MiB in 1 MiB pieces, %zu repetitions, in "
              "%s\n",
              mb, reps, dir.c_str());
  std::printf("%-6s %12s %12s %12s %12s\n", "rep", "store_write", "disk_write",
              "store_read", "disk_read");
  double best[4] = {0, 0, 0, 0}; // GB/s: store w, disk w, store r, disk r
  auto store = open_store(dir, false);
  auto measure_disk = [&] {
    try {
      return bench::measure_disk(dir + "/disk-baseline", mb);
    } catch (const std::runtime_error& e) {
      die(e.what());
    }
  };
  for (size_t rep = 0; rep < reps; ++rep) {
    // Alternate which goes first: the disk's rate drifts.
    std::pair<double, double> s;
    bench::disk_seconds d;
    auto id = "large-" + std::to_string(rep);
    if (rep % 2 == 0) {
      s = store_seconds(*store, id, mb, piece);
      d = measure_disk();
    } else {
      d = measure_disk();
      s = store_seconds(*store, id, mb, piece);
    }
    if (auto err = store->remove(id))
      die(render(err));
    double r[4] = {gb / s.first, gb / d.write, gb / s.second, gb / d.read};
    std::printf("%-6zu %9.3f GB/s %7.3f GB/s %7.3f GB/s %7.3f GB/s\n", rep, r[0],
                r[1], r[2], r[3]);
    for (int i = 0; i < 4; ++i)
      best[i] = std::max(best[i], r[i]);
  }
  store.reset();
  std::printf("small models: %zu x %zu MiB with put/get\n", small_count,
              small_mb);
  auto sst = small_models(dir, false, small_mb, small_count, piece);
  auto blob = small_models(dir, true, small_mb, small_count, piece);
  std::printf("  SST values: write %.3f GB/s  read %.3f GB/s\n",
              sst.write_gbps, sst.read_gbps);
  std::printf("  blob files: write %.3f GB/s  read %.3f GB/s\n",
              blob.write_gbps, blob.read_gbps);
  std::filesystem::remove_all(dir);
  std::printf("store_write_gbps=%.3f disk_write_gbps=%.3f write_ratio=%.3f "
              "store_read_gbps=%.3f disk_read_gbps=%.3f read_ratio=%.3f "
              "small_sst_write_gbps=%.3f small_sst_read_gbps=%.3f "
              "small_blob_write_gbps=%.3f small_blob_read_gbps=%.3f\n",
              best[0], best[1], best[0] / best[1], best[2], best[3],
              best[2] / best[3], sst.write_gbps, sst.read_gbps,
              blob.write_gbps, blob.read_gbps);
  return 0;
}
