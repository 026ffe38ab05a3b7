#pragma once

// FedOpt: adaptive server optimizers after Reddi et al. 2021, "Adaptive
// Federated Optimization" (ICLR), with FEDn's update rules and defaults
// (fedn/network/combiner/aggregators/fedopt.py). Per round, from the old
// global model x and the accepted updates xₖ with weights nₖ, N = Σ nₖ:
//   Δ = Σ nₖ(xₖ − x)/N                       (pseudo-gradient)
//   m ← β1·m + (1−β1)·Δ                       (m = (1−β1)·Δ on the first step)
//   v starts at τ² and then
//     adam:    v ← β2·v + (1−β2)·Δ²
//     yogi:    v ← v − (1−β2)·Δ²·sign(v − Δ²)
//     adagrad: v ← v + Δ²
//   x ← x + η·m / (√v + τ)
// m and v (float64) live in an optimizer_state kept per session.

#include "model/aggregator.hpp"

#include <memory>

namespace rondo {

/// FedOpt's server optimizer (`serveropt`).
enum class server_optimizer : uint8_t { adam, yogi, adagrad };

/// FedOpt's kwargs with FEDn's defaults.
struct fedopt_options {
  server_optimizer serveropt = server_optimizer::adam;
  /// η, server learning rate; > 0.
  double learning_rate = 1e-3;
  /// β1 in [0, 1).
  double beta1 = 0.9;
  /// β2 in [0, 1).
  double beta2 = 0.99;
  /// τ, adaptivity (v starts at τ²); > 0.
  double tau = 1e-4;

  /// Reads "serveropt" ("adam" | "yogi" | "adagrad"), "learning_rate",
  /// "beta1", "beta2", "tau"; fails with ec::invalid_config naming an
  /// unknown key or a bad value.
  static caf::expected<fedopt_options> from(const aggregator_kwargs& kwargs);
};

/// A FedOpt aggregator (registered as "fedopt") stepping `state`, which
/// must not be null. Memory: 8 bytes per parameter for the sums, a copy of
/// the global model, and 16 bytes per parameter of state.
std::unique_ptr<aggregator> make_fedopt(fedopt_options opts,
                                        std::shared_ptr<optimizer_state> state);

} // namespace rondo
