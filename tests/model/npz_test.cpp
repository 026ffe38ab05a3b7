// npz: reading and writing FEDn's model format.

#include "model/npz.hpp"

#include "tests/model/helpers.hpp"

#include <cmath>
#include <cstring>
#include <fstream>

using namespace rondo;
using namespace rondo::test;

namespace {

// A model with every case the format allows: float32 and float64, 0-d,
// 1-d, 2-d and 3-d, and a non-numeric key kept in archive order.
model sample_model() {
  model m;
  m.push_back(make("0", dtype::f32, {2, 3}, {1.5, -2.25, 3, 1e-7, -0.0, 7e30}));
  m.push_back(make("1", dtype::f64, {}, {3.141592653589793}));
  m.push_back(make("2", dtype::f32, {5}, {0.1, 0.2, 0.3, 0.4, 0.5}));
  m.push_back(make("bias", dtype::f64, {2, 2, 2},
                   {1, 2, 3, 4, 5, 6, 7, 8.000000000000002}));
  return m;
}

void check_same(const model& a, const model& b) {
  REQUIRE(a.size() == b.size());
  for (size_t i = 0; i < a.size(); ++i) {
    CHECK(a[i].name == b[i].name);
    CHECK(a[i].type == b[i].type);
    CHECK(a[i].shape == b[i].shape);
    REQUIRE(a[i].nbytes() == b[i].nbytes());
    CHECK(std::memcmp(a[i].data.data(), b[i].data.data(), a[i].nbytes()) == 0);
  }
}

npz_options with(npz_compression c) {
  npz_options opts;
  opts.compression = c;
  return opts;
}

} // namespace

TEST_CASE("npz: round trip in memory, STORED and DEFLATE") {
  auto m = sample_model();
  for (auto c : {npz_compression::stored, npz_compression::deflate}) {
    auto bytes = write_npz_bytes(m, with(c));
    REQUIRE(bytes);
    auto back = read_npz_bytes(*bytes);
    REQUIRE_MESSAGE(back, render(back.error()));
    check_same(m, *back);
    npz_options crc;
    crc.verify_stored_crc = true;
    auto checked = read_npz_bytes(*bytes, crc);
    REQUIRE(checked);
    check_same(m, *checked);
  }
}

TEST_CASE("npz: round trip through files, STORED and DEFLATE") {
  temp_dir dir;
  auto m = sample_model();
  for (auto c : {npz_compression::stored, npz_compression::deflate}) {
    auto path = dir / "m.npz";
    REQUIRE(!write_npz_file(m, path, with(c)));
    auto back = read_npz_file(path);
    REQUIRE_MESSAGE(back, render(back.error()));
    check_same(m, *back);
  }
}

TEST_CASE("npz: npz_reader visits STORED members straight from the file") {
  temp_dir dir;
  auto m = sample_model();
  auto path = dir / "m.npz";
  REQUIRE(!write_npz_file(m, path));
  auto reader = npz_reader::open_file(path);
  REQUIRE(reader);
  CHECK((*reader)->all_stored());
  REQUIRE((*reader)->spec() == spec_of(m));
  for (size_t i = 0; i < m.size(); ++i) {
    std::string seen;
    auto err = (*reader)->visit(i, [&](const std::byte* p, uint64_t first,
                                       uint64_t n) {
      CHECK(first * size_of(m[i].type) == seen.size());
      seen.append(reinterpret_cast<const char*>(p), n * size_of(m[i].type));
      return caf::error{};
    });
    CHECK(!err);
    CHECK(seen == std::string(reinterpret_cast<const char*>(m[i].data.data()),
                              m[i].nbytes()));
  }
}

TEST_CASE("npz: numpy.load reads Rondo's files bit-exactly") {
  if (skip_without_numpy())
    return;
  temp_dir dir;
  auto m = sample_model();
  REQUIRE(!write_npz_file(m, dir / "stored.npz"));
  REQUIRE(!write_npz_file(m, dir / "deflate.npz",
                          with(npz_compression::deflate)));
  // numpy dumps dtype, shape and raw bytes of every array, in order.
  REQUIRE(run_python(dir, R"(
for f in ["stored", "deflate"]:
    z = np.load(f + ".npz")
    with open(f + ".txt", "w") as out:
        for k in z.files:
            a = z[k]
            out.write("%s %s %s\n" % (k, a.dtype, a.shape))
            open(f + "." + k + ".bin", "wb").write(a.tobytes())
)") == 0);
  for (std::string f : {"stored", "deflate"}) {
    CHECK(read_file(dir / (f + ".txt"))
          == "0 float32 (2, 3)\n1 float64 ()\n2 float32 (5,)\n"
             "bias float64 (2, 2, 2)\n");
    for (auto& t : m)
      CHECK(read_file(dir / (f + "." + t.name + ".bin"))
            == std::string(reinterpret_cast<const char*>(t.data.data()),
                           t.nbytes()));
  }
}

TEST_CASE("npz: reads files written by np.savez and np.savez_compressed") {
  if (skip_without_numpy())
    return;
  temp_dir dir;
  REQUIRE(run_python(dir, R"(
arrays = {
    "0": (np.arange(12, dtype=np.float32) * 0.5 - 3).reshape(3, 4),
    "1": np.array(2.5, dtype=np.float64),
    "2": np.arange(7, dtype=np.float64) / 4,
    "3": (np.arange(24, dtype=np.float32) - 12).reshape(2, 3, 4),
}
np.savez("plain.npz", **arrays)
np.savez_compressed("compressed.npz", **arrays)
)") == 0);
  for (std::string f : {"plain.npz", "compressed.npz"}) {
    CAPTURE(f);
    auto m = read_npz_file(dir / f);
    REQUIRE_MESSAGE(m, render(m.error()));
    REQUIRE(m->size() == 4);
    auto& t0 = (*m)[0];
    CHECK(t0.name == "0");
    CHECK(t0.type == dtype::f32);
    CHECK(t0.shape == std::vector<uint64_t>{3, 4});
    for (uint64_t i = 0; i < 12; ++i)
      CHECK(t0.f32()[i] == static_cast<float>(i) * 0.5f - 3);
    CHECK((*m)[1].type == dtype::f64);
    CHECK((*m)[1].shape.empty());
    CHECK((*m)[1].f64()[0] == 2.5);
    CHECK((*m)[2].shape == std::vector<uint64_t>{7});
    CHECK((*m)[2].f64()[6] == 1.5);
    CHECK((*m)[3].shape == std::vector<uint64_t>{2, 3, 4});
    CHECK((*m)[3].f32()[23] == 11.0f);
  }
}

TEST_CASE("npz: rejects malformed archives, naming the member") {
  auto good = npy_bytes("<f4", false, "(2,)", f32_bytes({1, 2}));
  auto read = [](const std::string& bytes, npz_options opts = {}) {
    return read_npz_bytes(bytes, opts);
  };
  SUBCASE("not a ZIP") {
    auto m = read("this is not a zip archive at all");
    REQUIRE(!m);
    CHECK(m.error() == ec::malformed_model);
    RONDO_CHECK_SAYS(m.error(), "not a ZIP archive");
  }
  SUBCASE("truncated archive") {
    auto bytes = stored_zip({{"0.npy", good}});
    auto m = read(bytes.substr(0, bytes.size() - 30));
    REQUIRE(!m);
    CHECK(m.error() == ec::malformed_model);
  }
  SUBCASE("fortran order") {
    auto m = read(stored_zip(
      {{"0.npy", good}, {"1.npy", npy_bytes("<f4", true, "(2,)", "12345678")}}));
    REQUIRE(!m);
    RONDO_CHECK_SAYS(m.error(), "member '1.npy': fortran_order is True");
  }
  SUBCASE("big-endian") {
    auto m = read(stored_zip({{"0.npy", npy_bytes(">f4", false, "(2,)",
                                                  "12345678")}}));
    REQUIRE(!m);
    RONDO_CHECK_SAYS(m.error(), "member '0.npy': dtype '>f4' is big-endian");
  }
  SUBCASE("not a float dtype") {
    auto m = read(stored_zip({{"0.npy", npy_bytes("<i8", false, "(1,)",
                                                  "12345678")}}));
    REQUIRE(!m);
    RONDO_CHECK_SAYS(m.error(), "member '0.npy': dtype '<i8' is not float32");
  }
  SUBCASE("shape disagrees with the data length") {
    auto m = read(stored_zip({{"3.npy", npy_bytes("<f4", false, "(10, 5)",
                                                  std::string(192, 'x'))}}));
    REQUIRE(!m);
    CHECK(m.error() == ec::malformed_model);
    RONDO_CHECK_SAYS(m.error(), "member '3.npy': shape (10, 5) holds 50 values "
                                "(200 bytes) but the data has 192 bytes");
  }
  SUBCASE("duplicate keys") {
    auto m = read(stored_zip({{"0.npy", good}, {"0.npy", good}}));
    REQUIRE(!m);
    RONDO_CHECK_SAYS(m.error(), "duplicate key '0'");
  }
  SUBCASE("a member that is not .npy") {
    auto m = read(stored_zip({{"0.npy", good}, {"notes.txt", "hello"}}));
    REQUIRE(!m);
    RONDO_CHECK_SAYS(m.error(), "member 'notes.txt': not a .npy member");
  }
  SUBCASE("not an npy payload") {
    auto m = read(stored_zip({{"0.npy", "garbage garbage garbage"}}));
    REQUIRE(!m);
    RONDO_CHECK_SAYS(m.error(), "member '0.npy': not an npy array");
  }
  SUBCASE("declared size over the limit (zip bomb)") {
    // 16 MiB of zeros deflate to a few KiB.
    tensor zeros{tensor_info{"0", dtype::f32, {4u << 20}}};
    std::memset(zeros.data.data(), 0, zeros.nbytes());
    model big;
    big.push_back(std::move(zeros));
    auto bytes = write_npz_bytes(big, with(npz_compression::deflate));
    REQUIRE(bytes);
    CHECK(bytes->size() < 100000);
    npz_options opts;
    opts.max_uncompressed_bytes = 1u << 20;
    auto m = read(*bytes, opts);
    REQUIRE(!m);
    CHECK(m.error() == ec::too_large);
    RONDO_CHECK_SAYS(m.error(), "member '0.npy'");
    RONDO_CHECK_SAYS(m.error(), "limit is 1048576 bytes");
  }
  SUBCASE("a file that does not exist") {
    auto m = read_npz_file("/nonexistent/model.npz");
    REQUIRE(!m);
    CHECK(m.error() == ec::not_found);
  }
}

// Found by tests/fuzz (fuzz_npz): libzip opened zero bytes as an archive
// without members, so an empty upload read as an empty model in memory
// (and memcpy got null pointers) while the same bytes as a file were "not
// a ZIP archive".
TEST_CASE("npz: zero bytes are not an npz, in memory or as a file") {
  auto m = read_npz_bytes(std::string_view{});
  REQUIRE(!m);
  CHECK(m.error() == ec::malformed_model);
  RONDO_CHECK_SAYS(m.error(), "not a ZIP archive (npz): the input is empty");
  temp_dir dir;
  auto path = dir / "empty.npz";
  { std::ofstream{path}; }
  auto f = read_npz_file(path);
  REQUIRE(!f);
  CHECK(f.error() == ec::malformed_model);
  RONDO_CHECK_SAYS(f.error(), "not a ZIP archive");
}

// Found by tests/fuzz (fuzz_npz): visiting a zero-size member of a file
// handed the visitor a pointer computed from the (null) in-memory bytes.
TEST_CASE("npz: a zero-size member of a file visits as no values") {
  temp_dir dir;
  model m;
  m.push_back(make("0", dtype::f32, {0, 3}, {}));
  m.push_back(make("1", dtype::f64, {2}, {1, 2}));
  auto path = dir / "zero.npz";
  REQUIRE(!write_npz_file(m, path));
  auto reader = npz_reader::open_file(path);
  REQUIRE_MESSAGE(reader, render(reader.error()));
  size_t calls = 0;
  auto err = (*reader)->visit(0, [&](const std::byte* p, uint64_t first,
                                     uint64_t n) {
    ++calls;
    CHECK(p != nullptr);
    CHECK(first == 0);
    CHECK(n == 0);
    return caf::error{};
  });
  CHECK(!err);
  CHECK(calls == 1);
  auto back = (*reader)->read_all();
  REQUIRE(back);
  CHECK((*back)[0].shape == std::vector<uint64_t>{0, 3});
  CHECK((*back)[1].at(1) == 2);
}

// Found by tests/fuzz (fuzz_npz): an archive without members reads as a
// model without tensors, which libzip cannot write: write_npz_bytes failed
// with "cannot read back the npz" and write_npz_file wrote no file yet
// reported success.
TEST_CASE("npz: a model without tensors is refused by the writers") {
  auto bytes = write_npz_bytes(model{});
  REQUIRE(!bytes);
  CHECK(bytes.error() == ec::invalid_argument);
  RONDO_CHECK_SAYS(bytes.error(), "a model without tensors");
  temp_dir dir;
  auto err = write_npz_file(model{}, dir / "empty.npz");
  CHECK(err == ec::invalid_argument);
  RONDO_CHECK_SAYS(err, "a model without tensors");
  // An archive without members (np.savez() with no arrays) still reads.
  auto none = read_npz_bytes(stored_zip({}));
  REQUIRE_MESSAGE(none, render(none.error()));
  CHECK(none->empty());
}

// Found by review of fuzz_npz's reach, confirmed by ASan in the fuzz build:
// Rondo reads the last end record's central directory itself (for the
// STORED fast path), which need not be the one libzip accepted; a ZIP64
// extra field longer than its block made it read past the directory.
// Such a directory is now refused (and an archive with two end records
// is refused as a whole, next case).
TEST_CASE("npz: a stale central directory after the archive is refused") {
  auto archive = stored_zip(
    {{"0.npy", npy_bytes("<f4", false, "(2,)", f32_bytes({1.5, -2}))}});
  auto le = [](std::string& out, uint64_t v, int bytes) {
    for (int i = 0; i < bytes; ++i)
      out += static_cast<char>((v >> (8 * i)) & 0xff);
  };
  std::string cd;
  le(cd, 0x02014b50, 4);
  for (int i = 0; i < 6; ++i)
    le(cd, i < 2 ? 20 : 0, 2); // versions, flags, method, time, date
  le(cd, 0, 12);               // crc, sizes
  le(cd, 5, 2);                // name length
  le(cd, 4, 2);                // extra length: one field header only
  le(cd, 0, 8);                // comment, disk, attributes
  le(cd, 0, 2);
  le(cd, 0xffffffff, 4);       // local offset: in the ZIP64 extra
  cd += "0.npy";
  le(cd, 1, 2);                // ZIP64 extra field...
  le(cd, 0xffff, 2);           // ...claiming 65535 bytes
  auto bytes = archive + cd;
  le(bytes, 0x06054b50, 4);
  le(bytes, 0, 4);
  le(bytes, 1, 2);
  le(bytes, 1, 2);
  le(bytes, cd.size(), 4);
  le(bytes, archive.size(), 4);
  le(bytes, 0, 2);
  auto m = read_npz_bytes(bytes);
  REQUIRE(!m);
  CHECK(m.error() == ec::malformed_model);
  RONDO_CHECK_SAYS(m.error(), "more than one ZIP end record");
}

// Found by fuzz_npz's property that libzip's reading (verify_stored_crc)
// and Rondo's STORED fast path agree: with a second archive appended,
// libzip read the first archive's member and the fast path (like numpy)
// the second's, so one upload held two different models.
TEST_CASE("npz: an archive with two end records is refused, not read two "
          "ways") {
  auto first = stored_zip(
    {{"0.npy", npy_bytes("<f4", false, "(2,)", f32_bytes({1, 2}))}});
  auto second = stored_zip(
    {{"0.npy", npy_bytes("<f4", false, "(2,)", f32_bytes({7, 8}))}});
  // The second archive's offsets count from the start of the file.
  auto shifted = second;
  auto cd_offset = shifted.size() - 22 + 16;
  uint32_t off = 0;
  for (int i = 0; i < 4; ++i)
    off |= uint32_t{static_cast<unsigned char>(shifted[cd_offset + i])}
           << (8 * i);
  off += static_cast<uint32_t>(first.size());
  for (int i = 0; i < 4; ++i)
    shifted[cd_offset + i] = static_cast<char>((off >> (8 * i)) & 0xff);
  auto local_offset = off + 42; // the directory entry's local offset
  uint32_t lo = static_cast<uint32_t>(first.size());
  for (int i = 0; i < 4; ++i)
    shifted[local_offset - first.size() + i]
      = static_cast<char>((lo >> (8 * i)) & 0xff);
  auto bytes = first + shifted;
  for (bool crc : {false, true}) {
    npz_options opts;
    opts.verify_stored_crc = crc;
    auto m = read_npz_bytes(bytes, opts);
    REQUIRE(!m);
    CHECK(m.error() == ec::malformed_model);
    RONDO_CHECK_SAYS(m.error(), "more than one ZIP end record");
  }
  // Either archive alone reads.
  CHECK(read_npz_bytes(first));
  CHECK(read_npz_bytes(second));
}

// Found by review of fuzz_npz's reach, confirmed in the fuzz build
// (libFuzzer: out-of-memory, malloc(3221225445)): a 137-byte DEFLATE
// member declaring 3 GiB made the reader allocate and zero its npy
// header's declared length before reading it.
TEST_CASE("npz: an npy header longer than 64 KiB is refused before reading") {
  std::string member = "\x93NUMPY\x02";
  member += '\0';
  uint32_t hlen = 70000;
  for (int i = 0; i < 4; ++i)
    member += static_cast<char>((hlen >> (8 * i)) & 0xff);
  member += "{'descr': '<f4', 'fortran_order': False, 'shape': (1,), }";
  member.resize(12 + hlen + 4, ' ');
  auto m = read_npz_bytes(stored_zip({{"0.npy", member}}));
  REQUIRE(!m);
  CHECK(m.error() == ec::malformed_model);
  RONDO_CHECK_SAYS(m.error(), "member '0.npy': npy header is 70000 bytes "
                              "long; at most 65536 are accepted");
}

TEST_CASE("npz: DEFLATE members are inflated with their CRC-32 checked") {
  model m;
  std::vector<double> xs(700000);
  for (size_t i = 0; i < xs.size(); ++i)
    xs[i] = std::sin(0.01 * static_cast<double>(i));
  m.push_back(make("0", dtype::f32, {700000}, xs));
  m.push_back(make("1", dtype::f64, {}, {2.5}));
  auto bytes = write_npz_bytes(m, with(npz_compression::deflate));
  REQUIRE(bytes);
  auto back = read_npz_bytes(*bytes);
  REQUIRE(back);
  check_same(m, *back);
  // The central directory's CRC-32 (libzip's zip_stat) flipped.
  auto bad_crc = *bytes;
  auto cd = bad_crc.rfind("0.npy") - 46;
  REQUIRE(bad_crc.compare(cd, 4, "PK\x01\x02") == 0);
  bad_crc[cd + 16] ^= 0x10;
  auto r = read_npz_bytes(bad_crc);
  REQUIRE_FALSE(r);
  RONDO_CHECK_SAYS(r.error(), "member '0.npy': corrupt data: CRC error");
  auto reader = npz_reader::open_bytes(std::string_view{bad_crc});
  REQUIRE(reader);
  auto visited = (*reader)->visit(0, [](const std::byte*, uint64_t, uint64_t) {
    return caf::error{};
  });
  RONDO_CHECK_SAYS(visited, "member '0.npy': corrupt data: CRC error");
  // Garbage in the compressed data.
  auto bad_data = *bytes;
  auto at = bad_data.find("0.npy") + 5 + 20 + 3000;
  for (size_t i = 0; i < 64; ++i)
    bad_data[at + i] = static_cast<char>(0x5A ^ (i * 29));
  auto d = read_npz_bytes(bad_data);
  REQUIRE_FALSE(d);
  RONDO_CHECK_SAYS(d.error(), "member '0.npy': corrupt data");
}
