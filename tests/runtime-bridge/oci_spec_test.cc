#include "runtime-bridge/oci_spec.h"

#include <gtest/gtest.h>
#include <signal.h>

namespace strata::runtime {
namespace {

TEST(ImageConfig, ReadsEntrypointCmdEnvWorkdirUserAndStopSignal) {
  auto c = ParseImageConfig(R"({"architecture":"amd64","config":{"Entrypoint":["/bin/sh","-c"],
      "Cmd":["echo hi"],"Env":["PATH=/bin","A=1"],"WorkingDir":"/srv","User":"daemon:daemon",
      "StopSignal":"SIGQUIT"}})");
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(c->entrypoint, (std::vector<std::string>{"/bin/sh", "-c"}));
  EXPECT_EQ(c->cmd, (std::vector<std::string>{"echo hi"}));
  EXPECT_EQ(c->env, (std::vector<std::string>{"PATH=/bin", "A=1"}));
  EXPECT_EQ(c->working_dir, "/srv");
  EXPECT_EQ(c->user, "daemon:daemon");
  EXPECT_EQ(c->stop_signal, "SIGQUIT");
}

TEST(ImageConfig, MissingConfigObjectIsEmptyAndGarbageIsRefused) {
  auto empty = ParseImageConfig(R"({"rootfs":{}})");
  ASSERT_TRUE(empty.ok());
  EXPECT_TRUE(empty->cmd.empty());
  EXPECT_FALSE(ParseImageConfig("not json").ok());
  EXPECT_FALSE(ParseImageConfig(R"({"config":"x"})").ok());
}

TEST(ProcessArgs, FollowDockerRulesForEntrypointAndCmd) {
  ImageConfig image;
  image.entrypoint = {"/entry"};
  image.cmd = {"default"};
  EXPECT_EQ(*ProcessArgs(image, std::nullopt, {}), (std::vector<std::string>{"/entry", "default"}));
  EXPECT_EQ(*ProcessArgs(image, std::nullopt, {"x", "y"}),
            (std::vector<std::string>{"/entry", "x", "y"}));
  // --entrypoint drops the image's Cmd.
  EXPECT_EQ(*ProcessArgs(image, std::string("/other"), {}), (std::vector<std::string>{"/other"}));
  EXPECT_EQ(*ProcessArgs(image, std::string("/other"), {"a"}),
            (std::vector<std::string>{"/other", "a"}));
  ImageConfig none;
  auto nothing = ProcessArgs(none, std::nullopt, {});
  EXPECT_EQ(nothing.status().code(), Code::kInvalidArgument);
}

TEST(ProcessEnv, OverridesReplaceImageValuesAndDefaultsFillGaps) {
  auto env = ProcessEnv({"A=1", "B=2"}, {"B=3", "C=4"}, "box", "/root", true);
  ASSERT_TRUE(env.ok());
  EXPECT_EQ(*env, (std::vector<std::string>{
                      "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "A=1",
                      "B=3", "C=4", "HOSTNAME=box", "HOME=/root", "TERM=xterm"}));
  auto own_path = ProcessEnv({"PATH=/x"}, {}, "", "/", false);
  EXPECT_EQ(*own_path, (std::vector<std::string>{"PATH=/x", "HOME=/"}));
  EXPECT_EQ(ProcessEnv({}, {"NOEQUALS"}, "", "/", false).status().code(), Code::kInvalidArgument);
  EXPECT_EQ(ProcessEnv({}, {"=x"}, "", "/", false).status().code(), Code::kInvalidArgument);
}

TEST(BindMount, ParsesModesAndRefusesRelativeOrMissingPaths) {
  auto rw = ParseBindMount("/tmp:/data");
  ASSERT_TRUE(rw.ok());
  EXPECT_EQ(rw->host_path, "/tmp");
  EXPECT_EQ(rw->container_path, "/data");
  EXPECT_FALSE(rw->readonly);
  EXPECT_TRUE(ParseBindMount("/tmp:/data:ro")->readonly);
  EXPECT_FALSE(ParseBindMount("tmp:/data").ok());
  EXPECT_FALSE(ParseBindMount("/tmp:data").ok());
  EXPECT_FALSE(ParseBindMount("/tmp:/").ok());
  EXPECT_FALSE(ParseBindMount("/tmp:/data:rx").ok());
  EXPECT_FALSE(ParseBindMount("/does/not/exist:/data").ok());
  EXPECT_FALSE(ParseBindMount("/tmp").ok());
}

TEST(Signals, NamesAndNumbers) {
  EXPECT_EQ(*ParseSignal("SIGTERM"), SIGTERM);
  EXPECT_EQ(*ParseSignal("kill"), SIGKILL);
  EXPECT_EQ(*ParseSignal("HUP"), SIGHUP);
  EXPECT_EQ(*ParseSignal("10"), 10);
  EXPECT_FALSE(ParseSignal("SIGNOPE").ok());
  EXPECT_FALSE(ParseSignal("0").ok());
  EXPECT_FALSE(ParseSignal("999").ok());
}

TEST(BuildSpec, DefaultsAreContainerdsAndLimitsAppear) {
  SpecOptions o;
  o.args = {"/bin/true"};
  o.env = {"PATH=/bin"};
  o.user.uid = 1000;
  o.user.gid = 100;
  o.user.additional_gids = {10};
  o.hostname = "box";
  o.memory_bytes = 64 << 20;
  o.cpus = 0.5;
  o.pids_limit = 20;
  o.cgroups_path = "/strata/x";
  o.readonly_rootfs = true;
  nlohmann::json spec = BuildSpec(o);
  EXPECT_EQ(spec["ociVersion"], "1.0.2");
  EXPECT_EQ(spec["root"]["path"], "rootfs");
  EXPECT_EQ(spec["root"]["readonly"], true);
  EXPECT_EQ(spec["hostname"], "box");
  EXPECT_EQ(spec["process"]["user"]["uid"], 1000);
  EXPECT_EQ(spec["process"]["user"]["additionalGids"][0], 10);
  EXPECT_EQ(spec["process"]["capabilities"]["bounding"].size(), DefaultCapabilities().size());
  EXPECT_EQ(spec["linux"]["resources"]["memory"]["limit"], 64 << 20);
  EXPECT_EQ(spec["linux"]["resources"]["cpu"]["quota"], 50000);
  EXPECT_EQ(spec["linux"]["resources"]["pids"]["limit"], 20);
  EXPECT_EQ(spec["linux"]["cgroupsPath"], "/strata/x");
  std::vector<std::string> ns;
  for (const auto& n : spec["linux"]["namespaces"]) ns.push_back(n["type"]);
  EXPECT_EQ(ns, (std::vector<std::string>{"pid", "ipc", "mount", "uts", "network"}));
  EXPECT_FALSE(spec["linux"].contains("uidMappings"));
  bool proc_masked = false;
  for (const auto& p : spec["linux"]["maskedPaths"]) proc_masked |= p == "/proc/kcore";
  EXPECT_TRUE(proc_masked);
}

TEST(BuildSpec, UserNamespaceAddsMappingsAndHostNetworkSharesNamespaces) {
  SpecOptions o;
  o.args = {"/bin/true"};
  o.uid_map = IdMap{0, 100000, 65536};
  o.gid_map = IdMap{0, 200000, 65536};
  o.network = "host";
  o.hostname = "ignored";
  o.binds = {BindMount{"/tmp", "/data", true}};
  nlohmann::json spec = BuildSpec(o);
  EXPECT_EQ(spec["linux"]["uidMappings"][0]["hostID"], 100000);
  EXPECT_EQ(spec["linux"]["gidMappings"][0]["hostID"], 200000);
  EXPECT_EQ(spec["linux"]["uidMappings"][0]["size"], 65536);
  std::vector<std::string> ns;
  for (const auto& n : spec["linux"]["namespaces"]) ns.push_back(n["type"]);
  EXPECT_EQ(ns, (std::vector<std::string>{"pid", "ipc", "mount", "user", "cgroup"}));
  EXPECT_FALSE(spec.contains("hostname"));
  bool sys_bind = false, data_ro = false;
  for (const auto& m : spec["mounts"]) {
    if (m["destination"] == "/sys") sys_bind = m["type"] == "none";
    if (m["destination"] == "/data") {
      data_ro = std::find(m["options"].begin(), m["options"].end(), "ro") != m["options"].end();
    }
  }
  EXPECT_TRUE(sys_bind) << "sysfs cannot be mounted from a user namespace without its own netns";
  EXPECT_TRUE(data_ro);
}

TEST(ExecProcess, InheritsTheSpecsProcessAndOverrides) {
  SpecOptions o;
  o.args = {"/bin/init"};
  o.env = {"A=1", "B=2"};
  o.cwd = "/srv";
  nlohmann::json spec = BuildSpec(o);
  ResolvedUser nobody{65534, 65534, {}, "/"};
  nlohmann::json p = ExecProcess(spec, {"/bin/sh"}, {"B=3"}, "", nobody, true);
  EXPECT_EQ(p["args"], nlohmann::json({"/bin/sh"}));
  EXPECT_EQ(p["env"], nlohmann::json({"A=1", "B=3", "TERM=xterm"}));
  EXPECT_EQ(p["cwd"], "/srv");
  EXPECT_EQ(p["user"]["uid"], 65534);
  EXPECT_EQ(p["terminal"], true);
  EXPECT_TRUE(p.contains("capabilities"));
}

}  // namespace
}  // namespace strata::runtime
