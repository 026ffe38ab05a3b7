// The edge's rights table and identity binding (gateway/auth.hpp), without
// a server: what a token may call, and as whom.

#include "gateway/auth.hpp"
#include "security/token.hpp"

#include <doctest/doctest.h>

#include <chrono>
#include <thread>

using namespace rondo;
using namespace rondo::gateway::detail;

namespace {

const std::string secret = "0123456789abcdef0123456789abcdef-auth";

caller as(security::role r, std::string client) {
  caller c;
  c.checked = true;
  c.role = r;
  c.client = std::move(client);
  return c;
}

} // namespace

TEST_CASE("edge auth: client methods need client, the rest admin") {
  for (auto m : {"/fedn.Connector/SendHeartbeat", "/fedn.Connector/SendStatus",
                 "/fedn.Combiner/TaskStream", "/fedn.Combiner/SendModelUpdate",
                 "/fedn.Combiner/SendModelValidation",
                 "/fedn.Combiner/SendModelPrediction",
                 "/fedn.ModelService/Upload", "/fedn.ModelService/Download"})
    CHECK_MESSAGE(required_right(m) == right::client, m);
  for (auto m : {"/fedn.Control/Start", "/fedn.Control/Stop",
                 "/fedn.Control/FlushAggregationQueue",
                 "/fedn.Control/SetAggregator",
                 "/fedn.Control/SetServerFunctions",
                 "/fedn.Connector/ListActiveClients",
                 "/fedn.Connector/AcceptingClients",
                 "/fedn.Connector/ReassignClient", "/fedn.Unknown/Method", ""})
    CHECK_MESSAGE(required_right(m) == right::admin, m);
}

TEST_CASE("edge auth: no authorization metadata is UNAUTHENTICATED") {
  authenticator auth{secret, "Bearer", false, std::chrono::seconds(60)};
  REQUIRE(auth.enabled());
  caller c;
  auto st = auth.admit(nullptr, "/fedn.Connector/SendHeartbeat", c);
  CHECK(st.error_code() == grpc::StatusCode::UNAUTHENTICATED);
  authenticator off{"", "Bearer", false, std::chrono::seconds(60)};
  CHECK(off.admit(nullptr, "/fedn.Control/Start", c).ok());
  CHECK(!c.checked);
}

TEST_CASE("edge auth: a token naming a client acts only as that client") {
  authenticator auth{secret, "Bearer", false, std::chrono::seconds(60)};
  client_identity who{"c0", "c0"};
  auto st = auth.bind(as(security::role::client, "c1"), "m", who);
  CHECK(st.error_code() == grpc::StatusCode::PERMISSION_DENIED);
  CHECK(st.error_message().find("'c1' may not act as client 'c0'")
        != std::string::npos);
  CHECK(auth.bind(as(security::role::client, "c0"), "m", who).ok());
  // A call naming no client acts as the token's.
  client_identity nobody;
  CHECK(auth.bind(as(security::role::client, "c1"), "m", nobody).ok());
  CHECK(nobody.id == "c1");
  // Role-only tokens act as any client, unless the combiner requires ids.
  CHECK(auth.bind(as(security::role::client, ""), "m", who).ok());
  authenticator strict{secret, "Bearer", true, std::chrono::seconds(60)};
  CHECK(strict.bind(as(security::role::client, ""), "m", who).error_code()
        == grpc::StatusCode::PERMISSION_DENIED);
  CHECK(strict.bind(as(security::role::admin, ""), "m", who).ok());
  // Without token checks, nothing is bound.
  CHECK(auth.bind(caller{}, "m", who).ok());
}

TEST_CASE("edge auth: verified tokens are cached, but never past exp") {
  authenticator auth{secret, "Bearer", false, std::chrono::seconds(60)};
  security::token_claims claims;
  claims.client = "c0";
  auto token = security::create_token(secret, claims, std::chrono::seconds(2));
  REQUIRE(token);
  caller c;
  auto value = "Bearer " + *token;
  REQUIRE(auth.admit_value(value, "/fedn.Connector/SendHeartbeat", c).ok());
  CHECK(c.checked);
  CHECK(c.role == security::role::client);
  CHECK(c.client == "c0");
  CHECK(auth.cached() == 1);
  REQUIRE(auth.admit_value(value, "/fedn.Connector/SendHeartbeat", c).ok());
  CHECK(auth.cached() == 1);
  // The cached client token still may not call an admin method.
  CHECK(auth.admit_value(value, "/fedn.Control/Stop", c).error_code()
        == grpc::StatusCode::PERMISSION_DENIED);
  // A token signed otherwise is not a cache hit.
  // (Not the last character: its low bits are base64 padding.)
  auto tampered = value;
  auto& ch = tampered[tampered.size() - 5];
  ch = ch == 'A' ? 'B' : 'A';
  CHECK(auth.admit_value(tampered, "/fedn.Connector/SendHeartbeat", c)
          .error_code()
        == grpc::StatusCode::UNAUTHENTICATED);
  // Past its exp the cached token is refused (exp has 1 s resolution).
  std::this_thread::sleep_for(std::chrono::milliseconds(3100));
  auto st = auth.admit_value(value, "/fedn.Connector/SendHeartbeat", c);
  CHECK(st.error_code() == grpc::StatusCode::UNAUTHENTICATED);
  CHECK(st.error_message().find("expired") != std::string::npos);
  // Other schemes and no value at all.
  CHECK(auth.admit_value("Token " + *token, "m", c).error_code()
        == grpc::StatusCode::UNAUTHENTICATED);
  CHECK(auth.admit_value("", "m", c).error_code()
        == grpc::StatusCode::UNAUTHENTICATED);
}
