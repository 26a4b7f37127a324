// Devices for `strata run --device`: host device nodes and Container Device Interface
// (CDI) devices, both applied to an OCI runtime spec (config.json, runtime-spec 1.0.2)
// held as a JSON document.
//
// A host device is named by its path ("/dev/fuse"). A CDI device is named
// "vendor.com/class=name": a vendor ships a spec file (JSON or YAML) under /etc/cdi or
// /var/run/cdi that says, for each device of one kind, which edits the container's
// spec needs (device nodes, mounts, environment, hooks, supplementary groups). For
// example, /etc/cdi/vendor.yaml
//
//   cdiVersion: 0.5.0
//   kind: vendor.com/gpu
//   devices:
//     - name: gpu0
//       containerEdits:
//         deviceNodes: [{path: /dev/vendor-gpu0}]
//   containerEdits:
//     env: [VENDOR_DRIVER=1]
//
// makes "vendor.com/gpu=gpu0" resolvable; applying it adds /dev/vendor-gpu0 (type and
// numbers taken from the host node) and VENDOR_DRIVER=1. The spec-level
// containerEdits are applied once when any device of that file is requested.
//
// The format is the CDI specification, cdiVersion 0.3.0 to 1.1.0. Fields strata cannot
// honour with an OCI 1.0.2 spec (intelRdt, netDevices) make a file invalid rather than
// being dropped silently.
#pragma once

#include <memory>
#include <nlohmann/json_fwd.hpp>
#include <string>
#include <vector>

#include "core/status.h"

namespace strata::runtime {

// Adds the host device named by `spec_text` to `spec`, as `docker run --device` does.
// `spec_text` is "HOST", "HOST:CONTAINER", "HOST:PERMS" or "HOST:CONTAINER:PERMS",
// where PERMS is a non-empty combination of r, w, m (default "rwm") and CONTAINER an
// absolute path (default HOST).
//
// Appends to linux.devices {path, type ("c", "b" or "p" from stat(2)), major, minor,
// fileMode, uid, gid}, replacing an entry with the same container path, and for "c" and
// "b" an allow rule {allow, type, major, minor, access} to linux.resources.devices.
// Missing objects and arrays are created.
//
// Returns InvalidArgument naming the path when HOST does not exist or is not a device
// node, when the text is malformed, or when `spec` has a wrong-typed member on the way.
// On error `spec` is unchanged.
Status AddHostDevice(const std::string& spec_text, nlohmann::json& spec);

// True when `name` is a well-formed fully-qualified CDI device name
// "VENDOR/CLASS=NAME" ("vendor.com/gpu=0", "nvidia.com/gpu=all"). Says nothing about
// whether such a device is installed.
bool IsCdiDeviceName(const std::string& name);

// The CDI devices described by the spec files of some directories.
//
// A CdiRegistry is an immutable value: copies share the loaded files, and it is safe
// for concurrent use from many threads. It does not watch the directories; Load again
// to see changes.
class CdiRegistry {
 public:
  // Where CDI spec files live unless configured otherwise, lowest priority first.
  static std::vector<std::string> DefaultSpecDirs();  // {"/etc/cdi", "/var/run/cdi"}

  // Reads every file named *.json, *.yaml or *.yml directly in each of `spec_dirs`
  // (symlinks followed; subdirectories are not entered; a missing directory, or a file
  // removed while loading, is skipped) and validates it in full.
  //
  // Priority: a device defined in a later directory replaces the same device from an
  // earlier one, together with the spec-level edits of the file that defines it. Two
  // files in the same directory defining the same device are an error naming both.
  //
  // Returns InvalidArgument, naming the file and the offending field, for a file that
  // is not valid JSON/YAML, exceeds 1 MiB, is not a regular file, or breaks the CDI
  // rules: missing or unknown cdiVersion, a field newer than the declared cdiVersion,
  // an unknown field, a malformed kind or device name, no devices, a device listed
  // twice, a device without edits, a relative container, host, device or hook path,
  // an environment entry without "=", an unknown hook name, permissions other than
  // r/w/m or "none", out-of-range numbers.
  //
  // Unlike the reference Go implementation (which records per-file errors and keeps
  // serving devices from the valid files), one bad file fails the whole Load: a
  // `--device` request must never run a container with a silently partial set of
  // edits, and the operator sees the broken file at once. Other I/O errors (e.g. an
  // unreadable directory) are returned with the path as context.
  static Result<CdiRegistry> Load(const std::vector<std::string>& spec_dirs = DefaultSpecDirs());

  // Applies to `spec`, for the fully-qualified devices `names` in order: the
  // spec-level containerEdits of each device's file (once per file, before its first
  // device) and each device's own containerEdits. Requesting a device twice applies
  // it once. What each edit does:
  //
  //   env            appended to process.env, first removing entries with the same KEY
  //   deviceNodes    linux.devices entry {path, type, major, minor, fileMode, uid, gid}
  //                  (replacing one with the same path) and, for "c"/"b", an allow rule
  //                  in linux.resources.devices with the node's permissions ("rwm"
  //                  when empty, "" for "none"). hostPath defaults to path; type,
  //                  major, minor and fileMode missing from the file are taken from
  //                  stat(2) of hostPath; uid/gid default to process.user's when it is
  //                  not root.
  //   mounts         mounts entry {destination, type (default "bind"), source,
  //                  options}, replacing one with the same destination
  //   hooks          appended to hooks.<hookName>
  //   additionalGids appended to process.user.additionalGids (0 and repeats skipped)
  //
  // Returns InvalidArgument for a malformed name, NotFound naming every device not in
  // the registry, InvalidArgument when a device node's host path cannot be stat'ed
  // (and the file does not give type and major itself) or its type differs from the
  // file's, or when `spec` has a wrong-typed member on the way. All or nothing: on
  // error `spec` is unchanged.
  Status Apply(const std::vector<std::string>& names, nlohmann::json& spec) const;

  // The fully-qualified names of all resolvable devices, sorted.
  std::vector<std::string> DeviceNames() const;

 private:
  struct Catalog;  // the resolvable devices; defined in cdi.cc

  explicit CdiRegistry(std::shared_ptr<const Catalog> catalog);

  std::shared_ptr<const Catalog> catalog_;
};

}  // namespace strata::runtime
