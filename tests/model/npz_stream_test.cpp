// npz_stream: decoding npz model updates as their bytes arrive, against
// npz_reader (libzip) as the reference.

#include "model/npz_stream.hpp"

#include "model/aggregator.hpp"
#include "model/npz.hpp"

#include "tests/model/helpers.hpp"

#include <isa-l/crc.h>
#include <zlib.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <limits>

using namespace rondo;
using namespace rondo::test;

namespace {

// Deterministic values that do not compress to nothing.
std::vector<double> values(uint64_t n, double seed) {
  std::vector<double> out(n);
  for (uint64_t i = 0; i < n; ++i)
    out[i] = std::sin(seed + 0.013 * static_cast<double>(i)) * (1 + i % 7);
  return out;
}

// Several tensors: 2-d, 0-d, empty, a > 2 MiB one, a non-numeric key.
model large_model(dtype t) {
  model m;
  m.push_back(make("0", t, {3, 4}, values(12, 1)));
  m.push_back(make("1", t, {}, {3.25}));
  m.push_back(make("2", t, {700, 1000}, values(700000, 2))); // > 2 MiB
  m.push_back(make("3", t, {0, 3}, {}));
  m.push_back(make("bias", dtype::f64, {5}, values(5, 3)));
  return m;
}

model small_model(dtype t) {
  model m;
  m.push_back(make("0", t, {2, 3}, {1.5, -2.25, 3, 1e-7, -0.0, 7e30}));
  m.push_back(make("1", dtype::f64, {}, {3.141592653589793}));
  m.push_back(make("2", t, {5}, {0.1, 0.2, 0.3, 0.4, 0.5}));
  return m;
}

std::string npz_of(const model& m, npz_compression c) {
  npz_options opts;
  opts.compression = c;
  auto bytes = write_npz_bytes(m, opts);
  REQUIRE(bytes);
  return std::move(*bytes);
}

caf::expected<std::shared_ptr<decoded_update>>
decode_in_pieces(const std::string& bytes, size_t piece,
                 const npz_stream_options& opts = {}) {
  npz_stream_decoder dec{opts};
  for (size_t at = 0; at < bytes.size(); at += piece)
    if (auto err = dec.feed(std::string_view{bytes}.substr(at, piece)))
      return err;
  CHECK(dec.bytes_in() == bytes.size());
  return dec.finish();
}

// The decoded update has npz_reader's spec and bytes, through to_model,
// read_range and visit.
void check_like_reader(const decoded_update& up, const std::string& bytes,
                       const std::string* reference = nullptr) {
  auto reader = npz_reader::open_bytes(
    std::string_view{reference ? *reference : bytes});
  REQUIRE_MESSAGE(reader, render(reader.error()));
  auto ref = (*reader)->read_all();
  REQUIRE(ref);
  REQUIRE(up.spec() == spec_of(*ref));
  auto got = up.to_model();
  REQUIRE(got);
  uint64_t total = 0;
  for (size_t i = 0; i < ref->size(); ++i) {
    auto& r = (*ref)[i];
    total += r.nbytes();
    REQUIRE((*got)[i].nbytes() == r.nbytes());
    CHECK(std::memcmp((*got)[i].data.data(), r.data.data(), r.nbytes()) == 0);
    if (r.count() > 1) {
      // The last element through read_range.
      auto esize = size_of(r.type);
      std::vector<std::byte> scratch(esize);
      auto p = up.read_range(i, r.count() - 1, 1, scratch.data());
      REQUIRE(p);
      CHECK(std::memcmp(*p, r.data.data() + r.nbytes() - esize, esize) == 0);
    }
    uint64_t seen = 0;
    bool same = true;
    auto err = up.visit(i, [&](const std::byte* d, uint64_t first,
                               uint64_t count) {
      auto esize = size_of(r.type);
      same = same && first == seen
             && std::memcmp(d, r.data.data() + first * esize, count * esize)
                  == 0;
      seen += count;
      return caf::error{};
    });
    CHECK(!err);
    CHECK(same);
    CHECK(seen == r.count());
  }
  CHECK(up.data_bytes() == total);
  CHECK(up.wire_bytes() == bytes.size());
}

uint32_t le32_at(const std::string& s, size_t at) {
  auto* p = reinterpret_cast<const unsigned char*>(s.data()) + at;
  return uint32_t{p[0]} | (uint32_t{p[1]} << 8) | (uint32_t{p[2]} << 16)
         | (uint32_t{p[3]} << 24);
}

// A 1 MiB memory budget and a spill folder, as uploads share them.
struct budget_setup {
  temp_dir dir;
  std::string spill = dir.sub("spill");
  memory_budget budget{1 << 20};
  npz_stream_options opts = with_budget(budget, spill);

  static npz_stream_options with_budget(memory_budget& b,
                                        const std::string& dir) {
    npz_stream_options o;
    o.budget = &b;
    o.spill_dir = dir;
    return o;
  }
};

size_t files_in(const std::string& dir) {
  if (!std::filesystem::exists(dir))
    return 0;
  size_t n = 0;
  for ([[maybe_unused]] auto& e : std::filesystem::directory_iterator{dir})
    ++n;
  return n;
}

// Offset of member `name`'s local header in a ZIP.
size_t local_header_of(const std::string& zip, const std::string& name) {
  auto at = zip.find(name);
  REQUIRE(at != std::string::npos);
  return at - 30;
}

} // namespace

TEST_CASE("npz_stream: ISA-L's CRC-32 is zlib's") {
  std::string data;
  for (int i = 0; i < (1 << 20) + 3; ++i)
    data += static_cast<char>((i * 131) ^ (i >> 7));
  for (size_t n : {size_t{0}, size_t{1}, size_t{7}, size_t{1000}, data.size()}) {
    auto* p = reinterpret_cast<const unsigned char*>(data.data());
    auto want = crc32(0, p, static_cast<uInt>(n));
    CHECK(crc32_gzip_refl(0, p, n) == want);
    // Chained over two pieces, as the decoder computes it.
    CHECK(crc32_gzip_refl(crc32_gzip_refl(0, p, n / 3), p + n / 3, n - n / 3)
          == want);
  }
}

TEST_CASE("npz_stream: any piece size decodes what npz_reader reads") {
  for (auto c : {npz_compression::stored, npz_compression::deflate})
    for (auto t : {dtype::f32, dtype::f64}) {
      CAPTURE(static_cast<int>(c));
      CAPTURE(to_string(t));
      auto small = npz_of(small_model(t), c);
      for (size_t piece : {size_t{1}, size_t{7}, small.size()}) {
        auto up = decode_in_pieces(small, piece);
        REQUIRE_MESSAGE(up, render(up.error()));
        CHECK((*up)->in_memory());
        check_like_reader(**up, small);
      }
      auto large = npz_of(large_model(t), c);
      for (size_t piece : {size_t{7}, size_t{1} << 20, large.size()}) {
        auto up = decode_in_pieces(large, piece);
        REQUIRE_MESSAGE(up, render(up.error()));
        check_like_reader(**up, large);
      }
      auto whole = decode_npz_bytes(large);
      REQUIRE(whole);
      check_like_reader(**whole, large);
    }
}

TEST_CASE("npz_stream: numpy's savez and savez_compressed, and data "
          "descriptors") {
  if (skip_without_numpy())
    return;
  temp_dir dir;
  // numpy writes ZIP64 local headers (force_zip64); Python's zipfile on an
  // unseekable file writes data descriptors (STORED and DEFLATE).
  REQUIRE(run_python(dir, R"(
import io, zipfile
arrays = {
  '0': (np.sin(np.arange(12) * 0.7) * 3).astype(np.float32).reshape(3, 4),
  '1': np.array(3.25),
  '2': np.sin(np.arange(700000) * 0.001).astype(np.float32),
  '3': np.zeros((0, 3), np.float64),
  'bias': np.cos(np.arange(5.0)),
}
np.savez('plain.npz', **arrays)
np.savez_compressed('compressed.npz', **arrays)
class Unseekable(io.RawIOBase):
    def __init__(self, f): self.f = f
    def writable(self): return True
    def write(self, b): return self.f.write(b)
for name, method in (('dd_stored.npz', zipfile.ZIP_STORED),
                     ('dd_deflate.npz', zipfile.ZIP_DEFLATED)):
    with open(name, 'wb') as raw:
        with zipfile.ZipFile(Unseekable(raw), 'w', method) as zf:
            for key, a in arrays.items():
                with zf.open(key + '.npy', 'w', force_zip64=True) as f:
                    np.lib.format.write_array(f, a)
)") == 0);
  for (auto name : {"plain.npz", "compressed.npz", "dd_stored.npz",
                    "dd_deflate.npz"}) {
    CAPTURE(name);
    auto bytes = read_file(dir.sub(name));
    REQUIRE(bytes.size() > 10000);
    auto flags = static_cast<unsigned char>(bytes[6])
                 | (static_cast<unsigned char>(bytes[7]) << 8);
    CHECK((flags & 8) == (std::string{name}.rfind("dd_", 0) == 0 ? 8 : 0));
    // Every local header has a ZIP64 extra field (id 1) with the sizes.
    auto patched = bytes;
    size_t members = 0;
    for (size_t at = 0;
         at + 4 <= bytes.size() && le32_at(bytes, at) == 0x04034b50u;
         ++members) {
      auto u16 = [&](size_t off) {
        return static_cast<size_t>(static_cast<unsigned char>(bytes[off])
                                   | (static_cast<unsigned char>(bytes[off + 1])
                                      << 8));
      };
      auto name_len = u16(at + 26), extra_len = u16(at + 28);
      auto extra = at + 30 + name_len;
      REQUIRE(extra_len >= 20);
      REQUIRE(u16(extra) == 1);
      uint64_t csize = le32_at(bytes, extra + 12)
                       | (uint64_t{le32_at(bytes, extra + 16)} << 32);
      if ((flags & 8) == 0) {
        CHECK(csize == le32_at(bytes, at + 18));
        // The form with the sizes only in the extra field (0xffffffff in
        // the header), as other ZIP64 writers put them.
        std::memset(&patched[at + 18], 0xff, 8);
        at = extra + extra_len + csize;
      } else {
        // Sizes follow the data: find the next member by its name.
        auto next = bytes.find(members + 1 < 4 ? std::to_string(members + 1)
                                                   + ".npy"
                                               : std::string{"bias.npy"},
                               at + 31);
        at = next == std::string::npos ? bytes.size() : next - 30;
      }
    }
    CHECK(members == 5);
    for (size_t piece : {size_t{7}, size_t{1} << 20, bytes.size()}) {
      auto up = decode_in_pieces(bytes, piece);
      REQUIRE_MESSAGE(up, render(up.error()));
      check_like_reader(**up, bytes);
      CHECK((*up)->spec()[2].shape == std::vector<uint64_t>{700000});
    }
    if ((flags & 8) == 0) {
      auto up = decode_in_pieces(patched, 4096);
      REQUIRE_MESSAGE(up, render(up.error()));
      check_like_reader(**up, patched, &bytes);
    }
  }
  // A STORED member with a data descriptor: the rest of the archive is held
  // (counted against the budget) until the central directory delimits it.
  auto bytes = read_file(dir.sub("dd_stored.npz"));
  memory_budget roomy{64 << 20};
  auto opts = budget_setup::with_budget(roomy, dir.sub("spill"));
  {
    auto up = decode_in_pieces(bytes, 65536, opts);
    REQUIRE_MESSAGE(up, render(up.error()));
    CHECK(roomy.used() == (*up)->data_bytes());
  }
  CHECK(roomy.used() == 0);
  memory_budget tight{1 << 20};
  opts.budget = &tight;
  auto up = decode_in_pieces(bytes, 65536, opts);
  REQUIRE_FALSE(up);
  CHECK(up.error() == ec::too_large);
  RONDO_CHECK_SAYS(up.error(), "'0.npy'");
  CHECK(tight.used() == 0);
}

TEST_CASE("npz_stream: over the memory budget the update spills to a file") {
  temp_dir dir;
  auto spill = dir.sub("spill");
  for (auto c : {npz_compression::stored, npz_compression::deflate}) {
    auto m = large_model(dtype::f32);
    auto bytes = npz_of(m, c);
    memory_budget budget{1 << 20}; // less than the 2.8 MB tensor "2"
    auto opts = budget_setup::with_budget(budget, spill);
    {
      auto up = decode_in_pieces(bytes, 100000, opts);
      REQUIRE_MESSAGE(up, render(up.error()));
      CHECK_FALSE((*up)->in_memory());
      CHECK(files_in(spill) == 1);
      // Only tensor "0" and "1" (before the spill) are in memory.
      CHECK(budget.used() == 12 * 4 + 4);
      check_like_reader(**up, bytes);
    }
    CHECK(budget.used() == 0);
    CHECK(files_in(spill) == 0);
    // A budget that takes the model: in memory, counted while it lives.
    memory_budget roomy{64 << 20};
    opts.budget = &roomy;
    {
      auto up = decode_npz_bytes(bytes, opts);
      REQUIRE(up);
      CHECK((*up)->in_memory());
      CHECK(roomy.used() == (*up)->data_bytes());
      check_like_reader(**up, bytes);
    }
    CHECK(roomy.used() == 0);
    CHECK(files_in(spill) == 0);
  }
}

namespace {

// Decodes `bytes` (in 4 KiB pieces, with a budget that spills all but the
// first tensors) and checks the error's code and text, then that nothing
// is left: no budget taken, no spill file.
void check_rejects(const std::string& bytes, ec code,
                   const std::vector<std::string>& needles,
                   uint64_t max_bytes = uint64_t{16} << 30) {
  budget_setup b;
  auto& [dir, spill, budget, opts] = b;
  opts.npz.max_uncompressed_bytes = max_bytes;
  npz_stream_decoder dec{opts};
  caf::error err;
  for (size_t at = 0; at < bytes.size() && !err; at += 4096)
    err = dec.feed(std::string_view{bytes}.substr(at, 4096));
  if (!err) {
    auto up = dec.finish();
    REQUIRE_FALSE(up);
    err = up.error();
  }
  REQUIRE(err);
  CHECK(err == code);
  for (auto& needle : needles)
    RONDO_CHECK_SAYS(err, needle);
  CHECK(budget.used() == 0);
  CHECK(files_in(spill) == 0);
  // Every later call fails with the same error.
  CHECK(dec.feed("x") == err);
  CHECK_FALSE(dec.finish());
}

} // namespace

TEST_CASE("npz_stream: bad archives are refused naming the member") {
  for (auto c : {npz_compression::stored, npz_compression::deflate}) {
    CAPTURE(static_cast<int>(c));
    auto bytes = npz_of(large_model(dtype::f64), c);
    auto big = local_header_of(bytes, "2.npy");
    SUBCASE("truncated inside a member") {
      check_rejects(bytes.substr(0, big + 200000), ec::malformed_model,
                    {"'2.npy'", "truncated"});
    }
    SUBCASE("truncated before the central directory") {
      auto end = bytes.rfind("0.npy") - 46; // the central directory
      REQUIRE(le32_at(bytes, end) == 0x02014b50u);
      check_rejects(bytes.substr(0, end), ec::malformed_model,
                    {"'bias.npy'", "without a ZIP central directory"});
    }
    SUBCASE("flipped CRC-32 in a local header") {
      auto bad = bytes;
      bad[local_header_of(bad, "1.npy") + 14] ^= 0x01;
      check_rejects(bad, ec::malformed_model, {"'1.npy'", "CRC-32 mismatch"});
    }
    SUBCASE("central directory disagrees with the local header") {
      auto bad = bytes;
      auto cd = bad.rfind("0.npy") - 46; // the central directory entry
      REQUIRE(le32_at(bad, cd) == 0x02014b50u);
      bad[cd + 16] ^= 0x01;
      check_rejects(bad, ec::malformed_model,
                    {"'0.npy'", "central directory disagrees"});
    }
    SUBCASE("bytes after the end record") {
      check_rejects(bytes + "junk", ec::malformed_model,
                    {"follow the ZIP end record"});
    }
    SUBCASE("over max_uncompressed_bytes") {
      check_rejects(bytes, ec::too_large,
                    {"'2.npy'", "max_uncompressed_bytes"}, 1 << 20);
    }
  }
}

TEST_CASE("npz_stream: corrupt DEFLATE data is refused naming the member") {
  auto bytes = npz_of(large_model(dtype::f32), npz_compression::deflate);
  auto at = local_header_of(bytes, "2.npy") + 30 + 5 + 5000;
  for (size_t i = 0; i < 64; ++i)
    bytes[at + i] = static_cast<char>(0xA5 ^ (i * 37));
  check_rejects(bytes, ec::malformed_model, {"'2.npy'"});
  check_rejects("this is not a zip archive at all", ec::malformed_model,
                {"not a ZIP archive"});
  check_rejects("", ec::malformed_model, {"empty"});
}

TEST_CASE("npz_stream: unsupported npy members are refused naming them") {
  auto payload = f32_bytes({1, 2, 3, 4});
  check_rejects(stored_zip({{"0.npy", npy_bytes("<f4", false, "(2, 2)",
                                                payload)},
                            {"1.npy", npy_bytes("<i4", false, "(2, 2)",
                                                payload)}}),
                ec::malformed_model, {"'1.npy'", "'<i4'"});
  check_rejects(stored_zip({{"0.npy", npy_bytes("<f4", true, "(2, 2)",
                                                payload)}}),
                ec::malformed_model, {"'0.npy'", "fortran_order"});
  check_rejects(stored_zip({{"0.npy", npy_bytes("<f4", false, "(3, 2)",
                                                payload)}}),
                ec::malformed_model, {"'0.npy'", "shape (3, 2) holds 6"});
  check_rejects(stored_zip({{"0.txt", payload}}), ec::malformed_model,
                {"'0.txt'", "not a .npy member"});
}

TEST_CASE("npz_stream: abort frees the memory and the spill file at once") {
  budget_setup b;
  auto& [dir, spill, budget, opts] = b;
  auto bytes = npz_of(large_model(dtype::f32), npz_compression::stored);
  npz_stream_decoder dec{opts};
  REQUIRE(!dec.feed(std::string_view{bytes}.substr(0, bytes.size() - 1000)));
  CHECK(budget.used() > 0);
  CHECK(files_in(spill) == 1);
  dec.abort();
  CHECK(budget.used() == 0);
  CHECK(files_in(spill) == 0);
  CHECK(dec.feed("x") == ec::invalid_state);
}

TEST_CASE("npz_stream: FedAvg over decoded updates equals FedAvg over "
          "npz_reader") {
  model global;
  global.push_back(make("0", dtype::f32, {300, 1000}, values(300000, 0)));
  global.push_back(make("1", dtype::f64, {}, {0.5}));
  global.push_back(make("2", dtype::f32, {7}, values(7, 9)));
  std::vector<std::string> archives;
  std::vector<double> weights;
  for (int k = 0; k < 5; ++k) {
    auto m = transform(global, [k](uint64_t i, double v) {
      return v * (1 + 0.1 * k) + std::cos(0.3 * k + 0.001 * i);
    });
    if (k == 2) // rejected: a value is NaN
      m[0].f32()[12345] = std::numeric_limits<float>::quiet_NaN();
    if (k == 3) { // rejected: another shape
      m[2] = make("2", dtype::f32, {8}, values(8, 1));
    }
    archives.push_back(npz_of(m, k % 2 ? npz_compression::stored
                                       : npz_compression::deflate));
    weights.push_back(10.0 + 7 * k);
  }
  temp_dir dir;
  for (uint64_t limit : {uint64_t{1} << 30, uint64_t{1} << 16}) {
    CAPTURE(limit);
    memory_budget budget{limit};
    auto opts = budget_setup::with_budget(budget, dir.sub("spill"));
    auto ours = make_aggregator("fedavg");
    auto ref = make_aggregator("fedavg");
    REQUIRE(ours);
    REQUIRE(ref);
    REQUIRE(!(*ours)->begin(global));
    REQUIRE(!(*ref)->begin(global));
    for (size_t k = 0; k < archives.size(); ++k) {
      auto up = decode_in_pieces(archives[k], 65536, opts);
      REQUIRE_MESSAGE(up, render(up.error()));
      CHECK((*up)->in_memory() == (limit > (uint64_t{1} << 20)));
      auto reader = npz_reader::open_bytes(std::string_view{archives[k]});
      REQUIRE(reader);
      auto a = (*ours)->add(**up, weights[k]);
      auto b = (*ref)->add(**reader, weights[k]);
      CHECK(static_cast<bool>(a) == static_cast<bool>(b));
      CHECK(static_cast<bool>(a) == (k == 2 || k == 3));
      if (a)
        CHECK(a == b);
    }
    CHECK((*ours)->accepted() == 3);
    auto x = (*ours)->finish();
    auto y = (*ref)->finish();
    REQUIRE(x);
    REQUIRE(y);
    REQUIRE(spec_of(*x) == spec_of(*y));
    for (size_t t = 0; t < x->size(); ++t)
      CHECK(std::memcmp((*x)[t].data.data(), (*y)[t].data.data(),
                        (*x)[t].nbytes())
            == 0);
    CHECK(budget.used() == 0);
  }
}
