// Content digests ("sha256:<hex>"), as OCI descriptors carry them: validation and
// streaming SHA-256 (OpenSSL's EVP, hardware-accelerated where the CPU allows).
#pragma once

#include <memory>
#include <string>
#include <string_view>

#include "core/status.h"

namespace strata {

// Validates "sha256:" + 64, "sha384:" + 96 or "sha512:" + 128 lowercase hex digits.
// InvalidArgument saying what is wrong otherwise.
Status ValidateDigest(std::string_view digest);

// Incremental SHA-256. Not thread-safe; one per stream.
class Sha256 {
 public:
  Sha256();
  ~Sha256();
  Sha256(const Sha256&) = delete;
  Sha256& operator=(const Sha256&) = delete;

  void Update(std::string_view data);
  // "sha256:<64 hex>" of everything passed to Update. Ends the stream.
  std::string Digest();

 private:
  struct State;
  std::unique_ptr<State> state_;
};

// "sha256:<hex>" of `data`.
std::string Sha256Digest(std::string_view data);

// "sha256:<hex>" of the file at `path`, read in 1 MiB pieces.
Result<std::string> Sha256DigestOfFile(const std::string& path);

// `bytes` random bytes (OpenSSL's generator) as lower-case hex: ids, unique suffixes.
std::string RandomHex(size_t bytes);

}  // namespace strata
