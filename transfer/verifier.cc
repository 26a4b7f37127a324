#include "transfer/verifier.h"

#include <sys/stat.h>

#include <algorithm>

#include "core/fs.h"
#include "core/subprocess.h"

namespace strata::transfer {
namespace {

constexpr size_t kReasonLimitBytes = 32 << 10;

}  // namespace

Status VerifyImage(const VerifierOptions& options, const std::string& reference,
                   const registry::Descriptor& descriptor) {
  if (options.bin_dir.empty() || !fs::Exists(options.bin_dir)) return Status::Ok();
  Result<std::vector<std::string>> names = fs::ListDir(options.bin_dir);
  if (!names.ok()) {
    return Status::FailedPrecondition("image verifier directory " + options.bin_dir +
                                      " cannot be read: " + names.status().message());
  }
  std::vector<std::string> verifiers;
  for (const auto& name : *names) {
    std::string path = options.bin_dir + "/" + name;
    struct stat st {};
    if (::stat(path.c_str(), &st) != 0 || !S_ISREG(st.st_mode)) continue;
    verifiers.push_back(name);
  }
  std::sort(verifiers.begin(), verifiers.end());
  if (static_cast<int>(verifiers.size()) > options.max_verifiers) {
    return Status::FailedPrecondition(
        "image verifier directory " + options.bin_dir + " holds " +
        std::to_string(verifiers.size()) + " verifiers, more than max_verifiers (" +
        std::to_string(options.max_verifiers) + "); refusing to pull " + reference);
  }
  const std::string stdin_json = registry::DescriptorJson(descriptor);
  for (const auto& name : verifiers) {
    std::string path = options.bin_dir + "/" + name;
    ProcessOptions po;
    po.stdin_data = stdin_json;
    po.timeout_ms = static_cast<int>(options.per_verifier_timeout.count());
    po.max_output_bytes = kReasonLimitBytes;
    Result<ProcessResult> run =
        RunProcess({path, "-name", reference, "-digest", descriptor.digest, "-stdin-media-type",
                    "application/vnd.oci.descriptor.v1+json"},
                   po);
    if (!run.ok()) {
      return Status(Code::kPermissionDenied, "image " + reference + " rejected: verifier " + name +
                                                 " could not run: " + run.status().message());
    }
    if (run->timed_out) {
      return Status(Code::kPermissionDenied,
                    "image " + reference + " rejected: verifier " + name + " timed out after " +
                        std::to_string(options.per_verifier_timeout.count()) + " ms");
    }
    if (run->exit_code != 0) {
      std::string reason = run->stdout_data;
      while (!reason.empty() && (reason.back() == '\n' || reason.back() == ' ')) reason.pop_back();
      if (reason.empty()) {
        reason = run->signal != 0 ? "killed by signal " + std::to_string(run->signal)
                                  : "exit status " + std::to_string(run->exit_code);
      }
      return Status(Code::kPermissionDenied,
                    "image " + reference + " rejected by verifier " + name + ": " + reason);
    }
  }
  return Status::Ok();
}

}  // namespace strata::transfer
