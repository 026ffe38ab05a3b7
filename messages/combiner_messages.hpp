#pragma once

// Messages between the combiner's actors and its client edge: tasks, model
// updates, validations, client liveness. Plain structs with inspect(); their
// type IDs are in messages/type_ids.hpp.

#include "messages/round_config.hpp"

#include <caf/meta/load_callback.hpp>
#include <caf/meta/type_name.hpp>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace rondo {

/// The task kinds a client serves, as it announces them.
struct client_roles {
  /// Receives training tasks (MODEL_UPDATE).
  bool trainer = true;
  /// Receives validation and prediction tasks.
  bool validator = true;
};

/// Rondo's convention for ClientAvailableMessage.data, which opens a
/// client's TaskStream (FEDn's message has no role field):
/// `{"trainer": true|false, "validator": true|false}`. `rondo client`
/// writes it; the combiner's edge reads it.
std::string make_roles_json(const client_roles& roles);

/// Reads `make_roles_json` output. Lenient, because FEDn's own clients send
/// nothing or other text there: empty or unparsable data, a value that is
/// not an object, or a key that is missing or not a boolean means that
/// role is served.
client_roles parse_roles_json(const std::string& data);

/// A connected client as the edge announces it. `client_id` is the key: two
/// clients with the same name are two clients.
struct client_info {
  std::string client_id;
  /// Display name (FEDn's `name`); not unique.
  std::string name;
  /// Receives training tasks.
  bool trainer = true;
  /// Receives validation and prediction tasks.
  bool validator = true;
};

/// A task for one client, as the edge turns it into a FEDn TaskRequest.
struct client_task {
  /// Unique per task; the client echoes it in its ModelUpdate/Validation.
  std::string correlation_id;
  std::string round_id;
  std::string session_id;
  /// The global model to train or validate.
  std::string model_id;
  round_task kind = round_task::training;
  /// JSON object text: {"round_id": ..., "client_settings": {...}, ...};
  /// FEDn clients read `json.loads(data)["round_id"]`.
  std::string data;
};

/// A client's answer to a training task (FEDn ModelUpdate), after the edge
/// parsed its meta.
struct model_update {
  std::string client_id;
  /// As received; may be empty (older clients): then the update is matched
  /// by client and base model.
  std::string correlation_id;
  /// The global model the client trained from.
  std::string model_id;
  /// The id the client uploaded its updated model under.
  std::string model_update_id;
  /// FedAvg weight (`training_metadata.num_examples`); validated by the
  /// aggregator (finite, > 0).
  double num_examples = 0;
  /// The client's meta JSON, kept for the record.
  std::string meta;
};

/// A client's answer to a validation or prediction task.
struct model_validation {
  std::string client_id;
  std::string correlation_id;
  std::string model_id;
  std::string session_id;
  /// JSON object of metrics (validation) or predictions.
  std::string data;
  /// The client's display name: the `sender.name` it sent (the edge falls
  /// back to the client id); empty when unknown.
  std::string client_name;
};

/// Whether a model update or validation was taken, and if not, why.
struct update_verdict {
  bool accepted = false;
  /// Why it was rejected (names the tensor, the mismatch, or "stale ...").
  std::string reason;
  /// Seconds the aggregator spent checking and folding this update (not
  /// counting its wait in the aggregator's mailbox); 0 when it was not
  /// read.
  double fold_seconds = 0;
};

/// A client's task ended without an answer: the client disconnected, the
/// task could not be delivered, or the client reported that it failed.
struct task_cancelled {
  std::string correlation_id;
  std::string client_id;
  std::string reason;
  /// The client reported the task failed (FEDn's SendStatus with log level
  /// ERROR): the round lists it among the rejected clients with `reason`;
  /// otherwise among the silent ones.
  bool failed = false;
};

/// A client's liveness or task stream changed (sent by its session to the
/// combiner). Rounds select only clients that are active and streaming: an
/// active client whose task stream is not open yet could not receive its
/// task.
struct client_activity {
  client_info info;
  bool active = false;
  /// The client's task stream is open.
  bool streaming = false;
};

/// Model bytes (npz) shared between local actors without copying. Crossing
/// the middleman serializes the bytes.
struct model_blob {
  std::string model_id;
  std::shared_ptr<const std::string> bytes;
};

/// What an actor's timer is for: one value per kind of deadline, so a
/// handler switches on the kind instead of comparing text.
enum class timer_kind : uint8_t {
  /// controller_link: try joining the controller again.
  reconnect,
  /// staging: fetch the model named by `subject` again.
  staging_retry,
  /// combiner: answer the trainers/validators waiter numbered `epoch`.
  client_wait,
  /// round: the round timeout passed.
  round_timeout,
  /// round: the bound on the round queue's `finish` passed.
  round_finish,
  /// client_session: check the client's last heartbeat.
  liveness,
  /// global round: the combiners' reports of a phase are due.
  phase_timeout,
  /// global round: no combiner joined within the client wait.
  no_combiner,
};

/// The kind's name, e.g. "round_timeout" (for logs).
const char* to_string(timer_kind x);

/// Internal timer message of the actors that own a deadline: stale ticks
/// (an older `epoch`) are ignored, since CAF 0.17 cannot cancel a
/// delayed message.
struct timer_tick {
  timer_kind kind = timer_kind::round_timeout;
  uint64_t epoch = 0;
  /// What the timer concerns when its kind needs it (staging_retry: the
  /// model id); empty otherwise.
  std::string subject;
};

/// The edge refused a client's answer to one of its tasks (malformed
/// meta, num_examples <= 0, an unknown model, a wrong role, an identity
/// that does not own the task): the round holding the task resolves it at
/// once as rejected with `reason` instead of waiting out its timeout.
struct task_refused {
  /// The task's correlation id (FEDn's `correlation_id`).
  std::string correlation_id;
  /// The client the edge identified; may differ from the task's owner.
  std::string client_id;
  /// Why the edge refused the answer, as the client was told.
  std::string reason;
};

bool operator==(const client_info& x, const client_info& y);
bool operator==(const client_task& x, const client_task& y);
bool operator==(const model_update& x, const model_update& y);
bool operator==(const model_validation& x, const model_validation& y);
bool operator==(const update_verdict& x, const update_verdict& y);
bool operator==(const task_cancelled& x, const task_cancelled& y);
bool operator==(const timer_tick& x, const timer_tick& y);
bool operator==(const task_refused& x, const task_refused& y);
/// Equal when ids and contents are equal.
bool operator==(const model_blob& x, const model_blob& y);

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, client_info& x) {
  return f(caf::meta::type_name("rondo.client_info"), x.client_id, x.name,
           x.trainer, x.validator);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, client_task& x) {
  return f(caf::meta::type_name("rondo.client_task"), x.correlation_id,
           x.round_id, x.session_id, x.model_id, x.kind, x.data);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, model_update& x) {
  return f(caf::meta::type_name("rondo.model_update"), x.client_id,
           x.correlation_id, x.model_id, x.model_update_id, x.num_examples,
           x.meta);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, model_validation& x) {
  return f(caf::meta::type_name("rondo.model_validation"), x.client_id,
           x.correlation_id, x.model_id, x.session_id, x.data,
           x.client_name);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, update_verdict& x) {
  return f(caf::meta::type_name("rondo.update_verdict"), x.accepted,
           x.reason, x.fold_seconds);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, task_cancelled& x) {
  return f(caf::meta::type_name("rondo.task_cancelled"), x.correlation_id,
           x.client_id, x.reason, x.failed);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, client_activity& x) {
  return f(caf::meta::type_name("rondo.client_activity"), x.info, x.active,
           x.streaming);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, timer_tick& x) {
  return f(caf::meta::type_name("rondo.timer_tick"), x.kind, x.epoch,
           x.subject);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, task_refused& x) {
  return f(caf::meta::type_name("rondo.task_refused"), x.correlation_id,
           x.client_id, x.reason);
}

/// Serializes the bytes; deserializing allocates a new shared buffer.
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, model_blob& x) {
  std::string tmp;
  if constexpr (!Inspector::writes_state) {
    if (x.bytes)
      tmp = *x.bytes;
  }
  auto load = caf::meta::load_callback([&]() -> caf::error {
    x.bytes = std::make_shared<const std::string>(std::move(tmp));
    return caf::none;
  });
  return f(caf::meta::type_name("rondo.model_blob"), x.model_id, tmp, load);
}

} // namespace rondo
