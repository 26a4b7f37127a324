#include "runtime-bridge/cdi.h"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>

#include <cstdlib>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "core/fs.h"

namespace strata::runtime {
namespace {

using nlohmann::json;

// A fresh directory under /tmp, removed at the end.
class TempDir {
 public:
  TempDir() {
    char name[] = "/tmp/strata-cdi-test-XXXXXX";
    EXPECT_NE(::mkdtemp(name), nullptr);
    path_ = name;
  }
  ~TempDir() { EXPECT_TRUE(fs::RemoveAll(path_).ok()); }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  const std::string& path() const { return path_; }
  // Creates (if needed) and returns the subdirectory `name`.
  std::string Subdir(const std::string& name) const {
    std::string dir = path_ + "/" + name;
    EXPECT_TRUE(fs::MakeDirs(dir).ok());
    return dir;
  }

 private:
  std::string path_;
};

void WriteFile(const std::string& path, const std::string& text) {
  ASSERT_TRUE(fs::WriteFileAtomic(path, text).ok()) << path;
}

// What stat(2) says about a host device node, to build expected entries.
struct HostNode {
  int64_t major = 0;
  int64_t minor = 0;
  uint32_t mode = 0;  // permission bits
  uint32_t uid = 0;
  uint32_t gid = 0;
};

HostNode StatNode(const std::string& path) {
  struct stat st;
  EXPECT_EQ(::stat(path.c_str(), &st), 0) << path;
  EXPECT_TRUE(S_ISCHR(st.st_mode)) << path;
  return {static_cast<int64_t>(major(st.st_rdev)), static_cast<int64_t>(minor(st.st_rdev)),
          static_cast<uint32_t>(st.st_mode & 07777), st.st_uid, st.st_gid};
}

json AllowRule(const HostNode& node, const std::string& access) {
  return {{"allow", true},
          {"type", "c"},
          {"major", node.major},
          {"minor", node.minor},
          {"access", access}};
}

// A spec as the spec generator might hand it over.
json BaseSpec() {
  return json::parse(R"({
    "ociVersion": "1.0.2",
    "process": {"user": {"uid": 0, "gid": 0}, "args": ["sh"],
                "env": ["PATH=/usr/bin:/bin", "TERM=xterm"]},
    "root": {"path": "rootfs"},
    "mounts": [{"destination": "/proc", "type": "proc", "source": "proc"}],
    "linux": {"resources": {"devices": [{"allow": false, "access": "rwm"}]}}
  })");
}

Result<CdiRegistry> LoadOne(const std::string& dir) { return CdiRegistry::Load({dir}); }

// Load must fail with InvalidArgument and a message holding every one of `needles`.
void ExpectLoadFails(const std::string& dir, const std::vector<std::string>& needles) {
  auto registry = LoadOne(dir);
  ASSERT_FALSE(registry.ok());
  EXPECT_TRUE(registry.status().IsInvalidArgument()) << registry.status().ToString();
  for (const std::string& needle : needles) {
    EXPECT_NE(registry.status().message().find(needle), std::string::npos)
        << "missing \"" << needle << "\" in: " << registry.status().message();
  }
}

// ---- AddHostDevice ------------------------------------------------------------------

TEST(AddHostDevice, AddsNodeAndAllowRuleFromStat) {
  HostNode fuse = StatNode("/dev/fuse");
  json spec = BaseSpec();
  ASSERT_TRUE(AddHostDevice("/dev/fuse", spec).ok());

  json expected = BaseSpec();
  expected["linux"]["devices"] = json::array({{{"path", "/dev/fuse"},
                                               {"type", "c"},
                                               {"major", fuse.major},
                                               {"minor", fuse.minor},
                                               {"fileMode", fuse.mode},
                                               {"uid", fuse.uid},
                                               {"gid", fuse.gid}}});
  expected["linux"]["resources"]["devices"].push_back(AllowRule(fuse, "rwm"));
  EXPECT_EQ(spec, expected) << spec.dump(2);
}

TEST(AddHostDevice, MapsContainerPathAndPermissions) {
  HostNode fuse = StatNode("/dev/fuse");
  HostNode null = StatNode("/dev/null");
  json spec = json::object();
  ASSERT_TRUE(AddHostDevice("/dev/fuse:/dev/myfuse:rw", spec).ok());
  ASSERT_TRUE(AddHostDevice("/dev/null:r", spec).ok());

  ASSERT_EQ(spec["linux"]["devices"].size(), 2u);
  EXPECT_EQ(spec["linux"]["devices"][0]["path"], "/dev/myfuse");
  EXPECT_EQ(spec["linux"]["devices"][0]["major"], fuse.major);
  EXPECT_EQ(spec["linux"]["devices"][1]["path"], "/dev/null");
  EXPECT_EQ(spec["linux"]["resources"]["devices"],
            json::array({AllowRule(fuse, "rw"), AllowRule(null, "r")}));
}

TEST(AddHostDevice, ReplacesEntryWithTheSameContainerPath) {
  HostNode zero = StatNode("/dev/zero");
  json spec = json::object();
  ASSERT_TRUE(AddHostDevice("/dev/null:/dev/x", spec).ok());
  ASSERT_TRUE(AddHostDevice("/dev/zero:/dev/x", spec).ok());
  ASSERT_EQ(spec["linux"]["devices"].size(), 1u);
  EXPECT_EQ(spec["linux"]["devices"][0]["minor"], zero.minor);
}

TEST(AddHostDevice, RejectsPathsThatAreNotDeviceNodesNamingThem) {
  json spec = BaseSpec();
  for (const std::string path : {"/etc/passwd", "/dev", "/no/such/device"}) {
    Status status = AddHostDevice(path, spec);
    EXPECT_TRUE(status.IsInvalidArgument()) << path << ": " << status.ToString();
    EXPECT_NE(status.message().find(path), std::string::npos) << status.message();
  }
  EXPECT_EQ(spec, BaseSpec());
}

TEST(AddHostDevice, RejectsMalformedText) {
  json spec = BaseSpec();
  for (const std::string text : {"", "dev/null", "/dev/null:dev/x", "/dev/null:/dev/x:rwx",
                                 "/dev/null:/dev/x:", "/a:/b:r:w"}) {
    EXPECT_TRUE(AddHostDevice(text, spec).IsInvalidArgument()) << text;
  }
  EXPECT_EQ(spec, BaseSpec());
}

TEST(AddHostDevice, RejectsWrongTypedSpecMemberAndLeavesSpecUnchanged) {
  json spec = json::parse(R"({"linux": {"devices": [{"path": "/dev/x"}], "resources": "none"}})");
  json before = spec;
  Status status = AddHostDevice("/dev/null", spec);
  EXPECT_TRUE(status.IsInvalidArgument()) << status.ToString();
  EXPECT_EQ(spec, before);
}

// ---- IsCdiDeviceName ---------------------------------------------------------------

TEST(IsCdiDeviceName, AcceptsFullyQualifiedNames) {
  for (const std::string name : {"vendor.com/class=name", "nvidia.com/gpu=0", "nvidia.com/gpu=all",
                                 "a.b/c.d=mig-1:0", "example.com/net_dev=eth-0"}) {
    EXPECT_TRUE(IsCdiDeviceName(name)) << name;
  }
}

TEST(IsCdiDeviceName, RejectsEverythingElse) {
  for (const std::string name : {"", "/dev/fuse", "gpu0", "vendor.com/gpu", "vendor.com=gpu0",
                                 "vendor.com/gpu=", "vendor.com/foo/bar=x", "vendor.com/gpu=-x",
                                 "1vendor.com/gpu=0", "vendor.com/gpu=a b", "/gpu=0"}) {
    EXPECT_FALSE(IsCdiDeviceName(name)) << name;
  }
}

// ---- CdiRegistry: applying ---------------------------------------------------------

TEST(CdiRegistry, AppliesDeviceNodesEnvAndMounts) {
  TempDir tmp;
  WriteFile(tmp.path() + "/vendor.json", R"({
    "cdiVersion": "0.5.0",
    "kind": "vendor.com/gpu",
    "devices": [{
      "name": "gpu0",
      "containerEdits": {
        "env": ["GPU=0"],
        "deviceNodes": [{"path": "/dev/vendor-gpu0", "hostPath": "/dev/null",
                         "permissions": "rw"}],
        "mounts": [{"hostPath": "/usr/lib/vendor", "containerPath": "/usr/lib/vendor",
                    "options": ["ro", "rbind"]}]
      }
    }],
    "containerEdits": {
      "env": ["VENDOR_DRIVER=1"],
      "mounts": [{"hostPath": "tmpfs", "containerPath": "/var/vendor", "type": "tmpfs",
                  "options": ["size=1m"]}]
    }
  })");
  auto registry = LoadOne(tmp.path());
  ASSERT_TRUE(registry.ok()) << registry.status().ToString();

  json spec = BaseSpec();
  ASSERT_TRUE(registry->Apply({"vendor.com/gpu=gpu0"}, spec).ok());

  HostNode null = StatNode("/dev/null");
  json expected = BaseSpec();
  expected["process"]["env"] = {"PATH=/usr/bin:/bin", "TERM=xterm", "VENDOR_DRIVER=1", "GPU=0"};
  expected["linux"]["devices"] = json::array({{{"path", "/dev/vendor-gpu0"},
                                               {"type", "c"},
                                               {"major", null.major},
                                               {"minor", null.minor},
                                               {"fileMode", null.mode}}});
  expected["linux"]["resources"]["devices"].push_back(AllowRule(null, "rw"));
  expected["mounts"].push_back({{"destination", "/var/vendor"},
                                {"type", "tmpfs"},
                                {"source", "tmpfs"},
                                {"options", {"size=1m"}}});
  expected["mounts"].push_back({{"destination", "/usr/lib/vendor"},
                                {"type", "bind"},
                                {"source", "/usr/lib/vendor"},
                                {"options", {"ro", "rbind"}}});
  EXPECT_EQ(spec, expected) << spec.dump(2);
}

TEST(CdiRegistry, ReadsYamlSpecFiles) {
  TempDir tmp;
  WriteFile(tmp.path() + "/fuse.yaml", R"(
cdiVersion: "0.6.0"
kind: example.com/fs
annotations:
  owner: tests
devices:
  - name: fuse
    containerEdits:
      deviceNodes:
        - path: /dev/fuse
          fileMode: 0o640
          uid: 1000
          gid: 1001
          permissions: none
  - name: 0
    containerEdits:
      env: [ZERO=yes]
)");
  WriteFile(tmp.path() + "/other.yml", R"(
cdiVersion: 0.3.0
kind: example.com/null
devices:
  - name: "null"
    containerEdits:
      deviceNodes: [{path: /dev/null, type: c}]
)");
  auto registry = LoadOne(tmp.path());
  ASSERT_TRUE(registry.ok()) << registry.status().ToString();
  EXPECT_EQ(registry->DeviceNames(),
            (std::vector<std::string>{"example.com/fs=0", "example.com/fs=fuse",
                                      "example.com/null=null"}));

  json spec = json::object();
  ASSERT_TRUE(
      registry->Apply({"example.com/fs=fuse", "example.com/null=null", "example.com/fs=0"}, spec)
          .ok());

  HostNode fuse = StatNode("/dev/fuse");
  HostNode null = StatNode("/dev/null");
  json expected = {{"process", {{"env", {"ZERO=yes"}}}},
                   {"linux",
                    {{"devices",
                      {{{"path", "/dev/fuse"},
                        {"type", "c"},
                        {"major", fuse.major},
                        {"minor", fuse.minor},
                        {"fileMode", 0640},
                        {"uid", 1000},
                        {"gid", 1001}},
                       {{"path", "/dev/null"},
                        {"type", "c"},
                        {"major", null.major},
                        {"minor", null.minor},
                        {"fileMode", null.mode}}}},
                     {"resources", {{"devices", {AllowRule(fuse, ""), AllowRule(null, "rwm")}}}}}}};
  EXPECT_EQ(spec, expected) << spec.dump(2);
}

TEST(CdiRegistry, AppliesSpecLevelEditsOncePerFileAndEachDeviceOnce) {
  TempDir tmp;
  WriteFile(tmp.path() + "/vendor.yaml", R"(
cdiVersion: 0.5.0
kind: vendor.com/gpu
containerEdits:
  env: [COMMON=1]
devices:
  - {name: a, containerEdits: {env: [A=1]}}
  - {name: b, containerEdits: {env: [B=1]}}
)");
  auto registry = LoadOne(tmp.path());
  ASSERT_TRUE(registry.ok()) << registry.status().ToString();
  json spec = json::object();
  ASSERT_TRUE(
      registry->Apply({"vendor.com/gpu=b", "vendor.com/gpu=a", "vendor.com/gpu=b"}, spec).ok());
  EXPECT_EQ(spec["process"]["env"], json({"COMMON=1", "B=1", "A=1"}));
}

TEST(CdiRegistry, EnvironmentOverridesTheSameKey) {
  TempDir tmp;
  WriteFile(tmp.path() + "/vendor.json", R"({
    "cdiVersion": "0.3.0", "kind": "vendor.com/x",
    "devices": [{"name": "x", "containerEdits": {"env": ["TERM=vt100", "EMPTY="]}}]
  })");
  auto registry = LoadOne(tmp.path());
  ASSERT_TRUE(registry.ok()) << registry.status().ToString();
  json spec = BaseSpec();
  spec["process"]["env"].push_back("TERMINFO=/x");
  ASSERT_TRUE(registry->Apply({"vendor.com/x=x"}, spec).ok());
  EXPECT_EQ(spec["process"]["env"],
            json({"PATH=/usr/bin:/bin", "TERMINFO=/x", "TERM=vt100", "EMPTY="}));
}

TEST(CdiRegistry, TakesMissingNodeDetailsFromHostButTrustsSelfDescribedNodes) {
  TempDir tmp;
  WriteFile(tmp.path() + "/vendor.json", R"({
    "cdiVersion": "0.5.0", "kind": "vendor.com/x",
    "devices": [{"name": "x", "containerEdits": {"deviceNodes": [
      {"path": "/dev/zero"},
      {"path": "/dev/absent", "hostPath": "/dev/strata-no-such-node", "type": "b",
       "major": 259, "minor": 7, "permissions": "r"},
      {"path": "/dev/fifo", "hostPath": "/dev/strata-no-such-fifo", "type": "p"}
    ]}}]
  })");
  auto registry = LoadOne(tmp.path());
  ASSERT_TRUE(registry.ok()) << registry.status().ToString();
  json spec = json::object();
  ASSERT_TRUE(registry->Apply({"vendor.com/x=x"}, spec).ok());

  HostNode zero = StatNode("/dev/zero");
  json expected_devices = {{{"path", "/dev/zero"},
                            {"type", "c"},
                            {"major", zero.major},
                            {"minor", zero.minor},
                            {"fileMode", zero.mode}},
                           {{"path", "/dev/absent"}, {"type", "b"}, {"major", 259}, {"minor", 7}},
                           {{"path", "/dev/fifo"}, {"type", "p"}}};
  EXPECT_EQ(spec["linux"]["devices"], expected_devices) << spec.dump(2);
  json expected_rules = {
      AllowRule(zero, "rwm"),
      {{"allow", true}, {"type", "b"}, {"major", 259}, {"minor", 7}, {"access", "r"}}};
  EXPECT_EQ(spec["linux"]["resources"]["devices"], expected_rules) << spec.dump(2);
}

TEST(CdiRegistry, DeviceNodesDefaultToTheContainerUser) {
  TempDir tmp;
  WriteFile(tmp.path() + "/vendor.json", R"({
    "cdiVersion": "0.3.0", "kind": "vendor.com/x",
    "devices": [{"name": "x", "containerEdits": {"deviceNodes": [{"path": "/dev/null"}]}}]
  })");
  auto registry = LoadOne(tmp.path());
  ASSERT_TRUE(registry.ok()) << registry.status().ToString();
  json spec = {{"process", {{"user", {{"uid", 1000}, {"gid", 100}}}}}};
  ASSERT_TRUE(registry->Apply({"vendor.com/x=x"}, spec).ok());
  EXPECT_EQ(spec["linux"]["devices"][0]["uid"], 1000);
  EXPECT_EQ(spec["linux"]["devices"][0]["gid"], 100);
}

TEST(CdiRegistry, AddsHooksAndAdditionalGids) {
  TempDir tmp;
  WriteFile(tmp.path() + "/vendor.yaml", R"(
cdiVersion: 0.7.0
kind: vendor.com/gpu
devices:
  - name: gpu0
    containerEdits:
      hooks:
        - hookName: createContainer
          path: /usr/bin/vendor-hook
          args: [vendor-hook, update-ldcache]
          env: [DEBUG=1]
          timeout: 5
        - {hookName: poststop, path: /usr/bin/vendor-cleanup}
      additionalGids: [0, 44, 44, 107]
)");
  auto registry = LoadOne(tmp.path());
  ASSERT_TRUE(registry.ok()) << registry.status().ToString();
  json spec = BaseSpec();
  spec["process"]["user"]["additionalGids"] = {107};
  spec["hooks"] = {{"createContainer", {{{"path", "/bin/existing"}}}}};
  ASSERT_TRUE(registry->Apply({"vendor.com/gpu=gpu0"}, spec).ok());

  json expected_hooks = {{"createContainer",
                          {{{"path", "/bin/existing"}},
                           {{"path", "/usr/bin/vendor-hook"},
                            {"args", {"vendor-hook", "update-ldcache"}},
                            {"env", {"DEBUG=1"}},
                            {"timeout", 5}}}},
                         {"poststop", {{{"path", "/usr/bin/vendor-cleanup"}}}}};
  EXPECT_EQ(spec["hooks"], expected_hooks) << spec.dump(2);
  EXPECT_EQ(spec["process"]["user"]["additionalGids"], json({107, 44}));
}

TEST(CdiRegistry, UnknownDeviceIsNotFoundNamingItAndLeavesSpecUnchanged) {
  TempDir tmp;
  WriteFile(tmp.path() + "/vendor.json", R"({
    "cdiVersion": "0.3.0", "kind": "vendor.com/x",
    "containerEdits": {"env": ["X=1"]},
    "devices": [{"name": "x", "containerEdits": {"env": ["Y=1"]}}]
  })");
  auto registry = LoadOne(tmp.path());
  ASSERT_TRUE(registry.ok()) << registry.status().ToString();
  json spec = BaseSpec();
  Status status = registry->Apply({"vendor.com/x=x", "vendor.com/x=nope"}, spec);
  EXPECT_TRUE(status.IsNotFound()) << status.ToString();
  EXPECT_NE(status.message().find("vendor.com/x=nope"), std::string::npos) << status.message();
  EXPECT_EQ(spec, BaseSpec());

  EXPECT_TRUE(registry->Apply({"not-qualified"}, spec).IsInvalidArgument());
  EXPECT_EQ(spec, BaseSpec());
}

TEST(CdiRegistry, FailedApplyLeavesSpecUnchanged) {
  TempDir tmp;
  WriteFile(tmp.path() + "/vendor.json", R"({
    "cdiVersion": "0.5.0", "kind": "vendor.com/x",
    "containerEdits": {"env": ["X=1"], "mounts": [{"hostPath": "/a", "containerPath": "/a"}]},
    "devices": [
      {"name": "missing", "containerEdits": {"deviceNodes": [
        {"path": "/dev/ok", "hostPath": "/dev/null"},
        {"path": "/dev/missing", "hostPath": "/dev/strata-no-such-node"}]}},
      {"name": "mismatch", "containerEdits": {"deviceNodes": [
        {"path": "/dev/null", "type": "b"}]}},
      {"name": "env", "containerEdits": {"env": ["Y=1"]}}
    ]
  })");
  auto registry = LoadOne(tmp.path());
  ASSERT_TRUE(registry.ok()) << registry.status().ToString();

  json spec = BaseSpec();
  Status status = registry->Apply({"vendor.com/x=missing"}, spec);
  EXPECT_TRUE(status.IsInvalidArgument()) << status.ToString();
  EXPECT_NE(status.message().find("/dev/strata-no-such-node"), std::string::npos)
      << status.message();
  EXPECT_EQ(spec, BaseSpec());

  status = registry->Apply({"vendor.com/x=mismatch"}, spec);
  EXPECT_TRUE(status.IsInvalidArgument()) << status.ToString();
  EXPECT_EQ(spec, BaseSpec());

  json odd = BaseSpec();
  odd["process"]["env"] = "X=1";  // not a list
  json before = odd;
  status = registry->Apply({"vendor.com/x=env"}, odd);
  EXPECT_TRUE(status.IsInvalidArgument()) << status.ToString();
  EXPECT_NE(status.message().find("process.env"), std::string::npos) << status.message();
  EXPECT_EQ(odd, before);
}

// ---- CdiRegistry: loading ----------------------------------------------------------

TEST(CdiRegistry, LaterDirectoryOverridesEarlierForTheSameDevice) {
  TempDir tmp;
  std::string etc = tmp.Subdir("etc-cdi");
  std::string run = tmp.Subdir("run-cdi");
  WriteFile(etc + "/vendor.yaml", R"(
cdiVersion: 0.3.0
kind: vendor.com/gpu
containerEdits: {env: [FROM=etc]}
devices:
  - {name: gpu0, containerEdits: {env: [GPU0=etc]}}
  - {name: gpu1, containerEdits: {env: [GPU1=etc]}}
)");
  WriteFile(run + "/generated.json", R"({
    "cdiVersion": "0.3.0", "kind": "vendor.com/gpu",
    "containerEdits": {"env": ["FROM=run"]},
    "devices": [{"name": "gpu0", "containerEdits": {"env": ["GPU0=run"]}}]
  })");

  auto registry = CdiRegistry::Load({etc, run, tmp.path() + "/absent"});
  ASSERT_TRUE(registry.ok()) << registry.status().ToString();
  EXPECT_EQ(registry->DeviceNames(),
            (std::vector<std::string>{"vendor.com/gpu=gpu0", "vendor.com/gpu=gpu1"}));

  json spec = json::object();
  ASSERT_TRUE(registry->Apply({"vendor.com/gpu=gpu0"}, spec).ok());
  EXPECT_EQ(spec["process"]["env"], json({"FROM=run", "GPU0=run"}));

  spec = json::object();
  ASSERT_TRUE(registry->Apply({"vendor.com/gpu=gpu1"}, spec).ok());
  EXPECT_EQ(spec["process"]["env"], json({"FROM=etc", "GPU1=etc"}));

  auto reversed = CdiRegistry::Load({run, etc});
  ASSERT_TRUE(reversed.ok()) << reversed.status().ToString();
  spec = json::object();
  ASSERT_TRUE(reversed->Apply({"vendor.com/gpu=gpu0"}, spec).ok());
  EXPECT_EQ(spec["process"]["env"], json({"FROM=etc", "GPU0=etc"}));
}

TEST(CdiRegistry, MissingDirectoriesGiveAnEmptyRegistry) {
  auto registry = CdiRegistry::Load({"/nonexistent/strata-cdi-a", "/nonexistent/strata-cdi-b"});
  ASSERT_TRUE(registry.ok()) << registry.status().ToString();
  EXPECT_TRUE(registry->DeviceNames().empty());
}

TEST(CdiRegistry, IgnoresOtherFilesAndSubdirectories) {
  TempDir tmp;
  WriteFile(tmp.path() + "/README", "not a spec {");
  WriteFile(tmp.path() + "/vendor.json.bak", "not a spec {");
  tmp.Subdir("nested.json");
  WriteFile(tmp.path() + "/nested.json/inner.json", "not a spec {");
  auto registry = LoadOne(tmp.path());
  ASSERT_TRUE(registry.ok()) << registry.status().ToString();
  EXPECT_TRUE(registry->DeviceNames().empty());
}

TEST(CdiRegistry, RejectsMalformedJsonNamingTheFile) {
  TempDir tmp;
  WriteFile(tmp.path() + "/broken.json", R"({"cdiVersion": "0.3.0", "kind": )");
  ExpectLoadFails(tmp.path(), {tmp.path() + "/broken.json", "invalid JSON"});
}

TEST(CdiRegistry, RejectsMalformedYamlNamingTheFile) {
  TempDir tmp;
  WriteFile(tmp.path() + "/broken.yaml", "cdiVersion: 0.3.0\nkind: [unclosed\n");
  ExpectLoadFails(tmp.path(), {tmp.path() + "/broken.yaml", "invalid YAML"});
}

TEST(CdiRegistry, RejectsTheSameDeviceInTwoFilesOfOneDirectoryNamingBoth) {
  TempDir tmp;
  const std::string spec = R"({"cdiVersion": "0.3.0", "kind": "vendor.com/gpu",
    "devices": [{"name": "gpu0", "containerEdits": {"env": ["A=1"]}}]})";
  WriteFile(tmp.path() + "/a.json", spec);
  WriteFile(tmp.path() + "/b.json", spec);
  ExpectLoadFails(tmp.path(),
                  {"vendor.com/gpu=gpu0", tmp.path() + "/a.json", tmp.path() + "/b.json"});
}

TEST(CdiRegistry, RejectsADeviceListedTwiceInOneFile) {
  TempDir tmp;
  WriteFile(tmp.path() + "/a.yaml", R"(
cdiVersion: 0.3.0
kind: vendor.com/gpu
devices:
  - {name: gpu0, containerEdits: {env: [A=1]}}
  - {name: gpu0, containerEdits: {env: [A=2]}}
)");
  ExpectLoadFails(tmp.path(), {tmp.path() + "/a.yaml", "\"gpu0\" is listed twice"});
}

TEST(CdiRegistry, RejectsRelativeContainerPath) {
  TempDir tmp;
  WriteFile(tmp.path() + "/a.json", R"({"cdiVersion": "0.3.0", "kind": "vendor.com/x",
    "devices": [{"name": "x", "containerEdits": {
      "mounts": [{"hostPath": "/usr/lib/x", "containerPath": "usr/lib/x"}]}}]})");
  ExpectLoadFails(tmp.path(), {tmp.path() + "/a.json",
                               "devices[0].containerEdits.mounts[0].containerPath \"usr/lib/x\"",
                               "not an absolute path"});
}

TEST(CdiRegistry, RejectsRelativeDeviceHostAndHookPaths) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {R"("deviceNodes": [{"path": "dev/x"}])", "deviceNodes[0].path"},
      {R"("deviceNodes": [{"path": "/dev/x", "hostPath": "x"}])", "deviceNodes[0].hostPath"},
      {R"("mounts": [{"hostPath": "lib", "containerPath": "/lib"}])", "mounts[0].hostPath"},
      {R"("hooks": [{"hookName": "poststart", "path": "hook"}])", "hooks[0].path"},
  };
  for (const auto& [edits, field] : cases) {
    TempDir tmp;
    WriteFile(tmp.path() + "/a.json",
              R"({"cdiVersion": "0.5.0", "kind": "vendor.com/x", "devices": [{"name": "x",
                  "containerEdits": {)" +
                  edits + "}}]}");
    ExpectLoadFails(tmp.path(), {field, "not an absolute path"});
  }
}

TEST(CdiRegistry, RejectsInvalidFieldValues) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {R"("env": ["NOEQUALS"])", "env[0]"},
      {R"("hooks": [{"hookName": "preStart", "path": "/x"}])", "hookName \"preStart\""},
      {R"("hooks": [{"hookName": "poststop", "path": "/x", "timeout": 0}])", "timeout"},
      {R"("deviceNodes": [{"path": "/dev/x", "permissions": "rwx"}])", "permissions"},
      {R"("deviceNodes": [{"path": "/dev/x", "type": "q"}])", "type \"q\""},
      {R"("deviceNodes": [{"path": "/dev/x", "major": -1}])", "major"},
      {R"("deviceNodes": [{"path": "/dev/x", "fileMode": "0666"}])", "fileMode"},
      {R"("intelRdt": {"closID": "x"})", "intelRdt is not supported"},
      {R"("mounts": [{"hostPath": "/x", "containerPath": "/x", "readonly": true}])",
       "unknown field devices[0].containerEdits.mounts[0].readonly"},
  };
  for (const auto& [edits, needle] : cases) {
    TempDir tmp;
    WriteFile(tmp.path() + "/a.json",
              R"({"cdiVersion": "0.7.0", "kind": "vendor.com/x", "devices": [{"name": "x",
                  "containerEdits": {)" +
                  edits + "}}]}");
    ExpectLoadFails(tmp.path(), {tmp.path() + "/a.json", needle});
  }
}

TEST(CdiRegistry, RejectsMalformedTopLevelFields) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {R"({"kind": "vendor.com/x", "devices": []})", "cdiVersion is missing"},
      {R"({"cdiVersion": "9.9.9", "kind": "vendor.com/x", "devices": []})", "\"9.9.9\""},
      {R"({"cdiVersion": "0.3.0", "kind": "vendor.com/x/y", "devices": []})", "kind"},
      {R"({"cdiVersion": "0.3.0", "kind": "vendor", "devices": []})", "kind"},
      {R"({"cdiVersion": "0.3.0", "kind": "vendor.com/x", "devices": []})", "devices is empty"},
      {R"({"cdiVersion": "0.3.0", "kind": "vendor.com/x", "devices": [{"name": "-x",
          "containerEdits": {"env": ["A=1"]}}]})",
       "devices[0].name \"-x\""},
      {R"({"cdiVersion": "0.3.0", "kind": "vendor.com/x", "devices": [{"name": "x"}]})",
       "has no containerEdits"},
      {R"({"cdiVersion": "0.3.0", "kind": "vendor.com/x", "extra": 1, "devices": []})",
       "unknown field extra"},
      {R"(["not", "an", "object"])", "not a mapping"},
  };
  for (const auto& [text, needle] : cases) {
    TempDir tmp;
    WriteFile(tmp.path() + "/a.json", text);
    ExpectLoadFails(tmp.path(), {tmp.path() + "/a.json", needle});
  }
}

TEST(CdiRegistry, RejectsFieldsNewerThanTheDeclaredVersion) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {R"("0.3.0", "devices": [{"name": "x", "containerEdits": {"mounts": [
          {"hostPath": "/x", "containerPath": "/x", "type": "bind"}]}}])",
       "needs cdiVersion 0.4.0"},
      {R"("0.4.0", "devices": [{"name": "x", "containerEdits": {"deviceNodes": [
          {"path": "/dev/x", "hostPath": "/dev/null"}]}}])",
       "needs cdiVersion 0.5.0"},
      {R"("0.4.0", "devices": [{"name": "0", "containerEdits": {"env": ["A=1"]}}])",
       "needs cdiVersion 0.5.0"},
      {R"("0.5.0", "annotations": {"a": "b"}, "devices": [{"name": "x",
          "containerEdits": {"env": ["A=1"]}}])",
       "needs cdiVersion 0.6.0"},
      {R"("0.6.0", "devices": [{"name": "x", "containerEdits": {"additionalGids": [5]}}])",
       "needs cdiVersion 0.7.0"},
  };
  for (const auto& [rest, needle] : cases) {
    TempDir tmp;
    WriteFile(tmp.path() + "/a.json", R"({"kind": "vendor.com/x", "cdiVersion": )" + rest + "}");
    ExpectLoadFails(tmp.path(), {tmp.path() + "/a.json", needle});
  }
}

TEST(CdiRegistry, RejectsSpecFilesLargerThanOneMebibyte) {
  TempDir tmp;
  std::string big = R"({"cdiVersion": "0.3.0", "kind": "vendor.com/x", "devices": [{"name": "x",
    "containerEdits": {"env": ["A=1"]}}], "annotations": {"pad": ")";
  big += std::string((1 << 20) - big.size() + 1, 'x');
  big += "\"}}";
  WriteFile(tmp.path() + "/big.json", big);
  ExpectLoadFails(tmp.path(), {tmp.path() + "/big.json", "1 MiB"});
}

TEST(CdiRegistry, RejectsYamlAliasesExpandingWithoutBound) {
  TempDir tmp;
  std::string text = "a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n";
  for (int i = 1; i < 12; ++i) {
    std::string prev = "*a" + std::to_string(i - 1);
    text += "a" + std::to_string(i) + ": &a" + std::to_string(i) + " [" + prev;
    for (int j = 1; j < 10; ++j) text += ", " + prev;
    text += "]\n";
  }
  WriteFile(tmp.path() + "/bomb.yaml", text);
  ExpectLoadFails(tmp.path(), {tmp.path() + "/bomb.yaml", "aliases"});
}

TEST(CdiRegistry, RejectsSpecFilesThatAreNotRegularFiles) {
  TempDir tmp;
  ASSERT_EQ(::mkfifo((tmp.path() + "/fifo.json").c_str(), 0600), 0);
  ExpectLoadFails(tmp.path(), {tmp.path() + "/fifo.json", "not a regular file"});
}

}  // namespace
}  // namespace strata::runtime
