// Which listening addresses need TLS: loopback is the only relaxed case.

#include "security/listen_policy.hpp"

#include <doctest/doctest.h>

using namespace rondo::security;

TEST_CASE("listen policy: loopback addresses") {
  for (auto host : {"127.0.0.1", "127.1.2.3", "127.255.255.254", "localhost",
                    "::1", "[::1]", "::ffff:127.0.0.1"}) {
    CAPTURE(host);
    CHECK(is_loopback_host(host));
  }
  for (auto host : {"0.0.0.0", "::", "[::]", "10.0.0.1", "128.0.0.1",
                    "192.168.1.2", "ctrl.example.org", "localhost.evil.org",
                    "", "127.0.0.1.nip.io", "fe80::1", "::ffff:10.0.0.1"}) {
    CAPTURE(host);
    CHECK_FALSE(is_loopback_host(host));
  }
}

TEST_CASE("listen policy: open addresses need the flags or --insecure") {
  auto missing = "--cert, --key, --ca";
  CHECK(check_listen_policy("rondo controller", "127.0.0.1", missing, false)
          .empty());
  CHECK(check_listen_policy("rondo controller", "0.0.0.0", "", false)
          .empty());
  CHECK(check_listen_policy("rondo controller", "0.0.0.0", missing, true)
          .empty());
  auto refusal = check_listen_policy("rondo controller", "0.0.0.0", missing,
                                     false);
  CHECK(refusal.find("rondo controller") != std::string::npos);
  CHECK(refusal.find("0.0.0.0") != std::string::npos);
  CHECK(refusal.find(missing) != std::string::npos);
  CHECK(refusal.find("--insecure") != std::string::npos);
  auto warning = insecure_warning("rondo controller", "10.0.0.1");
  CHECK(warning.find("--insecure") != std::string::npos);
  CHECK(warning.find("10.0.0.1") != std::string::npos);
}
