// bench_model_store: write and read throughput of the model store with
// model chunks in RocksDB blob files versus plain SST values, so the choice
// in storage/database.cpp rests on a measurement.
//
// Usage: bench_model_store [--mb 512] [--models 4] [--dir /tmp/...]
// Last line: key=value summary.

#include "messages/error.hpp"
#include "storage/model_store.hpp"

#include <CLI/CLI.hpp>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <cstring>
#include <random>

using namespace rondo;
using namespace rondo::storage;

namespace {

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0)
    .count();
}

struct result {
  double write_gbps = 0;
  double read_gbps = 0;
  double rewrite_gbps = 0; // write after deleting half the models
};

// Writes `models` models of `mb` MiB, reads them back, deletes half and
// writes them again (exercises compaction / blob garbage collection).
result run(const std::string& dir, bool blobs, size_t mb, size_t models) {
  std::filesystem::remove_all(dir);
  database_options opts;
  opts.path = dir;
  opts.enable_blob_files = blobs;
  auto db = database::open(opts);
  if (!db) {
    std::cerr << render(db.error()) << "\n";
    std::exit(1);
  }
  auto store = model_store::open(*db);
  std::string piece(1 << 20, '\0');
  std::mt19937_64 gen{1};
  for (size_t i = 0; i < piece.size(); i += 8) {
    auto x = gen();
    std::memcpy(piece.data() + i, &x, 8);
  }
  auto write_all = [&](size_t first, size_t count) {
    for (size_t m = first; m < first + count; ++m) {
      auto w = (*store)->begin_write("model-" + std::to_string(m));
      for (size_t i = 0; i < mb; ++i) {
        piece[0] = static_cast<char>(i); // not all chunks identical
        if (auto err = (*w)->write(piece)) {
          std::cerr << render(err) << "\n";
          std::exit(1);
        }
      }
      if (!(*w)->commit())
        std::exit(1);
    }
  };
  double gb = double(mb) * models * (1 << 20) / 1e9;
  result r;
  auto t0 = std::chrono::steady_clock::now();
  write_all(0, models);
  r.write_gbps = gb / seconds_since(t0);
  t0 = std::chrono::steady_clock::now();
  std::string chunk;
  for (size_t m = 0; m < models; ++m) {
    auto rd = (*store)->open_read("model-" + std::to_string(m));
    for (;;) {
      auto more = rd->next(chunk);
      if (!more) {
        std::cerr << render(more.error()) << "\n";
        std::exit(1);
      }
      if (!*more)
        break;
    }
  }
  r.read_gbps = gb / seconds_since(t0);
  for (size_t m = 0; m < models / 2; ++m)
    static_cast<void>((*store)->remove("model-" + std::to_string(m)));
  t0 = std::chrono::steady_clock::now();
  write_all(models, models / 2);
  r.rewrite_gbps = (gb / 2) / seconds_since(t0);
  return r;
}

} // namespace

int main(int argc, char** argv) {
  CLI::App app{"Model store throughput: blob files vs SST values"};
  size_t mb = 512;
  size_t models = 4;
  std::string dir = (std::filesystem::temp_directory_path()
                     / "rondo-bench-model-store")
                      .string();
  app.add_option("--mb", mb, "MiB per model");
  app.add_option("--models", models, "Number of models");
  app.add_option("--dir", dir, "Scratch directory (removed afterwards)");
  CLI11_PARSE(app, argc, argv);
  std::printf("model store: %zu models x %zu MiB, 1 MiB chunks\n", models,
              mb);
  auto blob = run(dir, true, mb, models);
  std::printf("blob files: write %.2f GB/s  read %.2f GB/s  rewrite %.2f "
              "GB/s\n",
              blob.write_gbps, blob.read_gbps, blob.rewrite_gbps);
  auto sst = run(dir, false, mb, models);
  std::printf("sst values: write %.2f GB/s  read %.2f GB/s  rewrite %.2f "
              "GB/s\n",
              sst.write_gbps, sst.read_gbps, sst.rewrite_gbps);
  std::filesystem::remove_all(dir);
  std::printf("blob_write_gbps=%.3f blob_read_gbps=%.3f "
              "blob_rewrite_gbps=%.3f sst_write_gbps=%.3f sst_read_gbps=%.3f "
              "sst_rewrite_gbps=%.3f\n",
              blob.write_gbps, blob.read_gbps, blob.rewrite_gbps,
              sst.write_gbps, sst.read_gbps, sst.rewrite_gbps);
  return 0;
}
