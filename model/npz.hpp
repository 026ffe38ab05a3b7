#pragma once

// FEDn's model format: a NumPy `.npz` archive (a ZIP of `<key>.npy`
// members, keys "0".."N-1" in layer order; other keys are allowed and the
// archive order is kept). Read with libzip, DEFLATE members inflated with
// ISA-L's igzip (model/npz_stream.hpp decodes as bytes arrive); STORED and
// DEFLATE members; NPY format 1.0/2.0/3.0; little-endian float32 (`<f4`)
// and float64 (`<f8`) in C order. Every error names the member and the
// reason.

#include "model/tensor.hpp"

#include <caf/error.hpp>
#include <caf/expected.hpp>

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

namespace rondo {

/// How members are written: STORED (no compression; Rondo's default, read
/// without a per-element copy) or DEFLATE (what FEDn's
/// `np.savez_compressed` writes; read with ISA-L at ~375 MB/s a core on
/// float32 weights, against zlib's ~250 MB/s, on the development machine).
enum class npz_compression : uint8_t { stored, deflate };

/// Options for reading and writing npz archives.
struct npz_options {
  /// Reading: the most bytes the members of one archive may declare as
  /// uncompressed size, in total (a zip-bomb guard). Default 16 GiB.
  /// Exceeding it fails with ec::too_large before any data is read.
  uint64_t max_uncompressed_bytes = uint64_t{16} << 30;
  /// Writing: member compression. Default STORED.
  npz_compression compression = npz_compression::stored;
  /// Writing DEFLATE: zlib level 1 (fastest) to 9 (smallest); 0 means
  /// zlib's default (6).
  int deflate_level = 0;
  /// Reading: STORED members are read straight from the file or buffer
  /// without checking their CRC-32 (a CRC costs more than averaging the
  /// data; the npy header, sizes and offsets are still checked). Set to read
  /// them through libzip, which verifies the CRC.
  bool verify_stored_crc = false;
};

/// Reads the npz file at `path` into memory. STORED members are read with
/// one pread per member straight into the tensor buffer. Errors:
/// ec::not_found (cannot open), ec::malformed_model (not a ZIP, not a
/// `.npy` member, duplicate key, Fortran order, big-endian or non-float
/// dtype, a header shape that disagrees with the data length, truncated
/// or corrupt data), ec::too_large (declared size over the limit).
caf::expected<model> read_npz_file(const std::string& path,
                                   const npz_options& opts = {});

/// Reads an npz archive held in memory (e.g. a model store's bytes); the
/// errors are those of read_npz_file. STORED data is copied by memcpy.
caf::expected<model> read_npz_bytes(std::string_view bytes,
                                    const npz_options& opts = {});

/// Writes `m` as an npz file that numpy.load reads back bit-exactly.
/// libzip writes to a temporary file and renames it at the end, so a
/// failed write leaves no partial file. Errors: ec::storage_error;
/// ec::invalid_argument for a model without tensors (libzip writes no file
/// for an archive without members).
caf::error write_npz_file(const model& m, const std::string& path,
                          const npz_options& opts = {});

/// Writes `m` as npz bytes (see write_npz_file).
caf::expected<std::string> write_npz_bytes(const model& m,
                                           const npz_options& opts = {});

/// An npz archive opened with its headers parsed and checked but no tensor
/// data read: an update_view an aggregator folds straight from the file or
/// buffer. STORED members also support read_range (any offset, several
/// threads). Visiting a STORED member of a file preads it 512 KiB at a time
/// into one reused buffer (cache-resident; no page faults), so memory does
/// not grow with the model; visiting a DEFLATE member
/// inflates it chunk by chunk each time (for several passes over a
/// DEFLATE update, read_all() once instead). Not thread-safe.
class npz_reader final : public update_view {
public:
  /// Opens the npz file at `path`. Errors as read_npz_file.
  static caf::expected<std::unique_ptr<npz_reader>>
  open_file(const std::string& path, const npz_options& opts = {});

  /// Opens npz bytes; the reader keeps `bytes` alive.
  static caf::expected<std::unique_ptr<npz_reader>>
  open_bytes(std::shared_ptr<const std::string> bytes,
             const npz_options& opts = {});

  /// Opens npz bytes that the caller keeps alive longer than the reader.
  static caf::expected<std::unique_ptr<npz_reader>>
  open_bytes(std::string_view bytes, const npz_options& opts = {});

  ~npz_reader() override;

  const model_spec& spec() const override;

  /// Visits member `index`'s values. Chunks are whole elements but may be
  /// unaligned in memory (ZIP does not align member data).
  caf::error visit(size_t index, const chunk_visitor& fn) const override;

  /// all_stored(): STORED members can be read at any offset.
  bool random_access() const override;

  /// Reads a range of a STORED member: one pread into `scratch` for a
  /// file (thread-safe: no shared file offset, no shared buffer), or a
  /// pointer into the bytes for an in-memory archive. Errors as
  /// update_view::read_range.
  caf::expected<const std::byte*>
  read_range(size_t index, uint64_t first, uint64_t count,
             std::byte* scratch) const override;

  /// True if every member is STORED (visit() reads without inflating).
  bool all_stored() const;

  /// Reads member `index` into a new tensor.
  caf::expected<tensor> read(size_t index) const;

  /// Reads every member into a model.
  caf::expected<model> read_all() const;

  struct impl;

private:
  explicit npz_reader(std::unique_ptr<impl> ptr);
  std::unique_ptr<impl> impl_;
};

} // namespace rondo
