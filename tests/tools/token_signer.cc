#include "tests/tools/token_signer.h"

#include <fcntl.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>

namespace strata::testtools {
namespace {

std::string OpenSslError(const std::string& what) {
  unsigned long code = ERR_get_error();
  char text[256] = "unknown error";
  if (code != 0) ERR_error_string_n(code, text, sizeof(text));
  ERR_clear_error();
  return what + ": " + text;
}

bool FileExists(const std::string& path) {
  struct stat st;
  return stat(path.c_str(), &st) == 0;
}

struct FileCloser {
  void operator()(FILE* f) const {
    if (f) std::fclose(f);
  }
};
using File = std::unique_ptr<FILE, FileCloser>;

struct X509Deleter {
  void operator()(X509* x) const { X509_free(x); }
};
using X509Ptr = std::unique_ptr<X509, X509Deleter>;

bool AddExtension(X509* cert, int nid, const char* value) {
  X509V3_CTX ctx;
  X509V3_set_ctx_nodb(&ctx);
  X509V3_set_ctx(&ctx, cert, cert, nullptr, nullptr, 0);
  X509_EXTENSION* ext = X509V3_EXT_conf_nid(nullptr, &ctx, nid, value);
  if (!ext) return false;
  bool ok = X509_add_ext(cert, ext, -1) == 1;
  X509_EXTENSION_free(ext);
  return ok;
}

// A self-signed certificate usable both as the token signer and as the registry's
// root: CA:TRUE with digitalSignature and keyCertSign, valid from an hour ago for ten
// years (the registry checks validity against its own clock).
X509Ptr MakeSelfSignedCertificate(EVP_PKEY* key, std::string* error) {
  X509Ptr cert(X509_new());
  BIGNUM* serial = BN_new();
  bool ok = cert && serial && X509_set_version(cert.get(), 2) == 1 &&
            BN_rand(serial, 120, BN_RAND_TOP_ANY, BN_RAND_BOTTOM_ANY) == 1 &&
            BN_to_ASN1_INTEGER(serial, X509_get_serialNumber(cert.get())) != nullptr &&
            X509_gmtime_adj(X509_getm_notBefore(cert.get()), -3600) != nullptr &&
            X509_gmtime_adj(X509_getm_notAfter(cert.get()), 3650L * 24 * 3600) != nullptr &&
            X509_set_pubkey(cert.get(), key) == 1;
  BN_free(serial);
  if (ok) {
    X509_NAME* name = X509_get_subject_name(cert.get());
    const auto* cn = reinterpret_cast<const unsigned char*>("strata test token signer");
    ok = X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, cn, -1, -1, 0) == 1 &&
         X509_set_issuer_name(cert.get(), name) == 1 &&
         AddExtension(cert.get(), NID_basic_constraints, "critical,CA:TRUE") &&
         AddExtension(cert.get(), NID_key_usage, "critical,digitalSignature,keyCertSign") &&
         AddExtension(cert.get(), NID_subject_key_identifier, "hash") &&
         X509_sign(cert.get(), key, EVP_sha256()) > 0;
  }
  if (!ok) {
    *error = OpenSslError("cannot make the signing certificate");
    return nullptr;
  }
  return cert;
}

bool WritePem(const std::string& path, mode_t mode, const std::function<bool(FILE*)>& write,
              std::string* error) {
  int fd = open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
  File file(fd >= 0 ? fdopen(fd, "w") : nullptr);
  if (!file) {
    if (fd >= 0) close(fd);
    *error = "cannot write " + path + ": " + std::strerror(errno);
    return false;
  }
  if (!write(file.get()) || std::fflush(file.get()) != 0) {
    *error = OpenSslError("cannot write " + path);
    return false;
  }
  return true;
}

std::string DerBase64(X509* cert) {
  unsigned char* der = nullptr;
  int len = i2d_X509(cert, &der);
  if (len <= 0) return "";
  std::string encoded = Base64Encode(std::string_view(reinterpret_cast<char*>(der), len));
  OPENSSL_free(der);
  return encoded;
}

}  // namespace

std::string Base64Encode(std::string_view data) {
  std::string out(4 * ((data.size() + 2) / 3) + 1, '\0');
  int n = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                          reinterpret_cast<const unsigned char*>(data.data()),
                          static_cast<int>(data.size()));
  out.resize(static_cast<size_t>(n));
  return out;
}

std::string Base64UrlEncode(std::string_view data) {
  std::string out = Base64Encode(data);
  while (!out.empty() && out.back() == '=') out.pop_back();
  for (char& c : out) {
    if (c == '+') c = '-';
    if (c == '/') c = '_';
  }
  return out;
}

bool Base64Decode(std::string_view text, std::string* data) {
  std::string padded(text);
  while (padded.size() % 4 != 0) padded.push_back('=');
  if (padded.empty()) {
    data->clear();
    return true;
  }
  std::string out(padded.size() / 4 * 3, '\0');
  int n = EVP_DecodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                          reinterpret_cast<const unsigned char*>(padded.data()),
                          static_cast<int>(padded.size()));
  if (n < 0) return false;
  // EVP_DecodeBlock counts the bytes the padding stands for; drop them.
  size_t pad = 0;
  for (size_t i = padded.size(); i > 0 && padded[i - 1] == '='; --i) ++pad;
  out.resize(static_cast<size_t>(n) - std::min<size_t>(pad, static_cast<size_t>(n)));
  *data = std::move(out);
  return true;
}

TokenSigner::~TokenSigner() { EVP_PKEY_free(key_); }

std::unique_ptr<TokenSigner> TokenSigner::LoadOrCreate(const std::string& key_path,
                                                       const std::string& cert_path,
                                                       std::string* error) {
  std::unique_ptr<TokenSigner> signer(new TokenSigner());
  std::vector<X509Ptr> chain;

  bool key_exists = FileExists(key_path), cert_exists = FileExists(cert_path);
  if (key_exists != cert_exists) {
    *error = "--key and --cert must both exist (to load) or both be absent (to generate)";
    return nullptr;
  }
  if (!key_exists) {
    signer->key_ = EVP_EC_gen("P-256");
    if (!signer->key_) {
      *error = OpenSslError("cannot generate a P-256 key");
      return nullptr;
    }
    X509Ptr cert = MakeSelfSignedCertificate(signer->key_, error);
    if (!cert) return nullptr;
    EVP_PKEY* key = signer->key_;
    if (!WritePem(
            key_path, 0600,
            [key](FILE* f) {
              return PEM_write_PrivateKey(f, key, nullptr, nullptr, 0, nullptr, nullptr) == 1;
            },
            error) ||
        !WritePem(
            cert_path, 0644, [&cert](FILE* f) { return PEM_write_X509(f, cert.get()) == 1; },
            error)) {
      return nullptr;
    }
    chain.push_back(std::move(cert));
  } else {
    File key_file(std::fopen(key_path.c_str(), "r"));
    if (key_file) signer->key_ = PEM_read_PrivateKey(key_file.get(), nullptr, nullptr, nullptr);
    if (!signer->key_) {
      *error = OpenSslError("cannot read a private key from " + key_path);
      return nullptr;
    }
    File cert_file(std::fopen(cert_path.c_str(), "r"));
    while (cert_file) {
      X509* cert = PEM_read_X509(cert_file.get(), nullptr, nullptr, nullptr);
      if (!cert) break;
      chain.emplace_back(cert);
    }
    ERR_clear_error();  // the read that found no more certificates
    if (chain.empty()) {
      *error = "no PEM certificate in " + cert_path;
      return nullptr;
    }
    if (X509_check_private_key(chain.front().get(), signer->key_) != 1) {
      *error = "the first certificate in " + cert_path + " does not match the key in " + key_path;
      return nullptr;
    }
  }

  switch (EVP_PKEY_get_base_id(signer->key_)) {
    case EVP_PKEY_RSA:
      signer->algorithm_ = "RS256";
      signer->digest_ = EVP_sha256();
      break;
    case EVP_PKEY_EC: {
      char group[64] = "";
      size_t len = 0;
      EVP_PKEY_get_utf8_string_param(signer->key_, OSSL_PKEY_PARAM_GROUP_NAME, group, sizeof(group),
                                     &len);
      std::string curve(group);
      if (curve == "prime256v1" || curve == "P-256") {
        signer->algorithm_ = "ES256";
        signer->digest_ = EVP_sha256();
        signer->ec_coordinate_bytes_ = 32;
      } else if (curve == "secp384r1" || curve == "P-384") {
        signer->algorithm_ = "ES384";
        signer->digest_ = EVP_sha384();
        signer->ec_coordinate_bytes_ = 48;
      } else if (curve == "secp521r1" || curve == "P-521") {
        signer->algorithm_ = "ES512";
        signer->digest_ = EVP_sha512();
        signer->ec_coordinate_bytes_ = 66;
      } else {
        *error = "unsupported EC curve " + curve + " (use P-256, P-384 or P-521)";
        return nullptr;
      }
      break;
    }
    default:
      *error = "unsupported key type in " + key_path + " (use EC or RSA)";
      return nullptr;
  }

  for (const X509Ptr& cert : chain) signer->chain_der_base64_.push_back(DerBase64(cert.get()));
  return signer;
}

std::string TokenSigner::Sign(const nlohmann::json& claims) const {
  nlohmann::json header = {{"typ", "JWT"}, {"alg", algorithm_}, {"x5c", chain_der_base64_}};
  std::string signing_input = Base64UrlEncode(header.dump()) + "." + Base64UrlEncode(claims.dump());

  EVP_MD_CTX* ctx = EVP_MD_CTX_new();
  std::string signature;
  size_t len = 0;
  const auto* input = reinterpret_cast<const unsigned char*>(signing_input.data());
  if (ctx && EVP_DigestSignInit(ctx, nullptr, digest_, nullptr, key_) == 1 &&
      EVP_DigestSign(ctx, nullptr, &len, input, signing_input.size()) == 1) {
    signature.resize(len);
    if (EVP_DigestSign(ctx, reinterpret_cast<unsigned char*>(signature.data()), &len, input,
                       signing_input.size()) == 1) {
      signature.resize(len);
    } else {
      signature.clear();
    }
  }
  EVP_MD_CTX_free(ctx);
  if (signature.empty()) return "";

  if (ec_coordinate_bytes_ > 0) {
    // OpenSSL gives ASN.1 DER (SEQUENCE of r, s); JWS wants r and s as fixed-width
    // big-endian integers, concatenated.
    const auto* der = reinterpret_cast<const unsigned char*>(signature.data());
    ECDSA_SIG* sig = d2i_ECDSA_SIG(nullptr, &der, static_cast<long>(signature.size()));
    if (!sig) return "";
    std::string raw(2 * ec_coordinate_bytes_, '\0');
    auto* out = reinterpret_cast<unsigned char*>(raw.data());
    int coord = static_cast<int>(ec_coordinate_bytes_);
    bool ok = BN_bn2binpad(ECDSA_SIG_get0_r(sig), out, coord) == coord &&
              BN_bn2binpad(ECDSA_SIG_get0_s(sig), out + coord, coord) == coord;
    ECDSA_SIG_free(sig);
    if (!ok) return "";
    signature = std::move(raw);
  }
  return signing_input + "." + Base64UrlEncode(signature);
}

}  // namespace strata::testtools
