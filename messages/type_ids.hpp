#pragma once

// Type IDs for every type that travels in an actor message, locally or
// across the middleman. Both ends of a middleman connection must register
// the same block (`rondo::register_types`). The build defines
// CAF_ENABLE_TYPE_ID_CHECKS, so sending an unregistered type fails to
// compile. Append new types at the end: an ID is part of the wire format.

#include "messages/combiner_messages.hpp"
#include "messages/controller_messages.hpp"
#include "messages/records.hpp"
#include "messages/round_config.hpp"

#include <caf/type_id.hpp>

CAF_BEGIN_TYPE_ID_BLOCK(rondo, caf::first_custom_type_id)

  CAF_ADD_TYPE_ID(rondo, (rondo::round_config))
  CAF_ADD_TYPE_ID(rondo, (rondo::job_record))
  CAF_ADD_TYPE_ID(rondo, (rondo::rejected_update))
  CAF_ADD_TYPE_ID(rondo, (rondo::combiner_report))
  CAF_ADD_TYPE_ID(rondo, (rondo::round_record))
  CAF_ADD_TYPE_ID(rondo, (rondo::session_record))
  CAF_ADD_TYPE_ID(rondo, (rondo::model_record))
  CAF_ADD_TYPE_ID(rondo, (rondo::validation_record))
  CAF_ADD_TYPE_ID(rondo, (rondo::client_record))
  CAF_ADD_TYPE_ID(rondo, (rondo::metric_record))
  CAF_ADD_TYPE_ID(rondo, (std::vector<rondo::round_record>))
  CAF_ADD_TYPE_ID(rondo, (std::vector<rondo::model_record>))
  CAF_ADD_TYPE_ID(rondo, (std::vector<rondo::client_record>))
  CAF_ADD_TYPE_ID(rondo, (rondo::client_info))
  CAF_ADD_TYPE_ID(rondo, (rondo::client_task))
  CAF_ADD_TYPE_ID(rondo, (rondo::model_update))
  CAF_ADD_TYPE_ID(rondo, (rondo::model_validation))
  CAF_ADD_TYPE_ID(rondo, (rondo::update_verdict))
  CAF_ADD_TYPE_ID(rondo, (rondo::task_cancelled))
  CAF_ADD_TYPE_ID(rondo, (rondo::client_activity))
  CAF_ADD_TYPE_ID(rondo, (rondo::model_blob))
  CAF_ADD_TYPE_ID(rondo, (rondo::timer_tick))
  CAF_ADD_TYPE_ID(rondo, (rondo::model_chunk))
  CAF_ADD_TYPE_ID(rondo, (rondo::session_config))
  CAF_ADD_TYPE_ID(rondo, (rondo::session_report))
  CAF_ADD_TYPE_ID(rondo, (rondo::combiner_round_done))
  CAF_ADD_TYPE_ID(rondo, (std::vector<rondo::session_record>))
  CAF_ADD_TYPE_ID(rondo, (rondo::status_record))
  CAF_ADD_TYPE_ID(rondo, (rondo::task_refused))

CAF_END_TYPE_ID_BLOCK(rondo)

namespace rondo {

/// Registers Rondo's message types (the `rondo` type ID block) and error
/// category with `cfg`. Every process that hosts Rondo actors calls it once
/// before its actor system starts.
void register_types(caf::actor_system_config& cfg);

} // namespace rondo
