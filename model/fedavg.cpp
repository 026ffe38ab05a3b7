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
    // Each tensor's sum becomes its result: peak memory stays at the sums.
    return sum_.finish_all(sum_.total_weight(), "fedavg: aggregate tensor");
  }

};

} // namespace

std::unique_ptr<aggregator> make_fedavg() {
  return std::make_unique<fedavg>();
}

} // namespace rondo
