// Image conversion: `strata image convert --estargz SRC DST` rewrites every layer of an
// image as eStargz (lazy/stargz/writer.h), so that strata, stargz-snapshotter and any
// eStargz-aware puller can start containers from it before it is downloaded — and
// every other runtime still pulls it as an ordinary tar+gzip image.
//
//   source  an image of the store, or a registry reference (pulled into the content
//           store first, without unpacking), or "oci:DIR[:TAG]", an OCI image layout
//           on the daemon's host (its blobs are copied into the content store,
//           verified)
//   target  an image name recorded in the store (push it with `strata image push`),
//           or "oci:DIR[:TAG]": an OCI image layout written there (blobs, index.json
//           with the tag as org.opencontainers.image.ref.name)
//
// The converted image has one OCI manifest (the platform's) with an OCI config whose
// rootfs.diff_ids are the new layers' diff ids; each layer is
// application/vnd.oci.image.layer.v1.tar+gzip annotated with
// containerd.io/snapshot/stargz/toc.digest and io.containers.estargz.uncompressed-size.
// Layers that are eStargz already (they carry the TOC digest annotation) are kept as
// they are. Nothing is unpacked; everything new is verified and stored in the content
// store with containerd's garbage-collection labels.
#pragma once

#include <string>

#include "core/status.h"
#include "lazy/stargz/writer.h"
#include "transfer/content_store.h"
#include "transfer/image_store.h"
#include "transfer/puller.h"

namespace strata::transfer {

struct ConvertRequest {
  std::string source;
  std::string target;
  std::string platform;  // "" = the host's
  lazy::stargz::EstargzWriterOptions estargz;
};

struct ConvertResult {
  Image image;                  // the target's record (for "oci:" targets: not stored)
  int converted_layers = 0;
  int kept_layers = 0;          // eStargz already
  uint64_t source_bytes = 0;    // compressed, of the converted layers
  uint64_t estargz_bytes = 0;   // compressed, of their eStargz versions
  std::vector<std::string> missing_prioritized_files;  // named nothing in any layer
};

// Converts as described above; progress messages go to `progress` (may be null).
// Errors: InvalidArgument for a malformed source or target, NotFound for an image or
// tag that does not exist, the puller's errors for a registry source, DataLoss for a
// blob of an OCI layout that does not match its digest, the writer's errors for a
// layer it cannot convert.
Result<ConvertResult> ConvertImage(Puller& puller, ContentStore& content, ImageStore& images,
                                   const ConvertRequest& request, const ProgressSink& progress);

// "oci:DIR[:TAG]" split into DIR and TAG (TAG "" when absent); nullopt when `spec` is
// not an OCI layout spec.
std::optional<std::pair<std::string, std::string>> ParseOciLayoutSpec(const std::string& spec);

}  // namespace strata::transfer
