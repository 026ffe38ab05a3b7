// TEMPORARY minimal version written on branch edge-auth so that the
// combiner links; the cluster engineer's implementation replaces it at
// merge.
#include "security/listen_policy.hpp"

#include <arpa/inet.h>

namespace rondo::security {

bool is_loopback_host(const std::string& host) {
  auto h = host;
  if (h.size() >= 2 && h.front() == '[' && h.back() == ']')
    h = h.substr(1, h.size() - 2);
  if (h == "localhost")
    return true;
  in_addr v4{};
  if (inet_pton(AF_INET, h.c_str(), &v4) == 1)
    return (ntohl(v4.s_addr) >> 24) == 127;
  in6_addr v6{};
  if (inet_pton(AF_INET6, h.c_str(), &v6) == 1)
    return IN6_IS_ADDR_LOOPBACK(&v6);
  return false;
}

std::string check_listen_policy(const std::string& what,
                                const std::string& host,
                                const std::string& missing, bool insecure) {
  if (missing.empty() || insecure || is_loopback_host(host))
    return {};
  return what + " refuses to listen on " + host
         + " (reachable from other hosts) without " + missing
         + "; give them, or --insecure to accept an unprotected port";
}

std::string insecure_warning(const std::string& what,
                             const std::string& host) {
  return what + " listens on " + host
         + " with --insecure: anyone who can reach it can act as any client "
           "or operator";
}

} // namespace rondo::security
