#pragma once

// A cluster's certificates: one CA that signs every node's and operator's
// certificate, written with OpenSSL's libcrypto (never by shelling out).
// Used by `rondo certs` and, to check files before CAF's OpenSSL module or
// gRPC load them, by every command that takes --cert/--key/--ca.

#include <caf/error.hpp>
#include <caf/expected.hpp>

#include <string>
#include <vector>

namespace rondo::security {

/// Where `init_ca` and `issue_cert` put their files in a certificate folder:
/// the CA as `ca.key` / `ca.crt`, one node or operator as `NAME.key` /
/// `NAME.crt`. Keys are PEM, mode 0600; certificates PEM, mode 0644.
struct cert_paths {
  std::string key;
  std::string cert;
};

/// @returns the paths of the CA's key and certificate in `dir`.
cert_paths ca_paths(const std::string& dir);

/// @returns the paths of NAME's key and certificate in `dir`.
cert_paths node_paths(const std::string& dir, const std::string& name);

/// Creates `dir` (mode 0700 when new) and in it a cluster CA: an EC P-256
/// key (`ca.key`, unencrypted PKCS#8 PEM, created 0600 with O_EXCL) and a
/// self-signed CA certificate (`ca.crt`, X.509 v3, random 128-bit serial,
/// basicConstraints critical CA:TRUE, keyUsage critical keyCertSign+cRLSign,
/// subject and authority key identifiers, SHA-256 signature), valid from
/// one hour ago (clock skew between nodes) until `days` days from now, with
/// subject CN `common_name` (1..64 characters; give each cluster its own:
/// `rondo certs init` appends random digits).
/// @returns ec::already_exists when `ca.key` or `ca.crt` exists (nothing is
///          overwritten), ec::invalid_argument for days outside 1..36500
///          or a bad common name,
///          ec::storage_error naming the file that could not be written.
caf::error init_ca(const std::string& dir, int days = 3650,
                   const std::string& common_name = "Rondo cluster CA");

/// Issues a key (`NAME.key`, 0600, EC P-256) and a certificate
/// (`NAME.crt`) for one node or operator, signed by the CA in `dir`, with
/// subject CN NAME, valid `days` days, extended key usage serverAuth and
/// clientAuth (a node both listens and connects), and `hosts` as its
/// subjectAltNames (an IPv4/IPv6 literal, also "[::1]", becomes an IP
/// entry, a DNS name a DNS entry; none given: NAME as one DNS entry).
/// basicConstraints critical CA:FALSE, keyUsage critical digitalSignature,
/// key identifiers; validity as for init_ca. CAF does not check host names,
/// so the SANs serve other TLS clients (gRPC, openssl) only.
/// @returns ec::not_found when the CA is missing in `dir`,
///          ec::invalid_config when ca.key and ca.crt cannot be read or do
///          not belong together,
///          ec::invalid_argument for an empty or path-like NAME (it must
///          be 1..64 characters of [A-Za-z0-9._-], not start with '.' and
///          not be "ca"), a host that is neither an IP address nor a DNS
///          name, or days outside 1..36500,
///          ec::already_exists when NAME.key or NAME.crt exists,
///          ec::storage_error naming a file that could not be written.
caf::error issue_cert(const std::string& dir, const std::string& name,
                      const std::vector<std::string>& hosts, int days = 825);

/// The TLS files of one process, as given by --cert, --key and --ca.
struct tls_files {
  std::string cert;
  std::string key;
  std::string ca;
  /// @returns true when at least one of the three is set.
  bool any() const {
    return !cert.empty() || !key.empty() || !ca.empty();
  }
};

/// Checks TLS files before anything loads them (CAF's OpenSSL module
/// throws, and gRPC only logs, on a bad file): each given file is readable
/// PEM, the key matches the certificate, and when `ca` is given the
/// certificate verifies against it (chain, validity period). With
/// `require_all`, cert, key and ca must all be given (the middleman's
/// mutual TLS needs all three).
/// @returns ec::invalid_config naming the flag (--cert, --key, --ca), the
///          file and the reason, or none.
caf::error check_tls_files(const tls_files& files, bool require_all);

/// Checks that the certificate in `cert_file` (the first of the file, as
/// given by --cert) names `host`, the address or name TLS clients use, as
/// gRPC checks it: an IP literal (also "[::1]") against its IP
/// subjectAltNames (X509_check_ip_asc), a name against its DNS ones
/// (X509_check_host, wildcards included; the subject CN only when it has
/// no DNS names). A wildcard listen address ("0.0.0.0", "::", "[::]") or
/// an empty host names no particular address and always passes.
/// @returns an empty string when the certificate names `host`, else the
///          problem for a warning (what the certificate names instead, the
///          error clients will see, and the `rondo certs issue` command
///          that fixes it), or why the file could not be read.
std::string cert_host_problem(const std::string& cert_file,
                              const std::string& host);

/// Reads a whole PEM (or other small) file for gRPC's credential options.
/// @returns its bytes, or ec::invalid_config naming the file and why.
caf::expected<std::string> read_small_file(const std::string& path,
                                           const std::string& flag);

/// `read_small_file` for an optional flag: does nothing when `path` is
/// empty, else reads the file into `out`.
/// @returns the error of read_small_file, or none.
caf::error read_small_file_into(const std::string& path,
                                const std::string& flag, std::string& out);

/// Runs a TLS client handshake on the connected socket `fd` with `files`
/// (all three set; checked by check_tls_files) as CAF's OpenSSL module
/// would: the peer's certificate must verify against `files.ca` (no host
/// name check, like CAF), cipher list HIGH:!aNULL:!MD5. Then reads the
/// first bytes the peer sends: a Rondo controller under TLS accepts the
/// certificate and starts CAF's handshake; a peer that rejects it answers
/// with an alert. Blocking: the caller bounds it with the socket's
/// SO_RCVTIMEO/SO_SNDTIMEO. The caller closes `fd`.
/// @returns an empty string when the peer verified, accepted our
///          certificate and talked, else the reason (e.g. "its certificate
///          does not verify against --ca ca.crt: unable to get local
///          issuer certificate", "it refused this certificate (--cert
///          x.crt): tlsv1 alert unknown ca").
std::string probe_tls(int fd, const tls_files& files);

} // namespace rondo::security
