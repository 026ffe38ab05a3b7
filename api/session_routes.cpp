#include "api/controller_api.hpp"

namespace rondo::api {

void add_session_routes(server&, const controller_context&) {
  // Routes come with their owner's change.
}

} // namespace rondo::api
