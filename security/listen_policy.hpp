#pragma once

// Secure by default: which listening addresses need TLS and credentials.
// Loopback is the one relaxed case; any address a peer on another host can
// reach needs them unless the operator says --insecure.

#include <string>

namespace rondo::security {

/// @returns true when `host` only accepts connections from this machine:
///          "localhost", an address in 127.0.0.0/8, or "::1" (also written
///          "[::1]"). "0.0.0.0", "::", a host name or any other address is
///          not loopback. Pure string/inet_pton check, no DNS.
bool is_loopback_host(const std::string& host);

/// `host` without the brackets of an IPv6 literal ("[::1]" -> "::1");
/// any other host as it is.
std::string unbracketed(const std::string& host);

/// @returns whether a server on `host` lacking the security flags
///          `missing` (e.g. "--cert, --key, --ca"; empty: secured) can be
///          reached by peers on other hosts without them: `missing` is not
///          empty and `host` is not loopback. `check_listen_policy` refuses
///          that unless --insecure; with --insecure the server logs
///          `insecure_warning` at start.
bool exposed_unsecured(const std::string& host, const std::string& missing);

/// Decides whether a server may listen on `host`.
/// @param what the server, e.g. "rondo controller".
/// @param missing the flags that would secure it and are not given, e.g.
///        "--cert, --key, --ca"; empty when it is secured.
/// @param insecure whether --insecure was given.
/// @returns an empty string when it may listen (loopback, secured, or
///          --insecure: then the caller logs `insecure_warning`), else the
///          refusal, naming the address and the missing flags.
std::string check_listen_policy(const std::string& what,
                                const std::string& host,
                                const std::string& missing, bool insecure);

/// The warning logged at every start with --insecure on a non-loopback
/// address, naming the server and address.
std::string insecure_warning(const std::string& what, const std::string& host);

} // namespace rondo::security
