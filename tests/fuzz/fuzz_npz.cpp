// libFuzzer target: FEDn's npz model format (model/npz.*), as the combiner
// reads a client's uploaded model update (npz_reader::open_bytes, then
// visit / read_range / read through the aggregator and check_finite) and
// as `rondo aggregate` / `rondo store import` read files (open_file).
//
// Properties beyond "no crash, leak or UB":
// - a rejected archive fails with ec::malformed_model or ec::too_large and
//   a non-empty text;
// - every way of reading a member (read, visit, read_range) yields the
//   same bytes, and the file path (pread) agrees with the in-memory one;
// - when libzip also verifies the STORED members' CRC and both succeed,
//   the data is the same (the central-directory offsets Rondo reads itself
//   agree with libzip's);
// - a model that reads back writes and re-reads bit-exactly;
// - the streaming decoder (model/npz_stream.*), fed in pieces, fails with
//   ec::malformed_model or ec::too_large, and when it and npz_reader both
//   succeed they give the same spec and bytes; a memory budget is given
//   back in full.

#include "fuzz_util.hpp"

#include "model/npz.hpp"
#include "model/npz_stream.hpp"
#include "model/validate.hpp"

#include <sys/mman.h>
#include <unistd.h>

#include <cstring>
#include <string>
#include <vector>

using namespace rondo;
using rondo::fuzz::check;

namespace {

void check_rejection(const caf::error& err) {
  check(err == ec::malformed_model || err == ec::too_large,
        "npz errors are malformed_model or too_large");
  fuzz::check_error(err, err == ec::too_large ? ec::too_large
                                              : ec::malformed_model);
}

/// Every member's bytes through read(), or an error.
caf::expected<std::vector<std::string>> read_members(const npz_reader& r) {
  std::vector<std::string> out;
  for (size_t i = 0; i < r.spec().size(); ++i) {
    auto t = r.read(i);
    if (!t)
      return t.error();
    check(t->nbytes() == r.spec()[i].nbytes(), "read() has nbytes()");
    check(static_cast<const tensor_info&>(*t) == r.spec()[i],
          "read() has the spec's name, dtype and shape");
    out.emplace_back(reinterpret_cast<const char*>(t->data.data()),
                     t->nbytes());
  }
  return out;
}

/// Reads `r` every way it can be read and checks that they agree.
caf::expected<std::vector<std::string>> read_every_way(const npz_reader& r) {
  auto members = read_members(r);
  if (!members) {
    check_rejection(members.error());
    return members;
  }
  for (size_t i = 0; i < r.spec().size(); ++i) {
    auto& info = r.spec()[i];
    auto esize = size_of(info.type);
    std::string visited;
    uint64_t next = 0;
    auto err = r.visit(i, [&](const std::byte* data, uint64_t first,
                              uint64_t count) -> caf::error {
      check(first == next, "visit() chunks are consecutive");
      next = first + count;
      visited.append(reinterpret_cast<const char*>(data), count * esize);
      return caf::none;
    });
    check(!err, "visit() succeeds when read() did");
    check(visited == (*members)[i], "visit() yields read()'s bytes");
    if (r.random_access() && info.count() > 0) {
      std::vector<std::byte> scratch(info.nbytes());
      auto half = info.count() / 2;
      auto p = r.read_range(i, half, info.count() - half, scratch.data());
      check(static_cast<bool>(p), "read_range() succeeds when read() did");
      check(std::memcmp(*p, (*members)[i].data() + half * esize,
                        (info.count() - half) * esize)
              == 0,
            "read_range() yields read()'s bytes");
    }
  }
  if (auto err = check_finite(r))
    check(err == ec::non_finite, "check_finite fails only with non_finite");
  return members;
}

/// Opens `bytes` as a file (memfd) so that the pread path runs too.
caf::expected<std::unique_ptr<npz_reader>>
open_as_file(std::string_view bytes, const npz_options& opts, int& fd) {
  fd = ::memfd_create("npz", MFD_CLOEXEC);
  check(fd >= 0, "memfd_create works");
  for (size_t done = 0; done < bytes.size();) {
    auto n = ::write(fd, bytes.data() + done, bytes.size() - done);
    check(n > 0, "writing the memfd works");
    done += static_cast<size_t>(n);
  }
  return npz_reader::open_file("/proc/self/fd/" + std::to_string(fd), opts);
}

/// The streaming decoder over `bytes` in three pieces; checks its verdict
/// against npz_reader's `members` (null: npz_reader refused the archive).
void check_stream(std::string_view bytes,
                  const std::vector<std::string>* members) {
  memory_budget budget{uint64_t{1} << 30};
  {
    npz_stream_options opts;
    opts.budget = &budget;
    npz_stream_decoder dec{opts};
    caf::error err;
    size_t cuts[] = {0, bytes.size() / 3, 2 * bytes.size() / 3, bytes.size()};
    for (size_t k = 0; k < 3 && !err; ++k)
      err = dec.feed(bytes.substr(cuts[k], cuts[k + 1] - cuts[k]));
    auto up = err ? caf::expected<std::shared_ptr<decoded_update>>{err}
                  : dec.finish();
    if (!up) {
      check_rejection(up.error());
      check(budget.used() == 0, "a refused stream gives its budget back");
      return;
    }
    if (members != nullptr) {
      check((*up)->spec().size() == members->size(),
            "stream and reader: same members");
      for (size_t i = 0; i < members->size(); ++i) {
        auto& info = (*up)->spec()[i];
        std::string got(info.nbytes(), '\0');
        if (info.count() > 0) {
          auto p = (*up)->read_range(
            i, 0, info.count(), reinterpret_cast<std::byte*>(got.data()));
          check(static_cast<bool>(p), "read_range of a decoded update works");
          std::memcpy(got.data(), *p, got.size());
        }
        check(got == (*members)[i], "stream and reader: same bytes");
      }
    }
    check(budget.used() == (*up)->data_bytes(),
          "a decoded update holds its data bytes of the budget");
  }
  check(budget.used() == 0, "a destroyed update gives its budget back");
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  auto bytes = fuzz::as_view(data, size);
  npz_options opts; // the combiner's: defaults
  auto reader = npz_reader::open_bytes(bytes, opts);
  int fd = -1;
  auto file_reader = open_as_file(bytes, opts, fd);
  if (static_cast<bool>(reader) != static_cast<bool>(file_reader)) {
    std::fprintf(stderr, "in memory: %s\nfile: %s\n",
                 reader ? "opened" : render(reader.error()).c_str(),
                 file_reader ? "opened" : render(file_reader.error()).c_str());
    check(false, "the file and the in-memory reader accept the same archives");
  }
  if (!reader) {
    check_rejection(reader.error());
    ::close(fd);
    check_stream(bytes, nullptr);
    return 0;
  }
  check((*reader)->spec() == (*file_reader)->spec(),
        "the file and the in-memory reader see the same spec");
  auto members = read_every_way(**reader);
  auto file_members = read_every_way(**file_reader);
  check(static_cast<bool>(members) == static_cast<bool>(file_members),
        "the file and the in-memory reader read the same archives");
  if (members)
    check(*members == *file_members,
          "the file and the in-memory reader read the same bytes");
  file_reader->reset();
  ::close(fd);
  check_stream(bytes, members ? &*members : nullptr);
  // libzip's own reading of STORED members, with their CRC.
  npz_options crc = opts;
  crc.verify_stored_crc = true;
  if (auto checked = read_npz_bytes(bytes, crc); checked && members) {
    check(checked->size() == members->size(), "CRC path: same members");
    for (size_t i = 0; i < checked->size(); ++i)
      check(std::string_view{reinterpret_cast<const char*>(
                               (*checked)[i].data.data()),
                             (*checked)[i].nbytes()}
              == (*members)[i],
            "CRC path (libzip's offsets) reads Rondo's bytes");
  }
  if (!members || members->empty())
    return 0; // a model without tensors cannot be written
  // Write what was read; it must read back bit-exactly.
  auto m = (*reader)->read_all();
  check(static_cast<bool>(m), "read_all() succeeds when read() did");
  for (auto c : {npz_compression::stored, npz_compression::deflate}) {
    npz_options w;
    w.compression = c;
    auto out = write_npz_bytes(*m, w);
    check(static_cast<bool>(out), "write_npz_bytes succeeds");
    auto back = read_npz_bytes(*out);
    check(static_cast<bool>(back), "a written model reads back");
    check(spec_of(*back) == spec_of(*m), "round trip keeps the spec");
    for (size_t i = 0; i < m->size(); ++i)
      check((*m)[i].nbytes() == 0
              || std::memcmp((*back)[i].data.data(), (*m)[i].data.data(),
                             (*m)[i].nbytes())
                   == 0,
            "round trip keeps the data");
  }
  return 0;
}
