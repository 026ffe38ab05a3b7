#include "model/fedopt.hpp"

#include "messages/error.hpp"
#include "model/weighted_sum.hpp"

#include <cmath>

namespace rondo {

caf::expected<fedopt_options>
fedopt_options::from(const aggregator_kwargs& kwargs) {
  if (auto err = kwargs.check_keys("fedopt", {"serveropt", "learning_rate",
                                              "beta1", "beta2", "tau"}))
    return err;
  fedopt_options out;
  auto bad = [](const std::string& what) {
    return caf::make_error(ec::invalid_config, "fedopt: " + what);
  };
  auto opt = kwargs.text("serveropt", "adam");
  if (!opt)
    return opt.error();
  if (*opt == "adam")
    out.serveropt = server_optimizer::adam;
  else if (*opt == "yogi")
    out.serveropt = server_optimizer::yogi;
  else if (*opt == "adagrad")
    out.serveropt = server_optimizer::adagrad;
  else
    return bad("serveropt must be adam, yogi or adagrad, got '" + *opt + "'");
  struct param {
    const char* key;
    double* dst;
    bool unit; // in [0, 1) rather than > 0
  };
  for (auto p : {param{"learning_rate", &out.learning_rate, false},
                 param{"beta1", &out.beta1, true},
                 param{"beta2", &out.beta2, true},
                 param{"tau", &out.tau, false}}) {
    auto x = kwargs.number(p.key, *p.dst);
    if (!x)
      return x.error();
    if (p.unit ? !(*x >= 0 && *x < 1) : !(*x > 0))
      return bad(std::string{p.key} + " must be "
                 + (p.unit ? "in [0, 1)" : "> 0") + ", got "
                 + std::to_string(*x));
    *p.dst = *x;
  }
  return out;
}

namespace {

struct step_result {
  double m;
  double v;
  double x;
};

class fedopt final : public summing_aggregator {
public:
  fedopt(fedopt_options opts, std::shared_ptr<optimizer_state> state)
    : opts_(opts), state_(std::move(state)) {
    // nothing else
  }

  const char* name() const override {
    return "fedopt";
  }

  caf::error begin(const model& global) override {
    global_ = global;
    start(spec_of(global));
    return {};
  }

  caf::expected<model> finish() override {
    if (auto err = end())
      return err;
    if (auto err = check_state())
      return err;
    auto& spec = sum_.spec();
    // Pass 1: Δ in place of the sums, and check that every result is
    // finite before the session state changes.
    for (size_t i = 0; i < spec.size(); ++i) {
      auto* delta = sum_.sum(i);
      auto n = spec[i].count();
      auto total = sum_.total_weight();
      for (uint64_t j = 0; j < n; ++j)
        delta[j] = delta[j] / total - global_[i].at(j);
      if (auto err = run(i, false))
        return err;
    }
    // Pass 2: commit m and v; the new weights, in the sums, become the
    // model in place.
    for (size_t i = 0; i < spec.size(); ++i)
      run(i, true);
    auto out = sum_.finish_all(1.0, "fedopt: new global tensor");
    ++state_->steps;
    global_.clear();
    return out;
  }

private:
  caf::error check_state() {
    auto& spec = sum_.spec();
    if (state_->steps == 0) {
      state_->m.assign(spec.size(), {});
      state_->v.assign(spec.size(), {});
      for (size_t i = 0; i < spec.size(); ++i) {
        state_->m[i].assign(spec[i].count(), 0.0);
        state_->v[i].assign(spec[i].count(), opts_.tau * opts_.tau);
      }
      return {};
    }
    for (size_t i = 0; i < spec.size(); ++i)
      if (i >= state_->m.size() || state_->m[i].size() != spec[i].count())
        return caf::make_error(
          ec::invalid_state,
          "fedopt: the session's optimizer state does not match global "
          "tensor '" + spec[i].name + "' " + shape_string(spec[i].shape)
            + "; reset the state for a new model");
    if (state_->m.size() != spec.size())
      return caf::make_error(ec::invalid_state,
                             "fedopt: the session's optimizer state has "
                             "more tensors than the global model");
    return {};
  }

  step_result step(double m, double v, double delta, double x) const {
    auto d2 = delta * delta;
    m = opts_.beta1 * m + (1 - opts_.beta1) * delta;
    switch (opts_.serveropt) {
      case server_optimizer::adam:
        v = opts_.beta2 * v + (1 - opts_.beta2) * d2;
        break;
      case server_optimizer::yogi: {
        auto diff = v - d2;
        auto sign = diff > 0 ? 1.0 : (diff < 0 ? -1.0 : 0.0);
        v = v - (1 - opts_.beta2) * d2 * sign;
        break;
      }
      case server_optimizer::adagrad:
        v = v + d2;
        break;
    }
    return {m, v, x + opts_.learning_rate * m / (std::sqrt(v) + opts_.tau)};
  }

  // Steps tensor i from Δ (in sum_.sum(i)). Without `commit`, only checks
  // that m, v and the new weights (in the global dtype) are finite; with
  // it, stores m and v and puts the new weights in sum_.sum(i).
  caf::error run(size_t i, bool commit) {
    auto* delta = sum_.sum(i);
    auto& m = state_->m[i];
    auto& v = state_->v[i];
    auto& t = global_[i];
    for (uint64_t j = 0; j < m.size(); ++j) {
      auto r = step(m[j], v[j], delta[j], t.at(j));
      if (commit) {
        m[j] = r.m;
        v[j] = r.v;
        delta[j] = r.x;
        continue;
      }
      auto x = t.type == dtype::f32 ? static_cast<double>(
                 static_cast<float>(r.x))
                                    : r.x;
      if (!std::isfinite(r.m) || !std::isfinite(r.v) || !std::isfinite(x))
        return caf::make_error(ec::non_finite,
                               "fedopt: new global tensor '" + t.name
                                 + "' or its optimizer state is not finite "
                                   "at index "
                                 + std::to_string(j));
    }
    return {};
  }

  fedopt_options opts_;
  std::shared_ptr<optimizer_state> state_;
  model global_;
};

} // namespace

std::unique_ptr<aggregator> make_fedopt(fedopt_options opts,
                                        std::shared_ptr<optimizer_state> state) {
  return std::make_unique<fedopt>(opts, std::move(state));
}

} // namespace rondo
