#pragma once

// The running weighted sum that FedAvg and FedOpt share: Σ wᵢ·xᵢ and Σ wᵢ
// over updates folded in as they arrive, in float64 for both float32 and
// float64 models (8 bytes per parameter whatever the number of updates).
// float64 accumulation of float32 inputs: every product wᵢ·xᵢ with an
// integer weight below 2^29 is exact, and the sum's relative rounding error
// stays near k·2^-53 after k updates, far below float32's 2^-24.
//
// Each element's sum is acc ← acc + wᵢ·xᵢ in arrival order (no FMA, no
// reassociation), however the work is split: updates added one at a time
// or in a batch, by one thread or several, give the same bits.
//
// How an update is read (updates that allow random access: in-memory
// models and STORED npz): the parameters are cut into blocks, and threads
// take blocks from a shared counter. While the sums are still zero (the
// first add or add_batch after reset), each block of each update is read
// once, checked finite and folded while in cache; if an update turns out
// bad in a later block, the sums start over from zero and only the
// accepted updates are folded again, so the result is exact at the price
// of a second read in that rare case. Once the sums hold updates, undoing
// a float64 addition by subtracting would not be exact, so a run reads
// twice: pass 1 checks every block of every update of the batch, and only
// an update that passed whole is read again and folded in pass 2. A
// rejected update therefore never changes the sums. Folding visits one
// block of the sums for every update of the batch while it is in cache,
// so the sums (16 bytes of memory traffic per parameter) are read and
// written once per batch rather than once per update. DEFLATE members
// inflate only from the start; such an update is checked and folded by two
// sequential visits, one at a time, in its place in the batch order.

#include "model/aggregator.hpp"
#include "model/tensor.hpp"

#include <caf/error.hpp>

#include <cstdint>
#include <vector>

namespace rondo {

/// How weighted_sum splits its work. The defaults suit a 2-core machine
/// whose cores have a 1 MiB L2 cache.
struct fold_tuning {
  /// Threads per pass: the caller's plus threads - 1 started for the call
  /// and joined before it returns. Default: min(2, hardware threads).
  unsigned threads = default_threads();
  /// Parameters per block (one read per update and block). Default 131072:
  /// a 512 KiB read of float32, and 1 MiB of float64 sums that stay in a
  /// 1 MiB L2 or a large L3 while every update of a batch is folded into
  /// them. On the 2-core reference VM (AMD EPYC, a PVM guest where system
  /// calls are dear) bench_aggregate measured 0.168-0.170 CPU s per GB
  /// with it against 0.176-0.189 with 32768 and 0.172-0.185 with 262144.
  uint64_t block = 131072;

  /// min(2, std::thread::hardware_concurrency()), at least 1.
  static unsigned default_threads();
};

class weighted_sum {
public:
  /// Starts over for models shaped like `global`: zero sums, zero weight.
  void reset(const model_spec& global);

  /// Sets how the work is split (results do not depend on it).
  void tune(fold_tuning tuning) {
    tuning_ = tuning;
  }

  /// Validates `update` (validate_update against the spec given to reset)
  /// and then adds weight·update. On a validation error nothing changed.
  /// If reading fails after validation passed (the file changed under us),
  /// the whole sum is discarded (reset) and ec::aggregation_failed returned.
  caf::error add(const update_view& update, double weight);

  /// add() for each update in order, with the same verdicts and the same
  /// sums bit for bit (one verdict per update; empty means added), reading
  /// the sums once per run of consecutive random-access updates. If
  /// reading fails after validation passed, the sum is discarded (reset)
  /// and every update of that run that had passed validation gets
  /// ec::aggregation_failed. Scratch memory: fold_tuning::threads blocks
  /// of 8 bytes per parameter, whatever the batch size, kept for later
  /// calls.
  std::vector<caf::error> add_batch(const std::vector<weighted_update>& batch);

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

  /// Every tensor's result Σ wᵢxᵢ / divisor (finish_in_place of each sum,
  /// which are taken), tensors spread over fold_tuning::threads threads,
  /// largest first. Fails with the error of the first tensor (in model
  /// order) whose result is not finite; `what` as for finish_in_place.
  caf::expected<model> finish_all(double divisor, const std::string& what);

  /// Moves tensor `index`'s sum out (spec()[index].count() float64 values),
  /// e.g. to turn it into the result in place; sum(index) is then null.
  byte_buffer take(size_t index);

private:
  // One update at a time by two visits (for views without random access).
  caf::error add_sequential(const update_view& update, double weight);
  // Checks and folds batch[0, n), all random-access; fills verdicts.
  void add_run(const weighted_update* batch, size_t n, caf::error* verdicts);
  // Counts the accepted updates of a run into the totals.
  void commit(const weighted_update* batch,
              const std::vector<size_t>& accepted);

  model_spec spec_;
  std::vector<byte_buffer> sums_; // float64, byte_buffer::zeros
  std::vector<byte_buffer> scratch_; // a block of read buffer per thread
  double total_ = 0;
  size_t count_ = 0;
  fold_tuning tuning_;
};

/// Base of the aggregators built on a weighted_sum (FedAvg, FedOpt): add()
/// and accepted(), and the state checks of begin and finish.
class summing_aggregator : public aggregator {
public:
  using aggregator::add;
  caf::error add(const update_view& update, double num_examples) override;
  /// weighted_sum::add_batch (ec::invalid_state for each without a begin).
  std::vector<caf::error>
  add_batch(const std::vector<weighted_update>& batch) override;
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

/// Turns `sums` (info.count() float64 values, e.g. from weighted_sum::take)
/// into the tensor `info` holding sums[i] / divisor in info.type, in place:
/// one pass over the sums and no second buffer, and a float32 result gives
/// back the upper half of a large buffer's pages. Each value is the
/// float64 quotient rounded once to info.type (the same bits as dividing
/// the sums and then converting). Fails with ec::non_finite naming `what`,
/// the tensor and the first index whose result is NaN or infinite (e.g. a
/// float32 overflow); the buffer is then freed.
caf::expected<tensor> finish_in_place(byte_buffer sums, double divisor,
                                      const tensor_info& info,
                                      const std::string& what);

} // namespace rondo
