// The block-wise, multi-threaded fold of weighted_sum: add_batch and add()
// give the same bits whatever the threads and block size, match the exact
// weighted mean, and a rejected update (even one whose only bad value is
// in its last block) leaves the sums bit-identical.

#include "model/aggregator.hpp"
#include "model/fedavg.hpp"
#include "model/npz.hpp"
#include "model/weighted_sum.hpp"

#include "tests/model/helpers.hpp"

#include <atomic>
#include <cmath>
#include <cstring>
#include <limits>

using namespace rondo;
using namespace rondo::test;

namespace {

// Tensors that do not divide into blocks evenly, of both dtypes, plus a
// scalar and an empty one.
model global_model() {
  model m;
  m.push_back(make("0", dtype::f32, {1000, 13}, std::vector<double>(13000)));
  m.push_back(make("1", dtype::f64, {2049}, std::vector<double>(2049)));
  m.push_back(make("2", dtype::f32, {0}, {}));
  m.push_back(make("3", dtype::f32, {}, {0.0}));
  m.push_back(make("4", dtype::f32, {5001}, std::vector<double>(5001)));
  return m;
}

model update(int k) {
  return transform(global_model(), [k](uint64_t i, double) {
    return std::sin(0.3 + 1.9 * k + 0.013 * i) * std::pow(10.0, k % 5 - 2);
  });
}

const std::vector<double> weights = {120, 80, 37.5, 1, 1000, 3, 64};

// A copy of every sum, to compare bit for bit.
std::vector<std::vector<double>> sums_of(weighted_sum& s) {
  std::vector<std::vector<double>> out;
  for (size_t i = 0; i < s.spec().size(); ++i) {
    auto* p = s.sum(i);
    out.emplace_back(p, p + s.spec()[i].count());
  }
  return out;
}

bool same_bits(const std::vector<std::vector<double>>& a,
               const std::vector<std::vector<double>>& b) {
  if (a.size() != b.size())
    return false;
  for (size_t i = 0; i < a.size(); ++i)
    if (a[i].size() != b[i].size()
        || std::memcmp(a[i].data(), b[i].data(), a[i].size() * 8) != 0)
      return false;
  return true;
}

bool same_bits(const model& a, const model& b) {
  if (a.size() != b.size())
    return false;
  for (size_t i = 0; i < a.size(); ++i)
    if (a[i].nbytes() != b[i].nbytes()
        || std::memcmp(a[i].data.data(), b[i].data.data(), a[i].nbytes())
             != 0)
      return false;
  return true;
}

// An in-memory update offering only sequential visits (like a DEFLATE
// npz), so that weighted_sum takes its one-update-at-a-time path.
class visit_only_view final : public update_view {
public:
  explicit visit_only_view(const model& m) : inner_(m) {
    // nothing else
  }
  const model_spec& spec() const override {
    return inner_.spec();
  }
  caf::error visit(size_t index, const chunk_visitor& fn) const override {
    return inner_.visit(index, fn);
  }

private:
  model_view inner_;
};

// The sums after add() for each of `ups` in order, by sequential visits:
// the reference the block-wise passes must match bit for bit.
std::vector<std::vector<double>> sequential(const std::vector<model>& ups) {
  weighted_sum s;
  s.reset(spec_of(global_model()));
  for (size_t k = 0; k < ups.size(); ++k) {
    visit_only_view v{ups[k]};
    REQUIRE(!v.random_access());
    REQUIRE(!s.add(v, weights[k]));
  }
  return sums_of(s);
}

std::vector<weighted_update> batch_of(const std::vector<model_view>& views,
                                      const std::vector<size_t>& which) {
  std::vector<weighted_update> out;
  for (auto k : which)
    out.push_back(weighted_update{&views[k], weights[k]});
  return out;
}

// An in-memory update whose reads fail from the `fail_from`-th read_range
// call on (counting from 0): a file that changes or breaks while read.
class flaky_view final : public update_view {
public:
  flaky_view(const model& m, size_t fail_from)
    : inner_(m), fail_from_(fail_from) {
    // nothing else
  }
  const model_spec& spec() const override {
    return inner_.spec();
  }
  caf::error visit(size_t index, const chunk_visitor& fn) const override {
    return inner_.visit(index, fn);
  }
  bool random_access() const override {
    return true;
  }
  caf::expected<const std::byte*>
  read_range(size_t index, uint64_t first, uint64_t count,
             std::byte* scratch) const override {
    if (calls_++ >= fail_from_)
      return caf::make_error(ec::malformed_model,
                             "member '0.npy': injected read error");
    return inner_.read_range(index, first, count, scratch);
  }

  // read_range calls so far.
  size_t reads() const {
    return calls_;
  }

private:
  model_view inner_;
  size_t fail_from_;
  mutable std::atomic<size_t> calls_{0};
};

} // namespace

TEST_CASE("batch fold: add_batch equals add() one at a time bit for bit, "
          "for any threads and block size, and the exact weighted mean") {
  std::vector<model> ups;
  for (int k = 0; k < 7; ++k)
    ups.push_back(update(k));
  std::vector<model_view> views(ups.begin(), ups.end());
  auto expected = sequential(ups);
  for (unsigned threads : {1u, 2u, 3u}) {
    for (uint64_t block : {1u, 1000u, 4096u, 1u << 20}) {
      if (block == 1 && threads > 1)
        continue; // slow and adds nothing over block 1000
      CAPTURE(threads);
      CAPTURE(block);
      weighted_sum s;
      s.tune(fold_tuning{threads, block});
      s.reset(spec_of(global_model()));
      // Two batches and a single add(), as updates might arrive.
      for (auto& err : s.add_batch(batch_of(views, {0, 1, 2})))
        CHECK(!err);
      CHECK(!s.add(views[3], weights[3]));
      for (auto& err : s.add_batch(batch_of(views, {4, 5, 6})))
        CHECK(!err);
      CHECK(s.count() == 7);
      CHECK(same_bits(sums_of(s), expected));
    }
  }
  // Σ wᵢxᵢ / Σ wᵢ against a long double reference.
  long double den = 0;
  for (auto w : weights)
    den += w;
  auto g = global_model();
  for (size_t t = 0; t < g.size(); ++t)
    for (uint64_t i = 0; i < g[t].count(); ++i) {
      long double num = 0;
      for (size_t k = 0; k < ups.size(); ++k)
        num += static_cast<long double>(weights[k]) * ups[k][t].at(i);
      auto ref = static_cast<double>(num / den);
      auto got = expected[t][i] / static_cast<double>(den);
      CHECK(std::fabs(got - ref) <= 1e-14 * std::fabs(ref) + 1e-300);
    }
}

TEST_CASE("batch fold: a NaN in the last block of an update leaves the "
          "aggregate bit-identical") {
  std::vector<model> ups;
  for (int k = 0; k < 3; ++k)
    ups.push_back(update(k));
  auto last = global_model().size() - 1;
  auto n_last = global_model()[last].count();
  // Only the very last value of the last tensor is bad.
  auto nan_last = update(5);
  nan_last[last].f32()[n_last - 1] = std::numeric_limits<float>::quiet_NaN();
  // Bad in its first block and (later) in another one: the first counts.
  auto inf_early = update(6);
  inf_early[0].f32()[7] = -std::numeric_limits<float>::infinity();
  inf_early[4].f32()[9] = std::numeric_limits<float>::quiet_NaN();
  auto wrong_shape = update(6);
  wrong_shape[1] = make("1", dtype::f64, {2048}, std::vector<double>(2048));
  auto expected = sequential(ups);
  for (unsigned threads : {1u, 2u}) {
    CAPTURE(threads);
    weighted_sum s;
    s.tune(fold_tuning{threads, 1000});
    s.reset(spec_of(global_model()));
    // On its own, after one good update: the sums do not move at all.
    REQUIRE(!s.add(model_view{ups[0]}, weights[0]));
    auto before = sums_of(s);
    auto err = s.add(model_view{nan_last}, 50);
    CHECK(err == ec::non_finite);
    RONDO_CHECK_SAYS(err, "update tensor '4' holds NaN at index 5000");
    CHECK(same_bits(sums_of(s), before));
    CHECK(s.count() == 1);
    CHECK(s.total_weight() == weights[0]);
    // In a batch, among good updates.
    model_view v1{ups[1]}, v2{ups[2]}, bad1{nan_last}, bad2{inf_early},
      bad3{wrong_shape};
    auto verdicts = s.add_batch({{&bad2, 10},
                                 {&v1, weights[1]},
                                 {&bad1, 20},
                                 {&bad3, 30},
                                 {&v2, weights[2]},
                                 {&v2, -1.0}});
    REQUIRE(verdicts.size() == 6);
    CHECK(verdicts[0] == ec::non_finite);
    RONDO_CHECK_SAYS(verdicts[0], "update tensor '0' holds -inf at index 7");
    CHECK(!verdicts[1]);
    CHECK(verdicts[2] == ec::non_finite);
    RONDO_CHECK_SAYS(verdicts[2], "update tensor '4' holds NaN at index 5000");
    CHECK(verdicts[3] == ec::shape_mismatch);
    CHECK(!verdicts[4]);
    CHECK(verdicts[5] == ec::invalid_argument);
    CHECK(s.count() == 3);
    CHECK(s.total_weight() == weights[0] + weights[1] + weights[2]);
    CHECK(same_bits(sums_of(s), expected));
  }
}

TEST_CASE("batch fold: fedavg's add_batch gives add()'s model, from STORED "
          "files, DEFLATE files and bytes in one batch") {
  temp_dir dir;
  std::vector<model> ups;
  for (int k = 0; k < 4; ++k)
    ups.push_back(update(k));
  std::vector<std::unique_ptr<npz_reader>> readers;
  for (int k = 0; k < 4; ++k) {
    npz_options opts;
    opts.compression = k == 2 ? npz_compression::deflate
                              : npz_compression::stored;
    auto path = dir / ("u" + std::to_string(k) + ".npz");
    REQUIRE(!write_npz_file(ups[k], path, opts));
    auto bytes = std::make_shared<const std::string>(read_file(path));
    auto opened = k == 3 ? npz_reader::open_bytes(bytes)
                         : npz_reader::open_file(path);
    REQUIRE(opened);
    CHECK((*opened)->random_access() == (k != 2));
    readers.push_back(std::move(*opened));
  }
  auto one_by_one = make_fedavg();
  REQUIRE(!one_by_one->begin(global_model()));
  for (int k = 0; k < 4; ++k)
    REQUIRE(!one_by_one->add(ups[k], weights[k]));
  auto batched = make_fedavg();
  REQUIRE(!batched->begin(global_model()));
  std::vector<weighted_update> batch;
  for (int k = 0; k < 4; ++k)
    batch.push_back({readers[k].get(), weights[k]});
  for (auto& err : batched->add_batch(batch))
    CHECK(!err);
  CHECK(batched->accepted() == 4);
  auto a = one_by_one->finish();
  auto b = batched->finish();
  REQUIRE(a);
  REQUIRE(b);
  CHECK(same_bits(*a, *b));
}

TEST_CASE("batch fold: npz_reader reads a STORED member at any offset") {
  temp_dir dir;
  auto m = update(1);
  auto path = dir / "m.npz";
  REQUIRE(!write_npz_file(m, path));
  auto bytes = std::make_shared<const std::string>(read_file(path));
  auto from_file = npz_reader::open_file(path);
  auto from_bytes = npz_reader::open_bytes(bytes);
  REQUIRE(from_file);
  REQUIRE(from_bytes);
  for (auto* r : {from_file->get(), from_bytes->get()}) {
    CHECK(r->random_access());
    for (size_t t : {0u, 1u, 4u}) {
      std::vector<std::byte> scratch(8 * 100);
      auto got = r->read_range(t, 17, 100, scratch.data());
      REQUIRE(got);
      auto esize = size_of(m[t].type);
      CHECK(std::memcmp(*got, m[t].data.data() + 17 * esize, 100 * esize)
            == 0);
    }
  }
  npz_options deflate;
  deflate.compression = npz_compression::deflate;
  REQUIRE(!write_npz_file(m, path, deflate));
  auto deflated = npz_reader::open_file(path);
  REQUIRE(deflated);
  CHECK(!(*deflated)->random_access());
  std::vector<std::byte> scratch(8 * 100);
  auto got = (*deflated)->read_range(0, 0, 100, scratch.data());
  REQUIRE(!got);
  CHECK(got.error() == ec::invalid_state);
}

TEST_CASE("batch fold: a read error while checking rejects the update, one "
          "while folding discards the aggregate") {
  auto u0 = update(0);
  auto u1 = update(1);
  weighted_sum s;
  s.tune(fold_tuning{2, 1000});
  s.reset(spec_of(global_model()));
  REQUIRE(!s.add(model_view{u0}, 10));
  auto before = sums_of(s);
  // Fails on its 4th read: in the checking pass.
  flaky_view early{u1, 3};
  auto err = s.add(early, 10);
  CHECK(err == ec::malformed_model);
  RONDO_CHECK_SAYS(err, "injected read error");
  CHECK(same_bits(sums_of(s), before));
  CHECK(s.count() == 1);
  // Passes the check (one read per block), fails while folding.
  auto blocks = 13 + 3 + 0 + 1 + 6; // per tensor, 1000 parameters a block
  flaky_view late{u1, static_cast<size_t>(blocks) + 2};
  model_view good{u1};
  auto verdicts = s.add_batch({{&good, 5}, {&late, 10}});
  REQUIRE(verdicts.size() == 2);
  for (auto& v : verdicts) {
    CHECK(v == ec::aggregation_failed);
    RONDO_CHECK_SAYS(v, "the aggregate was discarded");
  }
  CHECK(s.count() == 0);
  CHECK(s.total_weight() == 0);
  for (auto& t : sums_of(s))
    for (auto x : t)
      CHECK(x == 0.0);
}

TEST_CASE("batch fold: the first run reads each block once, and an update "
          "that fails late is taken out exactly") {
  std::vector<model> ups;
  for (int k = 0; k < 3; ++k)
    ups.push_back(update(k));
  auto expected = sequential(ups);
  auto last = global_model().size() - 1;
  auto nan_last = update(5);
  nan_last[last].f32()[global_model()[last].count() - 1]
    = std::numeric_limits<float>::quiet_NaN();
  auto inf_early = update(6);
  inf_early[0].f32()[7] = -std::numeric_limits<float>::infinity();
  const size_t blocks = 13 + 3 + 0 + 1 + 6; // 1000 parameters a block
  const size_t never = std::numeric_limits<size_t>::max();
  for (unsigned threads : {1u, 2u}) {
    CAPTURE(threads);
    SUBCASE("all good: one read per block and update") {
      weighted_sum s;
      s.tune(fold_tuning{threads, 1000});
      s.reset(spec_of(global_model()));
      flaky_view v0{ups[0], never}, v1{ups[1], never}, v2{ups[2], never};
      for (auto& err : s.add_batch({{&v0, weights[0]},
                                    {&v1, weights[1]},
                                    {&v2, weights[2]}}))
        CHECK(!err);
      CHECK(v0.reads() == blocks);
      CHECK(v1.reads() == blocks);
      CHECK(v2.reads() == blocks);
      CHECK(same_bits(sums_of(s), expected));
      // Later runs check before they fold: two reads per block.
      flaky_view again{ups[0], never};
      CHECK(!s.add(again, 1));
      CHECK(again.reads() == 2 * blocks);
    }
    SUBCASE("bad updates among good ones, and one unreadable midway") {
      weighted_sum s;
      s.tune(fold_tuning{threads, 1000});
      s.reset(spec_of(global_model()));
      model_view v0{ups[0]}, v1{ups[1]}, v2{ups[2]}, bad1{nan_last},
        bad2{inf_early};
      flaky_view broken{ups[1], blocks - 2};
      auto verdicts = s.add_batch({{&v0, weights[0]},
                                   {&bad1, 20},
                                   {&v1, weights[1]},
                                   {&broken, 7},
                                   {&bad2, 10},
                                   {&v2, weights[2]}});
      REQUIRE(verdicts.size() == 6);
      CHECK(!verdicts[0]);
      CHECK(verdicts[1] == ec::non_finite);
      RONDO_CHECK_SAYS(verdicts[1],
                       "update tensor '4' holds NaN at index 5000");
      CHECK(!verdicts[2]);
      CHECK(verdicts[3] == ec::malformed_model);
      RONDO_CHECK_SAYS(verdicts[3], "injected read error");
      CHECK(verdicts[4] == ec::non_finite);
      RONDO_CHECK_SAYS(verdicts[4], "update tensor '0' holds -inf at index 7");
      CHECK(!verdicts[5]);
      CHECK(s.count() == 3);
      CHECK(s.total_weight() == weights[0] + weights[1] + weights[2]);
      CHECK(same_bits(sums_of(s), expected));
    }
  }
}

TEST_CASE("batch fold: add_batch needs a begin and non-null updates") {
  auto agg = make_fedavg();
  auto u = update(0);
  model_view v{u};
  auto before = agg->add_batch({{&v, 1}});
  REQUIRE(before.size() == 1);
  CHECK(before[0] == ec::invalid_state);
  REQUIRE(!agg->begin(global_model()));
  auto verdicts = agg->add_batch({{nullptr, 1}, {&v, 1}});
  REQUIRE(verdicts.size() == 2);
  CHECK(verdicts[0] == ec::invalid_argument);
  CHECK(!verdicts[1]);
  CHECK(agg->accepted() == 1);
  CHECK(agg->add_batch({}).empty());
}
