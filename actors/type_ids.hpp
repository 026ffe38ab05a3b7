#pragma once

// Type IDs of the actor handles and composite types of actors/actors.hpp
// (a second block after messages/type_ids.hpp's, since messages/ does not
// know actors). Append only: an ID is part of the wire format.

#include "actors/actors.hpp"
#include "messages/type_ids.hpp"

CAF_BEGIN_TYPE_ID_BLOCK(rondo_actors, caf::first_custom_type_id + 200)

  CAF_ADD_TYPE_ID(rondo_actors, (rondo::task_sink_actor))
  CAF_ADD_TYPE_ID(rondo_actors, (rondo::round_report_actor))
  CAF_ADD_TYPE_ID(rondo_actors, (rondo::round_actor))
  CAF_ADD_TYPE_ID(rondo_actors, (rondo::client_session_actor))
  CAF_ADD_TYPE_ID(rondo_actors, (rondo::active_client))
  CAF_ADD_TYPE_ID(rondo_actors, (std::vector<rondo::active_client>))
  CAF_ADD_TYPE_ID(rondo_actors, (rondo::combiner_actor))
  CAF_ADD_TYPE_ID(rondo_actors, (rondo::controller_actor))
  CAF_ADD_TYPE_ID(rondo_actors, (rondo::combiner_info))
  CAF_ADD_TYPE_ID(rondo_actors, (rondo::combiner_status))
  CAF_ADD_TYPE_ID(rondo_actors, (std::vector<rondo::combiner_status>))
  CAF_ADD_TYPE_ID(rondo_actors, (rondo::client_assignment_record))
  CAF_ADD_TYPE_ID(rondo_actors, (rondo::status_sink_actor))
  CAF_ADD_TYPE_ID(rondo_actors, (std::vector<std::string>))

CAF_END_TYPE_ID_BLOCK(rondo_actors)

namespace rondo {

/// Registers every Rondo message type (both blocks) and the error category.
/// Call once per actor system config, in every process.
void register_actor_types(caf::actor_system_config& cfg);

} // namespace rondo
