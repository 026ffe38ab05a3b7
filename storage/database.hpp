#pragma once

// One RocksDB database per Rondo process, shared by the model store and the
// state store. No RocksDB type appears outside storage/*.cpp.

#include <caf/expected.hpp>

#include <cstddef>
#include <memory>
#include <string>

namespace rondo::storage {

/// Options for opening a database.
struct database_options {
  /// Directory of the database; created when missing.
  std::string path;
  /// Store model chunks in RocksDB blob files instead of SST values.
  /// Default false: bench/model_store measured blob reads 30x slower on
  /// RocksDB 7.8 (0.14 vs 4.7 GB/s) and writes 1.5x slower (0.22 vs
  /// 0.33 GB/s), with no gain when models are deleted and rewritten.
  bool enable_blob_files = false;
  /// With blob files on, values of at least this many bytes go to them.
  /// Default 4 KiB.
  size_t blob_min_bytes = 4096;
  /// Bytes all column families' memtables may hold together (RocksDB's
  /// WriteBufferManager); a flush starts when they reach it. Default
  /// 4 MiB, wal_bytes: model updates no longer pass through RocksDB
  /// (storage/update_cache.hpp), so the memtables hold global models and
  /// records (bench/soak.py: the same round time with 4 as with 16 MiB).
  size_t memtable_bytes = size_t{4} << 20;
  /// Bytes of the one block cache all column families share. Default
  /// 8 MiB.
  size_t block_cache_bytes = size_t{8} << 20;
  /// Bytes the write-ahead log may hold (RocksDB's max_total_wal_size):
  /// past it, the column families whose memtables pin the oldest log file
  /// are flushed so that it can go. Default 4 MiB, memtable_bytes: the
  /// log holds no more than the memtables do (bench/soak.py, 1,000 rounds:
  /// controller database 9.3 MB with 4 MiB, 19.8 MB with 16). Without a bound a log file
  /// lives until every column family with a write in it has flushed, and
  /// the record families (a few KB a round) flush after hundreds of
  /// rounds: every model written meanwhile stayed on disk in the log
  /// (RocksDB's own bound is four times all memtables, 15 column
  /// families' worth; tests/storage/retention_test.cpp measured 305 MiB
  /// of log after 80 models of 4 MB, none with the bound).
  size_t wal_bytes = size_t{4} << 20;
};

/// An open RocksDB database with Rondo's column families: the model store's
/// (model_meta, model_chunks, model_pending) and one per state-record kind
/// (jobs, rounds, sessions, models, validations, clients, metrics,
/// statuses, predictions).
/// Thread-safe; share it as `std::shared_ptr`.
class database {
public:
  struct impl;

  /// Opens (creating if needed) the database at `opts.path`.
  /// @returns `ec::storage_error` with RocksDB's text if it cannot be opened
  ///          (e.g. locked by another process, or unreadable).
  static caf::expected<std::shared_ptr<database>>
  open(const database_options& opts);

  /// Opens the database at `path` with default options.
  static caf::expected<std::shared_ptr<database>> open(const std::string& path);

  ~database();

  database(const database&) = delete;
  database& operator=(const database&) = delete;

  /// The database directory.
  const std::string& path() const;

  /// Flushes every column family's memtable to disk.
  /// @returns `ec::storage_error` on failure.
  caf::error flush();

  /// Internal handle for storage/*.cpp.
  impl& get() {
    return *impl_;
  }

private:
  explicit database(std::unique_ptr<impl> ptr);
  std::unique_ptr<impl> impl_;
};

} // namespace rondo::storage
