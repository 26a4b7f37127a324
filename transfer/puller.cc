#include "transfer/puller.h"

#include <fcntl.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <atomic>
#include <deque>
#include <optional>
#include <thread>

#include "core/clock.h"
#include "core/digest.h"
#include "core/fs.h"
#include "core/quote.h"
#include "lazy/stargz/toc.h"
#include "transfer/byte_source.h"
#include "transfer/content_source.h"
#include "transfer/decompress.h"
#include "transfer/gc.h"
#include "transfer/pipe.h"
#include "transfer/unpack.h"

namespace strata::transfer {
namespace {

using registry::Reference;

constexpr char kGcContentPrefix[] = "containerd.io/gc.ref.content.";
constexpr char kGcSnapshotPrefix[] = "containerd.io/gc.ref.snapshot.";
constexpr char kDistributionSourcePrefix[] = "containerd.io/distribution.source.";
constexpr size_t kPipeCapacity = 8 << 20;
constexpr auto kWaitForOtherPull = std::chrono::hours(1);
// How long a pull's blobs and half-made snapshots are kept from the garbage collector
// before the image record refers to them.
constexpr auto kPullProtection = std::chrono::hours(6);

// A key for the active snapshot a layer is unpacked into; unique per attempt.
std::string ExtractKey(const std::string& chain_id) {
  return "extract-" + RandomHex(8) + " " + chain_id;
}

Labels DistributionSource(const Reference& ref) {
  // containerd records where a blob came from so that a push to the same registry can
  // mount it instead of uploading it.
  std::string repo = ref.repository;
  return {{kDistributionSourcePrefix + ref.domain, repo}};
}


Status Cancelled() { return Status(Code::kCancelled, "pull cancelled"); }


}  // namespace

std::string_view LayerStateName(LayerState state) {
  switch (state) {
    case LayerState::kWaiting:
      return "waiting";
    case LayerState::kDownloading:
      return "downloading";
    case LayerState::kExtracting:
      return "extracting";
    case LayerState::kVerifying:
      return "verifying";
    case LayerState::kDone:
      return "done";
    case LayerState::kAlreadyExists:
      return "already exists";
    case LayerState::kFailed:
      return "failed";
    case LayerState::kLazy:
      return "lazy";
  }
  return "unknown";
}

std::vector<std::string> ChainIds(const std::vector<std::string>& diff_ids) {
  std::vector<std::string> out;
  for (const auto& d : diff_ids) {
    out.push_back(out.empty() ? d : Sha256Digest(out.back() + " " + d));
  }
  return out;
}

// Everything one layer's work needs, and its result.
struct Puller::Job {
  size_t index = 0;
  registry::Descriptor layer;
  std::string diff_id;
  std::string chain_id;
  std::string parent_chain_id;  // "" for the first layer
  std::string snapshotter;
  std::unique_ptr<snapshotter::Snapshotter> snaps;
  bool unpack = true;
  bool lazy = false;  // try a lazy source first (in the commit loop)
  const std::atomic<bool>* cancelled = nullptr;  // the pull gave up: stop early

  // Set by the worker.
  std::string key;  // the active snapshot holding the unpacked layer
  std::string dir;  // its fs directory
  UnpackResult unpacked;
  bool produced_elsewhere = false;  // another pull committed the chain meanwhile
  Status status;
  bool finished = false;
};

// Progress of one pull: layer states and byte counts, reported to the sink by the
// pulling thread about every 100 ms.
class Puller::Tracker {
 public:
  Tracker(const ProgressSink& sink, std::chrono::steady_clock::time_point start)
      : sink_(sink), start_(start) {}

  size_t Add(const registry::Descriptor& d) {
    std::lock_guard<std::mutex> lock(mu_);
    LayerProgress p;
    p.digest = d.digest;
    p.media_type = d.media_type;
    p.total_bytes = d.size;
    layers_.push_back(p);
    rates_.push_back({});
    return layers_.size() - 1;
  }
  void SetState(size_t i, LayerState s) {
    std::lock_guard<std::mutex> lock(mu_);
    layers_[i].state = s;
    if (s == LayerState::kDone || s == LayerState::kAlreadyExists) {
      layers_[i].current_bytes = layers_[i].total_bytes;
      layers_[i].bytes_per_second = 0;
    }
    changed_ = true;
  }
  void AddBytes(size_t i, int64_t n) {
    std::lock_guard<std::mutex> lock(mu_);
    layers_[i].current_bytes += n;
  }
  void SetBytes(size_t i, int64_t n) {
    std::lock_guard<std::mutex> lock(mu_);
    layers_[i].current_bytes = n;
  }
  void Message(std::string m) {
    std::lock_guard<std::mutex> lock(mu_);
    if (!message_.empty()) message_ += "\n";
    message_ += std::move(m);
    changed_ = true;
  }

  // Sends a snapshot if something changed or `interval` passed. Called by one thread.
  Status Report(bool force) {
    PullProgress p;
    {
      std::lock_guard<std::mutex> lock(mu_);
      auto now = std::chrono::steady_clock::now();
      bool due = now - last_report_ >= std::chrono::milliseconds(100);
      if (!force && !changed_ && !due) return Status::Ok();
      double seconds = std::chrono::duration<double>(now - last_report_).count();
      for (size_t i = 0; i < layers_.size(); i++) {
        if (layers_[i].state == LayerState::kDownloading && seconds > 0.05) {
          // Smoothed rate over report intervals.
          double instant =
              static_cast<double>(layers_[i].current_bytes - rates_[i].last_bytes) / seconds;
          rates_[i].rate = rates_[i].rate == 0 ? instant : 0.7 * rates_[i].rate + 0.3 * instant;
          layers_[i].bytes_per_second = static_cast<int64_t>(rates_[i].rate);
        }
        rates_[i].last_bytes = layers_[i].current_bytes;
      }
      if (seconds > 0.05 || force) last_report_ = now;
      p.layers = layers_;
      p.message = std::move(message_);
      message_.clear();
      changed_ = false;
      p.elapsed = now - start_;
    }
    if (!sink_) return Status::Ok();
    return sink_(p);
  }

 private:
  struct Rate {
    int64_t last_bytes = 0;
    double rate = 0;
  };
  const ProgressSink& sink_;
  std::chrono::steady_clock::time_point start_;
  std::mutex mu_;
  std::vector<LayerProgress> layers_;
  std::vector<Rate> rates_;
  std::string message_;
  bool changed_ = true;
  std::chrono::steady_clock::time_point last_report_{};
};

Puller::Puller(registry::Client* registry, ContentStore* content, ImageStore* images,
               snapshotter::Overlay* snapshots, PullerOptions options)
    : registry_(registry),
      content_(content),
      images_(images),
      snapshots_(snapshots),
      options_(std::move(options)) {}

bool Puller::ClaimChain(const std::string& key) {
  std::unique_lock<std::mutex> lock(chains_mu_);
  bool waited = false;
  while (chains_in_flight_.count(key)) {
    waited = true;
    chains_cv_.wait(lock);
  }
  chains_in_flight_[key] = 1;
  return !waited;
}

void Puller::ReleaseChain(const std::string& key) {
  std::lock_guard<std::mutex> lock(chains_mu_);
  chains_in_flight_.erase(key);
  chains_cv_.notify_all();
}

Result<std::string> Puller::FetchDocument(const Reference& ref, const registry::Descriptor& desc,
                                          const Labels& labels, bool manifest) {
  const std::string ingest_ref = "fetch-" + desc.digest;
  while (true) {
    // From the store when present (verified when it was written).
    if (auto reader = content_->OpenReader(desc.digest); reader.ok()) {
      std::string data(static_cast<size_t>((*reader)->Size()), '\0');
      ASSIGN_OR_RETURN(size_t n, (*reader)->ReadAt(data.data(), data.size(), 0));
      data.resize(n);
      RETURN_IF_ERROR(AddContentLabels(*content_, desc.digest, labels));
      return data;
    }
    Result<std::unique_ptr<ContentWriter>> writer =
        content_->OpenWriter(ingest_ref, desc.digest, desc.size > 0 ? desc.size : kUnknownSize);
    if (writer.status().IsAlreadyExists()) continue;
    if (writer.status().code() == Code::kUnavailable) {
      // Another pull fetches this document: wait for it, then read it from the store.
      Status waited = content_->WaitForContent(
          desc.digest, ingest_ref, std::chrono::steady_clock::now() + kWaitForOtherPull);
      if (waited.ok() || waited.code() == Code::kAborted) continue;
      return waited;
    }
    RETURN_IF_ERROR(writer.status());
    if ((*writer)->Offset() != 0) {
      // Documents are small: start over rather than resume.
      RETURN_IF_ERROR((*writer)->Abort());
      continue;
    }
    std::string data;
    if (manifest) {
      ASSIGN_OR_RETURN(data, registry_->FetchManifest(ref, desc));
    } else {
      ASSIGN_OR_RETURN(data, registry_->FetchBlobBytes(ref, desc));
    }
    RETURN_IF_ERROR((*writer)->Write(data.data(), data.size()));
    Result<ContentInfo> committed = (*writer)->Commit(labels);
    if (committed.status().IsAlreadyExists()) continue;  // labels go on in the store path
    RETURN_IF_ERROR(committed.status());
    return data;
  }
}

Result<Image> Puller::Pull(const PullRequest& request, const ProgressSink& sink) {
  const auto start = std::chrono::steady_clock::now();
  Tracker tracker(sink, start);
  ASSIGN_OR_RETURN(Reference ref, registry::ParseReference(request.reference));
  registry::Platform platform = registry::HostPlatform();
  if (!request.platform.empty()) {
    ASSIGN_OR_RETURN(platform, registry::ParsePlatform(request.platform));
  }
  const std::string name = ref.String();
  const std::string snapshotter =
      request.snapshotter.empty() ? options_.snapshotter_name : request.snapshotter;

  // Resolve and verify.
  Result<registry::Descriptor> resolved = registry_->Resolve(ref);
  if (!resolved.ok()) return resolved.status().WithContext("pull " + name);
  registry::Descriptor target = *resolved;
  tracker.Message(name + ": resolved to " + target.digest);
  RETURN_IF_ERROR(tracker.Report(true));
  RETURN_IF_ERROR(VerifyImage(options_.verifiers, name, target));

  // Index -> the platform's manifest. Each document is fetched once, into the store.
  registry::Descriptor manifest_desc = target;
  std::string manifest_json;
  if (registry::IsIndexMediaType(target.media_type)) {
    ASSIGN_OR_RETURN(std::string index_json, FetchDocument(ref, target, {}, /*manifest=*/true));
    ASSIGN_OR_RETURN(registry::Index index, registry::ParseIndex(index_json));
    Result<registry::Descriptor> chosen = registry::SelectPlatform(index, platform);
    if (!chosen.ok()) return chosen.status().WithContext("pull " + name);
    manifest_desc = *chosen;
    if (manifest_desc.media_type.empty()) {
      manifest_desc.media_type = registry::kMediaTypeOciManifest;
    }
    ASSIGN_OR_RETURN(manifest_json, FetchDocument(ref, manifest_desc, {}, /*manifest=*/true));
    // Only now that the manifest is stored may the index refer to it (GC references
    // never point at a missing blob).
    Labels index_labels = DistributionSource(ref);
    for (size_t i = 0; i < index.manifests.size(); i++) {
      if (index.manifests[i].digest == manifest_desc.digest) {
        index_labels[kGcContentPrefix + std::string("m.") + std::to_string(i)] =
            manifest_desc.digest;
      }
    }
    RETURN_IF_ERROR(AddContentLabels(*content_, target.digest, index_labels));
  } else {
    ASSIGN_OR_RETURN(manifest_json, FetchDocument(ref, manifest_desc, {}, /*manifest=*/true));
  }
  Result<registry::Manifest> manifest = registry::ParseManifest(manifest_json);
  if (!manifest.ok()) return manifest.status().WithContext("pull " + name + ": manifest");

  Labels config_labels = DistributionSource(ref);
  ASSIGN_OR_RETURN(std::string config_json,
                   FetchDocument(ref, manifest->config, config_labels, /*manifest=*/false));
  Result<std::vector<std::string>> diff_ids = registry::ParseDiffIds(config_json);
  if (!diff_ids.ok()) return diff_ids.status().WithContext("pull " + name + ": config");
  if (diff_ids->size() != manifest->layers.size()) {
    return Status::InvalidArgument(
        "pull " + name + ": manifest has " + std::to_string(manifest->layers.size()) +
        " layers but the config lists " + std::to_string(diff_ids->size()) + " diff ids");
  }
  std::vector<std::string> chain_ids = ChainIds(*diff_ids);

  // Keep this pull's blobs from a concurrent garbage collection until the image record
  // refers to them.
  std::vector<std::string> protected_digests = {target.digest, manifest_desc.digest,
                                                manifest->config.digest};
  for (const auto& l : manifest->layers) protected_digests.push_back(l.digest);
  for (const auto& d : protected_digests) {
    content_->Protect(d, std::chrono::steady_clock::now() + kPullProtection);
  }
  struct Unprotect {
    ContentStore* content;
    const std::vector<std::string>& digests;
    ~Unprotect() {
      for (const auto& d : digests) content->Protect(d, std::chrono::steady_clock::now());
    }
  } unprotect{content_, protected_digests};

  // Jobs, and which of them are already done.
  std::atomic<bool> cancelled{false};
  std::vector<Job> jobs(manifest->layers.size());
  size_t present = 0;  // layers [0, present) have their chain snapshot already
  for (size_t i = 0; i < jobs.size(); i++) {
    Job& job = jobs[i];
    job.index = tracker.Add(manifest->layers[i]);
    job.layer = manifest->layers[i];
    job.diff_id = (*diff_ids)[i];
    job.chain_id = chain_ids[i];
    job.parent_chain_id = i == 0 ? "" : chain_ids[i - 1];
    job.snapshotter = snapshotter;
    job.snaps = snapshots_->ForName(snapshotter);
    job.unpack = request.unpack;
    job.lazy = request.unpack && request.lazy && lazy::stargz::HasTocAnnotation(job.layer.annotations);
    job.cancelled = &cancelled;
  }
  if (request.unpack) {
    for (size_t i = jobs.size(); i > 0; i--) {
      auto info = jobs[i - 1].snaps->Stat(jobs[i - 1].chain_id);
      if (info.ok() && info->kind == snapshotter::Kind::kCommitted) {
        present = i;
        break;
      }
    }
  }
  for (size_t i = 0; i < present; i++) tracker.SetState(jobs[i].index, LayerState::kAlreadyExists);
  if (!request.unpack) {
    for (auto& job : jobs) {
      if (content_->Info(job.layer.digest).ok()) {
        tracker.SetState(job.index, LayerState::kAlreadyExists);
        job.finished = true;
      }
    }
  }

  // Workers take layers in order; the pulling thread reports progress and commits.
  int workers = request.max_concurrent_downloads > 0 ? request.max_concurrent_downloads
                                                     : options_.max_concurrent_downloads;
  std::atomic<size_t> next{present};
  std::mutex done_mu;
  std::condition_variable done_cv;
  auto work = [&] {
    while (!cancelled.load()) {
      size_t i = next.fetch_add(1);
      if (i >= jobs.size()) return;
      Job& job = jobs[i];
      if (job.lazy) continue;  // the commit loop mounts it, or pulls it after all
      Status s = job.finished ? Status::Ok() : PullLayer(ref, job, tracker);
      if (!s.ok()) {
        tracker.SetState(job.index, LayerState::kFailed);
        cancelled = true;
      }
      std::lock_guard<std::mutex> lock(done_mu);
      job.status = s;
      job.finished = true;
      done_cv.notify_all();
    }
  };
  std::vector<std::thread> threads;
  size_t remaining = jobs.size() - present;
  for (int t = 0; t < workers && static_cast<size_t>(t) < remaining; t++)
    threads.emplace_back(work);

  // Commit in layer order as layers finish.
  Status failure;
  std::vector<std::string> lowers;  // fs dirs of committed chain, nearest first
  for (size_t i = 0; i < present; i++) {
    Result<std::string> dir = snapshots_->FsPath(snapshotter, jobs[i].chain_id);
    if (dir.ok()) lowers.insert(lowers.begin(), *dir);
  }
  for (size_t i = present; i < jobs.size() && failure.ok(); i++) {
    Job& job = jobs[i];
    if (job.lazy) {
      Status lazy = PrepareLazy(name, job, manifest->layers);
      if (lazy.ok()) {
        tracker.SetState(job.index, LayerState::kLazy);
        Result<std::string> dir = snapshots_->FsPath(snapshotter, job.chain_id);
        if (dir.ok()) lowers.insert(lowers.begin(), *dir);
        continue;
      }
      // Not served lazily: download and unpack it here, then commit as usual.
      Status s = PullLayer(ref, job, tracker);
      if (!s.ok()) tracker.SetState(job.index, LayerState::kFailed);
      std::lock_guard<std::mutex> lock(done_mu);
      job.status = s;
      job.finished = true;
    }
    while (true) {
      {
        std::unique_lock<std::mutex> lock(done_mu);
        done_cv.wait_for(lock, std::chrono::milliseconds(100), [&] { return job.finished; });
        if (job.finished) break;
      }
      Status reported = tracker.Report(false);
      if (!reported.ok()) {
        cancelled = true;
        failure = reported;
        break;
      }
    }
    if (!failure.ok()) break;
    if (!job.status.ok()) {
      failure = job.status;
      break;
    }
    if (!request.unpack) {
      continue;
    }
    if (!job.produced_elsewhere) {
      Status s = FinishLayer(job.dir, lowers, job.unpacked);
      if (s.ok()) {
        int fd = ::open(job.dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (fd >= 0) {
          ::syncfs(fd);
          ::close(fd);
        }
        s = job.snaps->Commit(job.chain_id, job.key, {}, job.parent_chain_id);
        if (s.IsAlreadyExists()) {
          // Another pull committed the same chain meanwhile: ours is a duplicate.
          (void)job.snaps->Remove(job.key);
          s = Status::Ok();
        }
      }
      ReleaseChain(snapshotter + "\n" + job.chain_id);
      if (!s.ok()) {
        (void)job.snaps->Remove(job.key);
        failure = s.WithContext("pull " + name + ": commit layer " + job.layer.digest);
        tracker.SetState(job.index, LayerState::kFailed);
        break;
      }
    }
    tracker.SetState(job.index, LayerState::kDone);
    Result<std::string> dir = snapshots_->FsPath(snapshotter, job.chain_id);
    if (dir.ok()) lowers.insert(lowers.begin(), *dir);
  }
  cancelled = !failure.ok();
  for (auto& t : threads) t.join();
  if (!failure.ok()) {
    // Release what the workers prepared but the commit loop never reached.
    for (auto& job : jobs) {
      if (!job.key.empty() && !job.produced_elsewhere && job.snaps->Stat(job.key).ok()) {
        (void)job.snaps->Remove(job.key);
        ReleaseChain(snapshotter + "\n" + job.chain_id);
      }
    }
    (void)tracker.Report(true);
    return failure.code() == Code::kCancelled ? failure : failure.WithContext("pull " + name);
  }

  // GC references: manifest -> config + layers; config -> top snapshot.
  Labels manifest_labels = DistributionSource(ref);
  manifest_labels[std::string(kGcContentPrefix) + "config"] = manifest->config.digest;
  for (size_t i = 0; i < manifest->layers.size(); i++) {
    if (content_->Info(manifest->layers[i].digest).ok()) {
      manifest_labels[kGcContentPrefix + std::string("l.") + std::to_string(i)] =
          manifest->layers[i].digest;
    }
  }
  RETURN_IF_ERROR(AddContentLabels(*content_, manifest_desc.digest, manifest_labels));
  if (request.unpack && !chain_ids.empty()) {
    RETURN_IF_ERROR(AddContentLabels(*content_, manifest->config.digest,
                              {{kGcSnapshotPrefix + snapshotter, chain_ids.back()}}));
  }

  // The image record, last.
  Image image;
  image.name = name;
  image.target.media_type = target.media_type;
  image.target.digest = target.digest;
  image.target.size_bytes = target.size;
  Result<Image> existing = images_->Get(name);
  Result<Image> stored =
      existing.ok() ? images_->Update(image, {"target"}) : images_->Create(image);
  if (!stored.ok() && stored.status().IsAlreadyExists())
    stored = images_->Update(image, {"target"});
  if (!stored.ok()) return stored.status().WithContext("pull " + name + ": record image");
  tracker.Message(name + ": pulled " + target.digest);
  (void)tracker.Report(true);
  return stored;
}

Status Puller::DownloadToStore(const Reference& ref, Job& job, ContentWriter& writer,
                               Tracker& tracker, const Labels& labels) {
  RETURN_IF_ERROR(registry_->FetchBlob(ref, job.layer, static_cast<uint64_t>(writer.Offset()),
                                       [&](const char* data, size_t n) {
                                         if (job.cancelled->load()) return Cancelled();
                                         RETURN_IF_ERROR(writer.Write(data, n));
                                         tracker.AddBytes(job.index, static_cast<int64_t>(n));
                                         return Status::Ok();
                                       }));
  Result<ContentInfo> committed = writer.Commit(labels);
  if (!committed.ok() && !committed.status().IsAlreadyExists()) return committed.status();
  return Status::Ok();
}

Status Puller::PullLayer(const Reference& ref, Job& job, Tracker& tracker) {
  if (!job.unpack) {
    // Content only.
    tracker.SetState(job.index, LayerState::kDownloading);
    Labels labels = DistributionSource(ref);
    while (true) {
      Result<std::unique_ptr<ContentWriter>> writer =
          content_->OpenWriter("layer-" + job.layer.digest, job.layer.digest, job.layer.size);
      if (writer.status().IsAlreadyExists()) break;
      if (writer.status().code() == Code::kUnavailable) {
        Status waited =
            content_->WaitForContent(job.layer.digest, "layer-" + job.layer.digest,
                                     std::chrono::steady_clock::now() + kWaitForOtherPull);
        if (waited.code() == Code::kAborted) continue;
        RETURN_IF_ERROR(waited);
        break;
      }
      RETURN_IF_ERROR(writer.status());
      tracker.SetBytes(job.index, (*writer)->Offset());
      RETURN_IF_ERROR(DownloadToStore(ref, job, **writer, tracker, labels));
      break;
    }
    tracker.SetState(job.index, LayerState::kDone);
    return Status::Ok();
  }

  // One unpack per chain across concurrent pulls.
  const std::string chain_key = job.snapshotter + "\n" + job.chain_id;
  if (!ClaimChain(chain_key)) {
    auto info = job.snaps->Stat(job.chain_id);
    if (info.ok()) {
      ReleaseChain(chain_key);
      job.produced_elsewhere = true;
      tracker.SetState(job.index, LayerState::kAlreadyExists);
      return Status::Ok();
    }
  }
  Status s = UnpackLayer(ref, job, tracker);
  if (!s.ok()) {
    if (!job.key.empty()) (void)job.snaps->Remove(job.key);
    job.key.clear();
    ReleaseChain(chain_key);
  }
  return s;
}

Status Puller::PrepareLazy(const std::string& image_name, Job& job,
                           const std::vector<registry::Descriptor>& layers) {
  std::string all_layers;
  for (const auto& l : layers) all_layers += (all_layers.empty() ? "" : ",") + l.digest;
  // The labels containerd's CRI plugin sends (snapshotter/layer_source.h), plus the
  // layer's annotations, as containerd passes them.
  Labels labels = job.layer.annotations;
  labels[snapshotter::kLabelTargetSnapshotRef] = job.chain_id;
  labels["containerd.io/snapshot/cri.image-ref"] = image_name;
  labels["containerd.io/snapshot/cri.layer-digest"] = job.layer.digest;
  labels["containerd.io/snapshot/cri.image-layers"] = all_layers;
  const std::string key = ExtractKey(job.chain_id);
  auto prepared = job.snaps->Prepare(key, job.parent_chain_id, labels);
  if (prepared.ok()) {
    // No lazy source took it: the snapshot is an ordinary active one, not needed.
    (void)job.snaps->Remove(key);
    return Status::FailedPrecondition("layer " + job.layer.digest + " is not served lazily");
  }
  if (!prepared.status().IsAlreadyExists()) return prepared.status();
  auto info = job.snaps->Stat(job.chain_id);
  if (!info.ok() || info->kind != snapshotter::Kind::kCommitted) {
    return Status::FailedPrecondition("layer " + job.layer.digest + " was not committed lazily");
  }
  return Status::Ok();
}

Status Puller::UnpackLayer(const Reference& ref, Job& job, Tracker& tracker) {
  Result<Compression> compression = CompressionOfMediaType(job.layer.media_type);
  if (!compression.ok()) return compression.status().WithContext("layer " + job.layer.digest);
  job.key = ExtractKey(job.chain_id);
  // Protect the half-made snapshot from a concurrent garbage collection; the label goes
  // away with the active snapshot when it is committed under the chain id.
  // gc.expire rather than gc.root: if the daemon dies mid-pull, the leftover goes at a
  // later collection.
  std::string expire = FormatRfc3339(std::chrono::system_clock::now() + kPullProtection);
  RETURN_IF_ERROR(job.snaps->Prepare(job.key, "", {{kLabelGcExpire, expire}}).status());
  ASSIGN_OR_RETURN(job.dir, snapshots_->FsPath(job.snapshotter, job.key));

  UnpackOptions unpack_options;
  unpack_options.allow_devices = options_.allow_device_nodes;
  unpack_options.expected_diff_id = job.diff_id;
  unpack_options.compression = *compression;
  const std::string ingest_ref = "layer-" + job.layer.digest;
  Labels labels = DistributionSource(ref);

  while (true) {
    // Unpack from the content store when the blob is there.
    if (content_->Info(job.layer.digest).ok()) {
      tracker.SetState(job.index, LayerState::kExtracting);
      ASSIGN_OR_RETURN(std::unique_ptr<ContentReader> reader,
                       content_->OpenReader(job.layer.digest));
      auto source = NewContentSource(std::move(reader));
      ASSIGN_OR_RETURN(job.unpacked, transfer::UnpackLayer(*source, job.dir, unpack_options));
      tracker.SetState(job.index, LayerState::kVerifying);
      return Status::Ok();
    }
    Result<std::unique_ptr<ContentWriter>> writer =
        content_->OpenWriter(ingest_ref, job.layer.digest, job.layer.size);
    if (writer.status().IsAlreadyExists()) continue;
    if (writer.status().code() == Code::kUnavailable) {
      // Another pull is downloading this blob: wait for it, then unpack from the store.
      tracker.SetState(job.index, LayerState::kWaiting);
      Status waited = content_->WaitForContent(
          job.layer.digest, ingest_ref, std::chrono::steady_clock::now() + kWaitForOtherPull);
      if (waited.ok() || waited.code() == Code::kAborted) continue;
      return waited;
    }
    RETURN_IF_ERROR(writer.status());
    ContentWriter& w = **writer;
    tracker.SetState(job.index, LayerState::kDownloading);
    tracker.SetBytes(job.index, w.Offset());

    if (w.Offset() > 0) {
      spdlog::info("resuming download of {} at byte {} of {}", job.layer.digest, w.Offset(),
                   job.layer.size);
      // Resuming an interrupted download: finish it into the store first (the bytes
      // already there are not in memory), then unpack from the store.
      RETURN_IF_ERROR(DownloadToStore(ref, job, w, tracker, labels));
      continue;
    }

    // Download and unpack at once: the download thread writes every piece to the
    // ingest and into a pipe the unpacker reads.
    Pipe pipe(kPipeCapacity);
    Status download_status;
    std::thread download([&] {
      Status s = registry_->FetchBlob(ref, job.layer, 0, [&](const char* data, size_t n) {
        if (job.cancelled->load()) return Cancelled();
        RETURN_IF_ERROR(w.Write(data, n));
        tracker.AddBytes(job.index, static_cast<int64_t>(n));
        return pipe.Write(data, n);
      });
      if (s.ok()) {
        Result<ContentInfo> committed = w.Commit(labels);
        if (!committed.ok() && !committed.status().IsAlreadyExists()) s = committed.status();
      }
      download_status = s;
      pipe.CloseWrite(s);
    });
    Result<UnpackResult> unpacked = [&]() -> Result<UnpackResult> {
      ASSIGN_OR_RETURN(UnpackResult r, transfer::UnpackLayer(pipe, job.dir, unpack_options));
      // UnpackLayer reads the blob to its end; drain defensively so that the download
      // always runs to completion and its commit status arrives.
      tracker.SetState(job.index, LayerState::kExtracting);
      char sink[64 << 10];
      while (true) {
        ASSIGN_OR_RETURN(size_t n, pipe.Read(sink, sizeof(sink)));
        if (n == 0) break;
      }
      return r;
    }();
    if (!unpacked.ok()) pipe.CloseRead(unpacked.status());
    download.join();
    if (!download_status.ok()) {
      if (download_status.code() == Code::kDataLoss) (void)w.Abort();
      return download_status;
    }
    if (!unpacked.ok()) {
      // A hostile or corrupt layer: its blob verified, but it must not be used.
      return unpacked.status().WithContext("layer " + job.layer.digest);
    }
    job.unpacked = std::move(*unpacked);
    tracker.SetState(job.index, LayerState::kVerifying);
    return Status::Ok();
  }
}

Result<ImageLayout> Puller::Layout(const Image& image, const std::string& platform_text) {
  registry::Platform platform = registry::HostPlatform();
  if (!platform_text.empty()) {
    ASSIGN_OR_RETURN(platform, registry::ParsePlatform(platform_text));
  }
  auto read = [&](const std::string& digest) { return ReadContent(*content_, digest); };
  ImageLayout layout;
  layout.target.media_type = image.target.media_type;
  layout.target.digest = image.target.digest;
  layout.target.size = image.target.size_bytes;
  layout.manifest = layout.target;
  if (registry::IsIndexMediaType(layout.target.media_type)) {
    ASSIGN_OR_RETURN(std::string index_json, read(layout.target.digest));
    ASSIGN_OR_RETURN(registry::Index index, registry::ParseIndex(index_json));
    ASSIGN_OR_RETURN(layout.manifest, registry::SelectPlatform(index, platform));
  }
  ASSIGN_OR_RETURN(std::string manifest_json, read(layout.manifest.digest));
  ASSIGN_OR_RETURN(layout.parsed, registry::ParseManifest(manifest_json));
  ASSIGN_OR_RETURN(layout.config_json, read(layout.parsed.config.digest));
  ASSIGN_OR_RETURN(layout.diff_ids, registry::ParseDiffIds(layout.config_json));
  layout.chain_ids = ChainIds(layout.diff_ids);
  return layout;
}

}  // namespace strata::transfer
