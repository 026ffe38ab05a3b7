#pragma once

// Helpers shared by the libFuzzer targets: property checks that abort (so
// libFuzzer records the input as a crash) and the checks every rejected
// input must pass (an error a user can read).

#include "messages/error.hpp"

#include <caf/error.hpp>

#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>

namespace rondo::fuzz {

/// Aborts with `what` unless `ok`: a broken property is a finding.
inline void check(bool ok, const char* what) {
  if (!ok) {
    std::fprintf(stderr, "fuzz property violated: %s\n", what);
    std::abort();
  }
}

/// Checks that a parser's error is a Rondo error of code `code` whose text
/// starts with `prefix` (the parser names what is wrong), and renders it.
inline void check_error(const caf::error& err, ec code,
                        std::string_view prefix = {}) {
  check(static_cast<bool>(err), "an error was expected");
  if (err.category() != caf::atom("rondo") || err != code) {
    std::fprintf(stderr, "unexpected error: %s\n", render(err).c_str());
    check(false, "error has the expected rondo::ec code");
  }
  auto text = error_detail(err);
  check(!text.empty(), "error text is not empty");
  if (text.compare(0, prefix.size(), prefix) != 0) {
    std::fprintf(stderr, "error text: %s\n", text.c_str());
    check(false, "error text starts with the expected prefix");
  }
}

/// The input as a string_view.
inline std::string_view as_view(const uint8_t* data, size_t size) {
  return {reinterpret_cast<const char*>(data), size};
}

} // namespace rondo::fuzz
