// The roles a client announces in ClientAvailableMessage.data: what
// `rondo client` writes (client/task_meta.hpp) is what the edge reads
// (gateway/wire.hpp), and FEDn's clients, which send nothing there, serve
// every role.

#include "client/task_meta.hpp"
#include "gateway/wire.hpp"

#include <doctest/doctest.h>

TEST_CASE("edge: parse_client_roles reads what rondo client announces") {
  using rondo::gateway::parse_client_roles;
  for (bool trainer : {false, true})
    for (bool validator : {false, true}) {
      rondo::client::client_roles sent{trainer, validator};
      auto got = parse_client_roles(rondo::client::make_roles_json(sent));
      CHECK(got.trainer == trainer);
      CHECK(got.validator == validator);
    }
  for (auto data : {"", "not json", "[]", "{}", R"({"trainer": "no"})"}) {
    auto got = parse_client_roles(data);
    CHECK_MESSAGE(got.trainer, data);
    CHECK_MESSAGE(got.validator, data);
  }
  auto v = parse_client_roles(R"({"trainer": false})");
  CHECK(!v.trainer);
  CHECK(v.validator);
}
