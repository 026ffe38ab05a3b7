// fedopt: FedAdam, FedYogi and FedAdagrad after Reddi et al. 2021 with
// FEDn's defaults (η = 1e-3, β1 = 0.9, β2 = 0.99, τ = 1e-4).

#include "model/aggregator.hpp"
#include "model/fedopt.hpp"
#include "model/npz.hpp"

#include "tests/model/helpers.hpp"

#include <cmath>
#include <fstream>

using namespace rondo;
using namespace rondo::test;

namespace {

model scalar(double x) {
  model m;
  m.push_back(make("0", dtype::f64, {1}, {x}));
  return m;
}

struct expected_step {
  double x;
  double m;
  double v;
};

// Two rounds on a one-parameter float64 model from x0 = 1:
//   round 1: updates 1.5 (n=1) and 2.5 (n=3): Δ1 = (1.5 + 7.5)/4 − 1 = 1.25
//   round 2: updates x1 + 0.5 and x1 − 0.25 (n=2 each): Δ2 = 0.125
// m1 = 0.1·1.25 = 0.125; m2 = 0.9·0.125 + 0.1·0.125 = 0.125.
// adam:    v1 = 0.99·1e-8 + 0.01·1.5625 = 0.0156250099
//          x1 = 1 + 1e-3·0.125/(√v1 + 1e-4) = 1.000999200323195
//          v2 = 0.99·v1 + 0.01·0.015625 = 0.015625009801
//          x2 = x1 + 1e-3·0.125/(√v2 + 1e-4) = 1.0019984006495526
// yogi:    v1 = 1e-8 − 0.01·1.5625·sign(1e-8 − 1.5625) = 0.01562501
//          x1 = 1.00099920032
//          v2 = v1 − 0.01·0.015625·sign(v1 − 0.015625) = 0.01546876
//          x2 = 1.0020034303793117
// adagrad: v1 = 1e-8 + 1.5625 = 1.56250001, x1 = 1.00009999200032
//          v2 = v1 + 0.015625 = 1.57812501, x2 = 1.000199487798864
// (evaluated with Python floats, which are IEEE float64.)
std::vector<expected_step> hand_computed(const std::string& opt) {
  if (opt == "adam")
    return {{1.000999200323195, 0.125, 0.015625009900000014},
            {1.0019984006495526, 0.125, 0.01562500980100001}};
  if (opt == "yogi")
    return {{1.00099920032, 0.125, 0.015625010000000016},
            {1.0020034303793117, 0.125, 0.015468760000000015}};
  return {{1.00009999200032, 0.125, 1.56250001},
          {1.000199487798864, 0.125, 1.57812501}};
}

caf::expected<model> one_round(aggregator& agg, const model& global,
                               const std::vector<std::pair<double, double>>&
                                 updates) {
  if (auto err = agg.begin(global))
    return err;
  for (auto [x, n] : updates)
    if (auto err = agg.add(scalar(x), n))
      return err;
  return agg.finish();
}

} // namespace

TEST_CASE("fedopt: one and two steps of adam, yogi and adagrad match "
          "hand-computed values") {
  for (std::string opt : {"adam", "yogi", "adagrad"}) {
    CAPTURE(opt);
    auto state = std::make_shared<optimizer_state>();
    auto agg = make_aggregator("fedopt", R"({"serveropt": ")" + opt + "\"}",
                               state);
    REQUIRE(agg);
    auto want = hand_computed(opt);
    auto x1 = one_round(**agg, scalar(1.0), {{1.5, 1}, {2.5, 3}});
    REQUIRE(x1);
    auto a = (*x1)[0].f64()[0];
    CHECK(a == doctest::Approx(want[0].x).epsilon(1e-14));
    CHECK(state->steps == 1);
    CHECK(state->m[0][0] == doctest::Approx(want[0].m).epsilon(1e-14));
    CHECK(state->v[0][0] == doctest::Approx(want[0].v).epsilon(1e-14));
    auto x2 = one_round(**agg, *x1, {{a + 0.5, 2}, {a - 0.25, 2}});
    REQUIRE(x2);
    CHECK((*x2)[0].f64()[0] == doctest::Approx(want[1].x).epsilon(1e-14));
    CHECK(state->m[0][0] == doctest::Approx(want[1].m).epsilon(1e-12));
    CHECK(state->v[0][0] == doctest::Approx(want[1].v).epsilon(1e-12));
    // A new session starts from scratch: the first step again.
    state->reset();
    auto again = one_round(**agg, scalar(1.0), {{1.5, 1}, {2.5, 3}});
    REQUIRE(again);
    CHECK((*again)[0].f64()[0] == a);
  }
}

TEST_CASE("fedopt: two steps on a float32 model match numpy") {
  if (skip_without_numpy())
    return;
  temp_dir dir;
  auto base = [](double shift) {
    model m;
    m.push_back(make("0", dtype::f32, {4, 3}, std::vector<double>(12, 0.0)));
    m.push_back(make("1", dtype::f32, {5}, std::vector<double>(5, 0.0)));
    return transform(m, [shift](uint64_t i, double) {
      return std::cos(0.7 * i + shift) * 0.3;
    });
  };
  const std::vector<double> ns{50, 30, 20};
  for (std::string opt : {"adam", "yogi", "adagrad"}) {
    CAPTURE(opt);
    auto agg = make_aggregator(
      "fedopt",
      R"({"serveropt": ")" + opt + R"(", "learning_rate": 0.01, "tau": 0.001})",
      std::make_shared<optimizer_state>());
    REQUIRE(agg);
    auto x = base(0.0);
    REQUIRE(!write_npz_file(x, dir / "x0.npz"));
    for (int round = 1; round <= 2; ++round) {
      REQUIRE(!(*agg)->begin(x));
      for (int k = 0; k < 3; ++k) {
        auto u = transform(x, [&](uint64_t i, double v) {
          return v + 0.05 * std::sin(1.3 * i + k + round);
        });
        auto name = "r" + std::to_string(round) + "u" + std::to_string(k);
        REQUIRE(!write_npz_file(u, dir / (name + ".npz")));
        REQUIRE(!(*agg)->add(u, ns[k]));
      }
      auto next = (*agg)->finish();
      REQUIRE(next);
      x = std::move(*next);
      REQUIRE(!write_npz_file(x, dir / ("rondo" + std::to_string(round)
                                        + ".npz")));
    }
    // numpy: the same two rounds from the files, in float64, each new
    // global model rounded to float32 as the model format stores it.
    REQUIRE(run_python(dir, R"(
opt = ")" + opt + R"("
lr, b1, b2, tau = 0.01, 0.9, 0.99, 0.001
ns = [50.0, 30.0, 20.0]
x = [a.astype(np.float64) for a in np.load("x0.npz").values()]
m = [np.zeros_like(a) for a in x]
v = [np.full_like(a, tau * tau) for a in x]
for r in (1, 2):
    ups = [[a.astype(np.float64) for a in np.load("r%du%d.npz" % (r, k)).values()]
           for k in range(3)]
    for i in range(len(x)):
        d = sum(n * (u[i] - x[i]) for n, u in zip(ns, ups)) / sum(ns)
        m[i] = b1 * m[i] + (1 - b1) * d
        if opt == "adam":
            v[i] = b2 * v[i] + (1 - b2) * d * d
        elif opt == "yogi":
            v[i] = v[i] - (1 - b2) * d * d * np.sign(v[i] - d * d)
        else:
            v[i] = v[i] + d * d
        x[i] = (x[i] + lr * m[i] / (np.sqrt(v[i]) + tau)).astype(np.float32)
        x[i] = x[i].astype(np.float64)
    got = list(np.load("rondo%d.npz" % r).values())
    for a, b in zip(got, x):
        if a.dtype != np.float32 or not np.allclose(a, b, rtol=2e-7, atol=1e-9):
            print("round", r, "mismatch", a, b)
            sys.exit(1)
)") == 0);
  }
}

TEST_CASE("fedopt: kwargs are validated") {
  auto bad = [](const std::string& json, const std::string& needle) {
    CAPTURE(json);
    auto agg = make_aggregator("fedopt", json);
    REQUIRE(!agg);
    CHECK(agg.error() == ec::invalid_config);
    RONDO_CHECK_SAYS(agg.error(), needle);
  };
  bad(R"({"lr": 0.1})", "fedopt: unknown aggregator_kwargs key 'lr'");
  bad(R"({"serveropt": "sgd"})",
      "serveropt must be adam, yogi or adagrad, got 'sgd'");
  bad(R"({"learning_rate": -1})", "learning_rate must be > 0");
  bad(R"({"learning_rate": "fast"})", "'learning_rate' must be a finite");
  bad(R"({"beta1": 1.0})", "beta1 must be in [0, 1)");
  bad(R"({"beta2": -0.5})", "beta2 must be in [0, 1)");
  bad(R"({"tau": 0})", "tau must be > 0");
  bad(R"({"serveropt": 3})", "'serveropt' must be a string");
  bad(R"({"tau": [1]})", "must be a number or a string");
  bad("[1, 2]", "must be a JSON object");
  bad("{nope", "not valid JSON");
  auto defaults = fedopt_options::from({});
  REQUIRE(defaults);
  CHECK(defaults->serveropt == server_optimizer::adam);
  CHECK(defaults->learning_rate == 1e-3);
  CHECK(defaults->beta1 == 0.9);
  CHECK(defaults->beta2 == 0.99);
  CHECK(defaults->tau == 1e-4);
}

TEST_CASE("fedopt: a non-finite step fails and leaves the state alone") {
  auto state = std::make_shared<optimizer_state>();
  auto agg = make_aggregator("fedopt", R"({"learning_rate": 1e300})", state);
  REQUIRE(agg);
  model g;
  g.push_back(make("w", dtype::f32, {2}, {0, 0}));
  REQUIRE(!(*agg)->begin(g));
  auto u = transform(g, [](uint64_t i, double) { return i == 0 ? 0.0 : 1.0; });
  REQUIRE(!(*agg)->add(u, 10));
  auto out = (*agg)->finish();
  REQUIRE(!out);
  CHECK(out.error() == ec::non_finite);
  RONDO_CHECK_SAYS(out.error(), "new global tensor 'w'");
  RONDO_CHECK_SAYS(out.error(), "at index 1");
  CHECK(state->steps == 0);
  // Zero accepted updates: no model, with that reason.
  REQUIRE(!(*agg)->begin(g));
  auto none = (*agg)->finish();
  REQUIRE(!none);
  CHECK(none.error() == ec::aggregation_failed);
  RONDO_CHECK_SAYS(none.error(), "no update was accepted");
}

TEST_CASE("fedopt: state from another model is refused, not misapplied") {
  auto state = std::make_shared<optimizer_state>();
  auto agg = make_aggregator("fedopt", "", state);
  REQUIRE(agg);
  REQUIRE(one_round(**agg, scalar(1.0), {{2.0, 1}}));
  model other;
  other.push_back(make("0", dtype::f64, {3}, {1, 2, 3}));
  REQUIRE(!(*agg)->begin(other));
  REQUIRE(!(*agg)->add(other, 1));
  auto out = (*agg)->finish();
  REQUIRE(!out);
  CHECK(out.error() == ec::invalid_state);
  RONDO_CHECK_SAYS(out.error(), "reset the state");
}
