// The entry-point runner: exit status, stderr tail, timeout with group kill,
// cancellation, environment, working directory.

#include "client/runner.hpp"

#include "client/stop_source.hpp"
#include "messages/error.hpp"
#include "tests/test_util.hpp"

#include <doctest/doctest.h>

#include <signal.h>
#include <stdlib.h>

#include <chrono>
#include <fstream>
#include <sstream>
#include <thread>

using namespace rondo;
using namespace rondo::client;

namespace {

std::string slurp(const std::string& path) {
  std::ifstream in{path};
  std::stringstream buf;
  buf << in.rdbuf();
  return buf.str();
}

run_options options_in(const test::temp_dir& dir, double timeout_s = 30) {
  run_options o;
  o.cwd = dir.path();
  o.timeout_s = timeout_s;
  o.kill_grace_s = 1;
  return o;
}

} // namespace

TEST_CASE("client: runner runs command in the package dir with quoted args") {
  test::temp_dir dir;
  std::ofstream{dir.sub("train.sh")}
    << "cp \"$1\" \"$2\" && echo '{\"num_examples\": 7}' > \"$2-metadata\"\n";
  std::ofstream{dir.sub("in file")} << "weights";
  auto res = run_command("sh train.sh",
                         {dir.sub("in file"), dir.sub("out 'quoted'")},
                         options_in(dir));
  REQUIRE(res);
  CHECK(res->ok());
  CHECK(res->end == run_result::end_kind::exited);
  CHECK(res->exit_status == 0);
  CHECK(res->wall_seconds >= 0);
  CHECK(res->wall_seconds < 10);
  CHECK(slurp(dir.sub("out 'quoted'")) == "weights");
  CHECK(slurp(dir.sub("out 'quoted'-metadata")) == "{\"num_examples\": 7}\n");
}

TEST_CASE("client: runner reports a non-zero exit with the stderr tail") {
  test::temp_dir dir;
  auto res = run_command("echo first >&2; echo 'Traceback: boom' >&2; exit 3",
                         {}, options_in(dir));
  REQUIRE(res);
  CHECK(!res->ok());
  CHECK(res->end == run_result::end_kind::exited);
  CHECK(res->exit_status == 3);
  CHECK(res->stderr_tail == "first\nTraceback: boom\n");
  CHECK(res->describe() == "exited with status 3");
}

TEST_CASE("client: runner keeps only the last bytes of a long stderr") {
  test::temp_dir dir;
  auto opts = options_in(dir);
  opts.stderr_tail_bytes = 4096;
  auto res = run_command(
    "i=0; while [ $i -lt 2000 ]; do echo \"line $i\" >&2; i=$((i+1)); done; "
    "exit 1",
    {}, opts);
  REQUIRE(res);
  CHECK(!res->ok());
  CHECK(res->stderr_tail.size() <= 4096 + 3);
  CHECK(res->stderr_tail.size() > 3500);
  CHECK(res->stderr_tail.rfind("...line ", 0) == 0);
  CHECK(res->stderr_tail.find("line 1999\n") != std::string::npos);
  CHECK(res->stderr_tail.find("line 10\n") == std::string::npos);
}

TEST_CASE("client: runner kills a command at its timeout") {
  test::temp_dir dir;
  auto t0 = std::chrono::steady_clock::now();
  auto res = run_command("sleep 30", {}, options_in(dir, 1));
  auto secs = std::chrono::duration<double>(std::chrono::steady_clock::now()
                                            - t0)
                .count();
  REQUIRE(res);
  CHECK(!res->ok());
  CHECK(res->end == run_result::end_kind::timed_out);
  CHECK(res->wall_seconds >= 1.0);
  CHECK(secs < 1.0 + 1.0 + 1.5); // timeout + grace + slack
  CHECK(res->describe().find("timed out after") == 0);
}

TEST_CASE("client: runner escalates to SIGKILL when SIGTERM is ignored") {
  test::temp_dir dir;
  // The shell and its sleep ignore SIGTERM (ignored dispositions survive
  // exec): only the SIGKILL after the grace period ends them.
  auto t0 = std::chrono::steady_clock::now();
  auto res = run_command("trap '' TERM; sleep 30; echo survived",
                         {}, options_in(dir, 1));
  auto secs = std::chrono::duration<double>(std::chrono::steady_clock::now()
                                            - t0)
                .count();
  REQUIRE(res);
  CHECK(res->end == run_result::end_kind::timed_out);
  CHECK(res->signal == SIGKILL);
  CHECK(secs >= 1.9);
  CHECK(secs < 1.0 + 1.0 + 1.5);
}

TEST_CASE("client: runner stops a command when stop is requested") {
  test::temp_dir dir;
  stop_source stop;
  auto opts = options_in(dir, 60);
  opts.stop = &stop;
  std::thread stopper{[&stop] {
    stop.wait_for(std::chrono::milliseconds(300));
    stop.request_stop();
  }};
  auto t0 = std::chrono::steady_clock::now();
  auto res = run_command("sleep 30", {}, opts);
  auto secs = std::chrono::duration<double>(std::chrono::steady_clock::now()
                                            - t0)
                .count();
  stopper.join();
  REQUIRE(res);
  CHECK(res->end == run_result::end_kind::cancelled);
  CHECK(secs < 5);
}

TEST_CASE("client: runner passes the environment through") {
  test::temp_dir dir;
  ::setenv("RONDO_TEST_CLIENT_INDEX", "3", 1);
  auto res = run_command("printf %s \"$RONDO_TEST_CLIENT_INDEX\" >", {"env.txt"},
                         options_in(dir));
  ::unsetenv("RONDO_TEST_CLIENT_INDEX");
  REQUIRE(res);
  CHECK(res->ok());
  CHECK(slurp(dir.sub("env.txt")) == "3");
}

TEST_CASE("client: runner reports a missing command and directory") {
  test::temp_dir dir;
  auto res = run_command("no-such-command-rondo", {}, options_in(dir));
  REQUIRE(res);
  CHECK(res->exit_status == 127);
  CHECK(res->stderr_tail.find("not found") != std::string::npos);
  auto opts = options_in(dir);
  opts.cwd = dir.sub("missing");
  auto bad = run_command("true", {}, opts);
  REQUIRE(!bad);
  CHECK(render(bad.error()).find("cannot start 'true'") != std::string::npos);
}

TEST_CASE("client: run_entry_point maps failures to errors") {
  test::temp_dir dir;
  compute_package pkg;
  pkg.dir = dir.path();
  pkg.entry_points["train"] = {"echo oops >&2; exit 2"};
  pkg.entry_points["startup"] = {"pwd > cwd.txt"};
  pkg.entry_points["slow"] = {"sleep 30"};
  run_options opts;
  opts.timeout_s = 30;
  opts.kill_grace_s = 1;
  auto ok = run_entry_point(pkg, "startup", {}, opts);
  REQUIRE(ok);
  CHECK(*ok >= 0);
  CHECK(std::filesystem::equivalent(slurp(dir.sub("cwd.txt")).substr(
                                      0, slurp(dir.sub("cwd.txt")).size() - 1),
                                    dir.path()));
  auto failed = run_entry_point(pkg, "train", {"in", "out"}, opts);
  REQUIRE(!failed);
  CHECK(failed.error() == ec::unspecified);
  CHECK(render(failed.error()).find("train failed: exited with status 2; "
                                    "stderr tail:\noops")
        != std::string::npos);
  auto missing = run_entry_point(pkg, "predict", {}, opts);
  REQUIRE(!missing);
  CHECK(missing.error() == ec::invalid_config);
  opts.timeout_s = 0.5;
  auto slow = run_entry_point(pkg, "slow", {}, opts);
  REQUIRE(!slow);
  CHECK(slow.error() == ec::timeout);
}

TEST_CASE("client: shell quoting and UTF-8 repair") {
  CHECK(shell_quote("a b") == "'a b'");
  CHECK(shell_quote("it's") == "'it'\\''s'");
  CHECK(command_line("python3 train.py", {"/tmp/in", "/tmp/o ut"})
        == "python3 train.py '/tmp/in' '/tmp/o ut'");
  CHECK(to_valid_utf8("caf\xc3\xa9") == "caf\xc3\xa9");
  CHECK(to_valid_utf8("x\xc3") == "x?");
  CHECK(to_valid_utf8("\xff\xfe ok") == "?? ok");
  CHECK(to_valid_utf8("\xe2\x82\xac\xf0\x9f\x98\x80") ==
        "\xe2\x82\xac\xf0\x9f\x98\x80");
  CHECK(to_valid_utf8("\xed\xa0\x80") == "???"); // a UTF-16 surrogate
}
