// The active helper of the controller's package store: what clients/add
// answers as helper_type and GET /api/v1/helpers/active shows when no
// compute package is active.

#include "api/package_store.hpp"
#include "messages/error.hpp"
#include "tests/test_util.hpp"

#include <doctest/doctest.h>

using namespace rondo;
using namespace rondo::api;

TEST_CASE("package store: the active helper is the one set, kept across "
          "opens, none before") {
  test::temp_dir dir;
  auto store = package_store::open(dir.path());
  REQUIRE(store);
  CHECK_FALSE((*store)->active_helper().has_value());
  auto refused = (*store)->set_active_helper("nohelper");
  CHECK(refused == ec::invalid_argument);
  CHECK(error_detail(refused).find("'nohelper'") != std::string::npos);
  CHECK_FALSE((*store)->active_helper().has_value());
  REQUIRE_FALSE((*store)->set_active_helper("binaryhelper"));
  CHECK((*store)->active_helper().value_or("") == "binaryhelper");
  CHECK(std::filesystem::exists(dir.path() / "active_helper"));
  // Another controller's folder has its own.
  test::temp_dir other;
  auto second = package_store::open(other.path());
  REQUIRE(second);
  CHECK_FALSE((*second)->active_helper().has_value());
}
