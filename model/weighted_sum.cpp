#include "model/weighted_sum.hpp"

#include "messages/error.hpp"
#include "model/simd.hpp"
#include "model/validate.hpp"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstring>
#include <limits>
#include <mutex>
#include <system_error>
#include <thread>

namespace rondo {

namespace {

// acc[i] += w * x[i] for `n` elements of type T at `x` (unaligned). Simple
// enough for GCC to vectorize (this file builds with -O3; -ffp-contract=off
// keeps the multiply and the add separately rounded, as the header
// promises). With `checked`, also returns whether every x[i] was finite
// (an all-ones exponent is NaN or inf), in the same pass over x.
template <class T, class Bits, bool checked>
bool fold(double* __restrict acc, const std::byte* __restrict x, uint64_t n,
          double w) {
  constexpr auto exponent = static_cast<Bits>(
    sizeof(T) == 4 ? 0x7f800000ull : 0x7ff0000000000000ull);
  Bits bad = 0;
  for (uint64_t i = 0; i < n; ++i) {
    Bits u;
    std::memcpy(&u, x + i * sizeof(T), sizeof(T));
    T v;
    std::memcpy(&v, &u, sizeof(T));
    acc[i] += w * static_cast<double>(v);
    if constexpr (checked)
      bad |= static_cast<Bits>((u & exponent) == exponent);
  }
  return bad == 0;
}

// The fold for each dtype, with AVX2 variants (model/simd.hpp).
RONDO_SIMD_CLONES void fold_f32(double* __restrict acc,
                                const std::byte* __restrict x, uint64_t n,
                                double w) {
  fold<float, uint32_t, false>(acc, x, n, w);
}

RONDO_SIMD_CLONES void fold_f64(double* __restrict acc,
                                const std::byte* __restrict x, uint64_t n,
                                double w) {
  fold<double, uint64_t, false>(acc, x, n, w);
}

RONDO_SIMD_CLONES bool fold_checked_f32(double* __restrict acc,
                                        const std::byte* __restrict x,
                                        uint64_t n, double w) {
  return fold<float, uint32_t, true>(acc, x, n, w);
}

RONDO_SIMD_CLONES bool fold_checked_f64(double* __restrict acc,
                                        const std::byte* __restrict x,
                                        uint64_t n, double w) {
  return fold<double, uint64_t, true>(acc, x, n, w);
}

void fold_chunk(double* acc, const std::byte* x, uint64_t n, double w,
                dtype type) {
  if (type == dtype::f32)
    fold_f32(acc, x, n, w);
  else
    fold_f64(acc, x, n, w);
}

// fold_chunk that also returns whether every value of x was finite; a
// non-finite value has then been folded in as well.
bool fold_chunk_checked(double* acc, const std::byte* x, uint64_t n,
                        double w, dtype type) {
  return type == dtype::f32 ? fold_checked_f32(acc, x, n, w)
                            : fold_checked_f64(acc, x, n, w);
}

// out[i] = float(in[i] / divisor) for `n` values (AVX2 variant as above).
RONDO_SIMD_CLONES void narrow_divided(float* __restrict out,
                                      const double* __restrict in,
                                      uint64_t n, double divisor) {
  for (uint64_t i = 0; i < n; ++i)
    out[i] = static_cast<float>(in[i] / divisor);
}

// Elements [first, first + count) of tensor `tensor`.
struct block {
  size_t tensor;
  uint64_t first;
  uint64_t count;
};

// The model's parameters in archive order, cut into blocks of at most
// `size` elements (a block never spans two tensors).
std::vector<block> blocks_of(const model_spec& spec, uint64_t size) {
  std::vector<block> out;
  for (size_t i = 0; i < spec.size(); ++i) {
    auto n = spec[i].count();
    for (uint64_t first = 0; first < n; first += size)
      out.push_back(block{i, first, std::min(size, n - first)});
  }
  return out;
}

// Runs fn(task, worker) for task = 0..tasks-1 on up to `threads` threads:
// the caller (worker 0) and threads - 1 new ones, joined before returning.
// Tasks are handed out in order from a shared counter, so a thread that
// other load slows down simply takes fewer. If no thread can be started,
// the caller does all the work. `fn` must not throw.
template <class F>
void run_parallel(size_t tasks, unsigned threads, const F& fn) {
  std::atomic<size_t> next{0};
  auto work = [&](unsigned worker) {
    for (size_t t; (t = next.fetch_add(1, std::memory_order_relaxed)) < tasks;)
      fn(t, worker);
  };
  std::vector<std::thread> helpers;
  for (unsigned w = 1; w < threads && w < tasks; ++w) {
    try {
      helpers.emplace_back(work, w);
    } catch (const std::system_error&) {
      break; // fewer threads; the results do not change
    }
  }
  work(0);
  for (auto& h : helpers)
    h.join();
}

constexpr size_t no_block = std::numeric_limits<size_t>::max();

// The first failure of each update of a run during one pass: the lowest
// block that failed and why. Threads skip an update's blocks after its
// first failure; record() keeps the lowest, so the reason is the one a
// sequential scan would have found first.
class failures {
public:
  explicit failures(size_t n) : first_(n), why_(n) {
    for (auto& f : first_)
      f.store(no_block, std::memory_order_relaxed);
  }

  // True if update `u` already failed before block `k`.
  bool before(size_t u, size_t k) const {
    return first_[u].load(std::memory_order_relaxed) < k;
  }

  bool any() const {
    return std::any_of(first_.begin(), first_.end(), [](auto& f) {
      return f.load(std::memory_order_relaxed) != no_block;
    });
  }

  void record(size_t u, size_t k, caf::error why) {
    std::lock_guard<std::mutex> guard{mtx_};
    if (k < first_[u].load(std::memory_order_relaxed)) {
      first_[u].store(k, std::memory_order_relaxed);
      why_[u] = std::move(why);
    }
  }

  // The reason of update `u` (after the pass), or none.
  caf::error& why(size_t u) {
    return why_[u];
  }

private:
  std::vector<std::atomic<size_t>> first_;
  std::vector<caf::error> why_;
  std::mutex mtx_;
};

caf::error discarded(const caf::error& why) {
  return caf::make_error(ec::aggregation_failed,
                         "reading an update failed midway and the "
                         "aggregate was discarded: "
                           + render(why));
}

} // namespace

unsigned fold_tuning::default_threads() {
  return std::clamp(std::thread::hardware_concurrency(), 1u, 2u);
}

void weighted_sum::reset(const model_spec& global) {
  if (&global != &spec_)
    spec_ = global;
  sums_.clear();
  sums_.reserve(spec_.size());
  for (auto& t : spec_)
    sums_.push_back(byte_buffer::zeros(t.count() * sizeof(double)));
  total_ = 0;
  count_ = 0;
}

caf::error weighted_sum::add(const update_view& update, double weight) {
  if (!update.random_access())
    return add_sequential(update, weight);
  weighted_update one{&update, weight};
  caf::error verdict;
  add_run(&one, 1, &verdict);
  return verdict;
}

std::vector<caf::error>
weighted_sum::add_batch(const std::vector<weighted_update>& batch) {
  std::vector<caf::error> out(batch.size());
  auto usable = [&](size_t i) {
    return batch[i].update != nullptr && batch[i].update->random_access();
  };
  for (size_t i = 0; i < batch.size();) {
    if (batch[i].update == nullptr) {
      out[i++] = caf::make_error(ec::invalid_argument, "the update is null");
    } else if (!usable(i)) {
      out[i] = add_sequential(*batch[i].update, batch[i].num_examples);
      ++i;
    } else {
      auto j = i;
      while (j < batch.size() && usable(j))
        ++j;
      add_run(&batch[i], j - i, &out[i]);
      i = j;
    }
  }
  return out;
}

caf::error weighted_sum::add_sequential(const update_view& update,
                                        double weight) {
  if (auto err = validate_update(update, spec_, weight))
    return err;
  for (size_t i = 0; i < spec_.size(); ++i) {
    auto* acc = sum(i);
    auto type = spec_[i].type;
    auto err = update.visit(i, [=](const std::byte* x, uint64_t first,
                                   uint64_t n) {
      fold_chunk(acc + first, x, n, weight, type);
      return caf::error{};
    });
    // Only a read failure after a successful validation pass gets here
    // (e.g. the file changed under us); the sum is then unusable.
    if (err) {
      reset(spec_);
      return discarded(err);
    }
  }
  total_ += weight;
  ++count_;
  return {};
}

void weighted_sum::add_run(const weighted_update* batch, size_t n,
                           caf::error* verdicts) {
  // The metadata checks, cheapest first, before any data is read.
  std::vector<size_t> todo;
  for (size_t u = 0; u < n; ++u) {
    if (auto err = check_num_examples(batch[u].num_examples))
      verdicts[u] = std::move(err);
    else if (auto err = check_compatible(batch[u].update->spec(), spec_))
      verdicts[u] = std::move(err);
    else
      todo.push_back(u);
  }
  if (todo.empty())
    return;
  auto blocks = blocks_of(spec_, std::max<uint64_t>(tuning_.block, 1));
  auto threads = std::max(1u, std::min<unsigned>(
                                tuning_.threads,
                                static_cast<unsigned>(std::min<size_t>(
                                  blocks.size(), 64))));
  // Read buffers, kept from call to call: fresh pages cost a fault each.
  auto scratch_bytes = std::max<uint64_t>(tuning_.block, 1) * sizeof(double);
  if (!scratch_.empty() && scratch_.front().size() != scratch_bytes)
    scratch_.clear();
  while (scratch_.size() < threads)
    scratch_.emplace_back(scratch_bytes);
  auto& scratch = scratch_;
  auto read = [&](size_t u, const block& b, unsigned worker) {
    return batch[u].update->read_range(b.tensor, b.first, b.count,
                                       scratch[worker].data());
  };
  // The first failure of each update: unreadable or not finite.
  failures bad{n};
  bool folded = false;
  if (count_ == 0) {
    // The sums are zero, so they can be rebuilt exactly: check and fold
    // each block while it is in cache (one read of every update). If an
    // update fails after some of its blocks were folded, the sums start
    // over from zero and pass 2 folds only the accepted updates.
    run_parallel(blocks.size(), threads, [&](size_t k, unsigned worker) {
      auto& b = blocks[k];
      auto* acc = sum(b.tensor) + b.first;
      for (auto u : todo) {
        if (bad.before(u, k))
          continue;
        auto data = read(u, b, worker);
        if (!data)
          bad.record(u, k, data.error());
        else if (!fold_chunk_checked(acc, *data, b.count,
                                     batch[u].num_examples,
                                     spec_[b.tensor].type))
          // The sums are rebuilt below; this finds the reason.
          bad.record(u, k, check_finite_range(spec_[b.tensor], *data,
                                              b.first, b.count));
      }
    });
    folded = !bad.any();
    if (!folded)
      reset(spec_); // zero sums again (count_ and total_ are still 0)
  } else {
    // Pass 1: every value of every update finite (and readable).
    run_parallel(blocks.size(), threads, [&](size_t k, unsigned worker) {
      auto& b = blocks[k];
      for (auto u : todo) {
        if (bad.before(u, k))
          continue;
        auto data = read(u, b, worker);
        auto err = data ? check_finite_range(spec_[b.tensor], *data, b.first,
                                             b.count)
                        : data.error();
        if (err)
          bad.record(u, k, std::move(err));
      }
    });
  }
  std::vector<size_t> accepted;
  for (auto u : todo) {
    if (auto& why = bad.why(u))
      verdicts[u] = std::move(why);
    else
      accepted.push_back(u);
  }
  if (accepted.empty())
    return;
  if (folded) {
    commit(batch, accepted);
    return;
  }
  // Pass 2: fold the accepted updates, in order, one block at a time.
  failures broken{n};
  std::atomic<bool> stop{false};
  run_parallel(blocks.size(), threads, [&](size_t k, unsigned worker) {
    if (stop.load(std::memory_order_relaxed))
      return;
    auto& b = blocks[k];
    auto* acc = sum(b.tensor) + b.first;
    for (auto u : accepted) {
      auto data = read(u, b, worker);
      if (!data) {
        broken.record(u, k, data.error());
        stop = true;
        return;
      }
      fold_chunk(acc, *data, b.count, batch[u].num_examples,
                 spec_[b.tensor].type);
    }
  });
  if (broken.any()) {
    // Only a read failure after a successful first pass gets here (e.g.
    // the file changed under us); the sum is then unusable.
    caf::error why;
    for (auto u : accepted)
      if (broken.why(u) && !why)
        why = broken.why(u);
    reset(spec_);
    for (auto u : accepted)
      verdicts[u] = discarded(why);
    return;
  }
  commit(batch, accepted);
}

void weighted_sum::commit(const weighted_update* batch,
                          const std::vector<size_t>& accepted) {
  for (auto u : accepted) {
    total_ += batch[u].num_examples;
    ++count_;
  }
}

caf::error summing_aggregator::add(const update_view& update,
                                   double num_examples) {
  if (!started_)
    return caf::make_error(ec::invalid_state,
                           std::string{name()} + ": add before begin");
  return sum_.add(update, num_examples);
}

std::vector<caf::error>
summing_aggregator::add_batch(const std::vector<weighted_update>& batch) {
  if (!started_)
    return std::vector<caf::error>(
      batch.size(), caf::make_error(ec::invalid_state,
                                    std::string{name()} + ": add before begin"));
  return sum_.add_batch(batch);
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

caf::expected<model> weighted_sum::finish_all(double divisor,
                                              const std::string& what) {
  // Largest tensors first, so that the threads end close together.
  std::vector<size_t> order(spec_.size());
  for (size_t i = 0; i < order.size(); ++i)
    order[i] = i;
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) {
    return spec_[a].count() > spec_[b].count();
  });
  std::vector<caf::expected<tensor>> results(spec_.size(), tensor{});
  auto threads = std::max(1u, tuning_.threads);
  run_parallel(order.size(), threads, [&](size_t k, unsigned) {
    auto i = order[k];
    results[i] = finish_in_place(take(i), divisor, spec_[i], what);
  });
  model out;
  out.reserve(results.size());
  for (auto& r : results) {
    if (!r)
      return r.error();
    out.push_back(std::move(*r));
  }
  return out;
}

byte_buffer weighted_sum::take(size_t index) {
  return std::move(sums_[index]);
}

caf::expected<tensor> finish_in_place(byte_buffer sums, double divisor,
                                      const tensor_info& info,
                                      const std::string& what) {
  auto n = info.count();
  auto* in = reinterpret_cast<double*>(sums.data());
  // Chunks of `step` values: divided (and narrowed) into a buffer in L1,
  // checked there, then copied to the front of the sums. The copy of a
  // float32 chunk starting at value j overwrites sums [j/2, j/2 + step/2),
  // all of which were already read.
  constexpr uint64_t step = 1024;
  uint64_t bad = n;
  double bad_value = 0;
  if (info.type == dtype::f32) {
    float out[step];
    for (uint64_t j = 0; j < n && bad == n; j += step) {
      auto m = std::min(step, n - j);
      narrow_divided(out, in + j, m, divisor);
      auto at = find_non_finite(reinterpret_cast<const std::byte*>(out), m,
                                dtype::f32);
      if (at < m) {
        bad = j + at;
        bad_value = out[at];
      }
      std::memcpy(sums.data() + j * sizeof(float), out, m * sizeof(float));
    }
    sums.shrink(n * sizeof(float));
  } else {
    for (uint64_t j = 0; j < n && bad == n; j += step) {
      auto m = std::min(step, n - j);
      for (uint64_t i = 0; i < m; ++i)
        in[j + i] /= divisor;
      auto at = find_non_finite(reinterpret_cast<const std::byte*>(in + j),
                                m, dtype::f64);
      if (at < m) {
        bad = j + at;
        bad_value = in[j + at];
      }
    }
  }
  if (bad < n)
    return caf::make_error(ec::non_finite,
                           what + " '" + info.name + "' is not finite at index "
                             + std::to_string(bad) + " ("
                             + std::to_string(bad_value) + ")");
  tensor out;
  static_cast<tensor_info&>(out) = info;
  out.data = std::move(sums);
  return out;
}

} // namespace rondo
