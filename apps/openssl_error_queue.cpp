// A work-around for CAF 0.17.6's OpenSSL module (libcaf_openssl), linked
// into the `rondo` executable so that it interposes on libssl's functions
// for every library of the process.
//
// OpenSSL reports why a TLS call failed through the calling thread's error
// queue, and SSL_get_error() answers SSL_ERROR_SSL whenever that queue is not
// empty; so a caller must empty it before each TLS I/O call (OpenSSL's
// SSL_get_error(3)). CAF calls SSL_read/SSL_write/SSL_accept/SSL_connect for
// every connection on its one multiplexer thread and never empties the
// queue (it only reads it to log, and Debian compiles CAF's logging out).
// One failed handshake or an unclean close on any connection (a stranger
// without a certificate, a port scanner, an operator command exiting)
// leaves an error in the queue, and the next read on another, healthy
// connection then counts as failed: the controller dropped its combiners
// (remote_link_unreachable) each time an operator command disconnected.
//
// Each wrapper empties the queue and calls libssl's own function, exactly
// what OpenSSL asks of its callers; errors of the call itself stay in the
// queue for the SSL_get_error() that follows it. Other users of libssl in
// this process (gRPC's TLS) go through the wrappers too and get what
// OpenSSL requires of them anyway.

#include <openssl/err.h>
#include <openssl/ssl.h>

#include <dlfcn.h>

#include <cstdio>
#include <cstdlib>

namespace {

/// libssl's definition of `name` (the next one after this executable's).
template <class F>
F next_definition(const char* name) {
  auto* f = dlsym(RTLD_NEXT, name);
  if (f == nullptr) {
    std::fprintf(stderr, "rondo: cannot find libssl's %s: %s\n", name,
                 dlerror());
    std::abort();
  }
  return reinterpret_cast<F>(f);
}

} // namespace

extern "C" {

int SSL_read(SSL* ssl, void* buf, int num) {
  static auto real = next_definition<int (*)(SSL*, void*, int)>("SSL_read");
  ERR_clear_error();
  return real(ssl, buf, num);
}

int SSL_write(SSL* ssl, const void* buf, int num) {
  static auto real
    = next_definition<int (*)(SSL*, const void*, int)>("SSL_write");
  ERR_clear_error();
  return real(ssl, buf, num);
}

int SSL_accept(SSL* ssl) {
  static auto real = next_definition<int (*)(SSL*)>("SSL_accept");
  ERR_clear_error();
  return real(ssl);
}

int SSL_connect(SSL* ssl) {
  static auto real = next_definition<int (*)(SSL*)>("SSL_connect");
  ERR_clear_error();
  return real(ssl);
}

} // extern "C"
