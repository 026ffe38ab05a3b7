#pragma once

// The running weighted sum that FedAvg and FedOpt share: Σ wᵢ·xᵢ and Σ wᵢ
// over updates folded in one at a time, in float64 for both float32 and
// float64 models (8 bytes per parameter whatever the number of updates).
// float64 accumulation of float32 inputs: every product wᵢ·xᵢ with an
// integer weight below 2^29 is exact, and the sum's relative rounding error
// stays near k·2^-53 after k updates, far below float32's 2^-24.

#include "model/aggregator.hpp"
#include "model/tensor.hpp"

#include <caf/error.hpp>

#include <cstdint>
#include <vector>

namespace rondo {

class weighted_sum {
public:
  /// Starts over for models shaped like `global`: zero sums, zero weight.
  void reset(const model_spec& global);

  /// Validates `update` (validate_update against the spec given to reset)
  /// and then adds weight·update. On a validation error nothing changed.
  /// If reading fails after validation passed (the file changed under us),
  /// the whole sum is discarded (reset) and ec::aggregation_failed returned.
  caf::error add(const update_view& update, double weight);

  /// Σ wᵢ over the updates added.
  double total_weight() const {
    return total_;
  }

  /// Updates added since reset().
  size_t count() const {
    return count_;
  }

  /// The global model's metadata given to reset().
  const model_spec& spec() const {
    return spec_;
  }

  /// Σ wᵢ·xᵢ for tensor `index`, spec()[index].count() values.
  double* sum(size_t index) {
    return reinterpret_cast<double*>(sums_[index].data());
  }

  /// Frees tensor `index`'s sum (after its result is written).
  void release(size_t index);

private:
  model_spec spec_;
  std::vector<byte_buffer> sums_; // float64, byte_buffer::zeros
  double total_ = 0;
  size_t count_ = 0;
};

/// Base of the aggregators built on a weighted_sum (FedAvg, FedOpt): add()
/// and accepted(), and the state checks of begin and finish.
class summing_aggregator : public aggregator {
public:
  using aggregator::add;
  caf::error add(const update_view& update, double num_examples) override;
  size_t accepted() const override;

protected:
  /// Starts an aggregation for models shaped like `global`.
  void start(const model_spec& global);
  /// Ends the aggregation; fails with ec::invalid_state without a begin
  /// and with ec::aggregation_failed if no update was accepted.
  caf::error end();

  weighted_sum sum_;

private:
  bool started_ = false;
};

/// Converts out.count() `values` into `out` (already shaped, in its own dtype) and
/// fails with ec::non_finite naming `what` and the first index whose stored
/// value is NaN or infinite (e.g. a float32 overflow). Shared by the
/// aggregators' finish().
caf::error store_finite(const double* values, tensor& out,
                        const std::string& what);

} // namespace rondo
