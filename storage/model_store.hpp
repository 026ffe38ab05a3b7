#pragma once

// The model store: models (npz bytes, from bytes to several GiB) by model
// id, written and read as streams of chunks, checksummed, and visible only
// once complete.

#include "storage/database.hpp"

#include <caf/expected.hpp>

#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <string_view>
#include <vector>

namespace rondo::store {
class ModelMeta;
} // namespace rondo::store

namespace rondo::storage {

namespace detail {
class io_pool;
} // namespace detail

class update_cache;

/// What the store knows of a committed model.
struct model_info {
  std::string model_id;
  /// Size of the model in bytes.
  uint64_t size_bytes = 0;
  /// XXH3-64 (seed 0) of the model's bytes.
  uint64_t checksum = 0;
  /// Unix time in seconds of the commit.
  double committed_at = 0;
  /// Size of every chunk but the last, in bytes.
  uint32_t chunk_bytes = 0;
  /// Number of chunks (0 for an empty model).
  uint64_t chunk_count = 0;
};

class model_store;

/// How much of a committed model survives a crash.
enum class durability {
  /// Survives an OS crash or power loss: the model's bytes, its file's name
  /// and its metadata are synced before commit returns. For the model
  /// trail: seeds, aggregates, global models.
  synced,
  /// Survives the process's crash, not always the OS's: a large model's
  /// bytes are written past the page cache (O_DIRECT) but not synced, and
  /// its metadata goes to the WAL unsynced. For client uploads (model
  /// updates), which serve one round that an OS crash fails anyway. A model
  /// torn by such a crash is missing or fails its checksums when read; it
  /// is never read as valid. Measured: a 1 GiB upload on this VM's disk
  /// spends 0.25–0.7 s in the final sync (bench_transfer).
  unsynced,
};

/// Streams one new model into the store. Bytes go to disk as they arrive:
/// in chunks of `chunk_bytes` into RocksDB while the model is at most
/// 16 MiB, then into a file of its own (written with O_DIRECT, several
/// writes in flight on the store's I/O threads; `write` waits only when
/// they are all busy, that is for the disk). The model becomes visible to
/// readers only at `commit()`. Destroying an uncommitted writer aborts the
/// write and removes what it wrote. Not thread-safe (one writer, one
/// thread).
class model_writer {
public:
  ~model_writer();
  model_writer(const model_writer&) = delete;
  model_writer& operator=(const model_writer&) = delete;

  /// Whether `write` of `n` bytes would wait for the disk, for callers
  /// that must not block (gRPC reactors). If so, `fn` is kept and called
  /// once, on one of the store's I/O threads, when the write would not
  /// wait, and the result is true; else `fn` is dropped and the result is
  /// false. Writes of a model of at most 16 MiB never wait for the disk;
  /// the write that moves a model into its file copies its first 16 MiB
  /// there and may wait once (about 8 ms at 1 GB/s).
  bool wait_for_room(size_t n, std::function<void()> fn);

  /// Appends `bytes` (any split of the model). @returns `ec::storage_error`
  /// on a write failure (the writer is then aborted), `ec::invalid_state`
  /// after commit or abort.
  caf::error write(std::string_view bytes);

  /// Writes the last chunk; for a model past 16 MiB, waits for its file's
  /// writes and syncs it (fdatasync, and its folder); then writes the
  /// model's metadata with a synced WAL: afterwards the model is durable and
  /// visible. On failure the writer is aborted (nothing stays behind).
  /// @returns the committed model's info, or `ec::storage_error`.
  caf::expected<model_info> commit();

  /// Removes everything written so far. Idempotent.
  void abort();

  /// Bytes written so far.
  uint64_t size() const {
    return size_;
  }

private:
  friend class model_store;
  struct state;
  explicit model_writer(std::unique_ptr<state> st);
  void flush_chunk(std::string_view bytes, caf::error& err);
  // Creates the model's file and copies what was written so far into it.
  caf::error move_to_file();

  std::unique_ptr<state> st_;
  uint64_t size_ = 0;
};

/// Reads one committed model chunk by chunk, verifying as it goes.
class model_reader {
public:
  ~model_reader();
  model_reader(model_reader&&) noexcept;
  model_reader& operator=(model_reader&&) noexcept;

  const model_info& info() const;

  /// Reads the next chunk into `out` (replacing its contents). Returns true
  /// while a chunk was read, false at the end once the whole model's
  /// checksum and size have been verified.
  /// @returns `ec::corrupt` naming the model (and chunk) when a chunk is
  ///          missing, has the wrong size, fails RocksDB's checksum, or the
  ///          whole-model checksum does not match.
  caf::expected<bool> next(std::string& out);

  /// Reads the remaining chunks as next() does, handing each to `sink`.
  /// @returns next()'s error, or `sink`'s first (which stops the read).
  caf::error for_each(const std::function<caf::error(std::string_view)>& sink);

private:
  friend class model_store;
  struct state;
  explicit model_reader(std::unique_ptr<state> st);
  std::unique_ptr<state> st_;
};

/// Models by id in the shared database. Thread-safe.
///
/// Layout: `model_meta` holds `<id>` → ModelMeta. A model of at most
/// 16 MiB is chunks in `model_chunks`: `<id>\0<chunk index, 8 bytes
/// big-endian>` → chunk bytes (1 MiB by default), each checked by RocksDB's
/// block checksum. A larger model is one file in `<database>/model-files/`,
/// named in its ModelMeta with the XXH3-64 of each chunk. `model_pending`
/// marks writes in progress so that a write interrupted by a crash is
/// cleaned up on the next open; a file that no metadata names (a crash
/// during a write or a removal) is removed on open.
class model_store : public std::enable_shared_from_this<model_store> {
public:
  /// Default chunk size: 1 MiB, FEDn's transfer chunk.
  static constexpr uint32_t default_chunk_bytes = 1 << 20;

  /// Opens the store over `db` and removes the chunks of writes a crash
  /// interrupted. @returns `ec::storage_error` on failure.
  static caf::expected<std::shared_ptr<model_store>>
  open(std::shared_ptr<database> db,
       uint32_t chunk_bytes = default_chunk_bytes);

  /// Waits for the I/O threads (no writer can be left: each holds the
  /// store).
  ~model_store();

  /// Starts writing a new model, committed with `mode`'s durability. Model
  /// ids are 1–256 bytes without control characters.
  /// @returns `ec::invalid_argument` for a bad id, `ec::already_exists` if
  ///          the id is committed or being written.
  caf::expected<std::unique_ptr<model_writer>>
  begin_write(const std::string& model_id,
              durability mode = durability::synced);

  /// Writes a whole model from memory, with the layout `begin_write`
  /// produces. A model of at most `single_batch_max_bytes` goes to RocksDB
  /// as one synced WriteBatch (chunks and metadata, no pending marker: the
  /// batch is atomic, so a crash leaves either the whole model or nothing);
  /// a larger one streams through a model_writer.
  /// @returns the committed model's info; `ec::invalid_argument` for a bad
  ///          id, `ec::already_exists` if the id is committed or being
  ///          written, `ec::storage_error`.
  caf::expected<model_info> put(const std::string& model_id,
                                std::string_view bytes);

  /// Models up to this many bytes are written by `put` in one WriteBatch:
  /// 16 MiB (the batch holds a copy of the bytes).
  static constexpr uint64_t single_batch_max_bytes = uint64_t{16} << 20;

  /// Opens a committed model for streaming reads.
  /// @returns `ec::not_found` naming the id if it is not committed.
  caf::expected<model_reader> open_read(const std::string& model_id);

  /// Reads a whole committed model into memory (verified).
  /// @returns `ec::not_found` or `ec::corrupt` naming the model.
  caf::expected<std::string> get(const std::string& model_id);

  /// Reads chunk `index` (0-based, `info().chunk_count` of them) of a
  /// committed model, for random-access transfers. RocksDB's block checksum
  /// is verified; the whole-model checksum is the reader's to check (a
  /// model_writer fed every chunk computes it).
  /// @returns `ec::not_found` for an unknown model, `ec::invalid_argument`
  ///          for an index past the end, `ec::corrupt` naming the chunk.
  caf::expected<std::string> read_chunk(const std::string& model_id,
                                        uint64_t index);

  /// The committed model's info. @returns `ec::not_found`.
  caf::expected<model_info> info(const std::string& model_id);

  /// Whether a committed model with this id exists.
  caf::expected<bool> exists(const std::string& model_id);

  /// Deletes a committed model, as `remove_many` does.
  /// @returns `ec::invalid_argument` for a bad id, `ec::not_found` if it
  ///          does not exist, `ec::storage_error`.
  caf::error remove(const std::string& model_id);

  /// Deletes every listed model that exists: metadata and chunks in one
  /// batch with one synced write, then the files of file-held models (a
  /// file a crash leaves is removed on the next open). Ids that do not
  /// exist, or are not valid, are skipped. For removing a round's model
  /// updates at once. The deleted chunks' disk space is given back before
  /// it returns: one RocksDB CompactRange over the span of the deleted
  /// chunk keys (tests/storage/retention_test.cpp, 80 models of 4 MB
  /// written, 78 deleted: 38 MiB of SST files left without it, 7 MiB
  /// with it; the write-ahead log is bounded by database_options::
  /// wal_bytes). A failed compaction does not fail the removal
  /// (last_compaction_error()).
  /// @returns the number of models deleted, or `ec::storage_error`.
  caf::expected<size_t> remove_many(const std::vector<std::string>& ids);

  /// All committed models, ordered by id.
  caf::expected<std::vector<model_info>> list();

  /// Number of interrupted writes removed when the store was opened.
  size_t recovered_on_open() const {
    return recovered_;
  }

  /// Number of model files that no metadata named, removed when the store
  /// was opened.
  size_t orphan_files_removed_on_open() const {
    return orphans_removed_;
  }

  database& db() {
    return *db_;
  }

  /// Compactions of deleted chunks run so far.
  size_t compactions();

  /// The last failed compaction of deleted chunks; none if each succeeded.
  caf::error last_compaction_error();

  /// Gives the store the combiner's update cache (storage/update_cache.hpp):
  /// a model id the store lacks but the cache holds decoded is then written
  /// into the store (STORED npz, synced) when a reader asks for it by id
  /// (open_read, get, read_chunk, info); exists() is true for every
  /// completed upload the cache holds (a valid model or not: the round
  /// rejects an invalid one with the reason), and remove/remove_many drop
  /// cached updates too. Set once, before the store is shared.
  void attach_update_cache(std::shared_ptr<update_cache> cache) {
    updates_ = std::move(cache);
  }

  /// The attached update cache; null when none.
  const std::shared_ptr<update_cache>& updates() const {
    return updates_;
  }

  /// Makes a model update that the update cache holds durable in the store
  /// now (e.g. a rejected update kept for inspection). A model already in
  /// the store is left as it is.
  /// @returns ec::not_found if neither holds it, the update's decode error
  ///          if its bytes were not a valid model, ec::storage_error.
  caf::error keep(const std::string& model_id);

private:
  friend class model_writer;
  model_store(std::shared_ptr<database> db, uint32_t chunk_bytes);
  // Claims `model_id` for one write: a valid id, neither committed nor
  // being written (ec::invalid_argument, ec::already_exists).
  caf::error reserve(const std::string& model_id);
  void release(const std::string& model_id);
  caf::expected<model_info> put_batch(const std::string& model_id,
                                      std::string_view bytes);
  // The metadata of a committed model: ec::invalid_argument for a bad id,
  // ec::not_found.
  caf::expected<rondo::store::ModelMeta>
  committed_meta(const std::string& model_id);
  // Removes the files in model-files/ that no ModelMeta names.
  caf::error remove_orphan_files();
  // Unlinks these files of model-files/ (best effort).
  void remove_files(const std::vector<std::string>& names);
  // Compacts the chunk keys in [low, high] (best effort), without mtx_
  // (writers go on meanwhile).
  void compact_chunks(const std::string& low, const std::string& high);

  // Writes the cache's decoded update `model_id` into the store (STORED
  // npz) and drops it from the cache. @returns the update's decode error,
  // ec::not_found when the cache does not hold it.
  caf::error promote(const std::string& model_id);

  std::shared_ptr<database> db_;
  std::shared_ptr<update_cache> updates_;
  uint32_t chunk_bytes_;
  /// `<database>/model-files`.
  std::string files_path_;
  size_t recovered_ = 0;
  size_t orphans_removed_ = 0;
  size_t compactions_ = 0;
  caf::error last_compaction_error_;
  std::unique_ptr<detail::io_pool> io_;
  std::mutex mtx_;
  std::set<std::string> writing_;
};

/// Checks a model id: 1–256 bytes, no NUL, no control characters.
/// @returns `ec::invalid_argument` naming the id and the reason.
caf::error validate_model_id(const std::string& model_id);

} // namespace rondo::storage
