#include "core/digest.h"

#include <openssl/evp.h>
#include <openssl/rand.h>

#include <vector>

#include "core/fs.h"
#include "core/quote.h"

namespace strata {

Status ValidateDigest(std::string_view digest) {
  size_t colon = digest.find(':');
  if (colon == std::string_view::npos) {
    return Status::InvalidArgument("invalid digest " + Quote(digest) + ": missing algorithm");
  }
  std::string_view algorithm = digest.substr(0, colon);
  std::string_view hex = digest.substr(colon + 1);
  size_t want = 0;
  if (algorithm == "sha256") {
    want = 64;
  } else if (algorithm == "sha384") {
    want = 96;
  } else if (algorithm == "sha512") {
    want = 128;
  } else {
    return Status::InvalidArgument("invalid digest " + Quote(digest) + ": unsupported algorithm " +
                                   Quote(algorithm));
  }
  if (hex.size() != want) {
    return Status::InvalidArgument("invalid digest " + Quote(digest) + ": " +
                                   std::string(algorithm) + " needs " + std::to_string(want) +
                                   " hex digits, got " + std::to_string(hex.size()));
  }
  // Without a branch per digit: the digits of a digest are random, so a branch on
  // "0-9 or a-f" is mispredicted about every other time (TOCs check thousands).
  bool lower_hex = true;
  for (char c : hex) {
    const bool digit = static_cast<unsigned char>(c - '0') < 10;
    const bool letter = static_cast<unsigned char>(c - 'a') < 6;
    lower_hex &= digit | letter;
  }
  if (!lower_hex) {
    return Status::InvalidArgument("invalid digest " + Quote(digest) +
                                   ": not lowercase hexadecimal");
  }
  return Status::Ok();
}

struct Sha256::State {
  EVP_MD_CTX* ctx = nullptr;
};

Sha256::Sha256() : state_(std::make_unique<State>()) {
  state_->ctx = EVP_MD_CTX_new();
  EVP_DigestInit_ex(state_->ctx, EVP_sha256(), nullptr);
}

Sha256::~Sha256() { EVP_MD_CTX_free(state_->ctx); }

void Sha256::Update(std::string_view data) {
  EVP_DigestUpdate(state_->ctx, data.data(), data.size());
}

std::string Sha256::Digest() {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  EVP_DigestFinal_ex(state_->ctx, md, &len);
  static const char kHex[] = "0123456789abcdef";
  std::string out = "sha256:";
  for (unsigned int i = 0; i < len; i++) {
    out += kHex[md[i] >> 4];
    out += kHex[md[i] & 0xf];
  }
  return out;
}

std::string Sha256Digest(std::string_view data) {
  Sha256 h;
  h.Update(data);
  return h.Digest();
}

Result<std::string> Sha256DigestOfFile(const std::string& path) {
  Sha256 h;
  RETURN_IF_ERROR(
      fs::ReadFileChunks(path, 1 << 20, [&](std::string_view piece) { h.Update(piece); }));
  return h.Digest();
}

std::string RandomHex(size_t bytes) {
  std::vector<unsigned char> buf(bytes);
  RAND_bytes(buf.data(), static_cast<int>(buf.size()));
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  out.reserve(bytes * 2);
  for (unsigned char b : buf) {
    out.push_back(kHex[b >> 4]);
    out.push_back(kHex[b & 15]);
  }
  return out;
}

}  // namespace strata
