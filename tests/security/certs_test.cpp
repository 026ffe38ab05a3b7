// rondo certs' library: a CA and node certificates written into a temporary
// folder, and check_tls_files catching what would otherwise make CAF's
// OpenSSL module throw or a peer fail its handshake.

#include "messages/error.hpp"
#include "security/certs.hpp"
#include "tests/test_util.hpp"

#include <doctest/doctest.h>

#include <sys/stat.h>

#include <filesystem>
#include <fstream>
#include <sstream>

using namespace rondo;
using rondo::security::tls_files;

namespace {

mode_t mode_of(const std::string& path) {
  struct stat st {};
  REQUIRE(stat(path.c_str(), &st) == 0);
  return st.st_mode & 07777;
}

std::string slurp(const std::string& path) {
  std::ifstream in{path, std::ios::binary};
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

bool has(const caf::error& err, const std::string& text) {
  return render(err).find(text) != std::string::npos;
}

/// A CA with node "node" (SANs 127.0.0.1 and localhost) in one folder.
struct cluster {
  test::temp_dir tmp;
  std::string dir = tmp / "certs";
  cluster() {
    REQUIRE_FALSE(security::init_ca(dir, 30));
    REQUIRE_FALSE(security::issue_cert(dir, "node", {"127.0.0.1", "localhost"},
                                       30));
  }
  tls_files node() const {
    auto p = security::node_paths(dir, "node");
    return {p.cert, p.key, security::ca_paths(dir).cert};
  }
};

} // namespace

TEST_CASE("certs: init and issue write PEM files, keys 0600, certs 0644") {
  cluster c;
  auto ca = security::ca_paths(c.dir);
  auto node = security::node_paths(c.dir, "node");
  CHECK(ca.key == c.dir + "/ca.key");
  CHECK(node.cert == c.dir + "/node.crt");
  CHECK(mode_of(c.dir) == 0700);
  CHECK(mode_of(ca.key) == 0600);
  CHECK(mode_of(node.key) == 0600);
  CHECK(mode_of(ca.cert) == 0644);
  CHECK(mode_of(node.cert) == 0644);
  CHECK(slurp(ca.key).rfind("-----BEGIN PRIVATE KEY-----", 0) == 0);
  CHECK(slurp(node.cert).rfind("-----BEGIN CERTIFICATE-----", 0) == 0);
  // The node's certificate verifies against the CA and matches its key.
  CHECK_FALSE(security::check_tls_files(c.node(), true));
}

TEST_CASE("certs: nothing is overwritten") {
  cluster c;
  auto ca = security::ca_paths(c.dir);
  auto node = security::node_paths(c.dir, "node");
  auto ca_key = slurp(ca.key);
  auto node_key = slurp(node.key);
  auto err = security::init_ca(c.dir, 30);
  CHECK(err == ec::already_exists);
  CHECK(has(err, ca.key));
  err = security::issue_cert(c.dir, "node", {}, 30);
  CHECK(err == ec::already_exists);
  CHECK(has(err, node.key));
  CHECK(slurp(ca.key) == ca_key);
  CHECK(slurp(node.key) == node_key);
  // Only the certificate left behind: still refused, the key not replaced.
  std::filesystem::remove(node.key);
  CHECK(security::issue_cert(c.dir, "node", {}, 30) == ec::already_exists);
  CHECK_FALSE(std::filesystem::exists(node.key));
}

TEST_CASE("certs: bad names, hosts and days are refused, nothing written") {
  cluster c;
  for (auto name : {"", "../evil", "a/b", ".hidden", "ca", "x y", "a:b"}) {
    CAPTURE(name);
    auto err = security::issue_cert(c.dir, name, {}, 30);
    CHECK(err == ec::invalid_argument);
    CHECK(has(err, "NAME"));
  }
  CHECK_FALSE(std::filesystem::exists(c.tmp / "evil.key"));
  CHECK(security::issue_cert(c.dir, "n1", {"a,IP:1.2.3.4"}, 30)
        == ec::invalid_argument);
  CHECK(security::issue_cert(c.dir, "n1", {"DNS:x"}, 30)
        == ec::invalid_argument);
  CHECK(security::issue_cert(c.dir, "n1", {}, 0) == ec::invalid_argument);
  CHECK_FALSE(std::filesystem::exists(c.dir + "/n1.key"));
  CHECK(security::init_ca(c.tmp / "other", -1) == ec::invalid_argument);
  // Hosts of every accepted form.
  CHECK_FALSE(security::issue_cert(
    c.dir, "n2", {"10.0.0.7", "::1", "[fe80::1]", "ctrl.example.org", "*.x.y"},
    30));
}

TEST_CASE("certs: issue without a CA is not_found") {
  test::temp_dir tmp;
  auto err = security::issue_cert(tmp.str(), "node", {}, 30);
  CHECK(err == ec::not_found);
  CHECK(has(err, "rondo certs init"));
}

TEST_CASE("check_tls_files: a key of another certificate names --key") {
  cluster c;
  REQUIRE_FALSE(security::issue_cert(c.dir, "other", {}, 30));
  auto files = c.node();
  files.key = security::node_paths(c.dir, "other").key;
  auto err = security::check_tls_files(files, true);
  CHECK(err == ec::invalid_config);
  CHECK(has(err, "--key " + files.key + " does not match --cert"));
}

TEST_CASE("check_tls_files: a certificate from another CA names --cert") {
  cluster c;
  cluster stranger;
  auto files = stranger.node();
  files.ca = c.node().ca;
  auto err = security::check_tls_files(files, true);
  CHECK(err == ec::invalid_config);
  CHECK(has(err, "--cert " + files.cert + " does not verify against --ca "
                   + files.ca));
  CHECK(has(err, "unable to get local issuer certificate"));
}

TEST_CASE("check_tls_files: missing, empty and wrong files name the flag") {
  cluster c;
  auto files = c.node();
  files.ca = c.tmp / "nowhere.crt";
  auto err = security::check_tls_files(files, true);
  CHECK(err == ec::invalid_config);
  CHECK(has(err, "--ca " + files.ca + ": cannot read it: No such file"));

  files = c.node();
  files.cert = c.tmp / "junk.crt";
  std::ofstream{files.cert} << "not a certificate\n";
  err = security::check_tls_files(files, true);
  CHECK(has(err, "--cert " + files.cert + ": holds no PEM certificate"));

  files = c.node();
  files.key = files.cert; // a certificate where the key belongs
  err = security::check_tls_files(files, true);
  CHECK(has(err, "--key " + files.key
                   + ": holds no unencrypted PEM private key"));

  files = c.node();
  files.ca = files.cert; // a leaf where the CA belongs
  err = security::check_tls_files(files, true);
  CHECK(has(err, "--ca " + files.ca + " holds a certificate that is not a CA"));
}

TEST_CASE("check_tls_files: mutual TLS needs all three flags") {
  cluster c;
  auto files = c.node();
  files.key.clear();
  auto err = security::check_tls_files(files, true);
  CHECK(err == ec::invalid_config);
  CHECK(has(err, "missing: --key"));
  CHECK(has(security::check_tls_files({}, true), "--cert, --key and --ca"));
  // Without require_all, a CA alone (a client verifying a server) is fine,
  // a certificate without its key is not.
  CHECK_FALSE(security::check_tls_files({"", "", c.node().ca}, false));
  CHECK(has(security::check_tls_files({c.node().cert, "", ""}, false),
            "needs --key"));
  CHECK_FALSE(security::check_tls_files({}, false));
}

TEST_CASE("read_small_file: reads a PEM file or names flag and file") {
  cluster c;
  auto bytes = security::read_small_file(c.node().ca, "--ca");
  REQUIRE(bytes);
  CHECK(*bytes == slurp(c.node().ca));
  auto missing = security::read_small_file(c.tmp / "none.pem", "--ca");
  REQUIRE_FALSE(missing);
  CHECK(has(missing.error(), "--ca " + (c.tmp / "none.pem")));
}

TEST_CASE("certs: cert_host_problem checks the host clients use against the "
          "subjectAltNames") {
  cluster c; // node: 127.0.0.1 and localhost
  auto cert = c.node().cert;
  CHECK(security::cert_host_problem(cert, "127.0.0.1").empty());
  CHECK(security::cert_host_problem(cert, "localhost").empty());
  CHECK(security::cert_host_problem(cert, "LOCALHOST").empty());
  // Wildcard listen addresses name no particular address.
  for (auto any : {"0.0.0.0", "::", "[::]", ""})
    CHECK(security::cert_host_problem(cert, any).empty());
  auto problem = security::cert_host_problem(cert, "10.1.2.3");
  CHECK(problem.find("--cert " + cert + " does not name 10.1.2.3")
        != std::string::npos);
  CHECK(problem.find("IP:127.0.0.1") != std::string::npos);
  CHECK(problem.find("DNS:localhost") != std::string::npos);
  CHECK(problem.find("rondo certs issue DIR NAME --host 10.1.2.3")
        != std::string::npos);
  CHECK_FALSE(security::cert_host_problem(cert, "combiner.example").empty());
  CHECK_FALSE(security::cert_host_problem(cert, "::1").empty());
  CHECK_FALSE(security::cert_host_problem(cert, "[::1]").empty());
  // A certificate issued for IPv6 and a wildcard DNS name.
  REQUIRE_FALSE(security::issue_cert(c.dir, "v6", {"::1", "*.example.org"},
                                     30));
  auto v6 = security::node_paths(c.dir, "v6").cert;
  CHECK(security::cert_host_problem(v6, "[::1]").empty());
  CHECK(security::cert_host_problem(v6, "::1").empty());
  CHECK(security::cert_host_problem(v6, "a.example.org").empty());
  CHECK(security::cert_host_problem(v6, "v6").find("IP:::1, DNS:*.example.org")
        != std::string::npos);
  // An unreadable file is a problem too, named.
  CHECK(security::cert_host_problem(c.tmp / "none.crt", "10.1.2.3")
          .find("none.crt")
        != std::string::npos);
}
