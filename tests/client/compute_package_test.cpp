// fedn.yaml parsing: entry points, required ones, clear errors.

#include "client/compute_package.hpp"

#include "messages/error.hpp"
#include "tests/test_util.hpp"

#include <doctest/doctest.h>

#include <fstream>

using namespace rondo;
using namespace rondo::client;

namespace {

const char* good_yaml = R"(python_env: python_env.yaml
entry_points:
  build:
    command: python3 model.py
  startup:
    command: python3 data.py
  train:
    command: python3 train.py
  validate:
    command: python3 validate.py --fast
)";

std::string error_text(const caf::error& err) {
  return render(err);
}

} // namespace

TEST_CASE("client: fedn.yaml with train and validate parses") {
  auto pkg = parse_fedn_yaml(good_yaml, {"train", "validate"}, "/pkg");
  REQUIRE(pkg);
  CHECK(pkg->dir == "/pkg");
  CHECK(pkg->entry_points.size() == 4);
  REQUIRE(pkg->find("train") != nullptr);
  CHECK(pkg->find("train")->command == "python3 train.py");
  CHECK(pkg->find("validate")->command == "python3 validate.py --fast");
  CHECK(pkg->find("startup")->command == "python3 data.py");
  CHECK(pkg->find("predict") == nullptr);
}

TEST_CASE("client: fedn.yaml without a required train entry point fails") {
  auto yaml = "entry_points:\n  validate:\n    command: python3 v.py\n";
  auto pkg = parse_fedn_yaml(yaml, {"train"});
  REQUIRE(!pkg);
  CHECK(pkg.error() == ec::invalid_config);
  CHECK(error_text(pkg.error()).find("fedn.yaml: entry point 'train' is "
                                     "missing")
        != std::string::npos);
  // A validator-only client does not need train.
  CHECK(parse_fedn_yaml(yaml, {"validate"}));
}

TEST_CASE("client: fedn.yaml entry point without a command fails") {
  for (auto yaml : {"entry_points:\n  train:\n    cmd: x\n",
                    "entry_points:\n  train:\n    command: ''\n",
                    "entry_points:\n  train: python3 train.py\n"}) {
    CAPTURE(yaml);
    auto pkg = parse_fedn_yaml(yaml, {});
    REQUIRE(!pkg);
    auto text = error_text(pkg.error());
    CHECK(text.find("entry point 'train'") != std::string::npos);
  }
  auto pkg = parse_fedn_yaml("entry_points:\n  train:\n    cmd: x\n", {});
  CHECK(error_text(pkg.error()).find("fedn.yaml: entry point 'train' has no "
                                     "command")
        != std::string::npos);
}

TEST_CASE("client: malformed fedn.yaml fails with the parser's position") {
  auto pkg = parse_fedn_yaml("entry_points:\n  train: [unclosed\n", {});
  REQUIRE(!pkg);
  CHECK(pkg.error() == ec::invalid_config);
  auto text = error_text(pkg.error());
  CHECK(text.find("fedn.yaml: ") != std::string::npos);
  CHECK(text.find("line") != std::string::npos);
  auto none = parse_fedn_yaml("name: x\n", {});
  REQUIRE(!none);
  CHECK(error_text(none.error()).find("no 'entry_points'")
        != std::string::npos);
  CHECK(!parse_fedn_yaml("- a\n- b\n", {}));
  CHECK(!parse_fedn_yaml("entry_points: [train]\n", {}));
}

TEST_CASE("client: load_compute_package reads fedn.yaml from a directory") {
  test::temp_dir dir;
  auto missing = load_compute_package(dir.sub("nope"), {"train"});
  REQUIRE(!missing);
  CHECK(missing.error() == ec::not_found);
  CHECK(error_text(missing.error()).find("does not exist")
        != std::string::npos);
  auto no_yaml = load_compute_package(dir.path(), {"train"});
  REQUIRE(!no_yaml);
  CHECK(no_yaml.error() == ec::not_found);
  CHECK(error_text(no_yaml.error()).find("has no fedn.yaml")
        != std::string::npos);
  std::ofstream{dir.sub("fedn.yaml")} << good_yaml;
  auto pkg = load_compute_package(dir.path(), {"train", "validate"});
  REQUIRE(pkg);
  CHECK(pkg->dir.is_absolute());
  CHECK(std::filesystem::equivalent(pkg->dir, dir.path()));
  CHECK(pkg->find("train")->command == "python3 train.py");
}
