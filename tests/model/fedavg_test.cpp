// fedavg: the weighted mean by num_examples, folded in incrementally.

#include "model/aggregator.hpp"
#include "model/fedavg.hpp"
#include "model/npz.hpp"

#include "tests/model/helpers.hpp"

#include <algorithm>
#include <cmath>
#include <numeric>

using namespace rondo;
using namespace rondo::test;

namespace {

model global_model() {
  model m;
  m.push_back(make("0", dtype::f32, {3, 5}, std::vector<double>(15, 0.0)));
  m.push_back(make("1", dtype::f64, {7}, std::vector<double>(7, 0.0)));
  m.push_back(make("2", dtype::f32, {}, {0.0}));
  return m;
}

// Update k: values that differ in magnitude and sign across updates.
model update(int k) {
  return transform(global_model(), [k](uint64_t i, double) {
    return std::sin(1.0 + 3.7 * k + 0.61 * i) * std::pow(10.0, k % 3 - 1);
  });
}

const std::vector<double> weights = {120, 80, 37.5, 1, 1000};

// Σ nᵢxᵢ / Σ nᵢ in long double from the stored (rounded) update values.
long double reference(const std::vector<model>& ups,
                      const std::vector<size_t>& which, size_t t,
                      uint64_t i) {
  long double num = 0, den = 0;
  for (auto k : which) {
    num += static_cast<long double>(weights[k]) * ups[k][t].at(i);
    den += weights[k];
  }
  return num / den;
}

void check_mean(const model& out, const std::vector<model>& ups,
                const std::vector<size_t>& which) {
  for (size_t t = 0; t < out.size(); ++t) {
    CHECK(out[t].type == global_model()[t].type);
    for (uint64_t i = 0; i < out[t].count(); ++i) {
      auto ref = static_cast<double>(reference(ups, which, t, i));
      // One rounding to the tensor's dtype (plus float64 sum error).
      auto tol = out[t].type == dtype::f32 ? 6e-8 * std::fabs(ref) + 1e-30
                                           : 1e-15 * std::fabs(ref) + 1e-300;
      CHECK(std::fabs(out[t].at(i) - ref) <= tol);
    }
  }
}

} // namespace

TEST_CASE("fedavg: after updates 1..k the aggregate is the weighted mean") {
  std::vector<model> ups;
  for (int k = 0; k < 5; ++k)
    ups.push_back(update(k));
  auto agg = make_fedavg();
  for (size_t k = 1; k <= ups.size(); ++k) {
    REQUIRE(!agg->begin(global_model()));
    std::vector<size_t> which(k);
    std::iota(which.begin(), which.end(), 0);
    for (auto j : which)
      REQUIRE(!agg->add(ups[j], weights[j]));
    auto out = agg->finish();
    REQUIRE(out);
    check_mean(*out, ups, which);
  }
}

TEST_CASE("fedavg: any arrival order gives the same mean") {
  std::vector<model> ups;
  for (int k = 0; k < 5; ++k)
    ups.push_back(update(k));
  std::vector<size_t> order{0, 1, 2, 3, 4};
  auto agg = make_fedavg();
  do {
    REQUIRE(!agg->begin(global_model()));
    for (auto j : order)
      REQUIRE(!agg->add(ups[j], weights[j]));
    auto out = agg->finish();
    REQUIRE(out);
    check_mean(*out, ups, order);
  } while (std::next_permutation(order.begin(), order.end()));
}

TEST_CASE("fedavg: two equal-weight updates give their exact mean") {
  model g;
  g.push_back(make("0", dtype::f32, {4}, {0, 0, 0, 0}));
  model a, b;
  a.push_back(make("0", dtype::f32, {4}, {1, 2, 3, -4}));
  b.push_back(make("0", dtype::f32, {4}, {3, 2, 0.5, 4}));
  auto agg = make_fedavg();
  REQUIRE(!agg->begin(g));
  REQUIRE(!agg->add(a, 100));
  REQUIRE(!agg->add(b, 100));
  auto out = agg->finish();
  REQUIRE(out);
  auto& t = (*out)[0];
  CHECK(t.f32()[0] == 2.0f);
  CHECK(t.f32()[1] == 2.0f);
  CHECK(t.f32()[2] == 1.75f);
  CHECK(t.f32()[3] == 0.0f);
}

TEST_CASE("fedavg: folding from STORED and DEFLATE npz equals the model "
          "path") {
  temp_dir dir;
  std::vector<model> ups;
  for (int k = 0; k < 3; ++k)
    ups.push_back(update(k));
  auto in_memory = make_fedavg();
  auto from_files = make_fedavg();
  REQUIRE(!in_memory->begin(global_model()));
  REQUIRE(!from_files->begin(global_model()));
  for (int k = 0; k < 3; ++k) {
    npz_options opts;
    opts.compression = k == 1 ? npz_compression::deflate
                              : npz_compression::stored;
    auto path = dir / ("u" + std::to_string(k) + ".npz");
    REQUIRE(!write_npz_file(ups[k], path, opts));
    // One from a file, one from bytes, one DEFLATE.
    std::unique_ptr<npz_reader> reader;
    auto bytes = std::make_shared<const std::string>(read_file(path));
    auto opened = k == 2 ? npz_reader::open_bytes(bytes)
                         : npz_reader::open_file(path);
    REQUIRE(opened);
    CHECK((*opened)->all_stored() == (k != 1));
    REQUIRE(!from_files->add(**opened, weights[k]));
    REQUIRE(!in_memory->add(ups[k], weights[k]));
  }
  auto a = in_memory->finish();
  auto b = from_files->finish();
  REQUIRE(a);
  REQUIRE(b);
  for (size_t t = 0; t < a->size(); ++t)
    for (uint64_t i = 0; i < (*a)[t].count(); ++i)
      CHECK((*a)[t].at(i) == (*b)[t].at(i));
}

TEST_CASE("fedavg: a non-finite result is not returned as a model") {
  model g;
  g.push_back(make("w", dtype::f64, {2}, {0, 0}));
  auto big = transform(g, [](uint64_t, double) { return 1e308; });
  auto agg = make_fedavg();
  REQUIRE(!agg->begin(g));
  REQUIRE(!agg->add(big, 1e10));
  REQUIRE(!agg->add(big, 1e10));
  auto out = agg->finish();
  REQUIRE(!out);
  CHECK(out.error() == ec::non_finite);
  RONDO_CHECK_SAYS(out.error(), "aggregate tensor 'w' is not finite at index 0");
}

TEST_CASE("fedavg: registry makes aggregators by name and checks kwargs") {
  auto names = aggregator_names();
  CHECK(std::find(names.begin(), names.end(), "fedavg") != names.end());
  CHECK(std::find(names.begin(), names.end(), "fedopt") != names.end());
  auto ok = make_aggregator("fedavg", "{}");
  REQUIRE(ok);
  CHECK(std::string{(*ok)->name()} == "fedavg");
  auto unknown = make_aggregator("krum");
  REQUIRE(!unknown);
  CHECK(unknown.error() == ec::invalid_config);
  RONDO_CHECK_SAYS(unknown.error(), "unknown aggregator 'krum'");
  auto bad = make_aggregator("fedavg", R"({"learning_rate": 0.1})");
  REQUIRE(!bad);
  RONDO_CHECK_SAYS(bad.error(),
                   "fedavg: unknown aggregator_kwargs key 'learning_rate'");
  // A new aggregator plugs in by name without touching the round logic.
  auto err = register_aggregator(
    "fedavg_test_alias",
    [](const aggregator_kwargs&, std::shared_ptr<optimizer_state>)
      -> caf::expected<std::unique_ptr<aggregator>> { return make_fedavg(); });
  CHECK(!err);
  CHECK(make_aggregator("fedavg_test_alias"));
  CHECK(register_aggregator("fedavg", {}) == ec::already_exists);
}

TEST_CASE("fedavg: add before begin is an error") {
  auto agg = make_fedavg();
  CHECK(agg->add(global_model(), 1) == ec::invalid_state);
  CHECK(agg->finish().error() == ec::invalid_state);
}
