// libFuzzer target: bearer tokens (security/token.hpp): the
// `authorization` metadata value of every gRPC call a peer makes
// (token_from_authorization), and the JWT inside it (verify_token).
//
// Properties beyond "no crash, leak, UB or uncaught exception":
// - a rejection is ec::unauthenticated with a non-empty text;
// - a token taken from the header is a part of the header value;
// - an accepted token names role client or admin and is not expired at
//   the `now` it was checked against;
// - the whole input as a bare JWT gets the same treatment.

#include "fuzz_util.hpp"

#include "security/token.hpp"

#include <string>

using namespace rondo;
using rondo::fuzz::check;

namespace {

/// The secret of the seed tokens in corpus/token (make_corpus.py).
const std::string secret = "rondo-fuzz-secret-0123456789abcdef0123456789";

/// A fixed clock: seeds carry exp claims before and after it.
constexpr int64_t now = 1767225600; // 2026-01-01T00:00:00Z

void verify(std::string_view token) {
  auto claims = security::verify_token(token, secret, now);
  if (!claims) {
    fuzz::check_error(claims.error(), ec::unauthenticated);
    return;
  }
  check(claims->role == security::role::client
          || claims->role == security::role::admin,
        "an accepted token has role client or admin");
  check(!claims->expires || *claims->expires > now,
        "an accepted token is not expired");
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  auto value = fuzz::as_view(data, size);
  for (std::string_view scheme : {"Bearer", "Token"}) {
    auto token = security::token_from_authorization(value, scheme);
    if (!token) {
      fuzz::check_error(token.error(), ec::unauthenticated);
      continue;
    }
    check(token->data() >= value.data()
            && token->data() + token->size() <= value.data() + value.size(),
          "the token is a part of the header value");
    verify(*token);
  }
  verify(value);
  return 0;
}
