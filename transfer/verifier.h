// Image verifier plugins, compatible with containerd 2.x's "bindir" image verifier
// (io.containerd.image-verifier.v1.bindir): every executable in `bin_dir` is run, in
// name order, after a reference is resolved and before anything is fetched:
//
//   <bin_dir>/<verifier> -name <reference> -digest <resolved digest>
//       -stdin-media-type application/vnd.oci.descriptor.v1+json
//
// with the resolved descriptor as JSON on stdin. Exit status 0 accepts the image; any
// other status (or being killed at `per_verifier_timeout`, which ends the verifier's
// whole process group) rejects it, and the verifier's stdout (first 32 KiB) is the
// reason shown to the user. A missing `bin_dir` means no verification. More than
// `max_verifiers` executables is a configuration error that rejects every pull rather
// than silently skip some of them.
#pragma once

#include <chrono>
#include <string>

#include "core/status.h"
#include "registry/manifest.h"

namespace strata::transfer {

struct VerifierOptions {
  std::string bin_dir;  // "" = verification off
  int max_verifiers = 10;
  std::chrono::milliseconds per_verifier_timeout{10000};
};

// Runs the verifiers for image `reference` resolved to `descriptor`. OK when all
// accept (or there are none); PermissionDenied "image <ref> rejected by verifier <name>:
// <reason>" when one rejects; FailedPrecondition for a bin_dir that cannot be read or
// holds too many verifiers.
Status VerifyImage(const VerifierOptions& options, const std::string& reference,
                   const registry::Descriptor& descriptor);

}  // namespace strata::transfer
