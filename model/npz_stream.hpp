#pragma once

// Decoding an npz model update as its bytes arrive (FEDn's upload stream):
// ZIP local headers are parsed, DEFLATE members inflated with ISA-L's igzip
// (several times zlib's speed), each member's CRC-32 checked and its npy
// header parsed chunk by chunk, and the values written straight into their
// final place. When the upload ends, the update is ready to fold: no
// re-read, no inflate and no copy at aggregation time.
//
// The decoded values live in memory while a process-wide memory_budget
// allows, else in a spill file (page cache, not the process's RSS).

#include "model/npz.hpp"
#include "model/tensor.hpp"

#include <caf/error.hpp>
#include <caf/expected.hpp>

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

namespace rondo {

/// Bytes of memory that decoded model updates may hold at once, shared by
/// every upload of a process. Thread-safe (atomic counter).
class memory_budget {
public:
  /// A budget of `limit_bytes` bytes.
  explicit memory_budget(uint64_t limit_bytes) : limit_(limit_bytes) {
  }

  /// Takes `n` bytes if they fit; false (and nothing taken) otherwise.
  bool try_reserve(uint64_t n);

  /// Gives back `n` bytes taken by try_reserve.
  void release(uint64_t n);

  /// Bytes taken now.
  uint64_t used() const {
    return used_.load(std::memory_order_relaxed);
  }

  uint64_t limit() const {
    return limit_;
  }

private:
  const uint64_t limit_;
  std::atomic<uint64_t> used_{0};
};

/// A model update decoded from an npz archive: tensor metadata in archive
/// order and each tensor's values (C order, little-endian), held in memory
/// or in a spill file. Random access from several threads (read_range), so
/// weighted_sum folds it in batches like an in-memory model. Immutable once
/// made. Destroying it gives its memory back to the budget at once, or
/// removes its spill file.
class decoded_update final : public update_view {
public:
  ~decoded_update() override;

  const model_spec& spec() const override;

  /// Visits tensor `index`'s values: one chunk when in memory, 512 KiB
  /// preads from a spill file.
  caf::error visit(size_t index, const chunk_visitor& fn) const override;

  /// True.
  bool random_access() const override;

  /// A pointer into memory, or one pread from the spill file into
  /// `scratch`. Errors as update_view::read_range (ec::malformed_model
  /// naming the spill file on an I/O error).
  caf::expected<const std::byte*>
  read_range(size_t index, uint64_t first, uint64_t count,
             std::byte* scratch) const override;

  /// Whether the values are in memory (else in a spill file).
  bool in_memory() const;

  /// Bytes of decoded values (Σ nbytes over the tensors).
  uint64_t data_bytes() const;

  /// Bytes of the upload as received (compressed size, headers included).
  uint64_t wire_bytes() const;

  /// A copy as an in-memory model (e.g. to store it as a STORED npz).
  /// @returns ec::malformed_model on a spill file read error.
  caf::expected<model> to_model() const;

  struct impl;
  explicit decoded_update(std::unique_ptr<impl> ptr);

private:
  std::unique_ptr<impl> impl_;
};

/// Options of an npz_stream_decoder.
struct npz_stream_options {
  /// Limits as for npz_reader: `max_uncompressed_bytes` bounds the total
  /// decoded size (ec::too_large as soon as the headers claim more).
  npz_options npz;
  /// Where in-memory values are counted; null: no limit, always memory.
  memory_budget* budget = nullptr;
  /// Folder for spill files (created if missing) used when the budget
  /// cannot take a tensor. Required when `budget` is set.
  std::string spill_dir;
};

/// Decodes one npz archive pushed to it in pieces of any size. Accepts what
/// npz_reader accepts: STORED and DEFLATE `.npy` members (npy format
/// 1.0/2.0/3.0, `<f4`/`<f8`, C order), ZIP64 local headers as numpy's
/// `savez`/`savez_compressed` write them. A member whose local header
/// defers its sizes to a data descriptor (general-purpose bit 3) is decoded
/// too when DEFLATE (the stream ends itself); a STORED one cannot be
/// delimited without the central directory, so the decoder then keeps the
/// rest of the archive's bytes in memory (counted against the budget;
/// ec::too_large when the budget or npz.max_uncompressed_bytes cannot take
/// them) and decodes it at finish() with the central directory's sizes —
/// same result, more memory. Python's zipfile writes such members only to
/// an unseekable file; numpy's savez does not.
///
/// Errors (feed and finish) name the member and the reason, as npz_reader's
/// do: ec::malformed_model (not a ZIP, not an `.npy` member, duplicate key,
/// bad npy header, unsupported dtype or order, inflate error, CRC-32
/// mismatch, a member longer or shorter than its header says, truncated
/// archive, a central directory that disagrees with the local headers),
/// ec::too_large (over npz.max_uncompressed_bytes), ec::storage_error
/// (spill file). After an error every later call returns it again and all
/// memory and spill files are already freed. Not thread-safe (one upload,
/// one thread at a time).
class npz_stream_decoder {
public:
  explicit npz_stream_decoder(npz_stream_options opts);
  ~npz_stream_decoder();
  npz_stream_decoder(const npz_stream_decoder&) = delete;
  npz_stream_decoder& operator=(const npz_stream_decoder&) = delete;

  /// Consumes the next `bytes` of the archive.
  caf::error feed(std::string_view bytes);

  /// Ends the archive: checks that the last member and the central
  /// directory are complete and agree with what was decoded.
  /// @returns the decoded update (the decoder is then empty).
  caf::expected<std::shared_ptr<decoded_update>> finish();

  /// Frees everything now (memory, spill file); later calls fail with
  /// ec::invalid_state.
  void abort();

  /// Bytes fed so far.
  uint64_t bytes_in() const;

  struct impl;

private:
  std::unique_ptr<impl> impl_;
};

/// Decodes a whole npz archive in memory with npz_stream_decoder (for
/// tests and tools). Errors as npz_stream_decoder.
caf::expected<std::shared_ptr<decoded_update>>
decode_npz_bytes(std::string_view bytes, const npz_stream_options& opts = {});

} // namespace rondo
