// validation: an update enters an aggregation only if it matches the global
// model and is finite; a rejected one leaves the aggregate exactly as it was.

#include "model/aggregator.hpp"
#include "model/validate.hpp"

#include "tests/model/helpers.hpp"

#include <cmath>
#include <cstring>
#include <limits>

using namespace rondo;
using namespace rondo::test;

namespace {

model global_model() {
  model m;
  m.push_back(make("0", dtype::f32, {2, 2}, {0, 0, 0, 0}));
  m.push_back(make("1", dtype::f32, {3}, {0, 0, 0}));
  return m;
}

model update(double base) {
  return transform(global_model(),
                   [base](uint64_t i, double) { return base + 0.1 * i; });
}

std::unique_ptr<aggregator> fedavg() {
  auto agg = make_aggregator("fedavg");
  REQUIRE(agg);
  return std::move(*agg);
}

} // namespace

TEST_CASE("validation: U1, U2 with a wrong shape, U3 gives the mean of U1 "
          "and U3") {
  auto g = global_model();
  auto u1 = update(1.0);
  auto u3 = update(2.0);
  auto u2 = u1;
  u2[1] = make("1", dtype::f32, {4}, {9, 9, 9, 9});
  auto agg = fedavg();
  REQUIRE(!agg->begin(g));
  CHECK(!agg->add(u1, 100));
  auto err = agg->add(u2, 100);
  CHECK(err == ec::shape_mismatch);
  RONDO_CHECK_SAYS(err, "update tensor '1': shape (4,) != global (3,)");
  CHECK(!agg->add(u3, 100));
  CHECK(agg->accepted() == 2);
  auto out = agg->finish();
  REQUIRE(out);
  for (size_t t = 0; t < out->size(); ++t)
    for (uint64_t i = 0; i < (*out)[t].count(); ++i) {
      // The exact mean of the two float32 values, rounded once.
      auto expected = static_cast<float>(
        (static_cast<double>(u1[t].f32()[i]) + u3[t].f32()[i]) / 2);
      CHECK((*out)[t].f32()[i] == expected);
    }
}

TEST_CASE("validation: a NaN late in an update leaves the aggregate "
          "bit-identical") {
  auto g = global_model();
  auto u1 = update(1.0);
  auto u3 = update(2.5);
  auto bad = transform(update(7.0), [](uint64_t i, double v) {
    return i == 2 ? std::numeric_limits<double>::quiet_NaN() : v;
  });
  bad[0] = update(7.0)[0]; // tensor '0' is fine; '1' has NaN at index 2
  auto with_bad = fedavg();
  REQUIRE(!with_bad->begin(g));
  CHECK(!with_bad->add(u1, 120));
  auto err = with_bad->add(bad, 80);
  CHECK(err == ec::non_finite);
  RONDO_CHECK_SAYS(err, "update tensor '1' holds NaN at index 2");
  CHECK(!with_bad->add(u3, 80));
  auto clean = fedavg();
  REQUIRE(!clean->begin(g));
  CHECK(!clean->add(u1, 120));
  CHECK(!clean->add(u3, 80));
  auto a = with_bad->finish();
  auto b = clean->finish();
  REQUIRE(a);
  REQUIRE(b);
  for (size_t t = 0; t < a->size(); ++t)
    CHECK(std::memcmp((*a)[t].data.data(), (*b)[t].data.data(),
                      (*a)[t].nbytes())
          == 0);
}

TEST_CASE("validation: infinities are rejected with the index") {
  auto u = transform(update(1.0), [](uint64_t i, double v) {
    return i == 3 ? -std::numeric_limits<double>::infinity() : v;
  });
  auto err = check_finite(model_view{u});
  CHECK(err == ec::non_finite);
  RONDO_CHECK_SAYS(err, "update tensor '0' holds -inf at index 3");
  // find_non_finite in a long buffer, past the first scan block.
  std::vector<double> xs(10000, 1.0);
  xs[9999] = std::numeric_limits<double>::infinity();
  CHECK(find_non_finite(reinterpret_cast<const std::byte*>(xs.data()),
                        xs.size(), dtype::f64)
        == 9999);
  xs[9999] = 2.0;
  CHECK(find_non_finite(reinterpret_cast<const std::byte*>(xs.data()),
                        xs.size(), dtype::f64)
        == xs.size());
}

TEST_CASE("validation: keys, order, dtypes and shapes must match") {
  auto g = spec_of(global_model());
  SUBCASE("dtype") {
    auto u = g;
    u[0].type = dtype::f64;
    RONDO_CHECK_SAYS(check_compatible(u, g),
                     "update tensor '0': dtype float64 != global float32");
  }
  SUBCASE("order") {
    model_spec u{g[1], g[0]};
    RONDO_CHECK_SAYS(check_compatible(u, g),
                     "update tensor '1' at position 0 != global tensor '0'");
  }
  SUBCASE("numpy's default names say how FEDn names tensors") {
    auto u = g;
    u[0].name = "arr_0";
    auto err = check_compatible(u, g);
    RONDO_CHECK_SAYS(err, "update tensor 'arr_0' at position 0 != global "
                          "tensor '0' (numpy.savez without keyword names");
    RONDO_CHECK_SAYS(err, "names the tensors '0', '1', ...)");
  }
  SUBCASE("missing tensor") {
    model_spec u{g[0]};
    RONDO_CHECK_SAYS(check_compatible(u, g), "missing tensor '1'");
  }
  SUBCASE("extra tensor") {
    auto u = g;
    u.push_back(g[1]);
    u.back().name = "2";
    RONDO_CHECK_SAYS(check_compatible(u, g), "extra tensor '2'");
  }
  SUBCASE("shape") {
    auto u = g;
    u[0].shape = {4};
    auto err = check_compatible(u, g);
    CHECK(err == ec::shape_mismatch);
    RONDO_CHECK_SAYS(err, "update tensor '0': shape (4,) != global (2, 2)");
  }
  CHECK(!check_compatible(g, g));
}

TEST_CASE("validation: num_examples must be a finite number > 0") {
  auto agg = fedavg();
  REQUIRE(!agg->begin(global_model()));
  for (double n : {0.0, -3.0, std::nan(""), HUGE_VAL}) {
    auto err = agg->add(update(1.0), n);
    CHECK(err == ec::invalid_argument);
    RONDO_CHECK_SAYS(err, "num_examples must be a finite number > 0");
  }
  CHECK(agg->accepted() == 0);
  auto out = agg->finish();
  REQUIRE(!out);
  CHECK(out.error() == ec::aggregation_failed);
  RONDO_CHECK_SAYS(out.error(), "no update was accepted");
}
