#pragma once

// Internal to rondo_model: the parts of numpy's .npy format and of ZIP
// records that npz_reader (npz.cpp) and npz_stream_decoder (npz_stream.cpp)
// share: little-endian field reads, the npy prefix and header dict checks,
// and their error texts.

#include "messages/error.hpp"
#include "model/tensor.hpp"

#include <caf/error.hpp>

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace rondo::npy {

/// "\x93NUMPY": the first 6 bytes of an .npy member.
inline constexpr char magic[] = "\x93NUMPY";
/// Bytes of the format 1.0 prefix: magic, version, 2-byte header length.
inline constexpr size_t prefix_len = 10;
/// The longest npy header dict accepted. numpy writes ~128 bytes (format
/// 1.0 allows 65535) and np.load refuses more than 10000 by default;
/// without a limit a member that declares gigabytes could make a reader
/// allocate its declared header length before reading a byte of it.
inline constexpr uint64_t max_header = 1u << 16;

inline uint16_t le16(const unsigned char* p) {
  return static_cast<uint16_t>(p[0] | (p[1] << 8));
}

inline uint32_t le32(const unsigned char* p) {
  return uint32_t{p[0]} | (uint32_t{p[1]} << 8) | (uint32_t{p[2]} << 16)
         | (uint32_t{p[3]} << 24);
}

inline uint64_t le64(const unsigned char* p) {
  return uint64_t{le32(p)} | (uint64_t{le32(p + 4)} << 32);
}

/// Reads exactly `n` bytes at `offset` of file `fd` with pread (no shared
/// file offset: safe from several threads). False on an I/O error or end
/// of file (errno tells which).
bool pread_exact(int fd, uint64_t offset, void* dst, uint64_t n);

/// ec::malformed_model or another code with "member 'NAME': WHY".
caf::error member_error(ec code, const std::string& member,
                        const std::string& why);

/// Checks the first `prefix_len` bytes of an .npy member (magic, version)
/// and sets `lead` to the length of the whole prefix: 10 bytes for format
/// 1.0, 12 for 2.0 and 3.0. Returns the reason on failure, else "".
std::string check_prefix(const unsigned char* first, size_t& lead);

/// The header dict's length from a prefix of `lead` bytes.
uint64_t header_len(const unsigned char* prefix, size_t lead);

/// "" if a header dict of `hlen` bytes is accepted, else the reason.
std::string check_header_len(uint64_t hlen);

/// Parses numpy's header dict (a Python literal such as
/// {'descr': '<f4', 'fortran_order': False, 'shape': (10, 5), }) into
/// `info.type` and `info.shape` and computes the data size in `bytes`.
/// Returns the reason on failure (not a dict, unknown key, Fortran order,
/// a dtype other than '<f4'/'<f8', a shape that overflows), else "".
std::string parse_header(std::string_view dict, tensor_info& info,
                         uint64_t& bytes);

/// The reason when a member's data length `have` (bytes) differs from what
/// its header's shape holds.
std::string size_mismatch(const tensor_info& info, uint64_t have);

/// The reason when an archive's members declare `declared` bytes in total,
/// more than `limit` (npz_options::max_uncompressed_bytes).
std::string over_limit(uint64_t declared, uint64_t limit);

} // namespace rondo::npy
