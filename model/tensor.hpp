#pragma once

// Rondo's in-memory model: an ordered list of named float32/float64 tensors,
// as in FEDn's numpyhelper format (one `.npz` member per tensor).

#include <caf/error.hpp>
#include <caf/expected.hpp>

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

namespace rondo {

/// Element type of a tensor: little-endian IEEE 754 binary32 or binary64
/// (numpy `<f4` / `<f8`).
enum class dtype : uint8_t { f32, f64 };

/// Bytes per element: 4 or 8.
size_t size_of(dtype t);

/// numpy's name: "float32" or "float64".
const char* to_string(dtype t);

/// Renders a shape as numpy does: "()", "(5,)", "(784, 10)".
std::string shape_string(const std::vector<uint64_t>& shape);

/// Name, element type and shape of a tensor (its data excluded).
struct tensor_info {
  /// The npz key, e.g. "0" (the member name without ".npy").
  std::string name;
  dtype type = dtype::f32;
  /// Dimensions in C order; empty for a 0-d (scalar) tensor.
  std::vector<uint64_t> shape;

  /// Number of elements (product of `shape`; 1 for a 0-d tensor).
  uint64_t count() const;

  /// Size of the data in bytes: count() * size_of(type).
  uint64_t nbytes() const;

  /// True if name, type and shape are equal.
  bool operator==(const tensor_info& other) const;
  bool operator!=(const tensor_info& other) const {
    return !(*this == other);
  }
};

/// Metadata of a whole model, in archive order.
using model_spec = std::vector<tensor_info>;

/// An owned, 64-byte aligned, uninitialized byte buffer (copyable: a copy is
/// deep). Uninitialized so that reading a file into it touches each page
/// once. Buffers of 2 MiB and more are anonymous mappings advised to use
/// transparent huge pages: on virtual machines a 4 KiB page fault can cost
/// more than averaging the page's data.
class byte_buffer {
public:
  byte_buffer() = default;
  /// Allocates `size` bytes; throws std::bad_alloc when memory is exhausted.
  explicit byte_buffer(size_t size);
  byte_buffer(const byte_buffer& other);

  /// `size` zero bytes; large buffers come as fresh zero pages that count
  /// toward RSS only once written.
  static byte_buffer zeros(size_t size);
  byte_buffer(byte_buffer&&) noexcept = default;
  byte_buffer& operator=(const byte_buffer& other);
  byte_buffer& operator=(byte_buffer&&) noexcept = default;

  std::byte* data() {
    return data_.get();
  }
  const std::byte* data() const {
    return data_.get();
  }
  size_t size() const {
    return size_;
  }

  /// Keeps the first `size` bytes (at most size()); a large buffer gives
  /// its whole pages past them back to the system at once, a small one
  /// keeps its allocation.
  void shrink(size_t size);

private:
  struct deleter {
    size_t mapped; // bytes of an anonymous mapping, else 0: free()
    void operator()(std::byte* p) const;
  };
  void allocate(size_t size, bool zero);
  std::unique_ptr<std::byte[], deleter> data_;
  size_t size_ = 0;
};

/// One named tensor with its values (C order, native little-endian).
struct tensor : tensor_info {
  /// Exactly nbytes() bytes.
  byte_buffer data;

  tensor() = default;
  /// Allocates an uninitialized tensor of the given metadata.
  explicit tensor(tensor_info info);

  float* f32() {
    return reinterpret_cast<float*>(data.data());
  }
  const float* f32() const {
    return reinterpret_cast<const float*>(data.data());
  }
  double* f64() {
    return reinterpret_cast<double*>(data.data());
  }
  const double* f64() const {
    return reinterpret_cast<const double*>(data.data());
  }

  /// Element `i` widened to double (for tests and diagnostics, not loops).
  double at(uint64_t i) const;
};

/// A model: tensors in archive order (keys "0".."N-1" in FEDn's helper).
using model = std::vector<tensor>;

/// The metadata of every tensor of `m`.
model_spec spec_of(const model& m);

/// Makes a tensor named `name` of the given shape holding `values`
/// converted to `type` (a convenience for tests and tools).
/// Returns ec::invalid_argument if values.size() != the shape's count.
caf::expected<tensor> make_tensor(std::string name, dtype type,
                                  std::vector<uint64_t> shape,
                                  const std::vector<double>& values);

/// Called with consecutive chunks of one tensor's values: `data` points to
/// `count` elements of the tensor's dtype, starting at element `first`.
/// Returning an error stops the visit and is passed on.
using chunk_visitor =
  std::function<caf::error(const std::byte* data, uint64_t first,
                           uint64_t count)>;

/// A model update as aggregation sees it: tensor metadata plus sequential,
/// repeatable access to each tensor's values. Implemented over an in-memory
/// `model` (model_view) and over an npz archive without loading it
/// (npz_reader), so that an aggregator can fold a STORED npz straight from
/// its bytes.
class update_view {
public:
  virtual ~update_view();
  /// Tensor metadata in archive order.
  virtual const model_spec& spec() const = 0;
  /// Visits tensor `index`'s values from first to last element; may be
  /// called more than once. Returns the visitor's first error or a read
  /// error (ec::malformed_model naming the member).
  virtual caf::error visit(size_t index, const chunk_visitor& fn) const = 0;

  /// True if read_range() works for every tensor: the values can be read
  /// at any offset and from several threads at once (in-memory models,
  /// STORED npz members). False for DEFLATE members, which inflate only
  /// from the start. The default is false.
  virtual bool random_access() const;

  /// Elements [first, first + count) of tensor `index` (which must lie
  /// within the tensor): a pointer to them, either into memory the view
  /// holds (no copy) or into `scratch`, which then receives the
  /// count * element-size bytes. The pointer may be unaligned and stays
  /// valid while the view and `scratch` do. Safe to call from several
  /// threads at once with different scratch buffers. Errors:
  /// ec::malformed_model naming the member (I/O error, truncated file),
  /// ec::invalid_state when random_access() is false (the default).
  virtual caf::expected<const std::byte*>
  read_range(size_t index, uint64_t first, uint64_t count,
             std::byte* scratch) const;
};

/// An update_view over an in-memory model (one chunk per tensor). The model
/// must outlive the view.
class model_view final : public update_view {
public:
  explicit model_view(const model& m);
  const model_spec& spec() const override;
  caf::error visit(size_t index, const chunk_visitor& fn) const override;
  /// True: the model is in memory.
  bool random_access() const override;
  /// A pointer into the model's tensor (never copies into `scratch`).
  caf::expected<const std::byte*>
  read_range(size_t index, uint64_t first, uint64_t count,
             std::byte* scratch) const override;

private:
  const model* model_;
  model_spec spec_;
};

} // namespace rondo
