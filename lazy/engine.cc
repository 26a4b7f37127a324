#include "lazy/engine.h"

#include <prometheus/registry.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <exception>

#include "core/digest.h"
#include "core/fs.h"
#include "lazy/engine_context.h"
#include "lazy/remote_blob.h"

namespace strata::lazy {
namespace {

constexpr uint64_t kMinChunkSize = 4 << 10;
constexpr uint64_t kMaxChunkSize = 64 << 20;

Status Validate(const EngineOptions& o) {
  auto bad = [](const std::string& what) {
    return Status::InvalidArgument("lazy engine options: " + what);
  };
  if (o.cache_dir.empty()) return bad("cache_dir is empty");
  if (o.chunk_size < kMinChunkSize || o.chunk_size > kMaxChunkSize ||
      (o.chunk_size & (o.chunk_size - 1)) != 0) {
    return bad("chunk_size " + std::to_string(o.chunk_size) +
               " is not a power of two from 4 KiB to 64 MiB");
  }
  if (o.max_connections == 0) return bad("max_connections is 0");
  if (o.prefetch_concurrency == 0) return bad("prefetch_concurrency is 0");
  if (o.background_concurrency == 0) return bad("background_concurrency is 0");
  if (o.read_deadline.count() <= 0) return bad("read_deadline is not positive");
  if (o.disk_cache_limit_bytes != 0 && o.disk_cache_limit_bytes < 2 * o.chunk_size) {
    return bad("disk_cache_limit_bytes " + std::to_string(o.disk_cache_limit_bytes) +
               " is less than two chunks");
  }
  return Status::Ok();
}

// The digest a cache folder name stands for ("" when it is not a digest's hex).
std::string DigestOfFolder(const std::string& name) {
  std::string algorithm;
  switch (name.size()) {
    case 64:
      algorithm = "sha256:";
      break;
    case 96:
      algorithm = "sha384:";
      break;
    case 128:
      algorithm = "sha512:";
      break;
    default:
      return "";
  }
  std::string digest = algorithm + name;
  return ValidateDigest(digest).ok() ? digest : "";
}

std::string FolderOfDigest(const std::string& digest) {
  return digest.substr(digest.find(':') + 1);
}

}  // namespace

Engine::Engine(std::shared_ptr<EngineContext> context) : context_(std::move(context)) {}

Result<std::unique_ptr<Engine>> Engine::Open(EngineOptions options, registry::Client* client) {
  RETURN_IF_ERROR(Validate(options));
  if (client == nullptr) return Status::InvalidArgument("lazy engine: no registry client");
  RETURN_IF_ERROR(fs::MakeDirs(options.cache_dir, 0700));

  auto context = std::make_shared<EngineContext>();
  context->options = options;
  context->client = client;
  const uint64_t chunk = options.chunk_size;
  uint64_t request = std::max(chunk, options.max_request_bytes / chunk * chunk);
  if (options.disk_cache_limit_bytes != 0) {
    request =
        std::min(request, std::max(chunk, options.disk_cache_limit_bytes / 4 / chunk * chunk));
  }
  context->request_bytes = request;
  context->metrics_registry = options.metrics_registry ? options.metrics_registry
                                                       : std::make_shared<prometheus::Registry>();
  try {
    context->metrics = std::make_unique<EngineMetrics>(*context->metrics_registry);
  } catch (const std::exception& e) {
    // A registry that refuses families of the same name (InsertBehavior::Throw).
    return Status::InvalidArgument(std::string("lazy engine metrics: ") + e.what());
  }
  context->memory = std::make_unique<MemoryCache>(options.memory_cache_bytes, chunk);
  EngineContext* raw = context.get();
  context->budget = std::make_unique<DiskBudget>(
      options.disk_cache_limit_bytes, [raw] { return raw->ListBlobs(); }, context->metrics.get());

  // Caches of an earlier run: kept when their bitmap is valid for this chunk size.
  ASSIGN_OR_RETURN(auto names, fs::ListDir(options.cache_dir));
  for (const auto& name : names) {
    std::string digest = DigestOfFolder(name);
    if (digest.empty()) continue;  // not ours
    const std::string dir = options.cache_dir + "/" + name;
    auto store = ChunkStore::Open(dir, chunk, std::nullopt);
    if (!store.ok()) {
      spdlog::info("lazy: dropping the cache of {}: {}", digest, store.status().ToString());
      Status removed = fs::RemoveAll(dir);
      if (!removed.ok()) spdlog::warn("lazy: {}", removed.ToString());
      continue;
    }
    uint64_t cached = (*store)->CachedBytes();
    context->blobs.emplace(digest,
                           std::make_shared<RemoteBlob>(context, digest, std::move(*store)));
    context->budget->Add(static_cast<int64_t>(cached));
  }
  context->budget->EnforceLimit();

  SchedulerLimits limits;
  limits.workers = options.max_connections;
  limits.prefetch = std::min(options.prefetch_concurrency, options.max_connections);
  limits.background = std::min(options.background_concurrency, options.max_connections);
  context->scheduler = std::make_unique<FetchScheduler>(limits);
  return std::unique_ptr<Engine>(new Engine(std::move(context)));
}

Engine::~Engine() {
  context_->scheduler->Shutdown();
  std::map<std::string, std::shared_ptr<RemoteBlob>> blobs;
  {
    std::lock_guard<std::mutex> lock(context_->blobs_mu);
    blobs.swap(context_->blobs);  // breaks the blob -> context -> blob cycle
  }
  for (auto& [digest, blob] : blobs) blob->Close(false);
}

Result<std::shared_ptr<BlobReader>> Engine::OpenBlob(const registry::Reference& ref,
                                                     const std::string& digest, uint64_t size) {
  RETURN_IF_ERROR(ValidateDigest(digest));
  std::shared_ptr<RemoteBlob> stale;  // a cache left for another size, removed unlocked
  std::shared_ptr<RemoteBlob> blob;
  {
    std::lock_guard<std::mutex> lock(context_->blobs_mu);
    auto it = context_->blobs.find(digest);
    if (it != context_->blobs.end()) {
      if (it->second->size() == size) {
        blob = it->second;
      } else if (it->second->attached()) {
        return Status::InvalidArgument("blob " + digest + " is open with size " +
                                       std::to_string(it->second->size()) + ", not " +
                                       std::to_string(size));
      } else {
        stale = it->second;
        context_->blobs.erase(it);
      }
    }
  }
  if (stale) context_->budget->Add(-static_cast<int64_t>(stale->Close(true)));
  if (!blob) {
    std::lock_guard<std::mutex> lock(context_->blobs_mu);
    auto it = context_->blobs.find(digest);
    if (it != context_->blobs.end()) {
      blob = it->second;  // a concurrent OpenBlob won
    } else {
      ASSIGN_OR_RETURN(auto store,
                       ChunkStore::Open(context_->options.cache_dir + "/" + FolderOfDigest(digest),
                                        context_->options.chunk_size, size));
      uint64_t cached = store->CachedBytes();
      blob = std::make_shared<RemoteBlob>(context_, digest, std::move(store));
      context_->blobs.emplace(digest, blob);
      context_->budget->Add(static_cast<int64_t>(cached));
    }
  }
  if (blob->size() != size) {
    return Status::InvalidArgument("blob " + digest + " is open with size " +
                                   std::to_string(blob->size()) + ", not " + std::to_string(size));
  }
  blob->Attach(ref);
  return std::shared_ptr<BlobReader>(blob);
}

Status Engine::RemoveBlob(const std::string& digest) {
  std::shared_ptr<RemoteBlob> blob;
  {
    std::lock_guard<std::mutex> lock(context_->blobs_mu);
    auto it = context_->blobs.find(digest);
    if (it == context_->blobs.end()) return Status::Ok();
    blob = std::move(it->second);
    context_->blobs.erase(it);
  }
  context_->budget->Add(-static_cast<int64_t>(blob->Close(true)));
  return Status::Ok();
}

EngineStats Engine::Stats() const {
  const EngineMetrics& m = *context_->metrics;
  auto count = [](double v) { return static_cast<uint64_t>(v); };
  EngineStats stats;
  stats.fetches = count(m.TotalFetchRequests());
  stats.fetch_errors = count(m.TotalFetchErrors());
  stats.fetched_bytes = count(m.TotalFetchedBytes());
  stats.memory_hits = count(m.memory_hits.Value());
  stats.disk_hits = count(m.disk_hits.Value());
  stats.misses = count(m.misses.Value());
  stats.deadline_exceeded = count(m.deadline_exceeded.Value());
  stats.evicted_bytes = count(m.evicted_bytes.Value());
  stats.in_flight_fetches = count(m.in_flight_fetches.Value());
  stats.cached_bytes = context_->budget->used_bytes();
  stats.memory_bytes = context_->memory->size_bytes();
  std::lock_guard<std::mutex> lock(context_->blobs_mu);
  stats.blobs = context_->blobs.size();
  return stats;
}

std::shared_ptr<prometheus::Registry> Engine::metrics_registry() const {
  return context_->metrics_registry;
}

const EngineOptions& Engine::options() const { return context_->options; }

}  // namespace strata::lazy
