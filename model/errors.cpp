#include "model/errors.hpp"

#include "messages/error.hpp"

#include <caf/message.hpp>

namespace rondo {

std::string error_detail(const caf::error& err) {
  auto& ctx = err.context();
  if (err.category() == caf::atom("rondo") && ctx.size() == 1
      && ctx.match_element<std::string>(0))
    return ctx.get_as<std::string>(0);
  return render(err);
}

caf::error with_prefix(const caf::error& err, const std::string& prefix) {
  if (!err || err.category() != caf::atom("rondo"))
    return err;
  return caf::make_error(static_cast<ec>(err.code()),
                         prefix + error_detail(err));
}

} // namespace rondo
