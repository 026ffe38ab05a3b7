#include "model/validate.hpp"

#include "messages/error.hpp"
#include "model/simd.hpp"

#include <cmath>
#include <cstring>
#include <sstream>

namespace rondo {

namespace {

std::string number_text(double x) {
  std::ostringstream out;
  out.precision(17);
  out << x;
  return out.str();
}

// True if any of the `n` elements has an all-ones exponent (NaN or inf).
// Branch-free so that GCC vectorizes it; memcpy loads allow unaligned data.
template <class Bits>
bool any_exponent_all_ones(const std::byte* data, uint64_t n,
                           Bits exponent) {
  Bits bad = 0;
  for (uint64_t i = 0; i < n; ++i) {
    Bits u;
    std::memcpy(&u, data + i * sizeof(Bits), sizeof(Bits));
    bad |= static_cast<Bits>((u & exponent) == exponent);
  }
  return bad != 0;
}

// The scan for each dtype, with an AVX2 variant (model/simd.hpp).
RONDO_SIMD_CLONES bool any_non_finite(const std::byte* data, uint64_t n,
                                      uint32_t exponent) {
  return any_exponent_all_ones<uint32_t>(data, n, exponent);
}

RONDO_SIMD_CLONES bool any_non_finite(const std::byte* data, uint64_t n,
                                      uint64_t exponent) {
  return any_exponent_all_ones<uint64_t>(data, n, exponent);
}

template <class Bits>
uint64_t first_non_finite(const std::byte* data, uint64_t count,
                          Bits exponent) {
  constexpr uint64_t block = 4096;
  for (uint64_t first = 0; first < count; first += block) {
    auto n = std::min(block, count - first);
    auto* p = data + first * sizeof(Bits);
    if (!any_non_finite(p, n, exponent))
      continue;
    for (uint64_t i = 0; i < n; ++i)
      if (any_non_finite(p + i * sizeof(Bits), 1, exponent))
        return first + i;
  }
  return count;
}

} // namespace

caf::error check_num_examples(double num_examples) {
  if (std::isfinite(num_examples) && num_examples > 0)
    return {};
  return caf::make_error(ec::invalid_argument,
                         "num_examples must be a finite number > 0, got "
                           + number_text(num_examples));
}

caf::error check_compatible(const model_spec& update,
                            const model_spec& global) {
  auto n = std::min(update.size(), global.size());
  for (size_t i = 0; i < n; ++i) {
    auto& u = update[i];
    auto& g = global[i];
    auto what = "update tensor '" + u.name + "'";
    if (u.name != g.name) {
      // numpy.savez(path, a, b) names members arr_0, arr_1, ...
      auto hint = u.name.rfind("arr_", 0) == 0
                    ? std::string{" (numpy.savez without keyword names gives "
                                  "arr_0, arr_1, ...; FEDn's numpyhelper "
                                  "names the tensors '0', '1', ...)"}
                    : std::string{};
      return caf::make_error(ec::shape_mismatch,
                             what + " at position " + std::to_string(i)
                               + " != global tensor '" + g.name + "'"
                               + hint);
    }
    if (u.type != g.type)
      return caf::make_error(ec::shape_mismatch,
                             what + ": dtype " + to_string(u.type)
                               + " != global " + to_string(g.type));
    if (u.shape != g.shape)
      return caf::make_error(ec::shape_mismatch,
                             what + ": shape " + shape_string(u.shape)
                               + " != global " + shape_string(g.shape));
  }
  if (update.size() != global.size())
    return caf::make_error(
      ec::shape_mismatch,
      "update has " + std::to_string(update.size()) + " tensors, global has "
        + std::to_string(global.size())
        + (update.size() > global.size()
             ? " (extra tensor '" + update[n].name + "')"
             : " (missing tensor '" + global[n].name + "')"));
  return {};
}

uint64_t find_non_finite(const std::byte* data, uint64_t count, dtype type) {
  if (type == dtype::f32)
    return first_non_finite<uint32_t>(data, count, 0x7f800000u);
  return first_non_finite<uint64_t>(data, count, 0x7ff0000000000000ull);
}

caf::error check_finite_range(const tensor_info& info, const std::byte* data,
                              uint64_t first, uint64_t count) {
  auto at = find_non_finite(data, count, info.type);
  if (at == count)
    return {};
  double x;
  if (info.type == dtype::f32) {
    float f;
    std::memcpy(&f, data + 4 * at, 4);
    x = f;
  } else {
    std::memcpy(&x, data + 8 * at, 8);
  }
  return caf::make_error(ec::non_finite,
                         "update tensor '" + info.name + "' holds "
                           + (std::isnan(x) ? "NaN" : number_text(x))
                           + " at index " + std::to_string(first + at));
}

caf::error check_finite(const update_view& update) {
  auto& spec = update.spec();
  for (size_t i = 0; i < spec.size(); ++i) {
    auto err = update.visit(i, [&](const std::byte* data, uint64_t first,
                                   uint64_t count) {
      return check_finite_range(spec[i], data, first, count);
    });
    if (err)
      return err;
  }
  return {};
}

caf::error validate_update(const update_view& update, const model_spec& global,
                           double num_examples) {
  if (auto err = check_num_examples(num_examples))
    return err;
  if (auto err = check_compatible(update.spec(), global))
    return err;
  return check_finite(update);
}

} // namespace rondo
