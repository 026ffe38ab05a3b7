#include "model/fedavg.hpp"

#include "messages/error.hpp"
#include "model/weighted_sum.hpp"

namespace rondo {

namespace {

class fedavg final : public summing_aggregator {
public:
  const char* name() const override {
    return "fedavg";
  }

  caf::error begin(const model& global) override {
    start(spec_of(global));
    return {};
  }

  caf::expected<model> finish() override {
    if (auto err = end())
      return err;
    auto total = sum_.total_weight();
    model out;
    auto& spec = sum_.spec();
    for (size_t i = 0; i < spec.size(); ++i) {
      auto* s = sum_.sum(i);
      auto n = spec[i].count();
      for (uint64_t j = 0; j < n; ++j)
        s[j] /= total;
      out.emplace_back(spec[i]);
      if (auto err = store_finite(s, out.back(), "fedavg: aggregate tensor"))
        return err;
      sum_.release(i); // keeps peak memory near sums + one output model
    }
    return out;
  }

};

} // namespace

std::unique_ptr<aggregator> make_fedavg() {
  return std::make_unique<fedavg>();
}

} // namespace rondo
