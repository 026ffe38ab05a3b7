// The roles a client announces in ClientAvailableMessage.data: what
// `rondo client` writes is what the edge reads (both use
// messages/combiner_messages.hpp), and FEDn's clients, which send nothing
// there, serve every role.

#include "messages/combiner_messages.hpp"

#include <doctest/doctest.h>

TEST_CASE("edge: parse_roles_json reads what rondo client announces") {
  using rondo::parse_roles_json;
  for (bool trainer : {false, true})
    for (bool validator : {false, true}) {
      rondo::client_roles sent{trainer, validator};
      auto got = parse_roles_json(rondo::make_roles_json(sent));
      CHECK(got.trainer == trainer);
      CHECK(got.validator == validator);
    }
  for (auto data : {"", "not json", "[]", "{}", R"({"trainer": "no"})"}) {
    auto got = parse_roles_json(data);
    CHECK_MESSAGE(got.trainer, data);
    CHECK_MESSAGE(got.validator, data);
  }
  auto v = parse_roles_json(R"({"trainer": false})");
  CHECK(!v.trainer);
  CHECK(v.validator);
}
