// lazy::BlobReader — random access to one remote blob (a registry layer) through the
// lazy engine: bytes come from the local chunk cache when present, otherwise from the
// registry with ranged requests, and are cached for next time. The engine
// (lazy/engine.h) hands these out; formats (lazy/stargz, ...) read through them.
//
// The engine does not know the format, so it cannot verify what it fetched: the format
// checks each piece against the digest its metadata gives (TOC digest, chunk digest)
// before a reader sees it, and calls Invalidate() on a mismatch so the next read
// fetches again.
//
// Thread safety: every method may be called from many threads at once; concurrent
// reads of the same chunk cause one fetch.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "core/status.h"
#include "registry/client.h"

namespace strata::lazy {

class BlobReader {
 public:
  virtual ~BlobReader() = default;

  virtual const std::string& digest() const = 0;
  virtual uint64_t size() const = 0;

  // Reads up to `n` bytes at `offset` (fewer only at the end of the blob) with
  // on-demand priority. DeadlineExceeded when the bytes cannot be had within the
  // engine's read deadline (registry down or stalled); Unavailable/DataLoss as the
  // registry client reports them; FailedPrecondition once the blob was removed from the
  // engine or the engine is gone.
  virtual Result<size_t> ReadAt(char* buf, size_t n, uint64_t offset) = 0;

  // Queues `ranges` for fetching at prefetch priority (adjacent ranges merged into as
  // few requests as possible). Returns at once.
  virtual void Prefetch(const std::vector<registry::ByteRange>& ranges) = 0;

  // Queues every byte not yet cached at background priority (paused while on-demand
  // reads wait). Returns at once. Prefetch and FetchRemaining are best effort: a piece
  // that fails stops the rest of that call (logged); reads fetch what is still missing.
  virtual void FetchRemaining() = 0;

  // Forgets cached bytes overlapping [offset, offset + n) (they failed verification).
  virtual void Invalidate(uint64_t offset, uint64_t n) = 0;

  // Bytes of the blob present in the local cache.
  virtual uint64_t CachedBytes() const = 0;
};

}  // namespace strata::lazy
