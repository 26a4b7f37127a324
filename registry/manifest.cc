#include "registry/manifest.h"

#include <sys/utsname.h>

#include <nlohmann/json.hpp>

#include "core/digest.h"
#include "core/quote.h"

namespace strata::registry {
namespace {

using nlohmann::json;

Result<json> ParseObject(const std::string& text, const char* what) {
  json doc = json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (doc.is_discarded()) return Status::InvalidArgument(std::string(what) + " is not valid JSON");
  if (!doc.is_object()) return Status::InvalidArgument(std::string(what) + " is not a JSON object");
  return doc;
}

std::string StringField(const json& obj, const char* name) {
  auto it = obj.find(name);
  return it != obj.end() && it->is_string() ? it->get<std::string>() : std::string();
}

std::map<std::string, std::string> StringMap(const json& obj, const char* name) {
  std::map<std::string, std::string> out;
  auto it = obj.find(name);
  if (it == obj.end() || !it->is_object()) return out;
  for (const auto& [k, v] : it->items()) {
    if (v.is_string()) out[k] = v.get<std::string>();
  }
  return out;
}

Result<Descriptor> ParseDescriptor(const json& obj, const std::string& where) {
  if (!obj.is_object()) return Status::InvalidArgument(where + " is not an object");
  Descriptor d;
  d.media_type = StringField(obj, "mediaType");
  d.digest = StringField(obj, "digest");
  Status valid = ValidateDigest(d.digest);
  if (!valid.ok()) return valid.WithContext(where);
  auto size = obj.find("size");
  if (size == obj.end() || !size->is_number_integer() || size->get<int64_t>() < 0) {
    return Status::InvalidArgument(where + " has no valid size");
  }
  d.size = size->get<int64_t>();
  auto urls = obj.find("urls");
  if (urls != obj.end() && urls->is_array()) {
    for (const auto& u : *urls) {
      if (u.is_string()) d.urls.push_back(u.get<std::string>());
    }
  }
  d.annotations = StringMap(obj, "annotations");
  auto platform = obj.find("platform");
  if (platform != obj.end() && platform->is_object()) {
    Platform p;
    p.os = StringField(*platform, "os");
    p.architecture = StringField(*platform, "architecture");
    p.variant = StringField(*platform, "variant");
    p.os_version = StringField(*platform, "os.version");
    d.platform = p;
  }
  return d;
}

std::string NormaliseArch(const std::string& arch, std::string* variant) {
  if (arch == "x86_64" || arch == "x86-64") return "amd64";
  if (arch == "aarch64") {
    if (variant->empty()) *variant = "v8";
    return "arm64";
  }
  if (arch == "arm64") {
    if (variant->empty()) *variant = "v8";
    return arch;
  }
  if (arch == "armhf") {
    *variant = "v7";
    return "arm";
  }
  if (arch == "armel") {
    *variant = "v6";
    return "arm";
  }
  if (arch == "arm" && variant->empty()) *variant = "v7";
  if (arch == "i386" || arch == "i686") return "386";
  return arch;
}

Platform Normalised(Platform p) {
  p.architecture = NormaliseArch(p.architecture, &p.variant);
  return p;
}

}  // namespace

const std::string& ManifestAcceptHeader() {
  static const std::string accept = std::string(kMediaTypeOciIndex) + ", " + kMediaTypeOciManifest +
                                    ", " + kMediaTypeDockerList + ", " + kMediaTypeDockerManifest +
                                    ", */*;q=0.1";
  return accept;
}

bool IsIndexMediaType(const std::string& t) {
  return t == kMediaTypeOciIndex || t == kMediaTypeDockerList;
}

bool IsManifestMediaType(const std::string& t) {
  return t == kMediaTypeOciManifest || t == kMediaTypeDockerManifest;
}

std::string Platform::String() const {
  std::string s = os + "/" + architecture;
  if (!variant.empty()) s += "/" + variant;
  return s;
}

Result<Platform> ParsePlatform(const std::string& text) {
  std::vector<std::string> parts;
  for (size_t b = 0;;) {
    size_t e = text.find('/', b);
    parts.push_back(text.substr(b, e == std::string::npos ? std::string::npos : e - b));
    if (e == std::string::npos) break;
    b = e + 1;
  }
  Platform p;
  if (parts.size() == 1) {
    p.os = "linux";
    p.architecture = parts[0];
  } else if (parts.size() <= 3) {
    p.os = parts[0];
    p.architecture = parts[1];
    if (parts.size() == 3) p.variant = parts[2];
  }
  for (const auto& part : parts) {
    if (part.empty() || part.size() > 64 ||
        part.find_first_not_of("abcdefghijklmnopqrstuvwxyz0123456789_-.") != std::string::npos) {
      p.os.clear();
    }
  }
  if (p.os.empty() || p.architecture.empty()) {
    return Status::InvalidArgument("invalid platform " + Quote(text) +
                                   ": expected os/architecture[/variant], e.g. linux/amd64");
  }
  return Normalised(p);
}

Platform HostPlatform() {
  utsname u{};
  uname(&u);
  Platform p;
  p.os = "linux";
  p.architecture = u.machine;
  return Normalised(p);
}

bool PlatformMatches(const Platform& wanted, const Platform& candidate) {
  Platform w = Normalised(wanted);
  Platform c = Normalised(candidate);
  if (w.os != c.os || w.architecture != c.architecture) return false;
  if (w.variant.empty() || c.variant.empty()) return true;
  if (w.variant == c.variant) return true;
  // An armv7 host runs v6 and v5 images; arm64 v8 runs only v8.
  if (w.architecture == "arm" && !w.variant.empty() && !c.variant.empty()) {
    return c.variant < w.variant;
  }
  return false;
}

Result<std::string> DetectMediaType(const std::string& text) {
  ASSIGN_OR_RETURN(json doc, ParseObject(text, "manifest"));
  std::string media_type = StringField(doc, "mediaType");
  if (!media_type.empty()) return media_type;
  if (doc.contains("manifests")) return std::string(kMediaTypeOciIndex);
  if (doc.contains("config") && doc.contains("layers")) return std::string(kMediaTypeOciManifest);
  if (doc.value("schemaVersion", 0) == 1) {
    return Status::InvalidArgument(
        "Docker schema 1 manifests are not supported (deprecated since 2017; push the "
        "image again with a current client)");
  }
  return Status::InvalidArgument("document is neither an image manifest nor an index");
}

Result<Manifest> ParseManifest(const std::string& text) {
  ASSIGN_OR_RETURN(json doc, ParseObject(text, "manifest"));
  Manifest m;
  ASSIGN_OR_RETURN(m.media_type, DetectMediaType(text));
  if (!IsManifestMediaType(m.media_type)) {
    return Status::InvalidArgument("expected an image manifest, got media type " +
                                   Quote(m.media_type));
  }
  auto config = doc.find("config");
  if (config == doc.end()) return Status::InvalidArgument("manifest has no config");
  ASSIGN_OR_RETURN(m.config, ParseDescriptor(*config, "manifest config"));
  auto layers = doc.find("layers");
  if (layers == doc.end() || !layers->is_array()) {
    return Status::InvalidArgument("manifest has no layers array");
  }
  for (size_t i = 0; i < layers->size(); i++) {
    ASSIGN_OR_RETURN(Descriptor d,
                     ParseDescriptor((*layers)[i], "manifest layer " + std::to_string(i)));
    m.layers.push_back(std::move(d));
  }
  m.annotations = StringMap(doc, "annotations");
  return m;
}

Result<Index> ParseIndex(const std::string& text) {
  ASSIGN_OR_RETURN(json doc, ParseObject(text, "index"));
  Index index;
  ASSIGN_OR_RETURN(index.media_type, DetectMediaType(text));
  if (!IsIndexMediaType(index.media_type)) {
    return Status::InvalidArgument("expected an image index, got media type " +
                                   Quote(index.media_type));
  }
  auto manifests = doc.find("manifests");
  if (manifests == doc.end() || !manifests->is_array()) {
    return Status::InvalidArgument("index has no manifests array");
  }
  for (size_t i = 0; i < manifests->size(); i++) {
    ASSIGN_OR_RETURN(Descriptor d,
                     ParseDescriptor((*manifests)[i], "index entry " + std::to_string(i)));
    index.manifests.push_back(std::move(d));
  }
  return index;
}

Result<Descriptor> SelectPlatform(const Index& index, const Platform& platform) {
  const Descriptor* compatible = nullptr;
  std::string offered;
  for (const auto& d : index.manifests) {
    if (!d.platform) continue;
    // Attestation manifests (BuildKit) carry platform unknown/unknown.
    if (!offered.empty()) offered += ", ";
    offered += d.platform->String();
    Platform w = Normalised(platform);
    Platform c = Normalised(*d.platform);
    if (w.os == c.os && w.architecture == c.architecture && w.variant == c.variant) return d;
    if (compatible == nullptr && PlatformMatches(platform, *d.platform)) compatible = &d;
  }
  if (compatible != nullptr) return *compatible;
  return Status::NotFound("no image for platform " + platform.String() + " (the index offers " +
                          (offered.empty() ? "no platforms" : offered) + ")");
}

std::string DescriptorJson(const Descriptor& d) {
  json out = json::object();
  out["mediaType"] = d.media_type;
  out["digest"] = d.digest;
  out["size"] = d.size;
  if (!d.urls.empty()) out["urls"] = d.urls;
  if (!d.annotations.empty()) out["annotations"] = d.annotations;
  if (d.platform) {
    json p = {{"os", d.platform->os}, {"architecture", d.platform->architecture}};
    if (!d.platform->variant.empty()) p["variant"] = d.platform->variant;
    if (!d.platform->os_version.empty()) p["os.version"] = d.platform->os_version;
    out["platform"] = p;
  }
  return out.dump();
}

Result<std::vector<std::string>> ParseDiffIds(const std::string& config_json) {
  ASSIGN_OR_RETURN(json doc, ParseObject(config_json, "image config"));
  auto rootfs = doc.find("rootfs");
  if (rootfs == doc.end() || !rootfs->is_object()) {
    return Status::InvalidArgument("image config has no rootfs");
  }
  auto ids = rootfs->find("diff_ids");
  if (ids == rootfs->end() || !ids->is_array()) {
    return Status::InvalidArgument("image config has no rootfs.diff_ids");
  }
  std::vector<std::string> out;
  for (const auto& id : *ids) {
    if (!id.is_string()) return Status::InvalidArgument("image config diff_id is not a string");
    Status valid = ValidateDigest(id.get<std::string>());
    if (!valid.ok()) return valid.WithContext("image config diff_id");
    out.push_back(id.get<std::string>());
  }
  return out;
}

}  // namespace strata::registry
