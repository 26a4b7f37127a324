// OCI image-spec and Docker schema 2 documents: descriptors, image manifests, indexes
// (manifest lists), image configs' rootfs, and platform matching.
//
// Media types understood:
//   index:    application/vnd.oci.image.index.v1+json,
//             application/vnd.docker.distribution.manifest.list.v2+json
//   manifest: application/vnd.oci.image.manifest.v1+json,
//             application/vnd.docker.distribution.manifest.v2+json
// Documents without a mediaType field are classified by their shape (OCI allows that).
#pragma once

#include <map>
#include <optional>
#include <string>
#include <vector>

#include "core/status.h"

namespace strata::registry {

inline constexpr char kMediaTypeOciIndex[] = "application/vnd.oci.image.index.v1+json";
inline constexpr char kMediaTypeOciManifest[] = "application/vnd.oci.image.manifest.v1+json";
inline constexpr char kMediaTypeOciConfig[] = "application/vnd.oci.image.config.v1+json";
inline constexpr char kMediaTypeDockerList[] =
    "application/vnd.docker.distribution.manifest.list.v2+json";
inline constexpr char kMediaTypeDockerManifest[] =
    "application/vnd.docker.distribution.manifest.v2+json";
inline constexpr char kMediaTypeDockerConfig[] = "application/vnd.docker.container.image.v1+json";

// The Accept header value for manifest requests: every manifest and index type.
const std::string& ManifestAcceptHeader();

bool IsIndexMediaType(const std::string& media_type);
bool IsManifestMediaType(const std::string& media_type);

struct Platform {
  std::string os;            // "linux"
  std::string architecture;  // "amd64", "arm64", "arm"
  std::string variant;       // "v8", "v7", or ""
  std::string os_version;

  // "linux/amd64", "linux/arm64/v8".
  std::string String() const;
};

// Parses "os/arch[/variant]" (or "arch" alone, meaning linux), normalising aliases
// as containerd does (x86_64 -> amd64, aarch64 -> arm64, arm64 default variant v8,
// arm default variant v7). InvalidArgument otherwise.
Result<Platform> ParsePlatform(const std::string& text);

// The platform this process runs on (linux/<machine arch>).
Platform HostPlatform();

// Whether an index entry's platform `candidate` can run on `wanted` (same OS and
// architecture; variant equal, or arm64 "" vs "v8" treated as the same).
bool PlatformMatches(const Platform& wanted, const Platform& candidate);

struct Descriptor {
  std::string media_type;
  std::string digest;
  int64_t size = 0;
  std::vector<std::string> urls;
  std::map<std::string, std::string> annotations;
  std::optional<Platform> platform;
};

struct Manifest {
  std::string media_type;
  Descriptor config;
  std::vector<Descriptor> layers;
  std::map<std::string, std::string> annotations;
};

struct Index {
  std::string media_type;
  std::vector<Descriptor> manifests;
};

// Parses a manifest. InvalidArgument naming what is wrong (not JSON, missing config,
// a descriptor with a bad digest or negative size, ...).
Result<Manifest> ParseManifest(const std::string& json);
// Parses an index / manifest list.
Result<Index> ParseIndex(const std::string& json);
// The media type of a manifest-or-index document: its mediaType field, else guessed
// from its shape ("manifests" -> OCI index, "config"+"layers" -> OCI manifest).
Result<std::string> DetectMediaType(const std::string& json);

// The entry of `index` for `platform`: the first exact match (variant included), else
// the first compatible one. NotFound listing the platforms the index offers.
Result<Descriptor> SelectPlatform(const Index& index, const Platform& platform);

// Serialises a descriptor as OCI JSON (mediaType, digest, size, urls, annotations,
// platform) — what verifier plugins receive on stdin.
std::string DescriptorJson(const Descriptor& descriptor);

// From an image config: rootfs.diff_ids, in layer order. InvalidArgument if absent.
Result<std::vector<std::string>> ParseDiffIds(const std::string& config_json);

}  // namespace strata::registry
