#pragma once

// FedAvg (McMahan et al. 2017) with FEDn's semantics: the new global model
// is the mean of the accepted updates weighted by their num_examples,
// Σ nᵢxᵢ / Σ nᵢ, folded in as updates arrive. Sums are float64 (see
// weighted_sum.hpp), so after updates 1..k the aggregate equals the exact
// weighted mean within float64 rounding for any arrival order; the result
// is rounded once to each tensor's global dtype.

#include "model/aggregator.hpp"

#include <memory>

namespace rondo {

/// A FedAvg aggregator (registered as "fedavg"; it takes no kwargs).
/// Memory: 8 bytes per parameter, whatever the number of updates, plus
/// 256 KiB of read buffer per fold thread (fold_tuning).
std::unique_ptr<aggregator> make_fedavg();

} // namespace rondo
