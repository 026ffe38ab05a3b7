#include "messages/type_ids.hpp"

#include "messages/error.hpp"

#include <caf/actor_system_config.hpp>

namespace rondo {

void register_types(caf::actor_system_config& cfg) {
  cfg.add_message_types<caf::id_block::rondo>();
  add_error_category(cfg);
}

} // namespace rondo
