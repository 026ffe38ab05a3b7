#include "messages/ids.hpp"

#include <uuid/uuid.h>

#include <chrono>

namespace rondo {

std::string new_id() {
  uuid_t raw;
  uuid_generate_random(raw);
  char text[37];
  uuid_unparse_lower(raw, text);
  return text;
}

double unix_now() {
  using namespace std::chrono;
  return duration<double>(system_clock::now().time_since_epoch()).count();
}

} // namespace rondo
