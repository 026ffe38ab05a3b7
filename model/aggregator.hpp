#pragma once

// The aggregator interface: an aggregation folds model updates in one at a
// time as they arrive (memory does not grow with their number) and produces
// the next global model. Aggregators plug in by name (make_aggregator), so
// the round logic never names one; FedAvg and FedOpt are built in, and more
// (coordinate median, trimmed mean, Krum) register with
// register_aggregator.

#include "model/tensor.hpp"

#include <caf/error.hpp>
#include <caf/expected.hpp>

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

namespace rondo {

/// Server-side optimizer state that lives for a whole session (FedOpt's
/// first and second moments m and v). The caller keeps one per session,
/// hands it to each round's aggregator, and calls reset() (or makes a new
/// one) when a new session starts. Stateless aggregators ignore it.
struct optimizer_state {
  /// One float64 vector per tensor of the global model; empty until the
  /// first step.
  std::vector<std::vector<double>> m;
  std::vector<std::vector<double>> v;
  /// Server steps taken in this session.
  uint64_t steps = 0;

  /// Forgets everything: the next step is a session's first.
  void reset();
};

/// An aggregator's keyword arguments (FEDn's `aggregator_kwargs`): the
/// members of a JSON object, numbers as double, strings as string.
class aggregator_kwargs {
public:
  using value = std::variant<double, std::string>;

  /// Parses a JSON object ("" or "null" mean no arguments). Fails with
  /// ec::invalid_config for anything else or for a member that is not a
  /// number or string.
  static caf::expected<aggregator_kwargs> parse(std::string_view json);

  /// Fails with ec::invalid_config naming the first key not in `known`,
  /// e.g. "fedopt: unknown aggregator_kwargs key 'lr' (known: ...)".
  caf::error check_keys(const std::string& aggregator,
                        const std::vector<std::string>& known) const;

  /// The number under `key`, or `fallback` when absent. Fails with
  /// ec::invalid_config if the value is not a finite number.
  caf::expected<double> number(const std::string& key, double fallback) const;

  /// The string under `key`, or `fallback` when absent. Fails with
  /// ec::invalid_config if the value is not a string.
  caf::expected<std::string> text(const std::string& key,
                                  std::string fallback) const;

  std::map<std::string, value> values;
};

/// A model update handed to aggregator::add_batch with its num_examples.
/// The view must outlive the call.
struct weighted_update {
  const update_view* update = nullptr;
  double num_examples = 0;
};

/// One aggregation at a time: begin(), add() per update (or add_batch()
/// for several that have already arrived), finish(). An object may run
/// many aggregations in sequence. Not thread-safe (though an aggregator
/// may use threads of its own inside a call).
class aggregator {
public:
  virtual ~aggregator();

  /// The registered name, e.g. "fedavg".
  virtual const char* name() const = 0;

  /// Starts an aggregation of updates trained from `global`, discarding any
  /// unfinished one. Output tensors take the global model's dtypes. Keeps
  /// what it needs of `global` (FedAvg: the metadata; FedOpt: a copy).
  virtual caf::error begin(const model& global) = 0;

  /// Validates `update` against the global model (validate_update) and, if
  /// it passes, folds it in with weight `num_examples`. A rejected update
  /// leaves the running aggregate exactly as it was; the error is the
  /// reason (ec::shape_mismatch, ec::non_finite, ec::invalid_argument) and
  /// names the tensor. ec::invalid_state without a begin().
  virtual caf::error add(const update_view& update, double num_examples) = 0;

  /// add() for an in-memory model.
  caf::error add(const model& update, double num_examples);

  /// Adds several updates, with the verdicts and the aggregate that add()
  /// called for each in order would give; returns one verdict per update
  /// (an empty error means accepted). Meant for updates that have already
  /// arrived: an aggregator may read its own state once per batch instead
  /// of once per update (FedAvg and FedOpt do, bit-identically to add()).
  /// Nothing is kept after the call. The default calls add() for each.
  virtual std::vector<caf::error>
  add_batch(const std::vector<weighted_update>& updates);

  /// Updates accepted since begin().
  virtual size_t accepted() const = 0;

  /// Produces the aggregate and ends the aggregation. Fails with
  /// ec::aggregation_failed when no update was accepted, and with
  /// ec::non_finite naming the tensor if any result value is not finite
  /// (no model is returned then, and session state is unchanged).
  virtual caf::expected<model> finish() = 0;
};

/// Makes an aggregator from its kwargs and the session's optimizer state
/// (never null when called by make_aggregator).
using aggregator_factory =
  std::function<caf::expected<std::unique_ptr<aggregator>>(
    const aggregator_kwargs& kwargs, std::shared_ptr<optimizer_state> state)>;

/// Registers a factory under `name`. Fails with ec::already_exists if the
/// name is taken. Built in: "fedavg", "fedopt".
caf::error register_aggregator(const std::string& name,
                               aggregator_factory factory);

/// Names of the registered aggregators, sorted.
std::vector<std::string> aggregator_names();

/// Makes the aggregator registered as `name` with `kwargs_json` (a JSON
/// object; "" for none). `state` is the session's optimizer state; null
/// makes a fresh one private to this aggregator (one-off aggregations).
/// Fails with ec::invalid_config for an unknown name, an unknown kwargs key
/// or a bad value, naming it.
caf::expected<std::unique_ptr<aggregator>>
make_aggregator(const std::string& name, std::string_view kwargs_json = {},
                std::shared_ptr<optimizer_state> state = nullptr);

} // namespace rondo
