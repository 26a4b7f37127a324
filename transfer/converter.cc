#include "transfer/converter.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "core/digest.h"
#include "core/fs.h"
#include "lazy/stargz/toc.h"
#include "registry/manifest.h"
#include "transfer/byte_source.h"
#include "transfer/content_source.h"
#include "transfer/decompress.h"

namespace strata::transfer {
namespace {

using nlohmann::json;

constexpr char kGcContentPrefix[] = "containerd.io/gc.ref.content.";
constexpr char kOciLayerGzip[] = "application/vnd.oci.image.layer.v1.tar+gzip";
constexpr char kOciConfig[] = "application/vnd.oci.image.config.v1+json";
constexpr char kRefNameAnnotation[] = "org.opencontainers.image.ref.name";

std::string BlobPath(const std::string& dir, const std::string& digest) {
  size_t colon = digest.find(':');
  return dir + "/blobs/" + digest.substr(0, colon) + "/" + digest.substr(colon + 1);
}

void Say(const ProgressSink& progress, const std::string& message) {
  if (!progress) return;
  PullProgress p;
  p.message = message;
  (void)progress(p);
}

// Copies blob `desc` from layout `dir` into the content store, verified.
Status ImportBlob(ContentStore& content, const std::string& dir, const registry::Descriptor& desc,
                  const Labels& labels) {
  RETURN_IF_ERROR(ValidateDigest(desc.digest));
  Result<std::unique_ptr<ContentWriter>> writer = content.OpenWriter(
      "import-" + desc.digest, desc.digest, desc.size > 0 ? desc.size : kUnknownSize);
  if (writer.status().IsAlreadyExists()) return AddContentLabels(content, desc.digest, labels);
  RETURN_IF_ERROR(writer.status());
  const std::string path = BlobPath(dir, desc.digest);
  ASSIGN_OR_RETURN(std::unique_ptr<ByteSource> in, OpenFileSource(path));
  if ((*writer)->Offset() != 0) {
    RETURN_IF_ERROR((*writer)->Abort());
    ASSIGN_OR_RETURN(writer, content.OpenWriter("import-" + desc.digest, desc.digest,
                                                desc.size > 0 ? desc.size : kUnknownSize));
  }
  std::string buf(1 << 20, '\0');
  while (true) {
    ASSIGN_OR_RETURN(size_t n, in->Read(buf.data(), buf.size()));
    if (n == 0) break;
    RETURN_IF_ERROR((*writer)->Write(buf.data(), n));
  }
  Result<ContentInfo> committed = (*writer)->Commit(labels);
  if (!committed.ok()) {
    (void)(*writer)->Abort();
    return committed.status().WithContext("OCI layout " + dir + ": blob " + path);
  }
  return Status::Ok();
}

// The image at "oci:DIR[:TAG]", its blobs copied into the store. The returned record
// is not stored.
Result<Image> ImportOciLayout(ContentStore& content, const std::string& dir, const std::string& tag,
                              const std::string& platform_text) {
  std::ifstream in(dir + "/index.json");
  if (!in) return Status::NotFound("OCI layout " + dir + ": no index.json");
  std::stringstream text;
  text << in.rdbuf();
  ASSIGN_OR_RETURN(registry::Index index, registry::ParseIndex(text.str()));
  std::vector<registry::Descriptor> candidates;
  for (const auto& m : index.manifests) {
    auto name = m.annotations.find(kRefNameAnnotation);
    if (tag.empty() || (name != m.annotations.end() && name->second == tag))
      candidates.push_back(m);
  }
  if (candidates.empty()) {
    return Status::NotFound("OCI layout " + dir + " has no image" +
                            (tag.empty() ? std::string() : " tagged " + tag));
  }
  if (candidates.size() > 1 && tag.empty()) {
    return Status::InvalidArgument("OCI layout " + dir + " holds " +
                                   std::to_string(candidates.size()) +
                                   " images: name one with oci:DIR:TAG");
  }
  registry::Descriptor top = candidates.front();
  registry::Descriptor manifest_desc = top;
  if (registry::IsIndexMediaType(top.media_type)) {
    RETURN_IF_ERROR(ImportBlob(content, dir, top, {}));
    ASSIGN_OR_RETURN(std::string nested_json, ReadContent(content, top.digest));
    ASSIGN_OR_RETURN(registry::Index nested, registry::ParseIndex(nested_json));
    registry::Platform platform = registry::HostPlatform();
    if (!platform_text.empty()) {
      ASSIGN_OR_RETURN(platform, registry::ParsePlatform(platform_text));
    }
    ASSIGN_OR_RETURN(manifest_desc, registry::SelectPlatform(nested, platform));
    top = manifest_desc;  // only this platform is imported
  }
  if (manifest_desc.media_type.empty()) manifest_desc.media_type = registry::kMediaTypeOciManifest;
  RETURN_IF_ERROR(ImportBlob(content, dir, manifest_desc, {}));
  ASSIGN_OR_RETURN(std::string manifest_json, ReadContent(content, manifest_desc.digest));
  ASSIGN_OR_RETURN(registry::Manifest manifest, registry::ParseManifest(manifest_json));
  RETURN_IF_ERROR(ImportBlob(content, dir, manifest.config, {}));
  Labels refs{{std::string(kGcContentPrefix) + "config", manifest.config.digest}};
  for (size_t i = 0; i < manifest.layers.size(); i++) {
    RETURN_IF_ERROR(ImportBlob(content, dir, manifest.layers[i], {}));
    refs[std::string(kGcContentPrefix) + "l." + std::to_string(i)] = manifest.layers[i].digest;
  }
  RETURN_IF_ERROR(AddContentLabels(content, manifest_desc.digest, refs));
  Image image;
  image.name = "oci:" + dir + (tag.empty() ? "" : ":" + tag);
  image.target.media_type = manifest_desc.media_type;
  image.target.digest = manifest_desc.digest;
  image.target.size_bytes = manifest_desc.size;
  return image;
}

// Copies blob `digest` from the store into layout `dir` (unless present).
Status ExportBlob(ContentStore& content, const std::string& dir, const std::string& digest) {
  const std::string path = BlobPath(dir, digest);
  if (fs::Exists(path)) return Status::Ok();
  RETURN_IF_ERROR(fs::MakeDirs(path.substr(0, path.rfind('/')), 0755));
  ASSIGN_OR_RETURN(std::unique_ptr<ContentReader> reader, content.OpenReader(digest));
  const std::string tmp = path + ".tmp-" + RandomHex(8);
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
  if (fd < 0) return Status::FromErrno(errno, "create " + tmp);
  std::string buf(1 << 20, '\0');
  Status st;
  for (int64_t offset = 0; offset < reader->Size() && st.ok();) {
    Result<size_t> n = reader->ReadAt(buf.data(), buf.size(), offset);
    if (!n.ok()) {
      st = n.status();
      break;
    }
    if (*n == 0) {
      st = Status::DataLoss("blob " + digest + " ended early");
      break;
    }
    for (size_t done = 0; done < *n;) {
      ssize_t w = ::write(fd, buf.data() + done, *n - done);
      if (w < 0) {
        if (errno == EINTR) continue;
        st = Status::FromErrno(errno, "write " + tmp);
        break;
      }
      done += static_cast<size_t>(w);
    }
    offset += static_cast<int64_t>(*n);
  }
  if (st.ok() && ::fsync(fd) != 0) st = Status::FromErrno(errno, "fsync " + tmp);
  ::close(fd);
  if (st.ok() && ::rename(tmp.c_str(), path.c_str()) != 0)
    st = Status::FromErrno(errno, "rename " + tmp);
  if (!st.ok()) ::unlink(tmp.c_str());
  return st;
}

// Writes the image whose manifest is `manifest_desc` into layout `dir`, tagged `tag`.
Status ExportOciLayout(ContentStore& content, const registry::Descriptor& manifest_desc,
                       const registry::Manifest& manifest, const std::string& dir,
                       const std::string& tag) {
  RETURN_IF_ERROR(fs::MakeDirs(dir, 0755));
  for (const auto& layer : manifest.layers) RETURN_IF_ERROR(ExportBlob(content, dir, layer.digest));
  RETURN_IF_ERROR(ExportBlob(content, dir, manifest.config.digest));
  RETURN_IF_ERROR(ExportBlob(content, dir, manifest_desc.digest));
  RETURN_IF_ERROR(fs::WriteFileAtomic(dir + "/oci-layout", "{\"imageLayoutVersion\":\"1.0.0\"}"));
  json index = {{"schemaVersion", 2},
                {"mediaType", "application/vnd.oci.image.index.v1+json"},
                {"manifests", json::array()}};
  if (std::ifstream old(dir + "/index.json"); old) {
    json parsed = json::parse(old, nullptr, false);
    if (parsed.is_object() && parsed.contains("manifests") && parsed["manifests"].is_array()) {
      for (const auto& m : parsed["manifests"]) {
        // The tag moves to the new image; other entries stay.
        bool same_tag = m.contains("annotations") && m["annotations"].is_object() &&
                        m["annotations"].value(kRefNameAnnotation, "") == tag;
        if (!(same_tag && !tag.empty())) index["manifests"].push_back(m);
      }
    }
  }
  json entry = json::parse(registry::DescriptorJson(manifest_desc));
  if (!tag.empty()) entry["annotations"][kRefNameAnnotation] = tag;
  index["manifests"].push_back(entry);
  return fs::WriteFileAtomic(dir + "/index.json", index.dump());
}

// Converts one layer into the store; returns its new descriptor and diff id.
Result<std::pair<registry::Descriptor, std::string>> ConvertLayer(
    ContentStore& content, const registry::Descriptor& layer,
    const lazy::stargz::EstargzWriterOptions& options, ConvertResult& result) {
  ASSIGN_OR_RETURN(Compression compression, CompressionOfMediaType(layer.media_type));
  ASSIGN_OR_RETURN(std::unique_ptr<ContentReader> reader, content.OpenReader(layer.digest));
  ASSIGN_OR_RETURN(std::unique_ptr<ByteSource> input,
                   Decompress(NewContentSource(std::move(reader)), compression));
  const std::string ingest = "convert-" + layer.digest + "-" + RandomHex(8);
  ASSIGN_OR_RETURN(std::unique_ptr<ContentWriter> writer,
                   content.OpenWriter(ingest, "", kUnknownSize));
  Result<lazy::stargz::EstargzResult> converted = lazy::stargz::ConvertLayerToEstargz(
      *input, [&](const char* data, size_t n) { return writer->Write(data, n); }, options);
  if (!converted.ok()) {
    (void)writer->Abort();
    return converted.status().WithContext("convert layer " + layer.digest);
  }
  Result<ContentInfo> committed = writer->Commit({});
  if (committed.status().IsAlreadyExists()) {
    committed = content.Info(converted->blob_digest);  // converted before
  }
  if (!committed.ok()) {
    (void)writer->Abort();
    return committed.status().WithContext("store converted layer " + layer.digest);
  }
  if (committed->digest != converted->blob_digest) {
    return Status::DataLoss("converted layer " + layer.digest + ": stored " + committed->digest +
                            ", written " + converted->blob_digest);
  }
  for (const auto& m : converted->missing_prioritized_files) {
    result.missing_prioritized_files.push_back(m);
  }
  registry::Descriptor out;
  out.media_type = kOciLayerGzip;
  out.digest = converted->blob_digest;
  out.size = static_cast<int64_t>(converted->blob_size);
  out.annotations[std::string(lazy::stargz::kTocDigestAnnotation)] = converted->toc_digest;
  out.annotations[std::string(lazy::stargz::kUncompressedSizeAnnotation)] =
      std::to_string(converted->uncompressed_size);
  result.source_bytes += static_cast<uint64_t>(layer.size);
  result.estargz_bytes += converted->blob_size;
  return std::make_pair(out, converted->diff_id);
}

}  // namespace

std::optional<std::pair<std::string, std::string>> ParseOciLayoutSpec(const std::string& spec) {
  if (spec.rfind("oci:", 0) != 0) return std::nullopt;
  std::string rest = spec.substr(4);
  std::string tag;
  size_t colon = rest.rfind(':');
  if (colon != std::string::npos && rest.find('/', colon) == std::string::npos) {
    tag = rest.substr(colon + 1);
    rest = rest.substr(0, colon);
  }
  return std::make_pair(rest, tag);
}

Result<ConvertResult> ConvertImage(Puller& puller, ContentStore& content, ImageStore& images,
                                   const ConvertRequest& request, const ProgressSink& progress) {
  if (request.source.empty() || request.target.empty()) {
    return Status::InvalidArgument("convert needs a source and a target image");
  }
  // 1. The source image.
  Image source;
  if (auto layout_spec = ParseOciLayoutSpec(request.source)) {
    if (layout_spec->first.empty()) return Status::InvalidArgument("empty OCI layout directory");
    ASSIGN_OR_RETURN(source, ImportOciLayout(content, layout_spec->first, layout_spec->second,
                                             request.platform));
  } else {
    Result<Image> stored = images.Get(request.source);
    if (stored.ok()) {
      source = *stored;
    } else if (stored.status().IsNotFound()) {
      Say(progress, "pulling " + request.source);
      PullRequest pull;
      pull.reference = request.source;
      pull.platform = request.platform;
      pull.unpack = false;
      ASSIGN_OR_RETURN(source, puller.Pull(pull, progress));
    } else {
      return stored.status();
    }
  }
  ASSIGN_OR_RETURN(ImageLayout layout, puller.Layout(source, request.platform));

  // 2. The layers.
  ConvertResult result;
  registry::Manifest converted = layout.parsed;
  std::vector<std::string> diff_ids = layout.diff_ids;
  for (size_t i = 0; i < converted.layers.size(); i++) {
    const registry::Descriptor& layer = layout.parsed.layers[i];
    if (layer.annotations.count(std::string(lazy::stargz::kTocDigestAnnotation)) > 0) {
      result.kept_layers++;
      continue;
    }
    Say(progress, "converting layer " + std::to_string(i + 1) + "/" +
                      std::to_string(converted.layers.size()) + " " + layer.digest);
    ASSIGN_OR_RETURN(auto out, ConvertLayer(content, layer, request.estargz, result));
    converted.layers[i] = out.first;
    diff_ids[i] = out.second;
    result.converted_layers++;
  }

  // 3. Config with the new diff ids, and the manifest.
  json config = json::parse(layout.config_json, nullptr, false);
  if (!config.is_object()) return Status::InvalidArgument("the source image's config is not JSON");
  config["rootfs"]["diff_ids"] = diff_ids;
  const std::string config_json = config.dump();
  ASSIGN_OR_RETURN(ContentInfo config_info,
                   WriteContent(content, "convert-config-" + RandomHex(8), config_json, {}));
  converted.config.media_type = kOciConfig;
  converted.config.digest = config_info.digest;
  converted.config.size = config_info.size_bytes;

  json manifest = {{"schemaVersion", 2},
                   {"mediaType", registry::kMediaTypeOciManifest},
                   {"config", json::parse(registry::DescriptorJson(converted.config))},
                   {"layers", json::array()}};
  for (const auto& l : converted.layers) {
    manifest["layers"].push_back(json::parse(registry::DescriptorJson(l)));
  }
  if (!converted.annotations.empty()) manifest["annotations"] = converted.annotations;
  const std::string manifest_json = manifest.dump();
  Labels refs{{std::string(kGcContentPrefix) + "config", converted.config.digest}};
  for (size_t i = 0; i < converted.layers.size(); i++) {
    refs[std::string(kGcContentPrefix) + "l." + std::to_string(i)] = converted.layers[i].digest;
  }
  ASSIGN_OR_RETURN(ContentInfo manifest_info,
                   WriteContent(content, "convert-manifest-" + RandomHex(8), manifest_json, refs));
  registry::Descriptor manifest_desc;
  manifest_desc.media_type = registry::kMediaTypeOciManifest;
  manifest_desc.digest = manifest_info.digest;
  manifest_desc.size = manifest_info.size_bytes;

  // 4. The target.
  result.image.target.media_type = manifest_desc.media_type;
  result.image.target.digest = manifest_desc.digest;
  result.image.target.size_bytes = manifest_desc.size;
  if (auto layout_spec = ParseOciLayoutSpec(request.target)) {
    if (layout_spec->first.empty()) return Status::InvalidArgument("empty OCI layout directory");
    RETURN_IF_ERROR(ExportOciLayout(content, manifest_desc, converted, layout_spec->first,
                                    layout_spec->second));
    result.image.name = request.target;
  } else {
    ASSIGN_OR_RETURN(registry::Reference ref, registry::ParseReference(request.target));
    result.image.name = ref.String();
    Result<Image> existing = images.Get(result.image.name);
    Result<Image> stored =
        existing.ok() ? images.Update(result.image, {"target"}) : images.Create(result.image);
    if (!stored.ok()) return stored.status().WithContext("record image " + result.image.name);
    result.image = *stored;
  }
  Say(progress, "converted " + request.source + " to " + result.image.name + " (" +
                    std::to_string(result.converted_layers) + " layers converted, " +
                    std::to_string(result.kept_layers) + " eStargz already)");
  return result;
}

}  // namespace strata::transfer
