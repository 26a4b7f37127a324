// registry::Client — the OCI distribution client every puller, pusher and lazy loader
// of strata uses.
//
// For each operation the client walks the registry's endpoints from hosts.toml
// (mirrors in file order, then the upstream; see hosts.h), skipping those without the
// needed capability (resolve, pull, push). Per endpoint, every request:
//   - carries the Authorization the Authorizer learned for that host and scope; a 401
//     runs the challenge (bearer token or basic) once and retries;
//   - is retried on connection errors, stalls, 429 and 5xx with exponential backoff and
//     full jitter, honouring Retry-After (capped), up to `max_attempts` attempts;
//   - has a deadline (`request_timeout` for manifests and small requests; blob bodies
//     instead abort when they stall for `stall_timeout`).
// A blob download that breaks mid-body resumes with a Range request where it stopped.
// When every endpoint fails, the error names the host, repository, object and the
// last HTTP status or transport error, with the class: NotFound (404 / unknown
// manifest or blob), Unauthenticated (401 after auth), PermissionDenied (403),
// Unavailable (5xx, 429, connection), DeadlineExceeded (timeouts), DataLoss (bytes that
// do not match their digest), InvalidArgument (a document that does not parse).
//
// Thread safety: a Client is safe for concurrent use; share one per daemon so tokens
// and connections are reused.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "core/status.h"
#include "registry/auth.h"
#include "registry/hosts.h"
#include "registry/http.h"
#include "registry/manifest.h"
#include "registry/reference.h"

namespace strata::registry {

struct ClientOptions {
  std::string hosts_dir;      // containerd certs.d-style root ("" = none configured)
  std::string docker_config;  // Docker config.json ("" = DefaultDockerConfigPath())
  std::string user_agent = "strata";
  int max_attempts = 5;  // per endpoint, per request
  std::chrono::milliseconds initial_backoff{200};
  std::chrono::milliseconds max_backoff{10000};
  std::chrono::milliseconds max_retry_after{60000};  // longer Retry-After values are capped
  std::chrono::milliseconds request_timeout{60000};
  std::chrono::milliseconds stall_timeout{30000};
  // Multi-range requests carry at most this many ranges; more are split.
  size_t max_ranges_per_request = 64;
};

struct ByteRange {
  uint64_t offset = 0;
  uint64_t length = 0;
};

// Receives consecutive pieces of a blob; a non-OK status aborts the download.
using BlobSink = std::function<Status(const char* data, size_t n)>;

// Reads `n` bytes of the blob being pushed at `offset` into `buf` (pread-style, so a
// retried upload can start again anywhere). Returns the bytes read (0 past the end).
using BlobReader = std::function<Result<size_t>(uint64_t offset, char* buf, size_t n)>;

struct PushBlobOptions {
  // 0: one monolithic PUT; otherwise PATCH chunks of this size, then PUT.
  uint64_t chunk_size = 0;
  // Repository on the same registry to mount the blob from instead of uploading it
  // ("" = none). Falls back to an upload when the registry declines the mount.
  std::string mount_from;
};

// Counters for tests and metrics.
struct ClientStats {
  std::atomic<uint64_t> requests{0};
  std::atomic<uint64_t> retries{0};
  std::atomic<uint64_t> resumed_downloads{0};
  std::atomic<uint64_t> blob_bytes{0};
};

class Client {
 public:
  static Result<std::unique_ptr<Client>> Create(ClientOptions options);
  ~Client();
  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;

  // Resolves `ref` (tag or digest) to the descriptor of its manifest or index:
  // media type, digest and size (HEAD, falling back to GET for registries that do not
  // send Docker-Content-Digest). For a digest reference the registry's answer must
  // match it.
  Result<Descriptor> Resolve(const Reference& ref);

  // Fetches the manifest or index `desc` of `ref`'s repository, verified against
  // desc.digest (and desc.size when non-zero). At most 4 MiB, as containerd.
  Result<std::string> FetchManifest(const Reference& ref, const Descriptor& desc);

  // Fetches a small blob (an image config) whole, verified. ResourceExhausted when it
  // is larger than `max_size`.
  Result<std::string> FetchBlobBytes(const Reference& ref, const Descriptor& desc,
                                     uint64_t max_size = 16 << 20);

  // Streams blob `desc` from byte `offset` to its end into `sink`. Broken transfers
  // are resumed with Range requests; `sink` sees every byte exactly once, in order.
  // The bytes are not verified here (the caller hashes what it stores).
  Status FetchBlob(const Reference& ref, const Descriptor& desc, uint64_t offset,
                   const BlobSink& sink);

  // Reads `range` of blob `digest` (bytes past the blob's end are not returned).
  Result<std::string> ReadRange(const Reference& ref, const std::string& digest, ByteRange range);
  // Reads several ranges with as few requests as possible: multi-range requests
  // (multipart/byteranges) when the registry supports them, else one request per
  // range. Results are in the order of `ranges`.
  Result<std::vector<std::string>> ReadRanges(const Reference& ref, const std::string& digest,
                                              const std::vector<ByteRange>& ranges);

  // The size of blob `digest` of `ref`'s repository, from a HEAD request to the pull
  // endpoints (mirrors first). NotFound when no endpoint has it; Unavailable when the
  // registry sends no Content-Length.
  Result<uint64_t> BlobSize(const Reference& ref, const std::string& digest);
  // Whether `ref`'s repository has blob `digest`.
  Result<bool> HasBlob(const Reference& ref, const std::string& digest);
  // Uploads blob `desc` (its digest and size must be right: the registry verifies).
  // Skips the upload when the blob already exists.
  Status PushBlob(const Reference& ref, const Descriptor& desc, const BlobReader& reader,
                  const PushBlobOptions& options = {});
  // Puts a manifest or index under ref's tag (or digest, when it has no tag) and returns
  // the digest the registry reports.
  Result<std::string> PushManifest(const Reference& ref, const std::string& media_type,
                                   const std::string& body);

  const ClientStats& stats() const { return stats_; }

 private:
  class Call;
  explicit Client(ClientOptions options);

  Result<std::vector<RegistryEndpoint>> EndpointsFor(const Reference& ref, unsigned capability);

  ClientOptions options_;
  std::unique_ptr<HttpClient> http_;
  std::unique_ptr<Authorizer> auth_;
  ClientStats stats_;
  std::mutex no_multirange_mu_;
  std::vector<std::string> no_multirange_hosts_;
};

}  // namespace strata::registry
