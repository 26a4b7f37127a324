// Deterministic pseudo-random test data.
#pragma once

#include <cstdint>
#include <random>
#include <string>

namespace strata::testing {

// `n` bytes from a 64-bit Mersenne twister seeded with `seed`: the same bytes for the same
// seed on every run, incompressible enough to exercise real transfers.
inline std::string RandomBytes(size_t n, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::string out(n, '\0');
  for (auto& c : out) c = static_cast<char>(rng());
  return out;
}

}  // namespace strata::testing
