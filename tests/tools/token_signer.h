// Signs registry bearer tokens (JWS compact serialisation) the way Docker's
// distribution/registry 2.8 verifies them: the header carries "x5c", the signing
// certificate followed by any intermediates, each base64 (standard alphabet) DER; the
// registry checks that chain against its `rootcertbundle` and the signature with the
// leaf's key. ES256/ES384/ES512 for P-256/P-384/P-521 keys (raw r||s signatures, as
// JOSE requires), RS256 for RSA keys.
#pragma once

#include <openssl/evp.h>
#include <openssl/x509.h>

#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <vector>

namespace strata::testtools {

std::string Base64Encode(std::string_view data);
// RFC 4648 section 5 alphabet, without padding (JWS).
std::string Base64UrlEncode(std::string_view data);
// Standard alphabet, padding optional; false on bad input.
bool Base64Decode(std::string_view text, std::string* data);

class TokenSigner {
 public:
  // Loads a PEM private key from `key_path` and PEM certificates from `cert_path` (the
  // first must hold the key's public half; the rest go into "x5c" after it). When
  // neither file exists, generates a P-256 key and a self-signed certificate and writes
  // them there first (key mode 0600). nullptr with `*error` otherwise.
  static std::unique_ptr<TokenSigner> LoadOrCreate(const std::string& key_path,
                                                   const std::string& cert_path,
                                                   std::string* error);
  ~TokenSigner();
  TokenSigner(const TokenSigner&) = delete;
  TokenSigner& operator=(const TokenSigner&) = delete;

  // "header.claims.signature". Thread-safe. Empty when OpenSSL fails to sign.
  std::string Sign(const nlohmann::json& claims) const;
  const std::string& algorithm() const { return algorithm_; }

 private:
  TokenSigner() = default;

  EVP_PKEY* key_ = nullptr;
  const EVP_MD* digest_ = nullptr;
  size_t ec_coordinate_bytes_ = 0;  // 0 for RSA
  std::string algorithm_;
  std::vector<std::string> chain_der_base64_;
};

}  // namespace strata::testtools
