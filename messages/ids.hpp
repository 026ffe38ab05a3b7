#pragma once

// Identifiers Rondo makes: job ids, correlation ids, model ids.

#include <string>

namespace rondo {

/// A random (version 4) UUID in canonical lower-case form, e.g.
/// "1b4e28ba-2fa1-41d2-883f-0016d3cca427" (36 characters), from libuuid.
std::string new_id();

/// Unix time now, in seconds.
double unix_now();

} // namespace rondo
