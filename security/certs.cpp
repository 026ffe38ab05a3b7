#include "security/certs.hpp"

#include "messages/error.hpp"
#include "security/listen_policy.hpp"

#include <openssl/asn1.h>
#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <arpa/inet.h>
#include <cctype>
#include <cerrno>
#include <cstring>
#include <csignal>
#include <fcntl.h>
#include <pthread.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <memory>
#include <sstream>

namespace rondo::security {

namespace {

// -- owning handles for libcrypto objects -------------------------------------

template <class T, void (*Free)(T*)>
struct deleter {
  void operator()(T* x) const {
    Free(x);
  }
};

using bio_ptr = std::unique_ptr<BIO, deleter<BIO, BIO_free_all>>;
using pkey_ptr = std::unique_ptr<EVP_PKEY, deleter<EVP_PKEY, EVP_PKEY_free>>;
using x509_ptr = std::unique_ptr<X509, deleter<X509, X509_free>>;
using ext_ptr
  = std::unique_ptr<X509_EXTENSION,
                    deleter<X509_EXTENSION, X509_EXTENSION_free>>;
using store_ptr
  = std::unique_ptr<X509_STORE, deleter<X509_STORE, X509_STORE_free>>;
using store_ctx_ptr
  = std::unique_ptr<X509_STORE_CTX,
                    deleter<X509_STORE_CTX, X509_STORE_CTX_free>>;
using bn_ptr = std::unique_ptr<BIGNUM, deleter<BIGNUM, BN_free>>;
using names_ptr
  = std::unique_ptr<GENERAL_NAMES, deleter<GENERAL_NAMES, GENERAL_NAMES_free>>;
using ssl_ctx_ptr = std::unique_ptr<SSL_CTX, deleter<SSL_CTX, SSL_CTX_free>>;
using ssl_ptr = std::unique_ptr<SSL, deleter<SSL, SSL_free>>;

void free_x509_stack(STACK_OF(X509) * xs) {
  sk_X509_pop_free(xs, X509_free);
}
using x509_stack_ptr
  = std::unique_ptr<STACK_OF(X509), deleter<STACK_OF(X509), free_x509_stack>>;

/// Drains OpenSSL's error queue of this thread into one line ("" if empty).
std::string openssl_errors() {
  std::string out;
  while (auto code = ERR_get_error()) {
    char buf[256];
    ERR_error_string_n(code, buf, sizeof(buf));
    if (!out.empty())
      out += "; ";
    // The reason part only: "error:0A000086:SSL routines::certificate
    // verify failed" -> "certificate verify failed".
    auto text = std::string{buf};
    auto colon = text.rfind(':');
    out += colon == std::string::npos ? text : text.substr(colon + 1);
  }
  return out;
}

caf::error crypto_error(const std::string& what) {
  auto why = openssl_errors();
  return caf::make_error(ec::storage_error,
                         what + (why.empty() ? "" : ": " + why));
}

// -- files ---------------------------------------------------------------------

bool exists(const std::string& path) {
  struct stat st;
  return lstat(path.c_str(), &st) == 0;
}

/// Creates `path` exclusively with `mode` (never replacing a file, never
/// following a symlink planted there) and writes `bytes`, synced.
caf::error write_new_file(const std::string& path, const std::string& bytes,
                          mode_t mode) {
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC
                                  | O_NOFOLLOW,
                  mode);
  if (fd < 0) {
    auto why = errno;
    if (why == EEXIST)
      return caf::make_error(ec::already_exists,
                             path + " exists; not overwriting it");
    return caf::make_error(ec::storage_error, "cannot create " + path + ": "
                                                + std::strerror(why));
  }
  size_t done = 0;
  while (done < bytes.size()) {
    auto n = ::write(fd, bytes.data() + done, bytes.size() - done);
    if (n < 0 && errno == EINTR)
      continue;
    if (n <= 0) {
      auto why = errno;
      ::close(fd);
      ::unlink(path.c_str());
      return caf::make_error(ec::storage_error, "cannot write " + path + ": "
                                                  + std::strerror(why));
    }
    done += static_cast<size_t>(n);
  }
  auto synced = ::fsync(fd) == 0;
  auto why = errno;
  ::close(fd);
  if (!synced) {
    ::unlink(path.c_str());
    return caf::make_error(ec::storage_error, "cannot sync " + path + ": "
                                                + std::strerror(why));
  }
  return caf::none;
}

/// The bytes written to a memory BIO.
std::string bio_text(BIO* bio) {
  char* data = nullptr;
  auto n = BIO_get_mem_data(bio, &data);
  return n > 0 ? std::string{data, static_cast<size_t>(n)} : std::string{};
}

caf::expected<std::string> key_pem(EVP_PKEY* key) {
  bio_ptr bio{BIO_new(BIO_s_mem())};
  if (!bio
      || PEM_write_bio_PrivateKey(bio.get(), key, nullptr, nullptr, 0,
                                  nullptr, nullptr)
           != 1)
    return crypto_error("cannot encode the private key");
  return bio_text(bio.get());
}

caf::expected<std::string> cert_pem(X509* cert) {
  bio_ptr bio{BIO_new(BIO_s_mem())};
  if (!bio || PEM_write_bio_X509(bio.get(), cert) != 1)
    return crypto_error("cannot encode the certificate");
  return bio_text(bio.get());
}

/// Writes a new key (0600) and certificate (0644); when the certificate
/// cannot be written the key just created is removed again.
caf::error write_pair(const cert_paths& paths, EVP_PKEY* key, X509* cert) {
  auto kp = key_pem(key);
  if (!kp)
    return kp.error();
  auto cp = cert_pem(cert);
  if (!cp)
    return cp.error();
  if (auto err = write_new_file(paths.key, *kp, 0600))
    return err;
  if (auto err = write_new_file(paths.cert, *cp, 0644)) {
    ::unlink(paths.key.c_str());
    return err;
  }
  return caf::none;
}

// -- certificates --------------------------------------------------------------

pkey_ptr new_p256_key() {
  return pkey_ptr{EVP_EC_gen("P-256")};
}

/// Adds one extension given in OpenSSL's configuration syntax (constant
/// strings only: nothing user-given goes through this parser).
bool add_ext(X509* cert, X509V3_CTX* ctx, int nid, const char* value) {
  ext_ptr ext{X509V3_EXT_conf_nid(nullptr, ctx, nid, value)};
  return ext && X509_add_ext(cert, ext.get(), -1) == 1;
}

/// A certificate with version 3, a random positive 128-bit serial, subject
/// CN `cn`, the public key of `key`, valid from one hour ago (clock skew
/// between nodes) until `days` days from now.
x509_ptr new_cert(EVP_PKEY* key, const std::string& cn, int days) {
  x509_ptr cert{X509_new()};
  if (!cert || X509_set_version(cert.get(), 2) != 1)
    return nullptr;
  unsigned char serial[16];
  if (RAND_bytes(serial, sizeof(serial)) != 1)
    return nullptr;
  serial[0] &= 0x7f; // positive
  serial[0] |= 0x40; // and a full 16 bytes long (no leading zero)
  bn_ptr bn{BN_bin2bn(serial, sizeof(serial), nullptr)};
  if (!bn
      || BN_to_ASN1_INTEGER(bn.get(), X509_get_serialNumber(cert.get()))
           == nullptr)
    return nullptr;
  if (X509_gmtime_adj(X509_getm_notBefore(cert.get()), -3600) == nullptr
      || X509_time_adj_ex(X509_getm_notAfter(cert.get()), days, 0, nullptr)
           == nullptr)
    return nullptr;
  auto* name = X509_get_subject_name(cert.get());
  if (X509_NAME_add_entry_by_txt(
        name, "CN", MBSTRING_UTF8,
        reinterpret_cast<const unsigned char*>(cn.c_str()), -1, -1, 0)
        != 1
      || X509_set_pubkey(cert.get(), key) != 1)
    return nullptr;
  return cert;
}

/// An IPv4/IPv6 literal ("::1" or "[::1]") as its bytes, else empty.
std::string ip_bytes(const std::string& host) {
  auto h = unbracketed(host);
  unsigned char buf[16];
  if (inet_pton(AF_INET, h.c_str(), buf) == 1)
    return std::string{reinterpret_cast<char*>(buf), 4};
  if (inet_pton(AF_INET6, h.c_str(), buf) == 1)
    return std::string{reinterpret_cast<char*>(buf), 16};
  return {};
}

/// A DNS name for a subjectAltName: labels of letters, digits, '-' and
/// '_', a leading "*." wildcard allowed, at most 253 characters.
bool valid_dns_name(const std::string& host) {
  if (host.empty() || host.size() > 253 || host.front() == '.'
      || host.back() == '.' || host.find("..") != std::string::npos)
    return false;
  auto rest = host.rfind("*.", 0) == 0 ? host.substr(2) : host;
  if (rest.empty())
    return false;
  for (auto c : rest)
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_'
          || c == '.'))
      return false;
  return true;
}

/// Adds the subjectAltName extension: IP entries for address literals, DNS
/// entries for the rest.
bool add_alt_names(X509* cert, const std::vector<std::string>& hosts) {
  names_ptr names{GENERAL_NAMES_new()};
  if (!names)
    return false;
  for (auto& host : hosts) {
    auto* gen = GENERAL_NAME_new();
    if (gen == nullptr)
      return false;
    auto ip = ip_bytes(host);
    auto* value = ASN1_STRING_type_new(ip.empty() ? V_ASN1_IA5STRING
                                                  : V_ASN1_OCTET_STRING);
    auto& text = ip.empty() ? host : ip;
    if (value == nullptr
        || ASN1_STRING_set(value, text.data(), static_cast<int>(text.size()))
             != 1) {
      ASN1_STRING_free(value);
      GENERAL_NAME_free(gen);
      return false;
    }
    GENERAL_NAME_set0_value(gen, ip.empty() ? GEN_DNS : GEN_IPADD, value);
    if (sk_GENERAL_NAME_push(names.get(), gen) == 0) {
      GENERAL_NAME_free(gen);
      return false;
    }
  }
  return X509_add1_ext_i2d(cert, NID_subject_alt_name, names.get(), 0,
                           X509V3_ADD_DEFAULT)
         == 1;
}

// -- reading PEM files ---------------------------------------------------------

/// A password callback that refuses: an encrypted key is an error, never a
/// prompt on the terminal.
int no_password(char*, int, int, void*) {
  return -1;
}

constexpr size_t max_pem_bytes = size_t{1} << 20;

caf::error config_error(const std::string& flag, const std::string& path,
                        const std::string& why) {
  return caf::make_error(ec::invalid_config,
                         (flag.empty() ? "" : flag + " ") + path + ": " + why);
}

/// The bytes of a PEM (or other small) file given by `flag`, at most
/// max_pem_bytes. @returns them, or ec::invalid_config naming flag and file.
caf::expected<std::string> read_flag_file(const std::string& flag,
                                          const std::string& path) {
  auto cannot = [&](const std::string& why) {
    return config_error(flag, path, "cannot read it: " + why);
  };
  std::error_code err;
  if (std::filesystem::is_directory(path, err))
    return cannot("is a directory");
  std::ifstream in{path, std::ios::binary};
  if (!in)
    return cannot(std::strerror(errno));
  std::string bytes;
  char buf[4096];
  while (in.read(buf, sizeof(buf)) || in.gcount() > 0) {
    bytes.append(buf, static_cast<size_t>(in.gcount()));
    if (bytes.size() > max_pem_bytes)
      return cannot("is larger than " + std::to_string(max_pem_bytes >> 10)
                    + " KiB");
  }
  if (in.bad())
    return cannot("read error");
  return bytes;
}

/// Every PEM certificate in `path`, in file order.
caf::expected<x509_stack_ptr> load_certs(const std::string& flag,
                                         const std::string& path) {
  auto bytes = read_flag_file(flag, path);
  if (!bytes)
    return std::move(bytes.error());
  bio_ptr bio{BIO_new_mem_buf(bytes->data(), static_cast<int>(bytes->size()))};
  x509_stack_ptr certs{sk_X509_new_null()};
  if (!bio || !certs)
    return config_error(flag, path, "out of memory");
  while (auto* x = PEM_read_bio_X509(bio.get(), nullptr, no_password, nullptr))
    sk_X509_push(certs.get(), x);
  // The loop ends with "no start line" at the end of the file; anything
  // else is damage in a certificate.
  auto last = ERR_peek_last_error();
  auto clean = ERR_GET_REASON(last) == PEM_R_NO_START_LINE;
  ERR_clear_error();
  if (sk_X509_num(certs.get()) == 0)
    return config_error(flag, path, "holds no PEM certificate");
  if (!clean)
    return config_error(flag, path, "holds a damaged PEM certificate");
  return certs;
}

caf::expected<pkey_ptr> load_key(const std::string& flag,
                                 const std::string& path) {
  auto bytes = read_flag_file(flag, path);
  if (!bytes)
    return std::move(bytes.error());
  bio_ptr bio{BIO_new_mem_buf(bytes->data(), static_cast<int>(bytes->size()))};
  pkey_ptr key{
    PEM_read_bio_PrivateKey(bio.get(), nullptr, no_password, nullptr)};
  ERR_clear_error();
  if (!key)
    return config_error(flag, path,
                        "holds no unencrypted PEM private key");
  return key;
}

/// Verifies `cert` (with `chain` as untrusted intermediates) against the
/// trusted `roots` at the current time. @returns the reason, or "".
std::string verify(X509* cert, STACK_OF(X509) * chain,
                   STACK_OF(X509) * roots) {
  store_ptr store{X509_STORE_new()};
  store_ctx_ptr ctx{X509_STORE_CTX_new()};
  if (!store || !ctx)
    return "out of memory";
  for (int i = 0; i < sk_X509_num(roots); ++i)
    X509_STORE_add_cert(store.get(), sk_X509_value(roots, i));
  if (X509_STORE_CTX_init(ctx.get(), store.get(), cert, chain) != 1)
    return "cannot set up verification: " + openssl_errors();
  if (X509_verify_cert(ctx.get()) == 1)
    return {};
  auto code = X509_STORE_CTX_get_error(ctx.get());
  ERR_clear_error();
  return X509_verify_cert_error_string(code);
}

caf::error check_days(int days) {
  if (days <= 0)
    return caf::make_error(ec::invalid_argument,
                           "--days must be > 0, got " + std::to_string(days));
  if (days > 36500)
    return caf::make_error(ec::invalid_argument,
                           "--days must be at most 36500, got "
                             + std::to_string(days));
  return caf::none;
}

caf::error make_dir(const std::string& dir) {
  std::error_code err;
  if (std::filesystem::is_directory(dir, err))
    return caf::none;
  auto parent = std::filesystem::path{dir}.parent_path();
  if (!parent.empty())
    std::filesystem::create_directories(parent, err);
  if (::mkdir(dir.c_str(), 0700) != 0 && errno != EEXIST)
    return caf::make_error(ec::storage_error, "cannot create " + dir + ": "
                                                + std::strerror(errno));
  return caf::none;
}

} // namespace

cert_paths ca_paths(const std::string& dir) {
  return node_paths(dir, "ca");
}

cert_paths node_paths(const std::string& dir, const std::string& name) {
  auto base = (std::filesystem::path{dir} / name).string();
  return {base + ".key", base + ".crt"};
}

caf::error init_ca(const std::string& dir, int days,
                   const std::string& common_name) {
  if (auto err = check_days(days))
    return err;
  if (common_name.empty() || common_name.size() > 64)
    return caf::make_error(ec::invalid_argument,
                           "the CA's common name must have 1..64 characters");
  auto paths = ca_paths(dir);
  for (auto& p : {paths.key, paths.cert})
    if (exists(p))
      return caf::make_error(ec::already_exists,
                             p + " exists; not overwriting it");
  if (auto err = make_dir(dir))
    return err;
  auto key = new_p256_key();
  if (!key)
    return crypto_error("cannot generate an EC P-256 key");
  auto cert = new_cert(key.get(), common_name, days);
  if (!cert)
    return crypto_error("cannot build the CA certificate");
  X509_set_issuer_name(cert.get(), X509_get_subject_name(cert.get()));
  X509V3_CTX ctx;
  X509V3_set_ctx(&ctx, cert.get(), cert.get(), nullptr, nullptr, 0);
  if (!add_ext(cert.get(), &ctx, NID_basic_constraints, "critical,CA:TRUE")
      || !add_ext(cert.get(), &ctx, NID_key_usage,
                  "critical,keyCertSign,cRLSign")
      || !add_ext(cert.get(), &ctx, NID_subject_key_identifier, "hash")
      || !add_ext(cert.get(), &ctx, NID_authority_key_identifier,
                  "keyid:always"))
    return crypto_error("cannot add the CA certificate's extensions");
  if (X509_sign(cert.get(), key.get(), EVP_sha256()) == 0)
    return crypto_error("cannot sign the CA certificate");
  return write_pair(paths, key.get(), cert.get());
}

caf::error issue_cert(const std::string& dir, const std::string& name,
                      const std::vector<std::string>& hosts, int days) {
  auto bad_name = name.empty() || name.size() > 64 || name.front() == '.'
                  || name == "ca";
  for (auto c : name)
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '_'
          || c == '-'))
      bad_name = true;
  if (bad_name)
    return caf::make_error(ec::invalid_argument,
                           "NAME '" + name
                             + "' must be 1..64 characters of [A-Za-z0-9._-],"
                               " not start with '.' and not be 'ca'");
  if (auto err = check_days(days))
    return err;
  for (auto& host : hosts)
    if (ip_bytes(host).empty() && !valid_dns_name(host))
      return caf::make_error(ec::invalid_argument,
                             "--host '" + host
                               + "' is neither an IP address nor a DNS name");
  auto ca = ca_paths(dir);
  if (!exists(ca.key) || !exists(ca.cert))
    return caf::make_error(ec::not_found,
                           "no CA in " + dir + " (" + ca.key + ", " + ca.cert
                             + "); run `rondo certs init " + dir + "` first");
  auto paths = node_paths(dir, name);
  for (auto& p : {paths.key, paths.cert})
    if (exists(p))
      return caf::make_error(ec::already_exists,
                             p + " exists; not overwriting it");
  auto ca_certs = load_certs("", ca.cert);
  if (!ca_certs)
    return ca_certs.error();
  auto ca_key = load_key("", ca.key);
  if (!ca_key)
    return ca_key.error();
  auto* ca_cert = sk_X509_value(ca_certs->get(), 0);
  if (X509_check_private_key(ca_cert, ca_key->get()) != 1) {
    ERR_clear_error();
    return caf::make_error(ec::invalid_config,
                           ca.key + " does not belong to " + ca.cert);
  }
  auto key = new_p256_key();
  if (!key)
    return crypto_error("cannot generate an EC P-256 key");
  auto cert = new_cert(key.get(), name, days);
  if (!cert)
    return crypto_error("cannot build the certificate of " + name);
  X509_set_issuer_name(cert.get(), X509_get_subject_name(ca_cert));
  X509V3_CTX ctx;
  X509V3_set_ctx(&ctx, ca_cert, cert.get(), nullptr, nullptr, 0);
  if (!add_ext(cert.get(), &ctx, NID_basic_constraints, "critical,CA:FALSE")
      || !add_ext(cert.get(), &ctx, NID_key_usage,
                  "critical,digitalSignature")
      || !add_ext(cert.get(), &ctx, NID_ext_key_usage,
                  "serverAuth,clientAuth")
      || !add_ext(cert.get(), &ctx, NID_subject_key_identifier, "hash")
      || !add_ext(cert.get(), &ctx, NID_authority_key_identifier,
                  "keyid:always")
      || !add_alt_names(cert.get(), hosts.empty()
                                      ? std::vector<std::string>{name}
                                      : hosts))
    return crypto_error("cannot add the extensions of " + name
                        + "'s certificate");
  if (X509_sign(cert.get(), ca_key->get(), EVP_sha256()) == 0)
    return crypto_error("cannot sign the certificate of " + name);
  return write_pair(paths, key.get(), cert.get());
}

caf::error check_tls_files(const tls_files& files, bool require_all) {
  if (require_all && files.any()) {
    std::string missing;
    for (auto [flag, value] : {std::pair{"--cert", &files.cert},
                               std::pair{"--key", &files.key},
                               std::pair{"--ca", &files.ca}})
      if (value->empty())
        missing += (missing.empty() ? "" : ", ") + std::string{flag};
    if (!missing.empty())
      return caf::make_error(ec::invalid_config,
                             "mutual TLS needs --cert, --key and --ca "
                             "together; missing: "
                               + missing);
  } else if (require_all) {
    return caf::make_error(ec::invalid_config,
                           "mutual TLS needs --cert, --key and --ca; none "
                           "given");
  }
  if (!files.cert.empty() && files.key.empty())
    return caf::make_error(ec::invalid_config,
                           "--cert " + files.cert + " needs --key");
  if (files.cert.empty() && !files.key.empty())
    return caf::make_error(ec::invalid_config,
                           "--key " + files.key + " needs --cert");
  x509_stack_ptr chain;
  pkey_ptr key;
  if (!files.cert.empty()) {
    auto certs = load_certs("--cert", files.cert);
    if (!certs)
      return certs.error();
    chain = std::move(*certs);
    auto k = load_key("--key", files.key);
    if (!k)
      return k.error();
    key = std::move(*k);
    if (X509_check_private_key(sk_X509_value(chain.get(), 0), key.get())
        != 1) {
      ERR_clear_error();
      return caf::make_error(ec::invalid_config,
                             "--key " + files.key
                               + " does not match --cert " + files.cert
                               + " (a key of another certificate?)");
    }
  }
  if (!files.ca.empty()) {
    auto roots = load_certs("--ca", files.ca);
    if (!roots)
      return roots.error();
    for (int i = 0; i < sk_X509_num(roots->get()); ++i) {
      auto* root = sk_X509_value(roots->get(), i);
      if (X509_check_ca(root) == 0)
        return caf::make_error(ec::invalid_config,
                               "--ca " + files.ca
                                 + " holds a certificate that is not a CA "
                                   "(basicConstraints CA:FALSE)");
    }
    if (chain) {
      // The certificate itself first, the rest of its file as untrusted
      // intermediates.
      auto* leaf = sk_X509_shift(chain.get());
      x509_ptr owned{leaf};
      if (auto why = verify(leaf, chain.get(), roots->get()); !why.empty())
        return caf::make_error(ec::invalid_config,
                               "--cert " + files.cert
                                 + " does not verify against --ca "
                                 + files.ca + ": " + why);
    }
  }
  return caf::none;
}

std::string cert_host_problem(const std::string& cert_file,
                              const std::string& host) {
  auto bare = unbracketed(host);
  if (bare.empty() || bare == "0.0.0.0" || bare == "::")
    return {};
  auto certs = load_certs("--cert", cert_file);
  if (!certs)
    return error_detail(certs.error());
  auto* cert = sk_X509_value(certs->get(), 0);
  auto ip = !ip_bytes(bare).empty();
  auto ok = ip ? X509_check_ip_asc(cert, bare.c_str(), 0)
               : X509_check_host(cert, bare.data(), bare.size(), 0, nullptr);
  ERR_clear_error();
  if (ok == 1)
    return {};
  // What it names instead, for the message.
  std::string names;
  auto* sans = static_cast<GENERAL_NAMES*>(
    X509_get_ext_d2i(cert, NID_subject_alt_name, nullptr, nullptr));
  names_ptr owned{sans};
  for (int i = 0; sans != nullptr && i < sk_GENERAL_NAME_num(sans); ++i) {
    auto* gen = sk_GENERAL_NAME_value(sans, i);
    std::string entry;
    if (gen->type == GEN_DNS) {
      auto* s = gen->d.dNSName;
      entry = "DNS:" + std::string{reinterpret_cast<const char*>(
                                     ASN1_STRING_get0_data(s)),
                                   static_cast<size_t>(ASN1_STRING_length(s))};
    } else if (gen->type == GEN_IPADD) {
      auto* s = gen->d.iPAddress;
      char text[INET6_ADDRSTRLEN] = {};
      auto len = ASN1_STRING_length(s);
      if ((len == 4 || len == 16)
          && inet_ntop(len == 4 ? AF_INET : AF_INET6,
                       ASN1_STRING_get0_data(s), text, sizeof(text))
               != nullptr)
        entry = std::string{"IP:"} + text;
    }
    if (!entry.empty())
      names += (names.empty() ? "" : ", ") + entry;
  }
  return "--cert " + cert_file + " does not name " + bare
         + " (its subjectAltNames: "
         + (names.empty() ? std::string{"none"} : names)
         + "): TLS clients connecting to " + bare
         + " will fail the handshake (\"Peer name " + bare
         + " is not in peer certificate\"); issue a certificate that lists "
           "it: rondo certs issue DIR NAME --host "
         + bare;
}

caf::expected<std::string> read_small_file(const std::string& path,
                                           const std::string& flag) {
  if (path.empty())
    return caf::make_error(ec::invalid_config,
                           (flag.empty() ? std::string{"a file"} : flag)
                             + " needs a file name");
  return read_flag_file(flag, path);
}

caf::error read_small_file_into(const std::string& path,
                                const std::string& flag, std::string& out) {
  if (path.empty())
    return caf::none;
  auto bytes = read_small_file(path, flag);
  if (!bytes)
    return std::move(bytes.error());
  out = std::move(*bytes);
  return caf::none;
}

namespace {

/// Blocks SIGPIPE in this thread while it lives (a write to a peer that
/// closed must fail, not kill the process) and drops one raised meanwhile.
class sigpipe_guard {
public:
  sigpipe_guard() {
    sigemptyset(&pipe_);
    sigaddset(&pipe_, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &pipe_, &saved_);
  }
  ~sigpipe_guard() {
    timespec zero{};
    while (sigtimedwait(&pipe_, nullptr, &zero) > 0) {
    }
    pthread_sigmask(SIG_SETMASK, &saved_, nullptr);
  }
  sigpipe_guard(const sigpipe_guard&) = delete;
  sigpipe_guard& operator=(const sigpipe_guard&) = delete;

private:
  sigset_t pipe_;
  sigset_t saved_;
};

} // namespace

std::string probe_tls(int fd, const tls_files& files) {
  sigpipe_guard no_sigpipe;
  ssl_ctx_ptr ctx{SSL_CTX_new(TLS_client_method())};
  if (!ctx)
    return "cannot set up TLS: " + openssl_errors();
  // What CAF's OpenSSL module sets up when certificates are given.
  if (SSL_CTX_use_certificate_chain_file(ctx.get(), files.cert.c_str()) != 1
      || SSL_CTX_use_PrivateKey_file(ctx.get(), files.key.c_str(),
                                     SSL_FILETYPE_PEM)
           != 1
      || SSL_CTX_load_verify_locations(ctx.get(), files.ca.c_str(), nullptr)
           != 1
      || SSL_CTX_set_cipher_list(ctx.get(), "HIGH:!aNULL:!MD5") != 1)
    return "cannot load --cert/--key/--ca: " + openssl_errors();
  SSL_CTX_set_verify(ctx.get(),
                     SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT,
                     nullptr);
  ssl_ptr ssl{SSL_new(ctx.get())};
  if (!ssl || SSL_set_fd(ssl.get(), fd) != 1)
    return "cannot set up TLS: " + openssl_errors();
  ERR_clear_error();
  if (SSL_connect(ssl.get()) != 1) {
    auto verify_result = SSL_get_verify_result(ssl.get());
    auto why = openssl_errors();
    if (verify_result != X509_V_OK)
      return "its certificate does not verify against --ca "
             + files.ca + ": "
             + X509_verify_cert_error_string(verify_result)
             + " (issued by another cluster's CA?)";
    return "the TLS handshake failed: "
           + (why.empty() ? std::string{"the peer closed the connection or "
                                        "timed out"}
                          : why);
  }
  // TLS 1.3: the server checks our certificate after our Finished and
  // answers a rejected one with an alert; an accepted peer (a CAF node)
  // then talks first.
  char buf[8];
  if (SSL_read(ssl.get(), buf, sizeof(buf)) > 0) {
    SSL_shutdown(ssl.get());
    return {};
  }
  auto why = openssl_errors();
  if (!why.empty())
    return "it refused this certificate (--cert " + files.cert + "): " + why;
  return "it completed the TLS handshake but sent nothing (not a Rondo "
         "controller?)";
}

} // namespace rondo::security
