#include "model/npz.hpp"

#include "messages/error.hpp"
#include "model/npy_format.hpp"

#include <isa-l/crc.h>
#include <isa-l/igzip_lib.h>
#include <zip.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <deque>
#include <fcntl.h>
#include <set>
#include <sys/stat.h>
#include <unistd.h>

namespace rondo {

namespace {

constexpr uint64_t read_chunk = 512u << 10; // pread size for visits
constexpr uint64_t inflate_chunk = 1u << 20;
using npy::le16;
using npy::le32;
using npy::le64;

using npy::member_error;

std::string zip_error_text(int code) {
  zip_error_t ze;
  zip_error_init_with_code(&ze, code);
  std::string out = zip_error_strerror(&ze);
  zip_error_fini(&ze);
  return out;
}

// -- ZIP central directory: local header offsets --------------------------

// libzip 1.7 does not expose where a member's data starts; the STORED fast
// path needs it, so this reads the central directory (with ZIP64) for each
// entry's local header offset, in directory order (= libzip's index order).
class byte_source {
public:
  int fd = -1;
  std::string_view bytes;
  uint64_t size = 0;

  // Reads exactly n bytes at offset or fails.
  bool read_at(uint64_t offset, void* dst, uint64_t n) const {
    if (offset > size || n > size - offset)
      return false;
    if (n == 0) // an empty archive: `bytes` and `dst` may be null
      return true;
    if (fd < 0) {
      std::memcpy(dst, bytes.data() + offset, n);
      return true;
    }
    return npy::pread_exact(fd, offset, dst, n);
  }
};

struct cd_entry {
  std::string name;
  uint64_t local_offset = 0;
};

// True if the end record at `pos` (a candidate found in `tail`, which
// starts at file offset `tail_pos`) points to a central directory that
// could be real: it ends before the record and starts with a directory
// entry (or is empty), or it is a ZIP64 record with its locator.
bool plausible_end_record(const byte_source& src,
                          const std::vector<unsigned char>& tail,
                          uint64_t tail_pos, size_t pos) {
  if (pos + 22 > tail.size())
    return false;
  uint64_t at = tail_pos + pos;
  uint64_t cd_size = le32(&tail[pos + 12]), cd_offset = le32(&tail[pos + 16]);
  unsigned char sig[4];
  if (cd_size == 0xffffffff || cd_offset == 0xffffffff)
    return at >= 20 && src.read_at(at - 20, sig, 4) && le32(sig) == 0x07064b50;
  if (cd_offset + cd_size > at)
    return false;
  return cd_size == 0
         || (src.read_at(cd_offset, sig, 4) && le32(sig) == 0x02014b50);
}

// Returns the directory entries or an empty optional reason via `why`.
// Sets `ambiguous` when the archive holds two plausible end records:
// readers disagree on which one counts (libzip takes another than
// Python's zipfile, which numpy uses), so its members are not well defined.
std::vector<cd_entry> read_central_directory(const byte_source& src,
                                             std::string& why,
                                             bool& ambiguous) {
  ambiguous = false;
  std::vector<cd_entry> out;
  auto tail_len = std::min<uint64_t>(src.size, 65557);
  std::vector<unsigned char> tail(tail_len);
  if (!src.read_at(src.size - tail_len, tail.data(), tail_len)) {
    why = "cannot read the ZIP end record";
    return out;
  }
  auto eocd = std::string::npos;
  for (size_t i = tail_len >= 22 ? tail_len - 22 + 1 : 0; i-- > 0;)
    if (le32(&tail[i]) == 0x06054b50) {
      eocd = i;
      break;
    }
  if (eocd == std::string::npos) {
    why = "no ZIP end-of-central-directory record";
    return out;
  }
  auto tail_pos = src.size - tail_len;
  for (size_t i = eocd; i-- > 0;)
    if (le32(&tail[i]) == 0x06054b50
        && plausible_end_record(src, tail, tail_pos, i)) {
      why = "more than one ZIP end record";
      ambiguous = true;
      return out;
    }
  uint64_t entries = le16(&tail[eocd + 10]);
  uint64_t cd_size = le32(&tail[eocd + 12]);
  uint64_t cd_offset = le32(&tail[eocd + 16]);
  uint64_t eocd_pos = src.size - tail_len + eocd;
  if ((entries == 0xffff || cd_offset == 0xffffffff
       || cd_size == 0xffffffff) && eocd_pos >= 20) {
    unsigned char loc[20], rec[56];
    if (src.read_at(eocd_pos - 20, loc, 20) && le32(loc) == 0x07064b50
        && src.read_at(le64(loc + 8), rec, 56) && le32(rec) == 0x06064b50) {
      entries = le64(rec + 32);
      cd_size = le64(rec + 40);
      cd_offset = le64(rec + 48);
    }
  }
  std::vector<unsigned char> cd;
  if (cd_size > src.size || (cd.resize(cd_size), false)
      || !src.read_at(cd_offset, cd.data(), cd_size)) {
    why = "cannot read the ZIP central directory";
    return out;
  }
  size_t pos = 0;
  for (uint64_t e = 0; e < entries; ++e) {
    if (pos + 46 > cd.size() || le32(&cd[pos]) != 0x02014b50) {
      why = "ZIP central directory is malformed";
      out.clear();
      return out;
    }
    const unsigned char* p = &cd[pos];
    size_t name_len = le16(p + 28), extra_len = le16(p + 30),
           comment_len = le16(p + 32);
    if (pos + 46 + name_len + extra_len + comment_len > cd.size()) {
      why = "ZIP central directory is truncated";
      out.clear();
      return out;
    }
    cd_entry entry;
    entry.name.assign(reinterpret_cast<const char*>(p + 46), name_len);
    entry.local_offset = le32(p + 42);
    // ZIP64 extra: the 64-bit values of the fields that hold 0xffffffff.
    const unsigned char* x = p + 46 + name_len;
    for (size_t xp = 0; xp + 4 <= extra_len;) {
      size_t id = le16(x + xp), len = le16(x + xp + 2);
      if (xp + 4 + len > extra_len) {
        // libzip refuses such a directory, so it is not the one libzip
        // read (e.g. a stale one after the archive): use none.
        why = "ZIP central directory has an extra field longer than its "
              "entry's extra block";
        out.clear();
        return out;
      }
      if (id == 1) {
        size_t field = xp + 4;
        for (size_t off : {24u, 20u}) // uncompressed, compressed size
          if (le32(p + off) == 0xffffffff)
            field += 8;
        if (entry.local_offset == 0xffffffff && field + 8 <= xp + 4 + len)
          entry.local_offset = le64(x + field);
      }
      xp += 4 + len;
    }
    out.push_back(std::move(entry));
    pos += 46 + name_len + extra_len + comment_len;
  }
  return out;
}

// -- libzip handles ------------------------------------------------------------

struct zip_closer {
  void operator()(zip_t* za) const {
    zip_discard(za);
  }
};
using zip_ptr = std::unique_ptr<zip_t, zip_closer>;

struct zip_file_closer {
  void operator()(zip_file_t* zf) const {
    zip_fclose(zf);
  }
};
using zip_file_ptr = std::unique_ptr<zip_file_t, zip_file_closer>;

// A member's bytes as zip_fread gives them (STORED; libzip checks the
// CRC-32 at the end), or its raw DEFLATE bytes read through libzip
// (ZIP_FL_COMPRESSED) and inflated with ISA-L's igzip, several times
// zlib's speed on compressible data, with the CRC-32 checked here.
class member_stream {
public:
  member_stream(zip_file_ptr zf, const std::string& name, bool deflate,
                uint32_t crc)
    : zf_(std::move(zf)), name_(&name), want_crc_(crc) {
    if (deflate) {
      inf_ = std::make_unique<inflate_state>();
      isal_inflate_init(inf_.get());
      inf_->crc_flag = ISAL_DEFLATE;
      in_ = byte_buffer{inflate_chunk};
    }
  }

  // Reads exactly `n` decoded bytes.
  caf::error read_exact(void* dst, uint64_t n) {
    auto* out = static_cast<uint8_t*>(dst);
    while (n > 0) {
      uint64_t got = 0;
      if (auto err = read_some(out, n, got))
        return err;
      if (got == 0)
        return error(inf_ ? "corrupt data: the DEFLATE stream ends before "
                            "the member's declared size"
                          : "data is truncated");
      out += got;
      n -= got;
    }
    return {};
  }

  // Checks that the member ends here and its CRC-32.
  caf::error check_end() {
    uint8_t extra[64];
    uint64_t got = 0;
    if (auto err = read_some(extra, sizeof extra, got))
      return err;
    if (got != 0)
      return error("corrupt data: longer than its declared size");
    if (inf_ && crc_ != want_crc_)
      return error("corrupt data: CRC error");
    return {};
  }

private:
  caf::error error(const std::string& why) const {
    return member_error(ec::malformed_model, *name_, why);
  }

  // Up to `n` decoded bytes; `got` 0 only at the end of the member.
  caf::error read_some(uint8_t* out, uint64_t n, uint64_t& got) {
    got = 0;
    if (!inf_) {
      // Reading past the end makes libzip check the CRC.
      auto r = zip_fread(zf_.get(), out, n);
      if (r < 0)
        return error(std::string{"corrupt data: "}
                     + zip_file_strerror(zf_.get()));
      got = static_cast<uint64_t>(r);
      return {};
    }
    while (got == 0 && inf_->block_state != ISAL_BLOCK_FINISH) {
      if (inf_->avail_in == 0 && !eof_) {
        auto r = zip_fread(zf_.get(), in_.data(), in_.size());
        if (r < 0)
          return error(std::string{"corrupt data: "}
                       + zip_file_strerror(zf_.get()));
        eof_ = r == 0;
        inf_->next_in = reinterpret_cast<uint8_t*>(in_.data());
        inf_->avail_in = static_cast<uint32_t>(r);
      }
      inf_->next_out = out;
      inf_->avail_out =
        static_cast<uint32_t>(std::min<uint64_t>(n, uint64_t{1} << 30));
      auto avail_in = inf_->avail_in;
      auto ret = isal_inflate(inf_.get());
      if (ret < 0)
        return error("corrupt data: invalid DEFLATE stream (ISA-L error "
                     + std::to_string(ret) + ")");
      got = std::min<uint64_t>(n, uint64_t{1} << 30) - inf_->avail_out;
      crc_ = crc32_gzip_refl(crc_, out, got);
      if (got == 0 && eof_ && inf_->avail_in == avail_in
          && inf_->block_state != ISAL_BLOCK_FINISH)
        return error("data is truncated");
    }
    return {};
  }

  zip_file_ptr zf_;
  const std::string* name_;
  uint32_t want_crc_;
  uint32_t crc_ = 0;
  std::unique_ptr<inflate_state> inf_;
  byte_buffer in_;
  bool eof_ = false;
};

struct member {
  tensor_info info;
  std::string zip_name;
  uint64_t index = 0;       // libzip index
  bool deflate = false;     // DEFLATE, else STORED
  uint32_t crc = 0;         // CRC-32 of the member's bytes
  bool stored = false;      // read directly from the source
  uint64_t header_len = 0;  // npy prefix + header dict
  uint64_t data_offset = 0; // absolute offset of the data (stored only)
};

} // namespace

struct npz_reader::impl {
  npz_options opts;
  std::shared_ptr<const std::string> owner;
  byte_source src;
  zip_ptr za;
  std::vector<member> members;
  model_spec spec;
  mutable byte_buffer chunk; // visit_stored's read buffer

  ~impl() {
    za.reset();
    if (src.fd >= 0)
      ::close(src.fd);
  }

  caf::error open(zip_source_t* zsrc);
  caf::error add_member(uint64_t index, std::set<std::string>& keys,
                        uint64_t& declared, const cd_entry* cd);
  caf::error read_stored(const member& m, std::byte* dst) const;
  caf::error visit_stored(const member& m, const chunk_visitor& fn) const;
  caf::error visit_inflated(const member& m, const chunk_visitor& fn) const;
  caf::expected<member_stream> open_stream(const member& m) const;
  caf::expected<member_stream> open_data(const member& m) const;
};

caf::error npz_reader::impl::open(zip_source_t* zsrc) {
  // libzip opens zero bytes as an archive without members; numpy (and
  // libzip reading a file) refuse them.
  if (src.size == 0) {
    zip_source_free(zsrc);
    return caf::make_error(ec::malformed_model,
                           "not a ZIP archive (npz): the input is empty");
  }
  zip_error_t ze;
  zip_error_init(&ze);
  za.reset(zip_open_from_source(zsrc, ZIP_RDONLY, &ze));
  if (!za) {
    zip_source_free(zsrc);
    auto code = zip_error_code_zip(&ze);
    zip_error_fini(&ze);
    return caf::make_error(ec::malformed_model,
                           code == ZIP_ER_NOZIP
                             ? std::string{"not a ZIP archive (npz)"}
                             : "cannot open the ZIP archive: "
                                 + zip_error_text(code));
  }
  zip_error_fini(&ze);
  auto n = zip_get_num_entries(za.get(), 0);
  std::string why;
  bool ambiguous = false;
  auto cd = read_central_directory(src, why, ambiguous);
  if (ambiguous)
    return caf::make_error(ec::malformed_model,
                           "the archive holds more than one ZIP end record "
                           "(e.g. another archive appended): ZIP readers "
                           "disagree on its members");
  bool cd_ok = cd.size() == static_cast<uint64_t>(n);
  std::set<std::string> keys;
  uint64_t declared = 0;
  for (int64_t i = 0; i < n; ++i) {
    auto entry = cd_ok ? &cd[static_cast<size_t>(i)] : nullptr;
    if (auto err = add_member(static_cast<uint64_t>(i), keys, declared, entry))
      return err;
  }
  for (auto& m : members)
    spec.push_back(m.info);
  return {};
}

caf::error npz_reader::impl::add_member(uint64_t index,
                                        std::set<std::string>& keys,
                                        uint64_t& declared,
                                        const cd_entry* cd) {
  zip_stat_t st;
  if (zip_stat_index(za.get(), index, 0, &st) != 0)
    return caf::make_error(ec::malformed_model,
                           "cannot stat ZIP entry " + std::to_string(index));
  member m;
  m.index = index;
  m.zip_name = st.name;
  const std::string suffix = ".npy";
  auto& name = m.zip_name;
  if (name.size() <= suffix.size()
      || name.compare(name.size() - suffix.size(), suffix.size(), suffix) != 0)
    return member_error(ec::malformed_model, name, "not a .npy member");
  m.info.name = name.substr(0, name.size() - suffix.size());
  if (!keys.insert(m.info.name).second)
    return member_error(ec::malformed_model, name,
                        "duplicate key '" + m.info.name + "'");
  if (st.encryption_method != ZIP_EM_NONE)
    return member_error(ec::malformed_model, name, "member is encrypted");
  if (st.comp_method != ZIP_CM_STORE && st.comp_method != ZIP_CM_DEFLATE)
    return member_error(ec::malformed_model, name,
                        "compression method " + std::to_string(st.comp_method)
                          + " is not STORED or DEFLATE");
  declared += st.size;
  if (st.size > opts.max_uncompressed_bytes
      || declared > opts.max_uncompressed_bytes)
    return member_error(ec::too_large, name,
                        npy::over_limit(declared,
                                        opts.max_uncompressed_bytes));
  m.deflate = st.comp_method == ZIP_CM_DEFLATE;
  m.crc = st.crc;
  // The npy header (small).
  auto zf = open_stream(m);
  if (!zf)
    return zf.error();
  unsigned char prefix[12];
  if (auto err = zf->read_exact(prefix, npy::prefix_len))
    return err;
  size_t lead = 0;
  if (auto why = npy::check_prefix(prefix, lead); !why.empty())
    return member_error(ec::malformed_model, name, why);
  if (lead > npy::prefix_len)
    if (auto err = zf->read_exact(prefix + npy::prefix_len,
                                  lead - npy::prefix_len))
      return err;
  auto hlen = npy::header_len(prefix, lead);
  if (lead + hlen > st.size)
    return member_error(ec::malformed_model, name,
                        "npy header is longer than the member");
  if (auto why = npy::check_header_len(hlen); !why.empty())
    return member_error(ec::malformed_model, name, why);
  std::string header(hlen, '\0');
  if (auto err = zf->read_exact(header.data(), hlen))
    return err;
  uint64_t bytes = 0;
  if (auto why = npy::parse_header(header, m.info, bytes); !why.empty())
    return member_error(ec::malformed_model, name, why);
  m.header_len = lead + hlen;
  if (st.size - m.header_len != bytes)
    return member_error(ec::malformed_model, name,
                        npy::size_mismatch(m.info, st.size - m.header_len));
  m.stored = st.comp_method == ZIP_CM_STORE && !opts.verify_stored_crc
             && cd != nullptr && cd->name == name;
  if (m.stored) {
    unsigned char lh[30];
    if (!src.read_at(cd->local_offset, lh, 30) || le32(lh) != 0x04034b50)
      return member_error(ec::malformed_model, name,
                          "local ZIP header is missing or truncated");
    m.data_offset = cd->local_offset + 30 + le16(lh + 26) + le16(lh + 28)
                    + m.header_len;
    if (m.data_offset > src.size || bytes > src.size - m.data_offset)
      return member_error(ec::malformed_model, name,
                          "data is truncated: the archive ends before the "
                          + std::to_string(bytes) + " data bytes");
  }
  members.push_back(std::move(m));
  return {};
}

caf::expected<member_stream>
npz_reader::impl::open_stream(const member& m) const {
  auto zf = zip_file_ptr{zip_fopen_index(
    za.get(), m.index, m.deflate ? ZIP_FL_COMPRESSED : 0)};
  if (!zf)
    return member_error(ec::malformed_model, m.zip_name,
                        std::string{"cannot open: "} + zip_strerror(za.get()));
  return member_stream{std::move(zf), m.zip_name, m.deflate, m.crc};
}

caf::expected<member_stream>
npz_reader::impl::open_data(const member& m) const {
  auto zf = open_stream(m);
  if (!zf)
    return zf;
  std::vector<char> skip(m.header_len);
  if (auto err = zf->read_exact(skip.data(), m.header_len))
    return err;
  return zf;
}

caf::error npz_reader::impl::read_stored(const member& m,
                                         std::byte* dst) const {
  if (!src.read_at(m.data_offset, dst, m.info.nbytes()))
    return member_error(ec::malformed_model, m.zip_name,
                        "cannot read the data: truncated or I/O error");
  return {};
}

caf::error npz_reader::impl::visit_stored(const member& m,
                                          const chunk_visitor& fn) const {
  auto esize = size_of(m.info.type);
  auto total = m.info.nbytes();
  if (total == 0) {
    // No data: a file-backed reader has no bytes to point into.
    static const std::byte no_data{};
    return fn(&no_data, 0, 0);
  }
  if (src.fd < 0)
    return fn(reinterpret_cast<const std::byte*>(src.bytes.data())
                + m.data_offset,
              0, m.info.count());
  if (chunk.size() == 0)
    chunk = byte_buffer{read_chunk};
  for (uint64_t done = 0; done < total;) {
    auto len = std::min<uint64_t>(read_chunk, total - done);
    if (!src.read_at(m.data_offset + done, chunk.data(), len))
      return member_error(ec::malformed_model, m.zip_name,
                          "cannot read the data: truncated or I/O error");
    if (auto err = fn(chunk.data(), done / esize, len / esize))
      return err;
    done += len;
  }
  return {};
}

caf::error npz_reader::impl::visit_inflated(const member& m,
                                            const chunk_visitor& fn) const {
  auto zf = open_data(m);
  if (!zf)
    return zf.error();
  auto esize = size_of(m.info.type);
  auto total = m.info.nbytes();
  byte_buffer buf{std::min(inflate_chunk, std::max<uint64_t>(total, 1))};
  for (uint64_t done = 0; done < total;) {
    auto len = std::min<uint64_t>(buf.size(), total - done);
    if (auto err = zf->read_exact(buf.data(), len))
      return err;
    if (auto err = fn(buf.data(), done / esize, len / esize))
      return err;
    done += len;
  }
  return zf->check_end();
}

npz_reader::npz_reader(std::unique_ptr<impl> ptr) : impl_(std::move(ptr)) {
  // nothing else
}

npz_reader::~npz_reader() = default;

caf::expected<std::unique_ptr<npz_reader>>
npz_reader::open_file(const std::string& path, const npz_options& opts) {
  auto ptr = std::make_unique<impl>();
  ptr->opts = opts;
  ptr->src.fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  struct stat sb;
  if (ptr->src.fd < 0 || ::fstat(ptr->src.fd, &sb) != 0)
    return caf::make_error(ec::not_found, "cannot open model file '" + path
                                            + "': " + std::strerror(errno));
  ptr->src.size = static_cast<uint64_t>(sb.st_size);
  zip_error_t ze;
  zip_error_init(&ze);
  auto* zsrc = zip_source_filep_create(fdopen(dup(ptr->src.fd), "rb"), 0, -1,
                                       &ze);
  zip_error_fini(&ze);
  if (zsrc == nullptr)
    return caf::make_error(ec::not_found, "cannot open model file '" + path
                                            + "'");
  if (auto err = ptr->open(zsrc))
    return with_prefix(err, "model file '" + path + "': ");
  return std::unique_ptr<npz_reader>{new npz_reader(std::move(ptr))};
}

caf::expected<std::unique_ptr<npz_reader>>
npz_reader::open_bytes(std::string_view bytes, const npz_options& opts) {
  auto ptr = std::make_unique<impl>();
  ptr->opts = opts;
  ptr->src.bytes = bytes;
  ptr->src.size = bytes.size();
  zip_error_t ze;
  zip_error_init(&ze);
  auto* zsrc = zip_source_buffer_create(bytes.data(), bytes.size(), 0, &ze);
  zip_error_fini(&ze);
  if (zsrc == nullptr)
    return caf::make_error(ec::malformed_model, "cannot read npz bytes");
  if (auto err = ptr->open(zsrc))
    return err;
  return std::unique_ptr<npz_reader>{new npz_reader(std::move(ptr))};
}

caf::expected<std::unique_ptr<npz_reader>>
npz_reader::open_bytes(std::shared_ptr<const std::string> bytes,
                       const npz_options& opts) {
  if (!bytes)
    return caf::make_error(ec::invalid_argument, "npz bytes are null");
  auto reader = open_bytes(std::string_view{*bytes}, opts);
  if (reader)
    (*reader)->impl_->owner = std::move(bytes);
  return reader;
}

const model_spec& npz_reader::spec() const {
  return impl_->spec;
}

bool npz_reader::all_stored() const {
  return std::all_of(impl_->members.begin(), impl_->members.end(),
                     [](const member& m) { return m.stored; });
}

caf::error npz_reader::visit(size_t index, const chunk_visitor& fn) const {
  auto& m = impl_->members.at(index);
  return m.stored ? impl_->visit_stored(m, fn) : impl_->visit_inflated(m, fn);
}

bool npz_reader::random_access() const {
  return all_stored();
}

caf::expected<const std::byte*>
npz_reader::read_range(size_t index, uint64_t first, uint64_t count,
                       std::byte* scratch) const {
  auto& m = impl_->members.at(index);
  if (!m.stored)
    return member_error(ec::invalid_state, m.zip_name,
                        "a DEFLATE member cannot be read at an offset");
  auto esize = size_of(m.info.type);
  auto offset = m.data_offset + first * esize;
  if (impl_->src.fd < 0)
    return reinterpret_cast<const std::byte*>(impl_->src.bytes.data())
           + offset;
  if (!impl_->src.read_at(offset, scratch, count * esize))
    return member_error(ec::malformed_model, m.zip_name,
                        "cannot read the data: truncated or I/O error");
  return static_cast<const std::byte*>(scratch);
}

caf::expected<tensor> npz_reader::read(size_t index) const {
  auto& m = impl_->members.at(index);
  tensor t{m.info};
  if (m.stored) {
    if (auto err = impl_->read_stored(m, t.data.data()))
      return err;
    return t;
  }
  // Inflate straight into the tensor buffer instead of via chunks.
  auto zf = impl_->open_data(m);
  if (!zf)
    return zf.error();
  if (auto err = zf->read_exact(t.data.data(), t.nbytes()))
    return err;
  if (auto err = zf->check_end())
    return err;
  return t;
}

caf::expected<model> npz_reader::read_all() const {
  model out;
  out.reserve(impl_->members.size());
  for (size_t i = 0; i < impl_->members.size(); ++i) {
    auto t = read(i);
    if (!t)
      return t.error();
    out.push_back(std::move(*t));
  }
  return out;
}

caf::expected<model> read_npz_file(const std::string& path,
                                   const npz_options& opts) {
  auto reader = npz_reader::open_file(path, opts);
  if (!reader)
    return reader.error();
  return (*reader)->read_all();
}

caf::expected<model> read_npz_bytes(std::string_view bytes,
                                    const npz_options& opts) {
  auto reader = npz_reader::open_bytes(bytes, opts);
  if (!reader)
    return reader.error();
  return (*reader)->read_all();
}

// -- writing -----------------------------------------------------------------------

namespace {

// numpy's header: the dict, padded with spaces and a newline so that the
// data starts at a multiple of 64 bytes into the .npy member.
std::string npy_header(const tensor_info& info) {
  std::string dict = "{'descr': '";
  dict += info.type == dtype::f32 ? "<f4" : "<f8";
  dict += "', 'fortran_order': False, 'shape': ";
  dict += shape_string(info.shape);
  dict += ", }";
  auto v1 = npy::prefix_len + dict.size() + 1 <= 65535 + npy::prefix_len;
  size_t lead = v1 ? npy::prefix_len : 12;
  auto total = (lead + dict.size() + 1 + 63) / 64 * 64;
  dict.append(total - lead - dict.size() - 1, ' ');
  dict += '\n';
  std::string out{npy::magic, 6};
  out += static_cast<char>(v1 ? 1 : 2);
  out += '\0';
  auto hlen = dict.size();
  for (size_t i = 0; i < lead - 8; ++i)
    out += static_cast<char>((hlen >> (8 * i)) & 0xff);
  return out + dict;
}

caf::error empty_model_error() {
  return caf::make_error(ec::invalid_argument,
                         "cannot write an npz of a model without tensors");
}

caf::error write_error(const std::string& what, zip_t* za) {
  return caf::make_error(ec::storage_error,
                         what + ": " + (za ? zip_strerror(za) : "libzip"));
}

// Adds every tensor of `m` as a member of `za`; `headers` keeps the npy
// headers alive until zip_close, which reads the data.
caf::error add_members(zip_t* za, const model& m, const npz_options& opts,
                       std::deque<std::string>& headers) {
  for (auto& t : m) {
    auto& header = headers.emplace_back(npy_header(t));
    zip_buffer_fragment_t parts[2] = {
      {reinterpret_cast<zip_uint8_t*>(header.data()), header.size()},
      {reinterpret_cast<zip_uint8_t*>(const_cast<std::byte*>(t.data.data())),
       t.nbytes()}};
    zip_error_t ze;
    zip_error_init(&ze);
    auto* src = zip_source_buffer_fragment_create(parts, t.nbytes() ? 2 : 1,
                                                  0, &ze);
    zip_error_fini(&ze);
    auto name = t.name + ".npy";
    if (src == nullptr)
      return write_error("member '" + name + "'", za);
    auto idx = zip_file_add(za, name.c_str(), src, ZIP_FL_ENC_UTF_8);
    if (idx < 0) {
      zip_source_free(src);
      return write_error("member '" + name + "'", za);
    }
    auto method = opts.compression == npz_compression::stored ? ZIP_CM_STORE
                                                              : ZIP_CM_DEFLATE;
    if (zip_set_file_compression(za, static_cast<zip_uint64_t>(idx), method,
                                 static_cast<zip_uint32_t>(opts.deflate_level))
        != 0)
      return write_error("member '" + name + "'", za);
  }
  return {};
}

} // namespace

caf::error write_npz_file(const model& m, const std::string& path,
                          const npz_options& opts) {
  if (m.empty())
    return empty_model_error();
  int code = 0;
  auto* za = zip_open(path.c_str(), ZIP_CREATE | ZIP_TRUNCATE, &code);
  if (za == nullptr)
    return caf::make_error(ec::storage_error, "cannot create '" + path
                                                + "': " + zip_error_text(code));
  std::deque<std::string> headers;
  if (auto err = add_members(za, m, opts, headers)) {
    zip_discard(za);
    return err;
  }
  if (zip_close(za) != 0) {
    auto err = write_error("cannot write '" + path + "'", za);
    zip_discard(za);
    return err;
  }
  return {};
}

caf::expected<std::string> write_npz_bytes(const model& m,
                                           const npz_options& opts) {
  if (m.empty())
    return empty_model_error();
  zip_error_t ze;
  zip_error_init(&ze);
  auto* src = zip_source_buffer_create(nullptr, 0, 0, &ze);
  auto* za = src ? zip_open_from_source(src, ZIP_TRUNCATE, &ze) : nullptr;
  zip_error_fini(&ze);
  if (za == nullptr) {
    zip_source_free(src);
    return write_error("cannot create an in-memory npz", nullptr);
  }
  zip_source_keep(src);
  std::deque<std::string> headers;
  auto err = add_members(za, m, opts, headers);
  if (!err && zip_close(za) != 0)
    err = write_error("cannot write the in-memory npz", za);
  if (err) {
    zip_discard(za);
    zip_source_free(src);
    return err;
  }
  std::string out;
  zip_stat_t st;
  if (zip_source_stat(src, &st) == 0 && zip_source_open(src) == 0) {
    out.resize(st.size);
    auto got = zip_source_read(src, out.data(), st.size);
    zip_source_close(src);
    if (got != static_cast<zip_int64_t>(st.size))
      out.clear();
  }
  zip_source_free(src);
  if (out.empty())
    return caf::make_error(ec::storage_error, "cannot read back the npz");
  return out;
}

} // namespace rondo
