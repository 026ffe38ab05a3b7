#pragma once

// Checks that decide whether a model update may enter an aggregation: it
// must have the global model's keys, order, dtypes and shapes, every value
// must be finite, and its num_examples a finite number > 0. All checks run
// before any weight counts, so a rejected update changes nothing.

#include "model/tensor.hpp"

#include <caf/error.hpp>

#include <cstdint>

namespace rondo {

/// Fails with ec::invalid_argument unless `num_examples` is finite and > 0,
/// e.g. "num_examples must be a finite number > 0, got -3".
caf::error check_num_examples(double num_examples);

/// Fails with ec::shape_mismatch unless `update` has the tensors of
/// `global` in the same order with the same names, dtypes and shapes, e.g.
/// "update tensor '1': shape (784, 10) != global (784, 12)".
caf::error check_compatible(const model_spec& update, const model_spec& global);

/// Index of the first NaN or infinite element among `count` elements of
/// type `type` at `data` (which need not be aligned), or `count` if all are
/// finite. Vectorized; reads each byte once.
uint64_t find_non_finite(const std::byte* data, uint64_t count, dtype type);

/// Fails with ec::non_finite naming the tensor and the first element that
/// is NaN or infinite among `count` elements of tensor `info` at `data`
/// (unaligned), which hold its elements [first, first + count), e.g.
/// "update tensor '0' holds NaN at index 17" (the index is in the tensor).
caf::error check_finite_range(const tensor_info& info, const std::byte* data,
                              uint64_t first, uint64_t count);

/// Fails with ec::non_finite naming the first tensor and element that is
/// NaN or infinite, e.g. "update tensor '0' holds NaN at index 17".
/// Visits every tensor of `update` once.
caf::error check_finite(const update_view& update);

/// All of the above, cheapest first: num_examples, then metadata against
/// `global`, then the finiteness scan over the data.
caf::error validate_update(const update_view& update, const model_spec& global,
                           double num_examples);

} // namespace rondo
