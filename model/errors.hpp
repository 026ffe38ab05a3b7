#pragma once

// Small helpers for the model layer's error messages.

#include <caf/error.hpp>

#include <string>

namespace rondo {

/// The context text of a Rondo error (what make_error was given), or the
/// rendered error for other categories.
std::string error_detail(const caf::error& err);

/// Returns `err` with the same code and `prefix` put before its text, e.g.
/// with_prefix(err, "update 'a.npz': ").
caf::error with_prefix(const caf::error& err, const std::string& prefix);

} // namespace rondo
