#pragma once

// Helpers for the model-layer tests: temporary directories, numpy through
// /usr/bin/python3, and hand-made npy/ZIP bytes for malformed inputs.

#include "messages/error.hpp"
#include "model/tensor.hpp"
#include "tests/test_util.hpp"

#include <doctest/doctest.h>

#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

namespace rondo::test {

inline bool numpy_available() {
  static const bool ok =
    std::system("/usr/bin/python3 -c 'import numpy' >/dev/null 2>&1") == 0;
  return ok;
}

/// Runs a python3 script (with numpy imported as np) in `dir`; returns
/// its exit status (0 on success).
inline int run_python(const temp_dir& dir, const std::string& body) {
  auto script = dir / "script.py";
  std::ofstream{script} << "import numpy as np, sys, os\nos.chdir("
                        << '"' << dir.path().string() << "\")\n"
                        << body << "\n";
  return std::system(("/usr/bin/python3 " + script).c_str());
}

/// Reports "skipped: numpy missing" (as a doctest message and on stdout)
/// and returns true when numpy cannot be imported: the caller returns.
inline bool skip_without_numpy() {
  if (numpy_available())
    return false;
  MESSAGE("skipped: numpy missing");
  std::printf("skipped: numpy missing\n");
  return true;
}

inline std::string read_file(const std::string& path) {
  std::ifstream in{path, std::ios::binary};
  std::stringstream out;
  out << in.rdbuf();
  return out.str();
}

inline tensor make(std::string name, dtype type, std::vector<uint64_t> shape,
                   const std::vector<double>& values) {
  auto t = make_tensor(std::move(name), type, std::move(shape), values);
  REQUIRE(t);
  return std::move(*t);
}

/// The same model with every value v replaced by f(index, v).
template <class F>
model transform(const model& m, F f) {
  model out = m;
  for (auto& t : out)
    for (uint64_t i = 0; i < t.count(); ++i) {
      auto v = f(i, t.at(i));
      if (t.type == dtype::f32)
        t.f32()[i] = static_cast<float>(v);
      else
        t.f64()[i] = v;
    }
  return out;
}

/// The bytes of an .npy member with the given header fields and payload.
inline std::string npy_bytes(const std::string& descr, bool fortran,
                             const std::string& shape,
                             const std::string& payload) {
  std::string dict = "{'descr': '" + descr + "', 'fortran_order': "
                     + (fortran ? "True" : "False") + ", 'shape': " + shape
                     + ", }";
  while ((10 + dict.size() + 1) % 64 != 0)
    dict += ' ';
  dict += '\n';
  std::string out = "\x93NUMPY\x01";
  out += '\0';
  out += static_cast<char>(dict.size() & 0xff);
  out += static_cast<char>(dict.size() >> 8);
  return out + dict + payload;
}

/// A minimal STORED ZIP of the given (name, content) members, in order;
/// duplicate names allowed (to test the reader's checks).
inline std::string stored_zip(
  const std::vector<std::pair<std::string, std::string>>& members) {
  auto crc32 = [](const std::string& s) {
    uint32_t c = 0xffffffffu;
    for (unsigned char b : s) {
      c ^= b;
      for (int k = 0; k < 8; ++k)
        c = (c >> 1) ^ (0xedb88320u & (0u - (c & 1u)));
    }
    return ~c;
  };
  auto le = [](std::string& out, uint64_t v, int bytes) {
    for (int i = 0; i < bytes; ++i)
      out += static_cast<char>((v >> (8 * i)) & 0xff);
  };
  std::string out, cd;
  for (auto& [name, data] : members) {
    auto offset = out.size();
    auto crc = crc32(data);
    for (auto* rec : {&out, &cd}) {
      bool central = rec == &cd;
      le(*rec, central ? 0x02014b50 : 0x04034b50, 4);
      if (central)
        le(*rec, 20, 2); // version made by
      le(*rec, 20, 2);   // version needed
      le(*rec, 0, 2);    // flags
      le(*rec, 0, 2);    // method: STORED
      le(*rec, 0, 4);    // time, date
      le(*rec, crc, 4);
      le(*rec, data.size(), 4);
      le(*rec, data.size(), 4);
      le(*rec, name.size(), 2);
      le(*rec, 0, 2); // extra
      if (central) {
        le(*rec, 0, 2); // comment
        le(*rec, 0, 2); // disk
        le(*rec, 0, 2); // internal attributes
        le(*rec, 0, 4); // external attributes
        le(*rec, offset, 4);
      }
      *rec += name;
    }
    out += data;
  }
  auto cd_offset = out.size();
  out += cd;
  le(out, 0x06054b50, 4);
  le(out, 0, 4);
  le(out, members.size(), 2);
  le(out, members.size(), 2);
  le(out, cd.size(), 4);
  le(out, cd_offset, 4);
  le(out, 0, 2);
  return out;
}

/// The raw little-endian bytes of float values.
inline std::string f32_bytes(const std::vector<float>& xs) {
  return std::string(reinterpret_cast<const char*>(xs.data()),
                     xs.size() * sizeof(float));
}

} // namespace rondo::test

/// Checks that error `err` is set and its text contains `needle`; prints
/// the text on failure.
#define RONDO_CHECK_SAYS(err, needle)                                          \
  CHECK_MESSAGE(::rondo::render(err).find(needle) != std::string::npos,        \
                "error text: " << ::rondo::render(err))
