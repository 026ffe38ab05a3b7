#pragma once

// The combiner's model updates between upload and aggregation. An npz
// upload is decoded as it streams in (model/npz_stream.hpp) and kept here,
// in memory under a budget or in a spill file, instead of being written
// through RocksDB and read back: a model update serves one round, and the
// aggregator folds it straight from its decoded values. Anything that asks
// the model store for such an update by id (a download, staging it as a
// global model, `keep`) gets it written into the store first, as a STORED
// npz (model_store::committed_meta), so every model store reader works
// unchanged.

#include "model/npz_stream.hpp"

#include <caf/error.hpp>
#include <caf/expected.hpp>

#include <chrono>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

namespace rondo::storage {

/// Options of the update cache.
struct update_cache_options {
  /// Bytes of decoded values held in memory at once, over all updates;
  /// past it, updates go to spill files (written once, read once by the
  /// fold; the page cache, not the process, holds them). Default 16 MiB:
  /// with 50 clients uploading 4 MB updates at once, 64 MiB cost 40 MiB
  /// more peak RSS than 16 MiB and saved no measurable CPU
  /// (bench/combiner_load.py).
  uint64_t memory_bytes = uint64_t{16} << 20;
  /// Folder of spill files; emptied when the cache is made.
  std::string spill_dir;
  /// A completed update that no round took is dropped this many seconds
  /// after its upload ended (> 0). Default 3600 s: far beyond the gap
  /// between a client's upload and its SendModelUpdate.
  double ttl_seconds = 3600;
  /// Limits of the npz decoder (max_uncompressed_bytes).
  npz_options npz;
};

/// Model updates by model id, from the start of their upload until a round
/// folds them or they are removed. Thread-safe.
class update_cache {
public:
  /// Makes a cache; creates `spill_dir` and removes the files a previous
  /// process left there. @returns ec::storage_error naming the folder, or
  /// ec::invalid_config for a bad ttl.
  static caf::expected<std::shared_ptr<update_cache>>
  make(update_cache_options opts);

  /// Claims `model_id` for an upload starting now.
  /// @returns ec::already_exists if the id is held or being uploaded.
  caf::error reserve(const std::string& model_id);

  /// A decoder for one upload: this cache's budget, spill folder and limits.
  npz_stream_options decoder_options();

  /// Ends the upload claimed by reserve(): keeps its decoded update, or the
  /// error that rejected its bytes (given back by find()). Drops completed
  /// entries older than the ttl.
  void complete(const std::string& model_id,
                caf::expected<std::shared_ptr<decoded_update>> result);

  /// Drops the claim of an upload that failed (nothing is kept).
  void release(const std::string& model_id);

  /// Whether the id is held or being uploaded.
  bool contains(const std::string& model_id);

  /// Whether an upload of the id completed and is held, valid model or
  /// not (find() says which).
  bool holds(const std::string& model_id);

  /// The decoded update. @returns ec::not_found if not held,
  /// ec::invalid_state while its upload runs, or the decode error
  /// (ec::malformed_model, ec::too_large, ...) that its bytes met.
  caf::expected<std::shared_ptr<decoded_update>>
  find(const std::string& model_id);

  /// Forgets the id (a decoded update's memory is freed once no reader
  /// holds it). @returns whether it was held (an upload in progress is not
  /// removed).
  bool remove(const std::string& model_id);

  /// Completed entries held now.
  size_t size();

  /// Bytes of decoded values in memory now.
  uint64_t memory_used() const {
    return budget_.used();
  }

private:
  explicit update_cache(update_cache_options opts);

  struct entry {
    bool complete = false;
    caf::expected<std::shared_ptr<decoded_update>> result{caf::error{}};
    std::chrono::steady_clock::time_point completed_at;
  };

  update_cache_options opts_;
  memory_budget budget_;
  std::mutex mtx_;
  std::unordered_map<std::string, entry> entries_;
};

class model_store;

/// Reads the committed model `model_id` of `store` chunk by chunk through
/// the streaming decoder (each chunk verified by the store, each member's
/// CRC-32 by the decoder), so the stored bytes are never whole in memory:
/// what the aggregator, the controller's reduce and tools fold from. With
/// `opts.budget` set, the values spill to a file past it.
/// @returns ec::not_found naming the model, ec::corrupt (store checksums),
///          or the decoder's errors (ec::malformed_model naming the member,
///          ec::too_large).
caf::expected<std::shared_ptr<decoded_update>>
read_decoded(model_store& store, const std::string& model_id,
             const npz_stream_options& opts = {});

} // namespace rondo::storage
