#include "model/npy_format.hpp"

#include "messages/error.hpp"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <unistd.h>
#include <utility>

namespace rondo::npy {

namespace {

// Parses numpy's header dict, a Python literal such as
// {'descr': '<f4', 'fortran_order': False, 'shape': (10, 5), }.
class header_parser {
public:
  explicit header_parser(std::string_view text) : text_(text) {
  }

  // Fills `info.type` and `info.shape`; returns the reason on failure.
  std::string parse(tensor_info& info) {
    std::string descr;
    bool fortran = false;
    bool have_descr = false, have_order = false, have_shape = false;
    if (!eat('{'))
      return "npy header is not a dict";
    while (!eat('}')) {
      std::string key;
      if (!string_literal(key) || !eat(':'))
        return "npy header is not a dict of string keys";
      if (key == "descr") {
        if (!string_literal(descr))
          return "npy header 'descr' is not a string (structured dtypes "
                 "are not supported)";
        have_descr = true;
      } else if (key == "fortran_order") {
        if (!boolean(fortran))
          return "npy header 'fortran_order' is not True or False";
        have_order = true;
      } else if (key == "shape") {
        if (!tuple(info.shape))
          return "npy header 'shape' is not a tuple of integers";
        have_shape = true;
      } else {
        return "npy header has an unknown key '" + key + "'";
      }
      if (!eat(',') && !peek('}'))
        return "npy header dict is malformed";
    }
    if (!have_descr || !have_order || !have_shape)
      return "npy header lacks 'descr', 'fortran_order' or 'shape'";
    if (fortran)
      return "fortran_order is True; only C order is supported";
    return check_descr(descr, info);
  }

private:
  static std::string check_descr(const std::string& descr,
                                 tensor_info& info) {
    if (descr == "<f4") {
      info.type = dtype::f32;
    } else if (descr == "<f8") {
      info.type = dtype::f64;
    } else if (descr.size() == 3 && descr[0] == '>' && descr[1] == 'f') {
      return "dtype '" + descr + "' is big-endian; only little-endian "
             "'<f4' and '<f8' are supported";
    } else {
      return "dtype '" + descr + "' is not float32 ('<f4') or float64 "
             "('<f8')";
    }
    return {};
  }

  void skip_space() {
    while (pos_ < text_.size() && (text_[pos_] == ' ' || text_[pos_] == '\n'))
      ++pos_;
  }
  bool peek(char c) {
    skip_space();
    return pos_ < text_.size() && text_[pos_] == c;
  }
  bool eat(char c) {
    if (!peek(c))
      return false;
    ++pos_;
    return true;
  }
  bool string_literal(std::string& out) {
    skip_space();
    if (pos_ >= text_.size() || (text_[pos_] != '\'' && text_[pos_] != '"'))
      return false;
    auto quote = text_[pos_++];
    auto end = text_.find(quote, pos_);
    if (end == std::string_view::npos)
      return false;
    out.assign(text_.substr(pos_, end - pos_));
    pos_ = end + 1;
    return true;
  }
  bool boolean(bool& out) {
    skip_space();
    for (auto [word, value] : {std::pair{"True", true}, {"False", false}}) {
      auto len = std::strlen(word);
      if (text_.substr(pos_, len) == word) {
        pos_ += len;
        out = value;
        return true;
      }
    }
    return false;
  }
  bool tuple(std::vector<uint64_t>& out) {
    out.clear();
    if (!eat('('))
      return false;
    while (!eat(')')) {
      skip_space();
      uint64_t value = 0;
      size_t digits = 0;
      for (; pos_ < text_.size() && text_[pos_] >= '0' && text_[pos_] <= '9';
           ++pos_, ++digits) {
        if (__builtin_mul_overflow(value, uint64_t{10}, &value)
            || __builtin_add_overflow(value, uint64_t(text_[pos_] - '0'),
                                      &value))
          return false;
      }
      if (digits == 0)
        return false;
      out.push_back(value);
      if (!eat(',') && !peek(')'))
        return false;
    }
    return true;
  }

  std::string_view text_;
  size_t pos_ = 0;
};

} // namespace

bool pread_exact(int fd, uint64_t offset, void* dst, uint64_t n) {
  auto* out = static_cast<char*>(dst);
  while (n > 0) {
    auto want = std::min<uint64_t>(n, uint64_t{1} << 30);
    auto got = ::pread(fd, out, want, static_cast<off_t>(offset));
    if (got < 0 && errno == EINTR)
      continue;
    if (got <= 0)
      return false;
    out += got;
    offset += static_cast<uint64_t>(got);
    n -= static_cast<uint64_t>(got);
  }
  return true;
}

caf::error member_error(ec code, const std::string& member,
                        const std::string& why) {
  return caf::make_error(code, "member '" + member + "': " + why);
}

std::string check_prefix(const unsigned char* first, size_t& lead) {
  if (std::memcmp(first, magic, 6) != 0)
    return "not an npy array (bad magic)";
  auto major = first[6];
  if (major == 1) {
    lead = prefix_len;
  } else if (major == 2 || major == 3) {
    lead = prefix_len + 2;
  } else {
    return "npy format version " + std::to_string(major)
           + " is not 1, 2 or 3";
  }
  return {};
}

uint64_t header_len(const unsigned char* prefix, size_t lead) {
  return lead == prefix_len ? le16(prefix + 8) : le32(prefix + 8);
}

std::string check_header_len(uint64_t hlen) {
  if (hlen > max_header)
    return "npy header is " + std::to_string(hlen) + " bytes long; at most "
           + std::to_string(max_header) + " are accepted";
  return {};
}

std::string parse_header(std::string_view dict, tensor_info& info,
                         uint64_t& bytes) {
  if (auto why = header_parser{dict}.parse(info); !why.empty())
    return why;
  uint64_t count = 1;
  for (auto d : info.shape)
    if (__builtin_mul_overflow(count, d, &count))
      return "shape overflows";
  if (__builtin_mul_overflow(count, size_of(info.type), &bytes))
    return "shape overflows";
  return {};
}

std::string size_mismatch(const tensor_info& info, uint64_t have) {
  return "shape " + shape_string(info.shape) + " holds "
         + std::to_string(info.count()) + " values ("
         + std::to_string(info.nbytes()) + " bytes) but the data has "
         + std::to_string(have) + " bytes";
}

std::string over_limit(uint64_t declared, uint64_t limit) {
  return "the archive declares " + std::to_string(declared)
         + " bytes uncompressed so far; the limit is " + std::to_string(limit)
         + " bytes (npz_options::max_uncompressed_bytes)";
}

} // namespace rondo::npy
