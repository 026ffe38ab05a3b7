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
    out.reserve(spec.size());
    for (size_t i = 0; i < spec.size(); ++i) {
      // Each tensor's sum becomes its result: peak memory stays at the sums.
      auto t = finish_in_place(sum_.take(i), total, spec[i],
                               "fedavg: aggregate tensor");
      if (!t)
        return t.error();
      out.push_back(std::move(*t));
    }
    return out;
  }

};

} // namespace

std::unique_ptr<aggregator> make_fedavg() {
  return std::make_unique<fedavg>();
}

} // namespace rondo
