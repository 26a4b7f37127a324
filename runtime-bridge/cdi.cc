#include "runtime-bridge/cdi.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <limits>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <string_view>
#include <utility>

#include "core/fs.h"

namespace strata::runtime {

// The parsed, validated content of spec files. Named (not anonymous) because
// CdiRegistry::Catalog, declared in the header, holds them.
namespace cdi_internal {

struct DeviceNode {
  std::string path;       // in the container
  std::string host_path;  // empty: same as path
  std::string type;       // "", "b", "c", "u" or "p"
  std::optional<int64_t> major;
  std::optional<int64_t> minor;
  std::optional<uint32_t> file_mode;
  std::string permissions;  // "", "none" or letters from "rwm"
  std::optional<uint32_t> uid;
  std::optional<uint32_t> gid;
};

struct Mount {
  std::string host_path;
  std::string container_path;
  std::string type;  // empty: bind
  std::vector<std::string> options;
};

struct Hook {
  std::string hook_name;
  std::string path;
  std::vector<std::string> args;
  std::vector<std::string> env;
  std::optional<int64_t> timeout;
};

struct Edits {
  std::vector<std::string> env;
  std::vector<DeviceNode> device_nodes;
  std::vector<Mount> mounts;
  std::vector<Hook> hooks;
  std::vector<uint32_t> additional_gids;

  bool empty() const {
    return env.empty() && device_nodes.empty() && mounts.empty() && hooks.empty() &&
           additional_gids.empty();
  }
  void Append(const Edits& other) {
    env.insert(env.end(), other.env.begin(), other.env.end());
    device_nodes.insert(device_nodes.end(), other.device_nodes.begin(), other.device_nodes.end());
    mounts.insert(mounts.end(), other.mounts.begin(), other.mounts.end());
    hooks.insert(hooks.end(), other.hooks.begin(), other.hooks.end());
    additional_gids.insert(additional_gids.end(), other.additional_gids.begin(),
                           other.additional_gids.end());
  }
};

struct SpecFile {
  std::string path;
  std::string kind;
  Edits edits;                           // applied once if any of its devices is requested
  std::map<std::string, Edits> devices;  // device name (unqualified) -> its own edits
};

struct DeviceEntry {
  std::shared_ptr<const SpecFile> file;
  const Edits* edits = nullptr;  // points into *file
};

}  // namespace cdi_internal

struct CdiRegistry::Catalog {
  std::map<std::string, cdi_internal::DeviceEntry> devices;  // qualified name -> entry
};

namespace {

using nlohmann::json;
using namespace cdi_internal;  // NOLINT(google-build-using-namespace): this file's own types

constexpr size_t kMaxSpecFileBytes = 1 << 20;
// A YAML document converted to JSON may hold at most this many values, which bounds
// what aliases ("billion laughs") can expand to; real spec files hold a few hundred.
constexpr size_t kMaxYamlValues = 200000;
constexpr int kMaxYamlDepth = 64;

// CDI versions strata reads, oldest first; a field's minimum version is an index here.
constexpr const char* kCdiVersions[] = {"0.3.0", "0.4.0", "0.5.0", "0.6.0",
                                        "0.7.0", "0.8.0", "1.0.0", "1.1.0"};
constexpr int kV040 = 1;
constexpr int kV050 = 2;
constexpr int kV060 = 3;
constexpr int kV070 = 4;

const std::set<std::string_view>& HookNames() {
  static const std::set<std::string_view> names = {
      "prestart", "createRuntime", "createContainer", "startContainer", "poststart", "poststop"};
  return names;
}

std::string Quote(std::string_view s) { return json(std::string(s)).dump(); }

// ---- names ------------------------------------------------------------------------

bool IsLetter(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }
bool IsAlnum(char c) { return IsLetter(c) || (c >= '0' && c <= '9'); }

// Vendor and class of a kind: a letter first, a letter or digit last, letters, digits,
// '-', '_' and '.' between.
bool IsValidKindPart(std::string_view s, size_t max_bytes) {
  if (s.empty() || s.size() > max_bytes || !IsLetter(s.front()) || !IsAlnum(s.back())) {
    return false;
  }
  return std::all_of(s.begin(), s.end(),
                     [](char c) { return IsAlnum(c) || c == '-' || c == '_' || c == '.'; });
}

// "vendor/class": the vendor is DNS-subdomain-like (at most 253 bytes), the class a
// label of at most 63.
bool IsValidKind(std::string_view kind) {
  size_t slash = kind.find('/');
  if (slash == std::string_view::npos) return false;
  return IsValidKindPart(kind.substr(0, slash), 253) && IsValidKindPart(kind.substr(slash + 1), 63);
}

// A device name: a letter or digit first and last, letters, digits, '-', '_', '.' and
// ':' between ("0", "gpu0", "mig-1:0").
bool IsValidDeviceName(std::string_view name) {
  if (name.empty() || !IsAlnum(name.front()) || !IsAlnum(name.back())) return false;
  return std::all_of(name.begin(), name.end(), [](char c) {
    return IsAlnum(c) || c == '-' || c == '_' || c == '.' || c == ':';
  });
}

// Cgroup device permissions: a non-empty combination of r, w and m.
bool IsAccessString(std::string_view s) {
  return !s.empty() && s.find_first_not_of("rwm") == std::string_view::npos;
}

bool IsAbsolute(std::string_view path) { return !path.empty() && path.front() == '/'; }

// ---- reading files ----------------------------------------------------------------

// Reads a spec file of at most kMaxSpecFileBytes. NotFound when it has vanished
// (a generator replacing its files), InvalidArgument when it is not a regular file or
// too big.
Result<std::string> ReadSpecFile(const std::string& path) {
  // O_NONBLOCK: opening a FIFO planted under a spec name must not hang the caller.
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
  if (fd < 0) return Status::FromErrno(errno, "open " + path);
  std::string text;
  Status status;
  struct stat st;
  if (::fstat(fd, &st) != 0) {
    status = Status::FromErrno(errno, "stat " + path);
  } else if (!S_ISREG(st.st_mode)) {
    status = Status::InvalidArgument("CDI spec file " + path + " is not a regular file");
  } else {
    // Read one byte past the limit so that a file growing after fstat is caught too.
    char buffer[64 << 10];
    while (text.size() <= kMaxSpecFileBytes) {
      ssize_t n = ::read(fd, buffer, sizeof buffer);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) {
        status = Status::FromErrno(errno, "read " + path);
        break;
      }
      if (n == 0) break;
      text.append(buffer, static_cast<size_t>(n));
    }
    if (status.ok() && text.size() > kMaxSpecFileBytes) {
      status = Status::InvalidArgument("CDI spec file " + path +
                                       " is larger than the 1 MiB limit for spec files");
    }
  }
  ::close(fd);
  if (!status.ok()) return status;
  return text;
}

bool IsYamlNullScalar(const std::string& s) {
  return s.empty() || s == "~" || s == "null" || s == "Null" || s == "NULL";
}

// Converts YAML to JSON keeping every non-null scalar a string; SpecParser reads
// numbers out of strings when the document came from YAML.
Status YamlToJson(const YAML::Node& node, int depth, size_t& budget, json& out) {
  if (depth > kMaxYamlDepth) {
    return Status::InvalidArgument("nested more than " + std::to_string(kMaxYamlDepth) +
                                   " levels deep");
  }
  if (budget == 0) {
    return Status::InvalidArgument("more than " + std::to_string(kMaxYamlValues) +
                                   " values (aliases expanding without bound?)");
  }
  --budget;
  switch (node.Type()) {
    case YAML::NodeType::Undefined:
    case YAML::NodeType::Null:
      out = nullptr;
      return Status::Ok();
    case YAML::NodeType::Scalar:
      // Tag "?" marks a plain (unquoted) scalar; quoted ones are always strings.
      if (node.Tag() == "?" && IsYamlNullScalar(node.Scalar())) {
        out = nullptr;
      } else {
        out = node.Scalar();
      }
      return Status::Ok();
    case YAML::NodeType::Sequence:
      out = json::array();
      for (const YAML::Node& item : node) {
        json value;
        RETURN_IF_ERROR(YamlToJson(item, depth + 1, budget, value));
        out.push_back(std::move(value));
      }
      return Status::Ok();
    case YAML::NodeType::Map:
      out = json::object();
      for (const auto& pair : node) {
        if (!pair.first.IsScalar()) return Status::InvalidArgument("a mapping key is not a scalar");
        const std::string& key = pair.first.Scalar();
        if (out.contains(key)) return Status::InvalidArgument("duplicate key " + Quote(key));
        RETURN_IF_ERROR(YamlToJson(pair.second, depth + 1, budget, out[key]));
      }
      return Status::Ok();
  }
  return Status::InvalidArgument("unknown YAML node type");
}

// Parses `text` as YAML (is_yaml) or JSON. The parsers' exceptions stop here.
Result<json> ParseDocument(const std::string& text, bool is_yaml) {
  if (!is_yaml) {
    try {
      return json::parse(text);
    } catch (const json::exception& e) {
      return Status::InvalidArgument(std::string("invalid JSON: ") + e.what());
    }
  }
  YAML::Node root;
  try {
    root = YAML::Load(text);
  } catch (const YAML::Exception& e) {
    return Status::InvalidArgument(std::string("invalid YAML: ") + e.what());
  }
  json out;
  size_t budget = kMaxYamlValues;
  try {
    RETURN_IF_ERROR(YamlToJson(root, 0, budget, out));
  } catch (const YAML::Exception& e) {
    return Status::InvalidArgument(std::string("invalid YAML: ") + e.what());
  }
  return out;
}

// ---- validating a spec document -----------------------------------------------------

// Reads a parsed spec document into a SpecFile, checking every CDI rule. Messages name
// the offending field by its path in the document ("devices[0].containerEdits.env[1]").
class SpecParser {
 public:
  explicit SpecParser(bool from_yaml) : from_yaml_(from_yaml) {}

  Result<SpecFile> Parse(const json& doc) {
    if (!doc.is_object()) return Invalid("the document", "is not a mapping of CDI spec fields");
    RETURN_IF_ERROR(
        CheckKeys(doc, "", {"cdiVersion", "kind", "annotations", "devices", "containerEdits"}));

    const json* version_value = Field(doc, "cdiVersion");
    if (version_value == nullptr) return Status::InvalidArgument("cdiVersion is missing");
    ASSIGN_OR_RETURN(std::string version, String(*version_value, "cdiVersion"));
    std::string_view bare = version;
    if (!bare.empty() && bare.front() == 'v') bare.remove_prefix(1);
    const auto* known = std::find(std::begin(kCdiVersions), std::end(kCdiVersions), bare);
    if (known == std::end(kCdiVersions)) {
      return Invalid("cdiVersion " + Quote(version),
                     "is not a version strata reads (0.3.0 to 1.1.0)");
    }
    int declared = static_cast<int>(known - std::begin(kCdiVersions));

    SpecFile file;
    const json* kind = Field(doc, "kind");
    if (kind == nullptr) return Status::InvalidArgument("kind is missing");
    ASSIGN_OR_RETURN(file.kind, String(*kind, "kind"));
    if (!IsValidKind(file.kind)) {
      return Invalid("kind " + Quote(file.kind), "is not VENDOR/CLASS (e.g. vendor.com/gpu)");
    }
    if (file.kind.find('.', file.kind.find('/')) != std::string::npos) {
      Require(kV060, "a '.' in the class of kind");
    }
    RETURN_IF_ERROR(Annotations(doc, "annotations"));
    if (const json* edits = Field(doc, "containerEdits")) {
      RETURN_IF_ERROR(ParseEdits(*edits, "containerEdits", file.edits));
    }

    const json* devices = Field(doc, "devices");
    if (devices == nullptr) return Status::InvalidArgument("devices is missing");
    if (!devices->is_array()) return Invalid("devices", "is not a list");
    if (devices->empty()) return Invalid("devices", "is empty: a spec file defines devices");
    for (size_t i = 0; i < devices->size(); ++i) {
      RETURN_IF_ERROR(ParseDevice((*devices)[i], "devices[" + std::to_string(i) + "]", file));
    }

    if (required_ > declared) {
      return Status::InvalidArgument(required_by_ + " needs cdiVersion " + kCdiVersions[required_] +
                                     " or later, but the file declares " + version);
    }
    return file;
  }

 private:
  static Status Invalid(const std::string& what, const std::string& problem) {
    return Status::InvalidArgument(what + " " + problem);
  }

  static std::string Join(const std::string& where, const std::string& key) {
    return where.empty() ? key : where + "." + key;
  }

  // The member `key` of `object`, or nullptr when absent or null (null means unset).
  static const json* Field(const json& object, const char* key) {
    auto it = object.find(key);
    return it == object.end() || it->is_null() ? nullptr : &*it;
  }

  static Status CheckKeys(const json& object, const std::string& where,
                          std::initializer_list<std::string_view> allowed) {
    for (const auto& item : object.items()) {
      if (std::find(allowed.begin(), allowed.end(), item.key()) == allowed.end()) {
        return Status::InvalidArgument("unknown field " + Join(where, item.key()));
      }
    }
    return Status::Ok();
  }

  // Notes that the document uses something introduced in kCdiVersions[version].
  void Require(int version, const std::string& what) {
    if (version > required_) {
      required_ = version;
      required_by_ = what;
    }
  }

  static Result<std::string> String(const json& value, const std::string& where) {
    if (!value.is_string()) return Invalid(where, "is not a string");
    return value.get<std::string>();
  }

  Result<std::vector<std::string>> StringList(const json& value, const std::string& where) const {
    if (!value.is_array()) return Invalid(where, "is not a list");
    std::vector<std::string> out;
    for (size_t i = 0; i < value.size(); ++i) {
      ASSIGN_OR_RETURN(std::string s, String(value[i], where + "[" + std::to_string(i) + "]"));
      out.push_back(std::move(s));
    }
    return out;
  }

  // An integer in [min, max]. From YAML, plain scalars arrive as strings: decimal,
  // 0o/0 octal (YAML 1.2 and 1.1 spellings, as fileMode: 0o666) and 0x hex are read.
  Result<int64_t> Integer(const json& value, const std::string& where, int64_t min,
                          int64_t max) const {
    const std::string range =
        "is not an integer in [" + std::to_string(min) + ", " + std::to_string(max) + "]";
    int64_t n = 0;
    if (value.is_number_integer()) {
      if (value.is_number_unsigned() &&
          value.get<uint64_t>() > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
        return Invalid(where, range);
      }
      n = value.get<int64_t>();
    } else if (from_yaml_ && value.is_string()) {
      std::optional<int64_t> parsed = ParseYamlInteger(value.get<std::string>());
      if (!parsed) return Invalid(where + " " + Quote(value.get<std::string>()), range);
      n = *parsed;
    } else {
      return Invalid(where, range);
    }
    if (n < min || n > max) return Invalid(where + " (" + std::to_string(n) + ")", range);
    return n;
  }

  static std::optional<int64_t> ParseYamlInteger(std::string_view s) {
    bool negative = false;
    if (!s.empty() && (s.front() == '-' || s.front() == '+')) {
      negative = s.front() == '-';
      s.remove_prefix(1);
    }
    int base = 10;
    if (s.size() > 2 && s[0] == '0' && (s[1] == 'o' || s[1] == 'x')) {
      base = s[1] == 'o' ? 8 : 16;
      s.remove_prefix(2);
    } else if (s.size() > 1 && s[0] == '0') {
      base = 8;
      s.remove_prefix(1);
    }
    if (s.empty() || s.size() > 20) return std::nullopt;
    uint64_t n = 0;
    for (char c : s) {
      int digit = c >= '0' && c <= '9'   ? c - '0'
                  : c >= 'a' && c <= 'f' ? c - 'a' + 10
                  : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                         : 99;
      if (digit >= base) return std::nullopt;
      if (n > (static_cast<uint64_t>(std::numeric_limits<int64_t>::max()) - digit) / base) {
        return std::nullopt;
      }
      n = n * base + digit;
    }
    return negative ? -static_cast<int64_t>(n) : static_cast<int64_t>(n);
  }

  Result<std::optional<uint32_t>> OptionalUint32(const json& object, const char* key,
                                                 const std::string& where, uint32_t max) const {
    const json* value = Field(object, key);
    if (value == nullptr) return std::optional<uint32_t>();
    ASSIGN_OR_RETURN(int64_t n, Integer(*value, Join(where, key), 0, max));
    return std::optional<uint32_t>(static_cast<uint32_t>(n));
  }

  static Status AbsolutePath(const std::string& path, const std::string& where) {
    if (!IsAbsolute(path)) return Invalid(where + " " + Quote(path), "is not an absolute path");
    return Status::Ok();
  }

  Status Env(const json& value, const std::string& where, std::vector<std::string>& out) const {
    ASSIGN_OR_RETURN(out, StringList(value, where));
    for (size_t i = 0; i < out.size(); ++i) {
      size_t eq = out[i].find('=');
      if (eq == std::string::npos || eq == 0) {
        return Invalid(where + "[" + std::to_string(i) + "] " + Quote(out[i]), "is not KEY=VALUE");
      }
    }
    return Status::Ok();
  }

  Status Annotations(const json& object, const std::string& where) {
    const json* value = Field(object, "annotations");
    if (value == nullptr) return Status::Ok();
    if (!value->is_object()) return Invalid(where, "is not a mapping");
    for (const auto& item : value->items()) {
      if (!item.value().is_string()) return Invalid(where + "." + item.key(), "is not a string");
    }
    if (!value->empty()) Require(kV060, where);
    return Status::Ok();
  }

  Status ParseDevice(const json& value, const std::string& where, SpecFile& file) {
    if (!value.is_object()) return Invalid(where, "is not a mapping");
    RETURN_IF_ERROR(CheckKeys(value, where, {"name", "annotations", "containerEdits"}));
    const json* name_value = Field(value, "name");
    if (name_value == nullptr) return Invalid(where + ".name", "is missing");
    ASSIGN_OR_RETURN(std::string name, String(*name_value, where + ".name"));
    if (!IsValidDeviceName(name)) {
      return Invalid(where + ".name " + Quote(name),
                     "is not a device name (letters, digits, '-', '_', '.', ':'; a letter or "
                     "digit first and last)");
    }
    if (IsAlnum(name.front()) && !IsLetter(name.front())) {
      Require(kV050, where + ".name starting with a digit");
    }
    if (file.devices.count(name) != 0) {
      return Invalid("device " + Quote(name), "is listed twice in devices");
    }
    RETURN_IF_ERROR(Annotations(value, where + ".annotations"));
    Edits edits;
    if (const json* edits_value = Field(value, "containerEdits")) {
      RETURN_IF_ERROR(ParseEdits(*edits_value, where + ".containerEdits", edits));
    }
    if (edits.empty()) {
      return Invalid(where + " (" + Quote(name) + ")", "has no containerEdits");
    }
    file.devices.emplace(std::move(name), std::move(edits));
    return Status::Ok();
  }

  Status ParseEdits(const json& value, const std::string& where, Edits& out) {
    if (!value.is_object()) return Invalid(where, "is not a mapping");
    RETURN_IF_ERROR(CheckKeys(value, where,
                              {"env", "deviceNodes", "mounts", "hooks", "additionalGids",
                               "additionalGIDs", "intelRdt", "netDevices"}));
    for (const char* unsupported : {"intelRdt", "netDevices"}) {
      if (Field(value, unsupported) != nullptr) {
        return Invalid(Join(where, unsupported), "is not supported by strata");
      }
    }
    if (const json* env = Field(value, "env")) {
      RETURN_IF_ERROR(Env(*env, Join(where, "env"), out.env));
    }
    if (const json* nodes = Field(value, "deviceNodes")) {
      if (!nodes->is_array()) return Invalid(Join(where, "deviceNodes"), "is not a list");
      for (size_t i = 0; i < nodes->size(); ++i) {
        DeviceNode node;
        RETURN_IF_ERROR(ParseDeviceNode(
            (*nodes)[i], Join(where, "deviceNodes[" + std::to_string(i) + "]"), node));
        out.device_nodes.push_back(std::move(node));
      }
    }
    if (const json* mounts = Field(value, "mounts")) {
      if (!mounts->is_array()) return Invalid(Join(where, "mounts"), "is not a list");
      for (size_t i = 0; i < mounts->size(); ++i) {
        Mount mount;
        RETURN_IF_ERROR(
            ParseMount((*mounts)[i], Join(where, "mounts[" + std::to_string(i) + "]"), mount));
        out.mounts.push_back(std::move(mount));
      }
    }
    if (const json* hooks = Field(value, "hooks")) {
      if (!hooks->is_array()) return Invalid(Join(where, "hooks"), "is not a list");
      for (size_t i = 0; i < hooks->size(); ++i) {
        Hook hook;
        RETURN_IF_ERROR(
            ParseHook((*hooks)[i], Join(where, "hooks[" + std::to_string(i) + "]"), hook));
        out.hooks.push_back(std::move(hook));
      }
    }
    // The Go structs spell it additionalGids; SPEC.md's example writes additionalGIDs.
    for (const char* key : {"additionalGids", "additionalGIDs"}) {
      const json* gids = Field(value, key);
      if (gids == nullptr) continue;
      if (!gids->is_array()) return Invalid(Join(where, key), "is not a list");
      for (size_t i = 0; i < gids->size(); ++i) {
        ASSIGN_OR_RETURN(int64_t gid,
                         Integer((*gids)[i], Join(where, key) + "[" + std::to_string(i) + "]", 0,
                                 std::numeric_limits<uint32_t>::max()));
        out.additional_gids.push_back(static_cast<uint32_t>(gid));
      }
      if (!gids->empty()) Require(kV070, Join(where, key));
    }
    return Status::Ok();
  }

  Status ParseDeviceNode(const json& value, const std::string& where, DeviceNode& out) {
    if (!value.is_object()) return Invalid(where, "is not a mapping");
    RETURN_IF_ERROR(CheckKeys(
        value, where,
        {"path", "hostPath", "type", "major", "minor", "fileMode", "permissions", "uid", "gid"}));
    const json* path = Field(value, "path");
    if (path == nullptr) return Invalid(where + ".path", "is missing");
    ASSIGN_OR_RETURN(out.path, String(*path, where + ".path"));
    RETURN_IF_ERROR(AbsolutePath(out.path, where + ".path"));
    if (const json* host_path = Field(value, "hostPath")) {
      ASSIGN_OR_RETURN(out.host_path, String(*host_path, where + ".hostPath"));
      if (!out.host_path.empty()) {
        RETURN_IF_ERROR(AbsolutePath(out.host_path, where + ".hostPath"));
        Require(kV050, where + ".hostPath");
      }
    }
    if (const json* type = Field(value, "type")) {
      ASSIGN_OR_RETURN(out.type, String(*type, where + ".type"));
      if (out.type != "" && out.type != "b" && out.type != "c" && out.type != "u" &&
          out.type != "p") {
        return Invalid(where + ".type " + Quote(out.type), "is not one of b, c, u, p");
      }
    }
    constexpr int64_t kMaxDeviceNumber = std::numeric_limits<uint32_t>::max();
    if (const json* major = Field(value, "major")) {
      ASSIGN_OR_RETURN(out.major, Integer(*major, where + ".major", 0, kMaxDeviceNumber));
    }
    if (const json* minor = Field(value, "minor")) {
      ASSIGN_OR_RETURN(out.minor, Integer(*minor, where + ".minor", 0, kMaxDeviceNumber));
    }
    ASSIGN_OR_RETURN(out.file_mode, OptionalUint32(value, "fileMode", where, 07777));
    if (const json* permissions = Field(value, "permissions")) {
      ASSIGN_OR_RETURN(out.permissions, String(*permissions, where + ".permissions"));
      if (!out.permissions.empty() && out.permissions != "none" &&
          !IsAccessString(out.permissions)) {
        return Invalid(where + ".permissions " + Quote(out.permissions),
                       "is not a combination of r, w, m (or \"none\")");
      }
    }
    ASSIGN_OR_RETURN(out.uid,
                     OptionalUint32(value, "uid", where, std::numeric_limits<uint32_t>::max()));
    ASSIGN_OR_RETURN(out.gid,
                     OptionalUint32(value, "gid", where, std::numeric_limits<uint32_t>::max()));
    return Status::Ok();
  }

  Status ParseMount(const json& value, const std::string& where, Mount& out) {
    if (!value.is_object()) return Invalid(where, "is not a mapping");
    RETURN_IF_ERROR(CheckKeys(value, where, {"hostPath", "containerPath", "type", "options"}));
    const json* host_path = Field(value, "hostPath");
    if (host_path == nullptr) return Invalid(where + ".hostPath", "is missing");
    ASSIGN_OR_RETURN(out.host_path, String(*host_path, where + ".hostPath"));
    const json* container_path = Field(value, "containerPath");
    if (container_path == nullptr) return Invalid(where + ".containerPath", "is missing");
    ASSIGN_OR_RETURN(out.container_path, String(*container_path, where + ".containerPath"));
    RETURN_IF_ERROR(AbsolutePath(out.container_path, where + ".containerPath"));
    if (const json* type = Field(value, "type")) {
      ASSIGN_OR_RETURN(out.type, String(*type, where + ".type"));
      if (!out.type.empty()) Require(kV040, where + ".type");
    }
    if (const json* options = Field(value, "options")) {
      ASSIGN_OR_RETURN(out.options, StringList(*options, where + ".options"));
    }
    // A bind mount's source is a host path; other types name a source ("tmpfs").
    bool bind = out.type.empty() || out.type == "bind" ||
                std::any_of(out.options.begin(), out.options.end(),
                            [](const std::string& o) { return o == "bind" || o == "rbind"; });
    if (bind) RETURN_IF_ERROR(AbsolutePath(out.host_path, where + ".hostPath"));
    if (out.host_path.empty()) return Invalid(where + ".hostPath", "is empty");
    return Status::Ok();
  }

  Status ParseHook(const json& value, const std::string& where, Hook& out) {
    if (!value.is_object()) return Invalid(where, "is not a mapping");
    RETURN_IF_ERROR(CheckKeys(value, where, {"hookName", "path", "args", "env", "timeout"}));
    const json* name = Field(value, "hookName");
    if (name == nullptr) return Invalid(where + ".hookName", "is missing");
    ASSIGN_OR_RETURN(out.hook_name, String(*name, where + ".hookName"));
    if (HookNames().count(out.hook_name) == 0) {
      return Invalid(where + ".hookName " + Quote(out.hook_name),
                     "is not an OCI hook (prestart, createRuntime, createContainer, "
                     "startContainer, poststart, poststop)");
    }
    const json* path = Field(value, "path");
    if (path == nullptr) return Invalid(where + ".path", "is missing");
    ASSIGN_OR_RETURN(out.path, String(*path, where + ".path"));
    RETURN_IF_ERROR(AbsolutePath(out.path, where + ".path"));
    if (const json* args = Field(value, "args")) {
      ASSIGN_OR_RETURN(out.args, StringList(*args, where + ".args"));
    }
    if (const json* env = Field(value, "env")) RETURN_IF_ERROR(Env(*env, where + ".env", out.env));
    if (const json* timeout = Field(value, "timeout")) {
      ASSIGN_OR_RETURN(out.timeout, Integer(*timeout, where + ".timeout", 1,
                                            std::numeric_limits<int32_t>::max()));
    }
    return Status::Ok();
  }

  bool from_yaml_;
  int required_ = 0;  // index in kCdiVersions of the newest feature used
  std::string required_by_;
};

bool HasExtension(const std::string& name, std::string_view ext) {
  return name.size() > ext.size() && name.compare(name.size() - ext.size(), ext.size(), ext) == 0;
}

// Reads and validates one spec file. NotFound only when the file has vanished; every
// other problem is InvalidArgument (or an I/O error) naming the file.
Result<std::shared_ptr<const SpecFile>> LoadSpecFile(const std::string& path) {
  ASSIGN_OR_RETURN(std::string text, ReadSpecFile(path));
  bool is_yaml = !HasExtension(path, ".json");
  auto parsed = ParseDocument(text, is_yaml);
  if (!parsed.ok()) return parsed.status().WithContext("CDI spec file " + path);
  auto file = SpecParser(is_yaml).Parse(*parsed);
  if (!file.ok()) return file.status().WithContext("CDI spec file " + path);
  file->path = path;
  return std::shared_ptr<const SpecFile>(std::make_shared<SpecFile>(std::move(file).value()));
}

// ---- editing the OCI spec ---------------------------------------------------------

// Returns the object at `keys` below `root`, creating absent (or null) members.
// InvalidArgument when a member on the way is something other than an object.
Result<json*> ObjectAt(json& root, std::initializer_list<const char*> keys) {
  json* node = &root;
  std::string where = "spec";
  if (node->is_null()) *node = json::object();
  if (!node->is_object()) return Status::InvalidArgument("the OCI spec is not an object");
  for (const char* key : keys) {
    where += std::string(".") + key;
    json& child = (*node)[key];
    if (child.is_null()) child = json::object();
    if (!child.is_object()) return Status::InvalidArgument(where + " is not an object");
    node = &child;
  }
  return node;
}

// Returns the array `key` of `object`, creating it when absent or null.
Result<json*> ArrayIn(json& object, const char* key, const std::string& where) {
  json& child = object[key];
  if (child.is_null()) child = json::array();
  if (!child.is_array()) return Status::InvalidArgument("spec." + where + " is not a list");
  return &child;
}

// One linux.devices entry.
struct LinuxDevice {
  std::string path;
  std::string type;  // "b", "c", "u" or "p"
  int64_t major = 0;
  int64_t minor = 0;
  std::optional<uint32_t> file_mode;
  std::optional<uint32_t> uid;
  std::optional<uint32_t> gid;
};

// The device type letter of a stat result, or nullopt for anything but a device node.
std::optional<std::string> DeviceType(const struct stat& st) {
  if (S_ISCHR(st.st_mode)) return "c";
  if (S_ISBLK(st.st_mode)) return "b";
  if (S_ISFIFO(st.st_mode)) return "p";
  return std::nullopt;
}

// Adds `device` to linux.devices, replacing an entry with the same path, and for block
// and character devices a rule allowing `access` to linux.resources.devices.
Status AddLinuxDevice(const LinuxDevice& device, const std::string& access, json& spec) {
  ASSIGN_OR_RETURN(json * linux_object, ObjectAt(spec, {"linux"}));
  ASSIGN_OR_RETURN(json * devices, ArrayIn(*linux_object, "devices", "linux.devices"));
  json entry = {{"path", device.path}, {"type", device.type}};
  bool numbered = device.type != "p";
  if (numbered) {
    entry["major"] = device.major;
    entry["minor"] = device.minor;
  }
  if (device.file_mode) entry["fileMode"] = *device.file_mode;
  if (device.uid) entry["uid"] = *device.uid;
  if (device.gid) entry["gid"] = *device.gid;
  devices->erase(std::remove_if(devices->begin(), devices->end(),
                                [&](const json& d) {
                                  return d.is_object() && d.value("path", "") == device.path;
                                }),
                 devices->end());
  devices->push_back(std::move(entry));
  if (!numbered) return Status::Ok();  // the device cgroup knows only b and c

  ASSIGN_OR_RETURN(json * resources, ObjectAt(spec, {"linux", "resources"}));
  ASSIGN_OR_RETURN(json * rules, ArrayIn(*resources, "devices", "linux.resources.devices"));
  json rule = {{"allow", true},
               {"type", device.type == "u" ? "c" : device.type},
               {"major", device.major},
               {"minor", device.minor},
               {"access", access}};
  rules->push_back(std::move(rule));
  return Status::Ok();
}

// process.user.uid / gid when set and not root: the container user then owns CDI
// device nodes that do not name an owner.
std::optional<uint32_t> ProcessUserId(const json& spec, const char* key) {
  const json* node = &spec;
  for (const char* step : {"process", "user", key}) {
    if (!node->is_object()) return std::nullopt;
    auto it = node->find(step);
    if (it == node->end()) return std::nullopt;
    node = &*it;
  }
  if (!node->is_number_integer()) return std::nullopt;
  int64_t id = node->get<int64_t>();
  if (id <= 0 || id > std::numeric_limits<uint32_t>::max()) return std::nullopt;
  return static_cast<uint32_t>(id);
}

// Completes a CDI device node from its host node: stat(2) supplies what the spec file
// leaves out. A node whose file gives type and major (or is a FIFO) needs no host node.
Status AddCdiDeviceNode(const DeviceNode& node, json& spec) {
  const std::string& host_path = node.host_path.empty() ? node.path : node.host_path;
  bool self_described = !node.type.empty() && (node.major.has_value() || node.type == "p");

  struct stat st;
  std::optional<std::string> host_type;
  std::string stat_problem;
  if (::stat(host_path.c_str(), &st) != 0) {
    stat_problem = std::strerror(errno);
  } else if (!(host_type = DeviceType(st))) {
    stat_problem = "not a device node";
  }
  if (!host_type && !self_described) {
    return Status::InvalidArgument("CDI device node " + host_path + ": " + stat_problem);
  }

  LinuxDevice device;
  device.path = node.path;
  device.type = node.type;
  device.major = node.major.value_or(0);
  device.minor = node.minor.value_or(0);
  if (host_type && !self_described) {
    bool char_alike = (node.type == "u" && *host_type == "c");
    if (device.type.empty()) {
      device.type = *host_type;
    } else if (device.type != *host_type && !char_alike) {
      return Status::InvalidArgument("CDI device node " + node.path + ": the spec says type " +
                                     node.type + " but host node " + host_path + " has type " +
                                     *host_type);
    }
    if (!node.major) {
      device.major = major(st.st_rdev);
      device.minor = minor(st.st_rdev);
    }
  }
  device.file_mode = node.file_mode;
  if (!device.file_mode && host_type) device.file_mode = st.st_mode & 07777;
  device.uid = node.uid ? node.uid : ProcessUserId(spec, "uid");
  device.gid = node.gid ? node.gid : ProcessUserId(spec, "gid");

  std::string access = node.permissions.empty()     ? "rwm"
                       : node.permissions == "none" ? ""
                                                    : node.permissions;
  return AddLinuxDevice(device, access, spec);
}

Status ApplyEdits(const Edits& edits, json& spec) {
  if (!edits.env.empty()) {
    ASSIGN_OR_RETURN(json * process, ObjectAt(spec, {"process"}));
    ASSIGN_OR_RETURN(json * env, ArrayIn(*process, "env", "process.env"));
    for (const std::string& entry : edits.env) {
      std::string prefix = entry.substr(0, entry.find('=') + 1);  // "KEY="
      env->erase(std::remove_if(env->begin(), env->end(),
                                [&](const json& e) {
                                  return e.is_string() &&
                                         e.get_ref<const std::string&>().rfind(prefix, 0) == 0;
                                }),
                 env->end());
      env->push_back(entry);
    }
  }

  for (const DeviceNode& node : edits.device_nodes) RETURN_IF_ERROR(AddCdiDeviceNode(node, spec));

  if (!edits.mounts.empty()) {
    ASSIGN_OR_RETURN(json * root, ObjectAt(spec, {}));
    ASSIGN_OR_RETURN(json * mounts, ArrayIn(*root, "mounts", "mounts"));
    for (const Mount& mount : edits.mounts) {
      mounts->erase(std::remove_if(mounts->begin(), mounts->end(),
                                   [&](const json& m) {
                                     return m.is_object() &&
                                            m.value("destination", "") == mount.container_path;
                                   }),
                    mounts->end());
      json entry = {{"destination", mount.container_path},
                    {"type", mount.type.empty() ? "bind" : mount.type},
                    {"source", mount.host_path}};
      if (!mount.options.empty()) entry["options"] = mount.options;
      mounts->push_back(std::move(entry));
    }
  }

  for (const Hook& hook : edits.hooks) {
    ASSIGN_OR_RETURN(json * hooks_object, ObjectAt(spec, {"hooks"}));
    ASSIGN_OR_RETURN(json * hooks,
                     ArrayIn(*hooks_object, hook.hook_name.c_str(), "hooks." + hook.hook_name));
    json entry = {{"path", hook.path}};
    if (!hook.args.empty()) entry["args"] = hook.args;
    if (!hook.env.empty()) entry["env"] = hook.env;
    if (hook.timeout) entry["timeout"] = *hook.timeout;
    hooks->push_back(std::move(entry));
  }

  if (!edits.additional_gids.empty()) {
    ASSIGN_OR_RETURN(json * user, ObjectAt(spec, {"process", "user"}));
    ASSIGN_OR_RETURN(json * gids, ArrayIn(*user, "additionalGids", "process.user.additionalGids"));
    for (uint32_t gid : edits.additional_gids) {
      if (gid == 0 || std::find(gids->begin(), gids->end(), json(gid)) != gids->end()) continue;
      gids->push_back(gid);
    }
  }
  return Status::Ok();
}

}  // namespace

// ---- public API -------------------------------------------------------------------

Status AddHostDevice(const std::string& spec_text, nlohmann::json& spec) {
  std::vector<std::string> parts;
  for (size_t start = 0;;) {
    size_t colon = spec_text.find(':', start);
    parts.push_back(spec_text.substr(start, colon - start));
    if (colon == std::string::npos) break;
    start = colon + 1;
  }
  const std::string bad_text = "device " + Quote(spec_text) +
                               " is not HOST[:CONTAINER][:PERMISSIONS] with absolute paths and "
                               "permissions from r, w, m";
  if (parts.size() > 3) return Status::InvalidArgument(bad_text);
  const std::string& host_path = parts[0];
  std::string container_path = host_path;
  std::string access = "rwm";
  if (parts.size() == 2 && IsAccessString(parts[1])) {
    access = parts[1];
  } else if (parts.size() >= 2) {
    container_path = parts[1];
    if (parts.size() == 3) access = parts[2];
  }
  if (!IsAbsolute(host_path) || !IsAbsolute(container_path) || !IsAccessString(access)) {
    return Status::InvalidArgument(bad_text);
  }

  struct stat st;
  if (::stat(host_path.c_str(), &st) != 0) {
    return Status::InvalidArgument("host device " + host_path + ": " + std::strerror(errno));
  }
  std::optional<std::string> type = DeviceType(st);
  if (!type) return Status::InvalidArgument("host device " + host_path + " is not a device node");

  LinuxDevice device;
  device.path = container_path;
  device.type = *type;
  device.major = major(st.st_rdev);
  device.minor = minor(st.st_rdev);
  device.file_mode = st.st_mode & 07777;
  device.uid = st.st_uid;
  device.gid = st.st_gid;
  json edited = spec;
  RETURN_IF_ERROR(AddLinuxDevice(device, access, edited));
  spec = std::move(edited);
  return Status::Ok();
}

bool IsCdiDeviceName(const std::string& name) {
  std::string_view view = name;
  size_t eq = view.find('=');
  if (eq == std::string_view::npos) return false;
  return IsValidKind(view.substr(0, eq)) && IsValidDeviceName(view.substr(eq + 1));
}

CdiRegistry::CdiRegistry(std::shared_ptr<const Catalog> catalog) : catalog_(std::move(catalog)) {}

std::vector<std::string> CdiRegistry::DefaultSpecDirs() { return {"/etc/cdi", "/var/run/cdi"}; }

Result<CdiRegistry> CdiRegistry::Load(const std::vector<std::string>& spec_dirs) {
  auto catalog = std::make_shared<Catalog>();
  for (const std::string& dir : spec_dirs) {
    auto names = fs::ListDir(dir);
    if (!names.ok()) {
      if (names.status().IsNotFound()) continue;
      return names.status().WithContext("CDI spec directory " + dir);
    }
    std::sort(names->begin(), names->end());
    const std::string prefix = !dir.empty() && dir.back() == '/' ? dir : dir + "/";

    std::map<std::string, DeviceEntry> found;  // this directory's devices
    for (const std::string& name : *names) {
      if (!HasExtension(name, ".json") && !HasExtension(name, ".yaml") &&
          !HasExtension(name, ".yml")) {
        continue;
      }
      const std::string path = prefix + name;
      struct stat st;
      if (::stat(path.c_str(), &st) != 0) {
        if (errno == ENOENT) continue;  // removed since listed, or a dangling link
        return Status::FromErrno(errno, "stat " + path);
      }
      if (S_ISDIR(st.st_mode)) continue;
      auto file = LoadSpecFile(path);
      if (!file.ok()) {
        if (file.status().IsNotFound()) continue;
        return file.status();
      }
      for (const auto& [device_name, edits] : (*file)->devices) {
        std::string qualified = (*file)->kind + "=" + device_name;
        auto [it, inserted] = found.try_emplace(qualified, DeviceEntry{*file, &edits});
        if (!inserted) {
          std::string message = "CDI device " + qualified;
          message += " is defined in both " + it->second.file->path;
          message += " and " + path;
          return Status::InvalidArgument(std::move(message));
        }
      }
    }
    for (auto& [qualified, entry] : found) catalog->devices[qualified] = std::move(entry);
  }
  return CdiRegistry(std::move(catalog));
}

Status CdiRegistry::Apply(const std::vector<std::string>& names, nlohmann::json& spec) const {
  Edits combined;
  std::set<const SpecFile*> files_applied;
  std::set<std::string> devices_applied;
  std::vector<std::string> unknown;
  for (const std::string& name : names) {
    if (!IsCdiDeviceName(name)) {
      return Status::InvalidArgument(
          Quote(name) + " is not a fully-qualified CDI device name (VENDOR/CLASS=NAME)");
    }
    auto it = catalog_->devices.find(name);
    if (it == catalog_->devices.end()) {
      unknown.push_back(Quote(name));
      continue;
    }
    if (!devices_applied.insert(name).second) continue;
    const DeviceEntry& entry = it->second;
    if (files_applied.insert(entry.file.get()).second) combined.Append(entry.file->edits);
    combined.Append(*entry.edits);
  }
  if (!unknown.empty()) {
    std::string list;
    for (const std::string& u : unknown) list += (list.empty() ? "" : ", ") + u;
    return Status::NotFound((unknown.size() == 1 ? "unknown CDI device " : "unknown CDI devices ") +
                            list);
  }
  json edited = spec;
  RETURN_IF_ERROR(ApplyEdits(combined, edited));
  spec = std::move(edited);
  return Status::Ok();
}

std::vector<std::string> CdiRegistry::DeviceNames() const {
  std::vector<std::string> names;
  names.reserve(catalog_->devices.size());
  for (const auto& [name, entry] : catalog_->devices) names.push_back(name);
  return names;
}

}  // namespace strata::runtime
