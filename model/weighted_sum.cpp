#include "model/weighted_sum.hpp"

#include "messages/error.hpp"
#include "model/validate.hpp"

#include <cmath>
#include <cstring>

namespace rondo {

namespace {

// acc[i] += w * x[i] for `n` elements of type T at `x` (unaligned). Simple
// enough for GCC to vectorize (this file builds with -O3).
template <class T>
void fold(double* __restrict acc, const std::byte* __restrict x, uint64_t n,
          double w) {
  for (uint64_t i = 0; i < n; ++i) {
    T v;
    std::memcpy(&v, x + i * sizeof(T), sizeof(T));
    acc[i] += w * static_cast<double>(v);
  }
}

} // namespace

void weighted_sum::reset(const model_spec& global) {
  spec_ = global;
  sums_.clear();
  sums_.reserve(spec_.size());
  for (auto& t : spec_)
    sums_.push_back(byte_buffer::zeros(t.count() * sizeof(double)));
  total_ = 0;
  count_ = 0;
}

caf::error weighted_sum::add(const update_view& update, double weight) {
  if (auto err = validate_update(update, spec_, weight))
    return err;
  for (size_t i = 0; i < spec_.size(); ++i) {
    auto* acc = sum(i);
    auto type = spec_[i].type;
    auto err = update.visit(i, [=](const std::byte* x, uint64_t first,
                                   uint64_t n) {
      if (type == dtype::f32)
        fold<float>(acc + first, x, n, weight);
      else
        fold<double>(acc + first, x, n, weight);
      return caf::error{};
    });
    // Only a read failure after a successful validation pass gets here
    // (e.g. the file changed under us); the sum is then unusable.
    if (err) {
      reset(spec_);
      return caf::make_error(ec::aggregation_failed,
                             "reading an update failed midway and the "
                             "aggregate was discarded: "
                               + render(err));
    }
  }
  total_ += weight;
  ++count_;
  return {};
}

caf::error summing_aggregator::add(const update_view& update,
                                   double num_examples) {
  if (!started_)
    return caf::make_error(ec::invalid_state,
                           std::string{name()} + ": add before begin");
  return sum_.add(update, num_examples);
}

size_t summing_aggregator::accepted() const {
  return sum_.count();
}

void summing_aggregator::start(const model_spec& global) {
  sum_.reset(global);
  started_ = true;
}

caf::error summing_aggregator::end() {
  if (!started_)
    return caf::make_error(ec::invalid_state,
                           std::string{name()} + ": finish before begin");
  started_ = false;
  if (sum_.count() == 0)
    return caf::make_error(ec::aggregation_failed,
                           std::string{name()} + ": no update was accepted");
  return {};
}

void weighted_sum::release(size_t index) {
  sums_[index] = byte_buffer{};
}

caf::error store_finite(const double* in, tensor& out,
                        const std::string& what) {
  auto n = out.count();
  if (out.type == dtype::f32) {
    float* o = out.f32();
    for (uint64_t i = 0; i < n; ++i)
      o[i] = static_cast<float>(in[i]);
  } else {
    std::memcpy(out.f64(), in, n * sizeof(double));
  }
  auto at = find_non_finite(out.data.data(), n, out.type);
  if (at == n)
    return {};
  return caf::make_error(ec::non_finite,
                         what + " '" + out.name + "' is not finite at index "
                           + std::to_string(at) + " (" + std::to_string(
                             out.at(at)) + ")");
}

} // namespace rondo
