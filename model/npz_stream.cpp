#include "model/npz_stream.hpp"

#include "messages/error.hpp"
#include "model/npy_format.hpp"

#include <isa-l/crc.h>
#include <isa-l/igzip_lib.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fcntl.h>
#include <filesystem>
#include <map>
#include <new>
#include <set>
#include <sys/stat.h>
#include <unistd.h>

namespace rondo {

using npy::le16;
using npy::le32;
using npy::le64;
using npy::member_error;

// -- memory_budget ------------------------------------------------------------

bool memory_budget::try_reserve(uint64_t n) {
  auto cur = used_.load(std::memory_order_relaxed);
  do {
    if (n > limit_ || cur > limit_ - n)
      return false;
  } while (!used_.compare_exchange_weak(cur, cur + n,
                                        std::memory_order_relaxed));
  return true;
}

void memory_budget::release(uint64_t n) {
  used_.fetch_sub(n, std::memory_order_relaxed);
}

namespace {

constexpr uint64_t visit_chunk = 512u << 10; // pread size of spilled visits
constexpr size_t spill_stage = 1u << 20;     // bytes written per write()
constexpr uint32_t max_step = 1u << 30;      // ISA-L counts in uint32
constexpr uint32_t sig_local = 0x04034b50;
constexpr uint32_t sig_central = 0x02014b50;
constexpr uint32_t sig_descriptor = 0x08074b50;
constexpr uint32_t sig_end64 = 0x06064b50;
constexpr uint32_t sig_locator = 0x07064b50;
constexpr uint32_t sig_end = 0x06054b50;
constexpr size_t local_fixed = 30;
constexpr size_t central_fixed = 46;
constexpr size_t end_fixed = 22;
constexpr size_t end64_fixed = 56;
constexpr size_t locator_len = 20;

std::string hex32(uint32_t v) {
  char buf[16];
  std::snprintf(buf, sizeof buf, "%08x", v);
  return buf;
}

// A spill file: decoded values written sequentially through a 1 MiB stage,
// read back with pread (no shared file offset: several readers at once).
// Removed when destroyed.
class spill_file {
public:
  ~spill_file() {
    if (fd_ >= 0)
      ::close(fd_);
    if (!path_.empty())
      ::unlink(path_.c_str());
  }

  // A new file with a unique name in `dir` (created if missing).
  static caf::expected<std::unique_ptr<spill_file>>
  create(const std::string& dir) {
    if (dir.empty())
      return caf::make_error(ec::storage_error,
                             "the memory budget cannot take the update and "
                             "no spill folder is set");
    std::error_code ec_fs;
    std::filesystem::create_directories(dir, ec_fs);
    if (ec_fs)
      return caf::make_error(ec::storage_error,
                             "cannot create spill folder '" + dir
                               + "': " + ec_fs.message());
    auto out = std::unique_ptr<spill_file>{new spill_file};
    std::string name = dir + "/update-XXXXXX.spill";
    // mkostemps: a unique name opened with O_CREAT | O_EXCL, mode 0600.
    out->fd_ = ::mkostemps(name.data(), 6, O_CLOEXEC);
    if (out->fd_ < 0)
      return caf::make_error(ec::storage_error,
                             "cannot create a spill file in '" + dir
                               + "': " + std::strerror(errno));
    out->path_ = std::move(name);
    out->stage_ = byte_buffer{spill_stage};
    return out;
  }

  const std::string& path() const {
    return path_;
  }

  // Bytes appended so far (written or staged).
  uint64_t size() const {
    return written_ + staged_;
  }

  // Free stage space to write into; commit() what was written.
  std::byte* space(size_t& n) {
    n = stage_.size() - staged_;
    return stage_.data() + staged_;
  }

  caf::error commit(size_t n) {
    staged_ += n;
    return staged_ == stage_.size() ? flush() : caf::error{};
  }

  caf::error append(const std::byte* p, size_t n) {
    while (n > 0) {
      size_t room = 0;
      auto* dst = space(room);
      auto len = std::min(room, n);
      std::memcpy(dst, p, len);
      p += len;
      n -= len;
      if (auto err = commit(len))
        return err;
    }
    return {};
  }

  caf::error flush() {
    for (size_t done = 0; done < staged_;) {
      auto got = ::pwrite(fd_, stage_.data() + done, staged_ - done,
                          static_cast<off_t>(written_ + done));
      if (got < 0 && errno == EINTR)
        continue;
      if (got <= 0)
        return caf::make_error(ec::storage_error,
                               "cannot write spill file '" + path_
                                 + "': " + std::strerror(errno));
      done += static_cast<size_t>(got);
    }
    written_ += staged_;
    staged_ = 0;
    return {};
  }

  // Frees the stage once everything is written.
  void seal() {
    stage_ = byte_buffer{};
  }

  bool read_at(uint64_t offset, std::byte* dst, uint64_t n) const {
    return npy::pread_exact(fd_, offset, dst, n);
  }

private:
  spill_file() = default;
  int fd_ = -1;
  std::string path_;
  byte_buffer stage_;
  size_t staged_ = 0;
  uint64_t written_ = 0;
};

// What a ZIP record (local header, data descriptor or central directory
// entry) says about a member.
struct zip_entry {
  std::string name;
  uint16_t flags = 0;
  uint16_t method = 0;
  uint32_t crc = 0;
  uint64_t csize = 0;
  uint64_t usize = 0;
  uint64_t local_offset = 0;
  bool zip64 = false; // the local header has a ZIP64 extra field
};

// Replaces the 32-bit fields that hold 0xffffffff by the values of the
// ZIP64 extra field (id 1) in `extra`, in the order the format gives:
// uncompressed size, compressed size, local header offset. Sets
// e.zip64 when the field is present.
void apply_zip64(const unsigned char* extra, size_t len, zip_entry& e,
                 bool has_offset) {
  for (size_t xp = 0; xp + 4 <= len;) {
    size_t id = le16(extra + xp), flen = le16(extra + xp + 2);
    if (xp + 4 + flen > len)
      return;
    if (id == 1) {
      e.zip64 = true;
      size_t field = xp + 4, end = xp + 4 + flen;
      for (auto* v : {&e.usize, &e.csize})
        if (*v == 0xffffffff && field + 8 <= end) {
          *v = le64(extra + field);
          field += 8;
        }
      if (has_offset && e.local_offset == 0xffffffff && field + 8 <= end)
        e.local_offset = le64(extra + field);
    }
    xp += 4 + flen;
  }
}

// A central directory entry at `p` (`avail` bytes): its total length, or 0
// when more bytes are needed (`need` then says how many in all).
size_t central_entry_len(const unsigned char* p, size_t avail,
                         size_t& need) {
  need = central_fixed;
  if (avail < central_fixed)
    return 0;
  need = central_fixed + le16(p + 28) + le16(p + 30) + le16(p + 32);
  return avail >= need ? need : 0;
}

// The fields a local header (at `p`, `shift` 0, `fixed` 30 bytes) and a
// central directory entry (`shift` 2: its "version made by", `fixed` 46)
// share, at the same offsets but for the shift.
zip_entry parse_entry(const unsigned char* p, size_t shift, size_t fixed) {
  zip_entry e;
  const unsigned char* q = p + shift;
  e.flags = le16(q + 6);
  e.method = le16(q + 8);
  e.crc = le32(q + 14);
  e.csize = le32(q + 18);
  e.usize = le32(q + 22);
  size_t name_len = le16(q + 26), extra_len = le16(q + 28);
  bool central = shift > 0;
  if (central)
    e.local_offset = le32(p + 42);
  e.name.assign(reinterpret_cast<const char*>(p + fixed), name_len);
  apply_zip64(p + fixed + name_len, extra_len, e, central);
  return e;
}

zip_entry parse_central_entry(const unsigned char* p) {
  return parse_entry(p, 2, central_fixed);
}

} // namespace

// -- decoded_update -----------------------------------------------------------

struct decoded_update::impl {
  model_spec spec;
  // Per tensor: its values in memory (nbytes bytes), or empty and at
  // file_offset in the spill file.
  std::vector<byte_buffer> data;
  std::vector<uint64_t> file_offset;
  std::vector<bool> spilled;
  std::unique_ptr<spill_file> file;
  memory_budget* budget = nullptr;
  uint64_t reserved = 0;
  uint64_t data_bytes = 0;
  uint64_t wire_bytes = 0;

  ~impl() {
    data.clear();
    if (budget != nullptr && reserved > 0)
      budget->release(reserved);
  }

  caf::error read_error(size_t index) const {
    return caf::make_error(ec::malformed_model,
                           "tensor '" + spec[index].name
                             + "': cannot read spill file '" + file->path()
                             + "': " + std::strerror(errno));
  }
};

decoded_update::decoded_update(std::unique_ptr<impl> ptr)
  : impl_(std::move(ptr)) {
  // nothing else
}

decoded_update::~decoded_update() = default;

const model_spec& decoded_update::spec() const {
  return impl_->spec;
}

caf::error decoded_update::visit(size_t index, const chunk_visitor& fn) const {
  auto& info = impl_->spec.at(index);
  auto total = info.nbytes();
  if (total == 0) {
    static const std::byte no_data{};
    return fn(&no_data, 0, 0);
  }
  if (!impl_->spilled[index])
    return fn(impl_->data[index].data(), 0, info.count());
  auto esize = size_of(info.type);
  byte_buffer buf{std::min(visit_chunk, total)};
  for (uint64_t done = 0; done < total;) {
    auto len = std::min<uint64_t>(buf.size(), total - done);
    if (!impl_->file->read_at(impl_->file_offset[index] + done, buf.data(),
                              len))
      return impl_->read_error(index);
    if (auto err = fn(buf.data(), done / esize, len / esize))
      return err;
    done += len;
  }
  return {};
}

bool decoded_update::random_access() const {
  return true;
}

caf::expected<const std::byte*>
decoded_update::read_range(size_t index, uint64_t first, uint64_t count,
                           std::byte* scratch) const {
  auto esize = size_of(impl_->spec.at(index).type);
  if (!impl_->spilled[index])
    return static_cast<const std::byte*>(impl_->data[index].data())
           + first * esize;
  if (!impl_->file->read_at(impl_->file_offset[index] + first * esize,
                            scratch, count * esize))
    return impl_->read_error(index);
  return static_cast<const std::byte*>(scratch);
}

bool decoded_update::in_memory() const {
  return impl_->file == nullptr;
}

uint64_t decoded_update::data_bytes() const {
  return impl_->data_bytes;
}

uint64_t decoded_update::wire_bytes() const {
  return impl_->wire_bytes;
}

caf::expected<model> decoded_update::to_model() const {
  model out;
  out.reserve(impl_->spec.size());
  for (size_t i = 0; i < impl_->spec.size(); ++i) {
    tensor t{impl_->spec[i]};
    auto n = t.nbytes();
    if (n > 0) {
      auto ptr = read_range(i, 0, t.count(), t.data.data());
      if (!ptr)
        return ptr.error();
      if (*ptr != t.data.data())
        std::memcpy(t.data.data(), *ptr, n);
    }
    out.push_back(std::move(t));
  }
  return out;
}

// -- npz_stream_decoder -------------------------------------------------------

struct npz_stream_decoder::impl {
  enum class state {
    record,     // the next record's 4-byte signature
    local,      // a local file header
    member,     // a member's data (npy header and values)
    descriptor, // a data descriptor
    central,    // a central directory entry
    end64,      // the ZIP64 end of central directory record
    locator,    // the ZIP64 end of central directory locator
    end,        // the end of central directory record
    after_end,  // nothing may follow
    tail,       // the rest of the archive, after a STORED member with a
                // data descriptor (decoded at finish)
    done,
  };
  enum class phase { header, data, past };

  npz_stream_options opts;
  std::unique_ptr<decoded_update::impl> out =
    std::make_unique<decoded_update::impl>();
  caf::error err;
  state st = state::record;
  std::string rec;   // the record being collected
  uint64_t offset = 0;   // archive offset of the next byte to parse
  uint64_t bytes_in = 0; // bytes fed
  uint64_t declared = 0; // uncompressed bytes the archive claims so far
  std::set<std::string> keys;
  std::vector<zip_entry> members; // decoded, in archive order
  bool spilling = false;          // this update spills from now on

  // The member being decoded.
  zip_entry cur;
  bool sizes_known = false;
  uint64_t m_in = 0;  // compressed bytes consumed
  uint64_t m_out = 0; // bytes decoded (npy header included)
  uint32_t m_crc = 0;
  phase ph = phase::header;
  std::string hdr;      // the npy prefix and header dict
  size_t hdr_need = 0;  // bytes of hdr wanted now
  size_t lead = 0;      // npy prefix length once known
  uint64_t header_len = 0;
  size_t index = 0;     // the tensor's index in out->spec
  uint64_t nbytes = 0;  // the tensor's data bytes
  uint64_t done = 0;    // data bytes written
  std::unique_ptr<inflate_state> inf;
  std::string recent; // the last bytes given to inflate (ISA-L reads ahead)

  // The central directory as it arrives.
  bool in_central = false;
  size_t central_count = 0;
  uint64_t central_at = 0;
  uint64_t central_size = 0;
  uint64_t end64_at = 0;
  bool have_end64 = false;
  uint64_t end64_entries = 0, end64_size = 0, end64_offset = 0;

  // STORED members with a data descriptor: the rest of the archive, and the
  // sizes the central directory gives (by local header offset).
  std::string tail;
  uint64_t tail_at = 0;
  uint64_t tail_reserved = 0;
  std::string tail_member;
  std::map<uint64_t, zip_entry> known;

  caf::error fail(caf::error e);
  void free_all();
  caf::error process(std::string_view in);
  bool collect(std::string_view& in, size_t n);
  const std::string& last_name() const;
  size_t fixed_len() const;
  caf::expected<size_t> record_len() const;
  caf::error on_complete();
  caf::error on_record();
  caf::error on_local();
  caf::error start_member();
  caf::error member_step(std::string_view& in, bool& progress);
  caf::error on_header();
  caf::error start_data();
  caf::error write_out(const std::byte* src, size_t n, bool inflating);
  caf::error end_member();
  caf::error on_descriptor();
  caf::error on_central();
  caf::error on_end64();
  caf::error on_locator();
  caf::error on_end();
  caf::error take_tail(std::string_view& in);
  caf::error decode_tail();
  caf::error finish_check();
  caf::error malformed(const std::string& why) const {
    return caf::make_error(ec::malformed_model, why);
  }
  caf::error member_malformed(const std::string& why) const {
    return member_error(ec::malformed_model, cur.name, why);
  }
  caf::error check_declared(uint64_t add);
};

void npz_stream_decoder::impl::free_all() {
  out.reset();
  inf.reset();
  hdr = std::string{};
  rec = std::string{};
  tail = std::string{};
  if (opts.budget != nullptr && tail_reserved > 0)
    opts.budget->release(tail_reserved);
  tail_reserved = 0;
}

caf::error npz_stream_decoder::impl::fail(caf::error e) {
  free_all();
  err = e;
  return e;
}

const std::string& npz_stream_decoder::impl::last_name() const {
  static const std::string none;
  return members.empty() ? none : members.back().name;
}

bool npz_stream_decoder::impl::collect(std::string_view& in, size_t n) {
  if (rec.size() < n) {
    auto take = std::min(n - rec.size(), in.size());
    rec.append(in.data(), take);
    in.remove_prefix(take);
    offset += take;
  }
  return rec.size() >= n;
}

caf::error npz_stream_decoder::impl::check_declared(uint64_t add) {
  auto limit = opts.npz.max_uncompressed_bytes;
  if (add > limit || declared > limit - add)
    return member_error(ec::too_large, cur.name,
                        npy::over_limit(declared + std::min(add, limit + 1),
                                        limit));
  declared += add;
  return {};
}

caf::error npz_stream_decoder::impl::process(std::string_view in) {
  while (true) {
    if (st == state::member) {
      bool progress = false;
      if (auto e = member_step(in, progress))
        return e;
      if (!progress)
        return {};
      continue;
    }
    if (st == state::tail)
      return take_tail(in);
    if (in.empty())
      return {};
    switch (st) {
      case state::record:
      case state::local:
      case state::descriptor:
      case state::central:
      case state::end64:
      case state::locator:
      case state::end: {
        // A record: its fixed part, then the rest its fixed part gives.
        if (!collect(in, fixed_len()))
          break;
        auto whole = record_len();
        if (!whole)
          return whole.error();
        if (collect(in, *whole))
          if (auto e = on_complete())
            return e;
        break;
      }
      case state::after_end:
        return malformed(std::to_string(in.size())
                         + " bytes follow the ZIP end record at offset "
                         + std::to_string(offset));
      default:
        return caf::make_error(ec::invalid_state,
                               "npz stream decoder: unexpected state");
    }
  }
}

size_t npz_stream_decoder::impl::fixed_len() const {
  switch (st) {
    case state::local:
      return local_fixed;
    case state::central:
      return central_fixed;
    case state::end64:
      return 12; // signature and the record's size
    case state::locator:
      return locator_len;
    case state::end:
      return end_fixed;
    default: // a signature; a data descriptor's first 4 bytes
      return 4;
  }
}

caf::expected<size_t> npz_stream_decoder::impl::record_len() const {
  auto* p = reinterpret_cast<const unsigned char*>(rec.data());
  switch (st) {
    case state::local:
      return local_fixed + le16(p + 26) + le16(p + 28);
    case state::central: {
      size_t need = 0;
      central_entry_len(p, rec.size(), need);
      return need;
    }
    case state::end64: {
      auto size = le64(p + 4);
      if (size + 12 < end64_fixed || size > (1u << 16))
        return malformed("the ZIP64 end record's size " + std::to_string(size)
                         + " is out of range");
      return static_cast<size_t>(12 + size);
    }
    case state::end:
      return end_fixed + le16(p + 20);
    case state::descriptor: {
      // The signature is optional; ZIP64 members have 8-byte sizes.
      size_t width = cur.zip64 ? 8 : 4;
      return (le32(p) == sig_descriptor ? 8 : 4) + 2 * width;
    }
    default:
      return fixed_len();
  }
}

caf::error npz_stream_decoder::impl::on_complete() {
  switch (st) {
    case state::local:
      return on_local();
    case state::descriptor:
      return on_descriptor();
    case state::central:
      return on_central();
    case state::end64:
      return on_end64();
    case state::locator:
      return on_locator();
    case state::end:
      return on_end();
    default:
      return on_record();
  }
}

caf::error npz_stream_decoder::impl::on_record() {
  auto sig = le32(reinterpret_cast<const unsigned char*>(rec.data()));
  auto at = offset - 4;
  switch (sig) {
    case sig_local:
      if (in_central)
        return malformed("a local ZIP header at offset " + std::to_string(at)
                         + " follows the central directory");
      st = state::local;
      return {};
    case sig_central:
      if (!in_central) {
        in_central = true;
        central_at = at;
      }
      st = state::central;
      return {};
    case sig_end64:
      end64_at = at;
      st = state::end64;
      return {};
    case sig_locator:
      st = state::locator;
      return {};
    case sig_end:
      st = state::end;
      return {};
    default:
      if (at == 0)
        return malformed("not a ZIP archive (npz)");
      if (members.empty() || in_central)
        return malformed("no ZIP record at offset " + std::to_string(at));
      return member_error(ec::malformed_model, last_name(),
                          "no ZIP record follows the member (offset "
                            + std::to_string(at) + ")");
  }
}

caf::error npz_stream_decoder::impl::on_local() {
  auto* p = reinterpret_cast<const unsigned char*>(rec.data());
  auto e = parse_entry(p, 0, local_fixed);
  e.local_offset = offset - rec.size();
  cur = std::move(e);
  const std::string suffix = ".npy";
  auto& name = cur.name;
  if (name.size() <= suffix.size()
      || name.compare(name.size() - suffix.size(), suffix.size(), suffix) != 0)
    return member_malformed("not a .npy member");
  tensor_info info;
  info.name = name.substr(0, name.size() - suffix.size());
  if (!keys.insert(info.name).second)
    return member_malformed("duplicate key '" + info.name + "'");
  if (cur.flags & 1)
    return member_malformed("member is encrypted");
  if (cur.method != 0 && cur.method != 8)
    return member_malformed("compression method " + std::to_string(cur.method)
                            + " is not STORED or DEFLATE");
  sizes_known = (cur.flags & 8) == 0;
  if (!sizes_known) {
    auto k = known.find(cur.local_offset);
    if (k != known.end()) {
      cur.csize = k->second.csize;
      cur.usize = k->second.usize;
      cur.crc = k->second.crc;
      sizes_known = true;
    } else if (cur.method == 0) {
      // A STORED member of unknown length: keep the rest of the archive
      // and delimit it with the central directory at finish().
      tail_at = cur.local_offset;
      tail_member = cur.name;
      st = state::tail;
      std::string head = std::move(rec);
      rec = std::string{};
      offset -= head.size(); // take_tail counts them again
      std::string_view view = head;
      return take_tail(view);
    }
  }
  if (sizes_known) {
    if (cur.method == 0 && cur.csize != cur.usize)
      return member_malformed("STORED with a compressed size of "
                              + std::to_string(cur.csize)
                              + " bytes and a size of "
                              + std::to_string(cur.usize) + " bytes");
    if (auto e = check_declared(cur.usize))
      return e;
  }
  return start_member();
}

caf::error npz_stream_decoder::impl::start_member() {
  st = state::member;
  rec.clear();
  m_in = m_out = 0;
  m_crc = 0;
  ph = phase::header;
  hdr.clear();
  hdr_need = npy::prefix_len;
  lead = 0;
  done = nbytes = 0;
  recent.clear();
  if (cur.method == 8) {
    if (!inf)
      inf = std::make_unique<inflate_state>();
    isal_inflate_init(inf.get());
    inf->crc_flag = ISAL_DEFLATE;
  }
  return {};
}

caf::error npz_stream_decoder::impl::on_header() {
  auto* p = reinterpret_cast<const unsigned char*>(hdr.data());
  if (lead == 0) {
    if (auto why = npy::check_prefix(p, lead); !why.empty())
      return member_malformed(why);
    if (lead > hdr.size()) {
      hdr_need = lead;
      return {};
    }
  }
  if (hdr.size() == lead) {
    auto hlen = npy::header_len(p, lead);
    if (sizes_known && lead + hlen > cur.usize)
      return member_malformed("npy header is longer than the member");
    if (auto why = npy::check_header_len(hlen); !why.empty())
      return member_malformed(why);
    hdr_need = lead + hlen;
    if (hlen > 0)
      return {};
  }
  tensor_info info;
  info.name = cur.name.substr(0, cur.name.size() - 4);
  uint64_t bytes = 0;
  if (auto why = npy::parse_header(std::string_view{hdr}.substr(lead), info,
                                   bytes);
      !why.empty())
    return member_malformed(why);
  header_len = hdr.size();
  if (sizes_known && cur.usize - header_len != bytes)
    return member_malformed(npy::size_mismatch(info, cur.usize - header_len));
  if (!sizes_known)
    if (auto e = check_declared(header_len + bytes))
      return e;
  nbytes = bytes;
  index = out->spec.size();
  out->spec.push_back(std::move(info));
  return start_data();
}

caf::error npz_stream_decoder::impl::start_data() {
  ph = phase::data;
  done = 0;
  out->data_bytes += nbytes;
  auto* budget = opts.budget;
  if (!spilling && (budget == nullptr || budget->try_reserve(nbytes))) {
    if (budget != nullptr) {
      out->budget = budget;
      out->reserved += nbytes;
    }
    out->data.emplace_back(nbytes);
    out->file_offset.push_back(0);
    out->spilled.push_back(false);
  } else {
    spilling = true;
    if (!out->file) {
      auto file = spill_file::create(opts.spill_dir);
      if (!file)
        return member_error(ec::storage_error, cur.name,
                            render(file.error()));
      out->file = std::move(*file);
    }
    out->data.emplace_back();
    out->file_offset.push_back(out->file->size());
    out->spilled.push_back(true);
  }
  if (nbytes == 0)
    ph = phase::past;
  return {};
}

caf::error npz_stream_decoder::impl::member_step(std::string_view& in,
                                                 bool& progress) {
  progress = false;
  uint64_t in_left = in.size();
  if (sizes_known)
    in_left = std::min(in_left, cur.csize - m_in);
  bool stored = cur.method == 0;
  bool input_done = sizes_known && m_in == cur.csize;
  // Where the next decoded bytes go.
  std::byte* dst = nullptr;
  size_t room = 0;
  std::byte scratch[64];
  if (ph == phase::header) {
    hdr.resize(hdr_need);
    dst = reinterpret_cast<std::byte*>(hdr.data()) + m_out;
    room = hdr_need - m_out;
  } else if (ph == phase::data) {
    auto left = nbytes - done;
    if (out->spilled[index]) {
      dst = out->file->space(room);
      room = std::min<uint64_t>(room, left);
    } else {
      dst = out->data[index].data() + done;
      room = std::min<uint64_t>(left, max_step);
    }
  } else {
    dst = scratch;
    room = sizeof scratch;
  }
  size_t produced = 0, consumed = 0;
  bool ended = false;
  if (stored) {
    if (input_done) {
      ended = true;
    } else {
      produced = consumed = std::min<uint64_t>(room, in_left);
      if (produced > 0)
        std::memcpy(dst, in.data(), produced);
      if (ph == phase::past && produced > 0)
        return member_malformed("the data is longer than shape "
                                + shape_string(out->spec[index].shape)
                                + " holds ("
                                + std::to_string(nbytes) + " bytes)");
    }
  } else {
    auto* st_in = reinterpret_cast<const uint8_t*>(in.data());
    inf->next_in = const_cast<uint8_t*>(st_in);
    inf->avail_in = static_cast<uint32_t>(std::min<uint64_t>(in_left, max_step));
    inf->next_out = reinterpret_cast<uint8_t*>(dst);
    inf->avail_out = static_cast<uint32_t>(room);
    auto ret = isal_inflate(inf.get());
    consumed = static_cast<size_t>(inf->next_in - st_in);
    produced = room - inf->avail_out;
    if (ret < 0)
      return member_malformed("corrupt data: invalid DEFLATE stream (ISA-L "
                              "error "
                              + std::to_string(ret) + ")");
    if (ph == phase::past && produced > 0)
      return member_malformed("the data is longer than shape "
                              + shape_string(out->spec[index].shape)
                              + " holds (" + std::to_string(nbytes)
                              + " bytes)");
    // Keep the last 16 bytes given (ISA-L reads at most 8 ahead).
    auto keep = std::min<size_t>(consumed, 16);
    recent.append(in.data() + consumed - keep, keep);
    if (recent.size() > 32)
      recent.erase(0, recent.size() - 16);
    ended = inf->block_state == ISAL_BLOCK_FINISH;
  }
  if (produced > 0) {
    m_crc = crc32_gzip_refl(m_crc, reinterpret_cast<unsigned char*>(dst),
                            produced);
    m_out += produced;
  }
  in.remove_prefix(consumed);
  m_in += consumed;
  offset += consumed;
  progress = consumed > 0 || produced > 0 || ended;
  if (ph == phase::header) {
    hdr.resize(m_out);
    if (m_out == hdr_need) {
      if (auto e = on_header())
        return e;
      progress = true;
    }
  } else if (ph == phase::data && produced > 0) {
    done += produced;
    if (out->spilled[index])
      if (auto e = out->file->commit(produced))
        return member_error(ec::storage_error, cur.name, render(e));
    if (done == nbytes)
      ph = phase::past;
  }
  if (ended) {
    std::string give_back;
    if (!stored) {
      // ISA-L may have read whole bytes past the stream's end.
      auto extra = static_cast<size_t>(inf->read_in_length / 8);
      give_back = recent.substr(recent.size() - extra);
      m_in -= extra;
      offset -= extra;
      if (sizes_known && m_in != cur.csize)
        return member_malformed(
          "the DEFLATE stream ends after " + std::to_string(m_in)
          + " bytes but the member has " + std::to_string(cur.csize)
          + " compressed bytes");
    }
    if (auto e = end_member())
      return e;
    if (!give_back.empty())
      return process(give_back);
    return {};
  }
  if (!stored && input_done && !progress)
    return member_malformed("data is truncated: the DEFLATE stream does not "
                            "end within the member's "
                            + std::to_string(cur.csize) + " compressed bytes");
  if (stored && !ended && sizes_known && m_in == cur.csize)
    progress = true; // ends on the next step
  return {};
}

caf::error npz_stream_decoder::impl::end_member() {
  if (ph == phase::header)
    return member_malformed(hdr.size() < npy::prefix_len
                              ? "data is truncated: the member ends in its "
                                "npy prefix"
                              : "npy header is longer than the member");
  if (done != nbytes)
    return member_malformed(npy::size_mismatch(out->spec[index], done));
  if (sizes_known && m_crc != cur.crc)
    return member_malformed("CRC-32 mismatch: the data's is " + hex32(m_crc)
                            + ", the ZIP header says " + hex32(cur.crc));
  members.push_back(cur);
  rec.clear();
  st = (cur.flags & 8) ? state::descriptor : state::record;
  return {};
}

caf::error npz_stream_decoder::impl::on_descriptor() {
  auto* p = reinterpret_cast<const unsigned char*>(rec.data());
  if (le32(p) == sig_descriptor)
    p += 4;
  uint32_t crc = le32(p);
  uint64_t csize = cur.zip64 ? le64(p + 4) : le32(p + 4);
  uint64_t usize = cur.zip64 ? le64(p + 12) : le32(p + 8);
  if (crc != m_crc)
    return member_malformed("CRC-32 mismatch: the data's is " + hex32(m_crc)
                            + ", the data descriptor says " + hex32(crc));
  if (csize != m_in || usize != m_out)
    return member_malformed(
      "the data descriptor says " + std::to_string(csize) + " compressed and "
      + std::to_string(usize) + " uncompressed bytes; the member has "
      + std::to_string(m_in) + " and " + std::to_string(m_out));
  auto& m = members.back();
  m.crc = crc;
  m.csize = csize;
  m.usize = usize;
  rec.clear();
  st = state::record;
  return {};
}

caf::error npz_stream_decoder::impl::on_central() {
  auto e = parse_central_entry(reinterpret_cast<const unsigned char*>(rec.data()));
  central_size += rec.size();
  auto n = central_count++;
  rec.clear();
  st = state::record;
  if (n >= members.size())
    return member_error(ec::malformed_model, e.name,
                        "listed in the ZIP central directory (entry "
                          + std::to_string(n + 1)
                          + ") but not in the archive's "
                          + std::to_string(members.size()) + " members");
  auto& m = members[n];
  std::string what;
  if (e.name != m.name)
    what = "name '" + e.name + "'";
  else if (e.method != m.method)
    what = "compression method " + std::to_string(e.method);
  else if (e.crc != m.crc)
    what = "CRC-32 " + hex32(e.crc);
  else if (e.csize != m.csize)
    what = "compressed size " + std::to_string(e.csize);
  else if (e.usize != m.usize)
    what = "size " + std::to_string(e.usize);
  else if (e.local_offset != m.local_offset)
    what = "local header offset " + std::to_string(e.local_offset);
  if (!what.empty())
    return member_error(ec::malformed_model, m.name,
                        "the ZIP central directory disagrees with the local "
                        "header: it says "
                          + what);
  return {};
}

caf::error npz_stream_decoder::impl::on_end64() {
  auto* p = reinterpret_cast<const unsigned char*>(rec.data());
  have_end64 = true;
  end64_entries = le64(p + 32);
  end64_size = le64(p + 40);
  end64_offset = le64(p + 48);
  rec.clear();
  st = state::record;
  return {};
}

caf::error npz_stream_decoder::impl::on_locator() {
  auto at = le64(reinterpret_cast<const unsigned char*>(rec.data()) + 8);
  if (!have_end64 || at != end64_at)
    return malformed("the ZIP64 end locator points to offset "
                     + std::to_string(at)
                     + ", not to the ZIP64 end record");
  rec.clear();
  st = state::record;
  return {};
}

caf::error npz_stream_decoder::impl::on_end() {
  auto* p = reinterpret_cast<const unsigned char*>(rec.data());
  uint64_t entries = le16(p + 10);
  uint64_t size = le32(p + 12);
  uint64_t at = le32(p + 16);
  if (have_end64) {
    if (entries == 0xffff)
      entries = end64_entries;
    if (size == 0xffffffff)
      size = end64_size;
    if (at == 0xffffffff)
      at = end64_offset;
  }
  rec.clear();
  st = state::after_end;
  if (central_count < members.size())
    return member_error(ec::malformed_model, members[central_count].name,
                        "missing from the ZIP central directory");
  if (entries != members.size() || size != central_size
      || (members.size() > 0 && at != central_at))
    return malformed("the ZIP end record says " + std::to_string(entries)
                     + " entries (" + std::to_string(size)
                     + " bytes at offset " + std::to_string(at)
                     + "); the archive has " + std::to_string(members.size())
                     + " (" + std::to_string(central_size)
                     + " bytes at offset " + std::to_string(central_at) + ")");
  return {};
}

caf::error npz_stream_decoder::impl::take_tail(std::string_view& in) {
  if (in.empty())
    return {};
  auto limit = opts.npz.max_uncompressed_bytes;
  if (tail.size() + in.size() > limit)
    return member_error(ec::too_large, tail_member,
                        "STORED with a data descriptor: the rest of the "
                        "archive, held until its end, is over "
                          + std::to_string(limit)
                          + " bytes (npz_options::max_uncompressed_bytes)");
  auto* budget = opts.budget;
  if (budget != nullptr) {
    if (!budget->try_reserve(in.size()))
      return member_error(ec::too_large, tail_member,
                          "STORED with a data descriptor: the rest of the "
                          "archive must be held until its end, and the "
                          "memory budget cannot take "
                            + std::to_string(tail.size() + in.size())
                            + " bytes");
    tail_reserved += in.size();
  }
  tail.append(in);
  offset += in.size();
  in = {};
  return {};
}

caf::error npz_stream_decoder::impl::decode_tail() {
  // The central directory at the end delimits the remaining members.
  auto* t = reinterpret_cast<const unsigned char*>(tail.data());
  auto cannot = [&](const std::string& why) {
    return member_error(ec::malformed_model, tail_member,
                        "STORED with a data descriptor, and " + why);
  };
  size_t eocd = std::string::npos;
  auto lowest = tail.size() > 65557 ? tail.size() - 65557 : 0;
  for (size_t i = tail.size() >= end_fixed ? tail.size() - end_fixed + 1 : 0;
       i-- > lowest;)
    if (le32(t + i) == sig_end) {
      eocd = i;
      break;
    }
  if (eocd == std::string::npos)
    return cannot("the archive has no ZIP end record");
  uint64_t entries = le16(t + eocd + 10);
  uint64_t cd_at = le32(t + eocd + 16);
  if ((entries == 0xffff || cd_at == 0xffffffff) && eocd >= locator_len
      && le32(t + eocd - locator_len) == sig_locator) {
    auto rec_at = le64(t + eocd - locator_len + 8);
    if (rec_at >= tail_at && rec_at - tail_at + end64_fixed <= tail.size()
        && le32(t + rec_at - tail_at) == sig_end64) {
      entries = le64(t + rec_at - tail_at + 32);
      cd_at = le64(t + rec_at - tail_at + 48);
    }
  }
  if (cd_at < tail_at || cd_at - tail_at > tail.size())
    return cannot("the central directory is not after it");
  size_t pos = cd_at - tail_at;
  for (uint64_t i = 0; i < entries; ++i) {
    size_t need = 0;
    if (tail.size() - pos < 4 || le32(t + pos) != sig_central
        || central_entry_len(t + pos, tail.size() - pos, need) == 0)
      return cannot("its ZIP central directory is malformed");
    auto e = parse_central_entry(t + pos);
    if (e.local_offset >= tail_at)
      known[e.local_offset] = e;
    pos += need;
  }
  // Parse the rest again, now with the sizes known.
  std::string rest = std::move(tail);
  tail = std::string{};
  st = state::record;
  rec.clear();
  offset = tail_at;
  keys.erase(tail_member.substr(0, tail_member.size() - 4));
  auto e = process(rest);
  if (opts.budget != nullptr && tail_reserved > 0)
    opts.budget->release(tail_reserved);
  tail_reserved = 0;
  return e;
}

caf::error npz_stream_decoder::impl::finish_check() {
  if (st == state::tail)
    if (auto e = decode_tail())
      return e;
  switch (st) {
    case state::after_end:
      return {};
    case state::record:
      if (bytes_in == 0)
        return malformed("not a ZIP archive (npz): the input is empty");
      if (members.empty() && !in_central)
        return malformed("not a ZIP archive (npz): no ZIP end record");
      if (!in_central)
        return member_error(ec::malformed_model, last_name(),
                            "the archive ends after the member, without a "
                            "ZIP central directory");
      return malformed("the archive ends before its ZIP end record");
    case state::local:
      return malformed("the archive ends inside a local ZIP header at offset "
                       + std::to_string(offset - rec.size()));
    case state::member:
      return member_malformed("data is truncated: the archive ends inside "
                              "the member");
    case state::descriptor:
      return member_malformed("the archive ends inside the member's data "
                              "descriptor");
    case state::tail:
      return member_malformed("the archive ends inside the member");
    default:
      return malformed("the archive ends inside its ZIP central directory "
                       "or end record");
  }
}

npz_stream_decoder::npz_stream_decoder(npz_stream_options opts)
  : impl_(std::make_unique<impl>()) {
  impl_->opts = std::move(opts);
}

npz_stream_decoder::~npz_stream_decoder() = default;

caf::error npz_stream_decoder::feed(std::string_view bytes) {
  auto& d = *impl_;
  if (d.err)
    return d.err;
  if (d.st == impl::state::done)
    return caf::make_error(ec::invalid_state,
                           "npz stream decoder: the archive has ended");
  d.bytes_in += bytes.size();
  try {
    if (auto e = d.process(bytes))
      return d.fail(std::move(e));
  } catch (const std::bad_alloc&) {
    return d.fail(member_error(ec::too_large, d.cur.name,
                               "out of memory for the decoded values"));
  }
  return {};
}

caf::expected<std::shared_ptr<decoded_update>> npz_stream_decoder::finish() {
  auto& d = *impl_;
  if (d.err)
    return d.err;
  if (d.st == impl::state::done)
    return caf::make_error(ec::invalid_state,
                           "npz stream decoder: the archive has ended");
  try {
    if (auto e = d.finish_check())
      return d.fail(std::move(e));
  } catch (const std::bad_alloc&) {
    return d.fail(member_error(ec::too_large, d.cur.name,
                               "out of memory for the decoded values"));
  }
  if (d.out->file) {
    if (auto e = d.out->file->flush())
      return d.fail(std::move(e));
    d.out->file->seal();
  }
  d.out->wire_bytes = d.bytes_in;
  auto result = std::make_shared<decoded_update>(std::move(d.out));
  d.free_all();
  d.st = impl::state::done;
  return result;
}

void npz_stream_decoder::abort() {
  auto& d = *impl_;
  if (!d.err)
    d.fail(caf::make_error(ec::invalid_state,
                           "npz stream decoder: the upload was aborted"));
}

uint64_t npz_stream_decoder::bytes_in() const {
  return impl_->bytes_in;
}

caf::expected<std::shared_ptr<decoded_update>>
decode_npz_bytes(std::string_view bytes, const npz_stream_options& opts) {
  npz_stream_decoder dec{opts};
  if (auto err = dec.feed(bytes))
    return err;
  return dec.finish();
}

} // namespace rondo
