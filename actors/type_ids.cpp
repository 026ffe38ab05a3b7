#include "actors/type_ids.hpp"

#include <caf/actor_system_config.hpp>

namespace rondo {

void register_actor_types(caf::actor_system_config& cfg) {
  register_types(cfg);
  cfg.add_message_types<caf::id_block::rondo_actors>();
}

} // namespace rondo
