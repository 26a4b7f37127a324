// The snapshot service, specified through its gRPC API: containerd's Snapshots
// service and strata's Admin service, served in-process on a unix socket over a real
// metadata::Store and snapshotter::Overlay. Every layer is mounted for real and
// checked against a plain directory that received the same changes. The scenarios
// follow containerd's snapshotter test suite, plus strata's own guarantees (error
// classes, odd keys, concurrency, cleanup, reopening).
#include <dirent.h>
#include <fcntl.h>
#include <google/protobuf/util/message_differencer.h>
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <functional>
#include <map>
#include <mutex>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "containerd/services/snapshots/v1/snapshots.grpc.pb.h"
#include "core/fs.h"
#include "core/mount.h"
#include "metadata/store.h"
#include "snapshotter/overlay.h"
#include "snapshotter/service.h"
#include "strata/admin/v1/admin.grpc.pb.h"

namespace strata::snapshotter {
namespace {

namespace pb = ::containerd::services::snapshots::v1;
namespace adminpb = ::strata::admin::v1;
using grpc::StatusCode;

// ---- describing and changing directory trees ---------------------------------

// One entry of a directory tree as a container would see it.
struct Node {
  char type = '?';  // 'd' directory, 'f' regular file, 'l' symlink, 'o' other
  mode_t mode = 0;  // permission bits
  uid_t uid = 0;
  gid_t gid = 0;
  std::string data;  // file content or symlink target
  bool operator==(const Node&) const = default;
};

// Relative path -> entry, the root itself excluded.
using Tree = std::map<std::string, Node>;

void ReadTreeInto(const std::string& root, const std::string& rel, Tree& tree) {
  std::string dir = rel.empty() ? root : root + "/" + rel;
  DIR* d = ::opendir(dir.c_str());
  if (d == nullptr) {
    ADD_FAILURE() << "opendir " << dir << ": " << std::strerror(errno);
    return;
  }
  std::vector<std::string> names;
  while (struct dirent* e = ::readdir(d)) {
    std::string n = e->d_name;
    if (n != "." && n != "..") names.push_back(n);
  }
  ::closedir(d);
  for (const auto& name : names) {
    std::string child = rel.empty() ? name : rel + "/" + name;
    std::string path = root + "/" + child;
    struct stat st {};
    if (::lstat(path.c_str(), &st) != 0) {
      ADD_FAILURE() << "lstat " << path << ": " << std::strerror(errno);
      continue;
    }
    Node n;
    n.mode = st.st_mode & 07777;
    n.uid = st.st_uid;
    n.gid = st.st_gid;
    if (S_ISDIR(st.st_mode)) {
      n.type = 'd';
      tree[child] = n;
      ReadTreeInto(root, child, tree);
      continue;
    }
    if (S_ISREG(st.st_mode)) {
      n.type = 'f';
      auto data = fs::ReadFile(path);
      EXPECT_TRUE(data.ok()) << data.status().ToString();
      if (data.ok()) n.data = *data;
    } else if (S_ISLNK(st.st_mode)) {
      n.type = 'l';
      char buf[4096];
      ssize_t len = ::readlink(path.c_str(), buf, sizeof buf);
      if (len >= 0) n.data.assign(buf, static_cast<size_t>(len));
    } else {
      n.type = 'o';
    }
    tree[child] = n;
  }
}

Tree ReadTree(const std::string& root) {
  Tree tree;
  ReadTreeInto(root, "", tree);
  return tree;
}

std::string Describe(const Node& n) {
  char mode[16];
  std::snprintf(mode, sizeof mode, "%04o", n.mode);
  std::string out = std::string(1, n.type) + " " + mode + " " + std::to_string(n.uid) + ":" +
                    std::to_string(n.gid);
  if (!n.data.empty()) out += " \"" + n.data.substr(0, 40) + "\"";
  return out;
}

// Human-readable differences between two trees; empty when they are equal.
std::string DiffTrees(const Tree& want, const Tree& got) {
  std::string out;
  for (const auto& [path, node] : want) {
    auto it = got.find(path);
    if (it == got.end()) {
      out += "  missing " + path + " (" + Describe(node) + ")\n";
    } else if (!(it->second == node)) {
      out +=
          "  differs " + path + ": want " + Describe(node) + ", got " + Describe(it->second) + "\n";
    }
  }
  for (const auto& [path, node] : got) {
    if (want.count(path) == 0) out += "  extra   " + path + " (" + Describe(node) + ")\n";
  }
  return out;
}

// A change applied to a directory tree (a layer is a list of them).
using Change = std::function<void(const std::string& root)>;

Change AddFile(std::string path, std::string content, mode_t mode) {
  return [=](const std::string& root) {
    std::string p = root + "/" + path;
    int fd = ::open(p.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
    ASSERT_GE(fd, 0) << "create " << p << ": " << std::strerror(errno);
    ssize_t n = ::write(fd, content.data(), content.size());
    int err = errno;
    ::close(fd);
    ASSERT_EQ(n, static_cast<ssize_t>(content.size()))
        << "write " << p << ": " << std::strerror(err);
    ASSERT_EQ(::chmod(p.c_str(), mode), 0) << "chmod " << p << ": " << std::strerror(errno);
  };
}

Change AddDir(std::string path, mode_t mode) {
  return [=](const std::string& root) {
    std::string p = root + "/" + path;
    ASSERT_EQ(::mkdir(p.c_str(), mode), 0) << "mkdir " << p << ": " << std::strerror(errno);
    ASSERT_EQ(::chmod(p.c_str(), mode), 0) << "chmod " << p << ": " << std::strerror(errno);
  };
}

Change AddSymlink(std::string target, std::string path) {
  return [=](const std::string& root) {
    std::string p = root + "/" + path;
    ASSERT_EQ(::symlink(target.c_str(), p.c_str()), 0)
        << "symlink " << p << ": " << std::strerror(errno);
  };
}

Change RemovePath(std::string path) {
  return [=](const std::string& root) {
    std::error_code ec;
    std::filesystem::remove_all(root + "/" + path, ec);
    ASSERT_FALSE(ec) << "remove " << root << "/" << path << ": " << ec.message();
  };
}

Change ChownPath(std::string path, uid_t uid, gid_t gid) {
  return [=](const std::string& root) {
    std::string p = root + "/" + path;
    ASSERT_EQ(::lchown(p.c_str(), uid, gid), 0) << "chown " << p << ": " << std::strerror(errno);
  };
}

Change HardLink(std::string existing, std::string path) {
  return [=](const std::string& root) {
    std::string from = root + "/" + existing;
    std::string to = root + "/" + path;
    ASSERT_EQ(::link(from.c_str(), to.c_str()), 0) << "link " << to << ": " << std::strerror(errno);
  };
}

// rename(2), falling back as mv(1) does when overlayfs refuses to rename a directory
// that comes from a lower layer (EXDEV without redirect_dir). Returns 0 or an errno.
int MoveEntry(const std::string& from, const std::string& to) {
  if (::rename(from.c_str(), to.c_str()) == 0) return 0;
  if (errno != EXDEV) return errno;
  struct stat st {};
  if (::lstat(from.c_str(), &st) != 0) return errno;
  if (!S_ISDIR(st.st_mode)) return EXDEV;
  if (::mkdir(to.c_str(), st.st_mode & 07777) != 0) return errno;
  if (::chmod(to.c_str(), st.st_mode & 07777) != 0) return errno;
  if (::lchown(to.c_str(), st.st_uid, st.st_gid) != 0) return errno;
  std::vector<std::string> names;
  DIR* d = ::opendir(from.c_str());
  if (d == nullptr) return errno;
  while (struct dirent* e = ::readdir(d)) {
    std::string n = e->d_name;
    if (n != "." && n != "..") names.push_back(n);
  }
  ::closedir(d);
  for (const auto& n : names) {
    if (int err = MoveEntry(from + "/" + n, to + "/" + n); err != 0) return err;
  }
  return ::rmdir(from.c_str()) == 0 ? 0 : errno;
}

Change RenamePath(std::string from, std::string to) {
  return [=](const std::string& root) {
    int err = MoveEntry(root + "/" + from, root + "/" + to);
    ASSERT_EQ(err, 0) << "rename " << from << " -> " << to << ": " << std::strerror(err);
  };
}

// ---- gRPC helpers -------------------------------------------------------------

std::string CodeName(StatusCode code) {
  return std::string(strata::CodeName(static_cast<Code>(static_cast<int>(code))));
}

::testing::AssertionResult IsOk(const grpc::Status& s) {
  if (s.ok()) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure()
         << "RPC failed with " << CodeName(s.error_code()) << ": " << s.error_message();
}

::testing::AssertionResult HasCode(const grpc::Status& s, StatusCode code) {
  if (s.error_code() == code) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << "want " << CodeName(code) << ", got "
                                       << CodeName(s.error_code()) << ": " << s.error_message();
}

#define ASSERT_RPC_OK(expr) ASSERT_TRUE(IsOk(expr))
#define EXPECT_RPC_OK(expr) EXPECT_TRUE(IsOk(expr))
#define EXPECT_CODE(expr, code) EXPECT_TRUE(HasCode((expr), StatusCode::code))

int64_t Nanos(const google::protobuf::Timestamp& ts) {
  return ts.seconds() * 1000000000LL + ts.nanos();
}

int64_t NowNanos() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

Labels LabelsOf(const pb::Info& info) { return Labels(info.labels().begin(), info.labels().end()); }

bool SameInfo(const pb::Info& a, const pb::Info& b) {
  return google::protobuf::util::MessageDifferencer::Equals(a, b);
}

// The label containerd puts on snapshots it wants kept.
const std::pair<const std::string, std::string> kGcRoot = {"containerd.io/gc.root",
                                                           "2024-01-01T00:00:00Z"};
Labels GcRoot() { return {kGcRoot}; }

class SnapshotsApiTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/strata-api-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    state_ = dir_ + "/state";
    socket_ = dir_ + "/strata.sock";
    ASSERT_TRUE(fs::MakeDir(dir_ + "/mnt", 0755).ok());
    ASSERT_TRUE(fs::MakeDir(dir_ + "/work", 0755).ok());
    StartService();
  }

  void TearDown() override {
    StopService();
    Status s = fs::RemoveAll(dir_);  // refuses to cross a mount point left behind
    EXPECT_TRUE(s.ok()) << s.ToString();
  }

  // Opens store and snapshotter on state_ and serves both services on socket_.
  void StartService(OverlayOptions options = {}) {
    auto store = metadata::Store::Open(state_ + "/metadata");
    ASSERT_TRUE(store.ok()) << store.status().ToString();
    store_ = std::move(store).value();
    auto overlay = Overlay::Open(state_, store_.get(), options);
    ASSERT_TRUE(overlay.ok()) << overlay.status().ToString();
    overlay_ = std::move(overlay).value();
    snapshots_service_ = SnapshotsService::New(overlay_.get());
    admin_service_ =
        NewAdminService(overlay_.get(), AdminInfo{"test", state_, store_->schema_version()});
    grpc::ServerBuilder builder;
    builder.AddListeningPort("unix://" + socket_, grpc::InsecureServerCredentials());
    snapshots_service_->Register(builder);
    builder.RegisterService(admin_service_.get());
    server_ = builder.BuildAndStart();
    ASSERT_NE(server_, nullptr) << "cannot serve on " << socket_;
    snapshots_service_->Start();
    channel_ = grpc::CreateChannel("unix://" + socket_, grpc::InsecureChannelCredentials());
    snapshots_ = pb::Snapshots::NewStub(channel_);
    admin_ = adminpb::Admin::NewStub(channel_);
  }

  // Unmounts everything, stops the server and closes snapshotter and store.
  void StopService() {
    UnmountAll();
    snapshots_.reset();
    admin_.reset();
    channel_.reset();
    if (server_) {
      server_->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(5));
      snapshots_service_->Stop();
      server_.reset();
    }
    snapshots_service_.reset();
    admin_service_.reset();
    if (overlay_) {
      EXPECT_TRUE(overlay_->Close().ok());
      overlay_.reset();
    }
    store_.reset();
  }

  void RestartService(OverlayOptions options = {}) {
    StopService();
    StartService(options);
  }

  static void Deadline(grpc::ClientContext& ctx) {
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(60));
  }

  static std::vector<Mount> FromProto(
      const google::protobuf::RepeatedPtrField<::containerd::types::Mount>& in) {
    std::vector<Mount> out;
    for (const auto& m : in) {
      out.push_back(Mount{m.type(), m.source(), m.target(),
                          std::vector<std::string>(m.options().begin(), m.options().end())});
    }
    return out;
  }

  grpc::Status Prepare(const std::string& key, const std::string& parent, const Labels& labels = {},
                       std::vector<Mount>* mounts = nullptr) {
    pb::PrepareSnapshotRequest req;
    req.set_snapshotter("strata");
    req.set_key(key);
    req.set_parent(parent);
    req.mutable_labels()->insert(labels.begin(), labels.end());
    pb::PrepareSnapshotResponse resp;
    grpc::ClientContext ctx;
    Deadline(ctx);
    grpc::Status s = snapshots_->Prepare(&ctx, req, &resp);
    if (mounts != nullptr) *mounts = FromProto(resp.mounts());
    return s;
  }

  grpc::Status View(const std::string& key, const std::string& parent, const Labels& labels = {},
                    std::vector<Mount>* mounts = nullptr) {
    pb::ViewSnapshotRequest req;
    req.set_snapshotter("strata");
    req.set_key(key);
    req.set_parent(parent);
    req.mutable_labels()->insert(labels.begin(), labels.end());
    pb::ViewSnapshotResponse resp;
    grpc::ClientContext ctx;
    Deadline(ctx);
    grpc::Status s = snapshots_->View(&ctx, req, &resp);
    if (mounts != nullptr) *mounts = FromProto(resp.mounts());
    return s;
  }

  grpc::Status Mounts(const std::string& key, std::vector<Mount>* mounts = nullptr) {
    pb::MountsRequest req;
    req.set_key(key);
    pb::MountsResponse resp;
    grpc::ClientContext ctx;
    Deadline(ctx);
    grpc::Status s = snapshots_->Mounts(&ctx, req, &resp);
    if (mounts != nullptr) *mounts = FromProto(resp.mounts());
    return s;
  }

  grpc::Status Commit(const std::string& name, const std::string& key, const Labels& labels = {},
                      const std::string& parent = "") {
    pb::CommitSnapshotRequest req;
    req.set_snapshotter("strata");
    req.set_name(name);
    req.set_key(key);
    req.mutable_labels()->insert(labels.begin(), labels.end());
    req.set_parent(parent);
    google::protobuf::Empty resp;
    grpc::ClientContext ctx;
    Deadline(ctx);
    return snapshots_->Commit(&ctx, req, &resp);
  }

  grpc::Status Remove(const std::string& key) {
    pb::RemoveSnapshotRequest req;
    req.set_key(key);
    google::protobuf::Empty resp;
    grpc::ClientContext ctx;
    Deadline(ctx);
    return snapshots_->Remove(&ctx, req, &resp);
  }

  grpc::Status Stat(const std::string& key, pb::Info* info = nullptr) {
    pb::StatSnapshotRequest req;
    req.set_key(key);
    pb::StatSnapshotResponse resp;
    grpc::ClientContext ctx;
    Deadline(ctx);
    grpc::Status s = snapshots_->Stat(&ctx, req, &resp);
    if (info != nullptr) *info = resp.info();
    return s;
  }

  grpc::Status Update(const pb::Info& info, const std::vector<std::string>& paths,
                      pb::Info* out = nullptr) {
    pb::UpdateSnapshotRequest req;
    *req.mutable_info() = info;
    for (const auto& p : paths) req.mutable_update_mask()->add_paths(p);
    pb::UpdateSnapshotResponse resp;
    grpc::ClientContext ctx;
    Deadline(ctx);
    grpc::Status s = snapshots_->Update(&ctx, req, &resp);
    if (out != nullptr) *out = resp.info();
    return s;
  }

  // Calls `fn` for each Info streamed by List, in stream order.
  grpc::Status ListEach(const std::vector<std::string>& filters,
                        const std::function<void(const pb::Info&)>& fn) {
    pb::ListSnapshotsRequest req;
    for (const auto& f : filters) req.add_filters(f);
    grpc::ClientContext ctx;
    Deadline(ctx);
    auto reader = snapshots_->List(&ctx, req);
    pb::ListSnapshotsResponse resp;
    while (reader->Read(&resp)) {
      for (const auto& info : resp.info()) fn(info);
    }
    return reader->Finish();
  }

  grpc::Status List(const std::vector<std::string>& filters, std::vector<pb::Info>* out) {
    out->clear();
    return ListEach(filters, [&](const pb::Info& info) { out->push_back(info); });
  }

  std::map<std::string, pb::Info> ListAll() {
    std::map<std::string, pb::Info> out;
    EXPECT_RPC_OK(ListEach({}, [&](const pb::Info& info) { out[info.name()] = info; }));
    return out;
  }

  // Sorted names of the snapshots matching `filters`.
  std::vector<std::string> ListNames(const std::vector<std::string>& filters) {
    std::vector<std::string> names;
    grpc::Status s = ListEach(filters, [&](const pb::Info& info) { names.push_back(info.name()); });
    EXPECT_TRUE(IsOk(s)) << "filters: " << ::testing::PrintToString(filters);
    std::sort(names.begin(), names.end());
    return names;
  }

  grpc::Status Usage(const std::string& key, int64_t* size, int64_t* inodes) {
    pb::UsageRequest req;
    req.set_key(key);
    pb::UsageResponse resp;
    grpc::ClientContext ctx;
    Deadline(ctx);
    grpc::Status s = snapshots_->Usage(&ctx, req, &resp);
    *size = resp.size();
    *inodes = resp.inodes();
    return s;
  }

  grpc::Status Cleanup() {
    pb::CleanupRequest req;
    google::protobuf::Empty resp;
    grpc::ClientContext ctx;
    Deadline(ctx);
    return snapshots_->Cleanup(&ctx, req, &resp);
  }

  grpc::Status Check(bool repair, std::vector<adminpb::Problem>* problems) {
    adminpb::CheckRequest req;
    req.set_repair(repair);
    adminpb::CheckResponse resp;
    grpc::ClientContext ctx;
    Deadline(ctx);
    grpc::Status s = admin_->Check(&ctx, req, &resp);
    problems->assign(resp.problems().begin(), resp.problems().end());
    return s;
  }

  // Asserts that Admin.Check finds nothing wrong.
  void ExpectNoProblems() {
    std::vector<adminpb::Problem> problems;
    ASSERT_RPC_OK(Check(false, &problems));
    for (const auto& p : problems) ADD_FAILURE() << "check: " << p.kind() << ": " << p.detail();
  }

  // ---- mounts ----

  std::string NewDir(const std::string& under) {
    std::string dir = dir_ + "/" + under + "/" + std::to_string(++seq_);
    Status s = fs::MakeDir(dir, 0755);
    EXPECT_TRUE(s.ok()) << s.ToString();
    return dir;
  }

  // Mounts `mounts` on a new directory (unmounted at the latest in TearDown).
  // Returns the directory, or "" after reporting a failure.
  std::string MountOnNewDir(const std::vector<Mount>& mounts) {
    if (mounts.empty()) {
      ADD_FAILURE() << "no mounts returned";
      return "";
    }
    std::string target = NewDir("mnt");
    Status s = MountAll(mounts, target);
    if (!s.ok()) {
      ADD_FAILURE() << "mount on " << target << ": " << s.ToString();
      return "";
    }
    mounted_.push_back(target);
    return target;
  }

  void UnmountDir(const std::string& target) {
    Status s = strata::Unmount(target);
    EXPECT_TRUE(s.ok()) << s.ToString();
    mounted_.erase(std::remove(mounted_.begin(), mounted_.end(), target), mounted_.end());
  }

  void UnmountAll() {
    for (auto it = mounted_.rbegin(); it != mounted_.rend(); ++it) {
      if (!strata::Unmount(*it).ok()) strata::Unmount(*it, /*detach=*/true).ok();
    }
    mounted_.clear();
  }

  // Prepares `key` and mounts it; "" after reporting a failure.
  std::string PrepareMounted(const std::string& key, const std::string& parent,
                             const Labels& labels = GcRoot()) {
    std::vector<Mount> mounts;
    grpc::Status s = Prepare(key, parent, labels, &mounts);
    if (!s.ok()) {
      ADD_FAILURE() << "prepare " << key << ": " << s.error_message();
      return "";
    }
    return MountOnNewDir(mounts);
  }

  std::string ViewMounted(const std::string& key, const std::string& parent) {
    std::vector<Mount> mounts;
    grpc::Status s = View(key, parent, GcRoot(), &mounts);
    if (!s.ok()) {
      ADD_FAILURE() << "view " << key << ": " << s.error_message();
      return "";
    }
    return MountOnNewDir(mounts);
  }

  void Apply(const std::vector<Change>& changes, const std::string& root) {
    for (const auto& change : changes) {
      change(root);
      if (HasFatalFailure()) return;
    }
  }

  // Prepares "<name>-active" on `parent`, applies `changes` through a mount and
  // commits it as `name`.
  void CommitLayer(const std::string& name, const std::string& parent,
                   const std::vector<Change>& changes) {
    std::string key = name + "-active";
    std::string target = PrepareMounted(key, parent);
    ASSERT_FALSE(target.empty());
    Apply(changes, target);
    UnmountDir(target);
    ASSERT_FALSE(HasFatalFailure());
    ASSERT_RPC_OK(Commit(name, key, GcRoot()));
  }

  // Mounts a view of committed `name` and compares it with `want`.
  void ExpectViewOf(const std::string& name, const Tree& want) {
    std::string key = name + "-check-view";
    std::string target = ViewMounted(key, name);
    ASSERT_FALSE(target.empty());
    std::string diff = DiffTrees(want, ReadTree(target));
    EXPECT_EQ(diff, "") << "view of " << name << " differs from the expected tree:\n" << diff;
    UnmountDir(target);
    EXPECT_RPC_OK(Remove(key));
  }

  // Builds a chain of committed layers from `layers`, checking after each commit
  // that a view of the chain equals a plain directory given the same changes.
  // Returns the layer names (bottom first).
  std::vector<std::string> CheckLayers(const std::vector<std::vector<Change>>& layers) {
    std::string flat = NewDir("work");
    std::vector<std::string> names;
    std::string parent;
    for (size_t i = 0; i < layers.size(); i++) {
      std::string name = "layer-" + std::to_string(++seq_) + "-" + std::to_string(i + 1);
      CommitLayer(name, parent, layers[i]);
      if (HasFatalFailure()) return names;
      Apply(layers[i], flat);
      if (HasFatalFailure()) return names;
      ExpectViewOf(name, ReadTree(flat));
      names.push_back(name);
      parent = name;
    }
    return names;
  }

  void ExpectSameTree(const std::string& want_dir, const std::string& got_dir) {
    std::string diff = DiffTrees(ReadTree(want_dir), ReadTree(got_dir));
    EXPECT_EQ(diff, "") << got_dir << " differs from " << want_dir << ":\n" << diff;
  }

  // Creates the snapshots containerd's suite uses for Update:
  //   c1 committed; c2 committed on c1; a1 active on c2; a2 active; v1 view on c2; v2 view.
  void CreateBaseSnapshots() {
    ASSERT_RPC_OK(Prepare("c1-a", "", GcRoot()));
    ASSERT_RPC_OK(Commit("c1", "c1-a", GcRoot()));
    ASSERT_RPC_OK(Prepare("c2-a", "c1", GcRoot()));
    ASSERT_RPC_OK(Commit("c2", "c2-a", GcRoot()));
    ASSERT_RPC_OK(Prepare("a1", "c2", GcRoot()));
    ASSERT_RPC_OK(Prepare("a2", "", GcRoot()));
    ASSERT_RPC_OK(View("v1", "c2", GcRoot()));
    ASSERT_RPC_OK(View("v2", "", GcRoot()));
  }

  std::string SnapshotDirOf(const std::string& key) {
    auto path = overlay_->FsPath("strata", key);
    EXPECT_TRUE(path.ok()) << path.status().ToString();
    return path.ok() ? fs::DirName(*path) : "";
  }

  std::vector<std::string> SnapshotDirEntries() {
    std::vector<std::string> names;
    DIR* d = ::opendir((state_ + "/snapshots").c_str());
    if (d == nullptr) return names;
    while (struct dirent* e = ::readdir(d)) {
      std::string n = e->d_name;
      if (n != "." && n != "..") names.push_back(n);
    }
    ::closedir(d);
    return names;
  }

  // Waits up to `timeout` for `pred`.
  static bool Eventually(const std::function<bool()>& pred,
                         std::chrono::milliseconds timeout = std::chrono::seconds(10)) {
    auto end = std::chrono::steady_clock::now() + timeout;
    while (std::chrono::steady_clock::now() < end) {
      if (pred()) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    return pred();
  }

  std::string dir_;     // everything of this test lives below
  std::string state_;   // the service's --root
  std::string socket_;  // the gRPC unix socket
  int seq_ = 0;
  std::vector<std::string> mounted_;

  std::unique_ptr<metadata::Store> store_;
  std::unique_ptr<Overlay> overlay_;
  std::unique_ptr<SnapshotsService> snapshots_service_;
  std::unique_ptr<grpc::Service> admin_service_;
  std::unique_ptr<grpc::Server> server_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<pb::Snapshots::Stub> snapshots_;
  std::unique_ptr<adminpb::Admin::Stub> admin_;
};

// ---- containerd's suite: lifecycle ------------------------------------------------

TEST_F(SnapshotsApiTest, BasicLifecycleCommitsLayersAndShowsTheirDiffs) {
  std::vector<Change> initial = {AddFile("foo", "foo\n", 0777), AddDir("a", 0755),
                                 AddDir("a/b", 0755), AddDir("a/b/c", 0755)};
  std::vector<Change> diff = {AddFile("bar", "bar\n", 0777), AddFile("foo", "bar\n", 0777),
                              RemovePath("a/b")};
  std::string flat = NewDir("work");

  std::string preparing = PrepareMounted("preparing", "");
  ASSERT_FALSE(preparing.empty());
  Apply(initial, preparing);
  Apply(initial, flat);
  ASSERT_FALSE(HasFatalFailure());
  UnmountDir(preparing);
  ASSERT_RPC_OK(Commit("committed", "preparing", GcRoot()));

  pb::Info committed;
  ASSERT_RPC_OK(Stat("committed", &committed));
  EXPECT_EQ(committed.name(), "committed");
  EXPECT_EQ(committed.parent(), "");
  EXPECT_EQ(committed.kind(), pb::COMMITTED);
  EXPECT_CODE(Stat("preparing"), NOT_FOUND) << "the active key is gone after Commit";

  std::string next = PrepareMounted("next", "committed");
  ASSERT_FALSE(next.empty());
  ExpectSameTree(flat, next);
  Apply(diff, next);
  Apply(diff, flat);
  ASSERT_FALSE(HasFatalFailure());
  UnmountDir(next);

  pb::Info next_info;
  ASSERT_RPC_OK(Stat("next", &next_info));
  EXPECT_EQ(next_info.parent(), "committed");
  EXPECT_EQ(next_info.kind(), pb::ACTIVE);

  ASSERT_RPC_OK(Commit("committed-next", "next", GcRoot()));
  pb::Info committed_next;
  ASSERT_RPC_OK(Stat("committed-next", &committed_next));
  EXPECT_EQ(committed_next.parent(), "committed");
  EXPECT_EQ(committed_next.kind(), pb::COMMITTED);
  EXPECT_CODE(Stat("next"), NOT_FOUND);

  auto listed = ListAll();
  ASSERT_EQ(listed.count("committed"), 1u);
  ASSERT_EQ(listed.count("committed-next"), 1u);
  EXPECT_TRUE(SameInfo(listed["committed"], committed)) << listed["committed"].DebugString();
  EXPECT_TRUE(SameInfo(listed["committed-next"], committed_next));

  std::string view = ViewMounted("nextnext", "committed-next");
  ASSERT_FALSE(view.empty());
  ExpectSameTree(flat, view);
  UnmountDir(view);

  EXPECT_RPC_OK(Remove("nextnext"));
  EXPECT_CODE(Remove("committed"), FAILED_PRECONDITION);
  EXPECT_RPC_OK(Remove("committed-next"));
  EXPECT_RPC_OK(Remove("committed"));
  EXPECT_TRUE(ListAll().empty());
}

TEST_F(SnapshotsApiTest, StatOfActiveSnapshotReportsActiveWithoutParent) {
  std::string target = PrepareMounted("preparing", "", {{"x", "1"}});
  ASSERT_FALSE(target.empty());
  Apply({AddFile("foo", "foo\n", 0777)}, target);
  pb::Info info;
  ASSERT_RPC_OK(Stat("preparing", &info));
  EXPECT_EQ(info.name(), "preparing");
  EXPECT_EQ(info.kind(), pb::ACTIVE);
  EXPECT_EQ(info.parent(), "");
  EXPECT_EQ(LabelsOf(info), (Labels{{"x", "1"}}));
}

TEST_F(SnapshotsApiTest, StatOfCommittedSnapshotReportsCommittedWithItsLabels) {
  std::string target = PrepareMounted("preparing", "");
  ASSERT_FALSE(target.empty());
  Apply({AddFile("foo", "foo\n", 0777)}, target);
  UnmountDir(target);
  ASSERT_RPC_OK(Commit("committed", "preparing", {{"l", "committed"}}));
  pb::Info info;
  ASSERT_RPC_OK(Stat("committed", &info));
  EXPECT_EQ(info.name(), "committed");
  EXPECT_EQ(info.kind(), pb::COMMITTED);
  EXPECT_EQ(info.parent(), "");
  EXPECT_EQ(LabelsOf(info), (Labels{{"l", "committed"}})) << "commit labels replace prepare's";
}

TEST_F(SnapshotsApiTest, StatOfViewReportsViewAndParent) {
  ASSERT_RPC_OK(Prepare("p-a", ""));
  ASSERT_RPC_OK(Commit("p", "p-a"));
  ASSERT_RPC_OK(View("v", "p"));
  pb::Info info;
  ASSERT_RPC_OK(Stat("v", &info));
  EXPECT_EQ(info.kind(), pb::VIEW);
  EXPECT_EQ(info.parent(), "p");
}

TEST_F(SnapshotsApiTest, ParentIsTransitiveThroughTheChain) {
  std::string a = PrepareMounted("preparing", "");
  ASSERT_FALSE(a.empty());
  Apply({AddFile("foo", "foo\n", 0777)}, a);
  UnmountDir(a);
  ASSERT_RPC_OK(Commit("snapA", "preparing", GcRoot()));

  std::string b = PrepareMounted("next", "snapA");
  ASSERT_FALSE(b.empty());
  Apply({AddFile("foo", "foo bar\n", 0777)}, b);
  UnmountDir(b);
  ASSERT_RPC_OK(Commit("snapB", "next", GcRoot()));

  pb::Info info_a, info_b, parent_of_b;
  ASSERT_RPC_OK(Stat("snapA", &info_a));
  ASSERT_RPC_OK(Stat("snapB", &info_b));
  ASSERT_RPC_OK(Stat(info_b.parent(), &parent_of_b));
  EXPECT_EQ(info_a.parent(), "");
  EXPECT_EQ(info_b.parent(), "snapA");
  EXPECT_EQ(parent_of_b.parent(), "");

  // A -> B -> C: C sees B's version of foo on top of A.
  std::string c = PrepareMounted("top", "snapB");
  ASSERT_FALSE(c.empty());
  EXPECT_EQ(*fs::ReadFile(c + "/foo"), "foo bar\n");
}

TEST_F(SnapshotsApiTest, PrepareOrViewWithTakenKeyIsAlreadyExists) {
  ASSERT_RPC_OK(Prepare("preparing", ""));
  ASSERT_RPC_OK(Commit("snapA", "preparing"));

  ASSERT_RPC_OK(Prepare("newlayer", "snapA"));
  EXPECT_CODE(View("newlayer", "snapA"), ALREADY_EXISTS);

  ASSERT_RPC_OK(Prepare("prepLayer", "snapA"));
  EXPECT_CODE(Prepare("prepLayer", "snapA"), ALREADY_EXISTS);

  ASSERT_RPC_OK(View("viewLayer", "snapA"));
  EXPECT_CODE(View("viewLayer", "snapA"), ALREADY_EXISTS);
  EXPECT_CODE(Prepare("viewLayer", ""), ALREADY_EXISTS);

  // Keys and committed names share one namespace.
  EXPECT_CODE(Prepare("snapA", ""), ALREADY_EXISTS);
  EXPECT_CODE(View("snapA", "snapA"), ALREADY_EXISTS);

  // The failed calls changed nothing.
  pb::Info info;
  ASSERT_RPC_OK(Stat("newlayer", &info));
  EXPECT_EQ(info.kind(), pb::ACTIVE);
  ASSERT_RPC_OK(Stat("viewLayer", &info));
  EXPECT_EQ(info.kind(), pb::VIEW);
  ExpectNoProblems();
}

// ---- containerd 2.x user namespaces (remap-ids) -----------------------------------------

TEST_F(SnapshotsApiTest, UidmappingLabelsOwnTheDirectoriesAndAddIdmapMountOptions) {
  ASSERT_RPC_OK(Prepare("base-a", ""));
  ASSERT_RPC_OK(Commit("base", "base-a"));
  const Labels remap = {{"containerd.io/snapshot/uidmapping", "0:100000:65536"},
                        {"containerd.io/snapshot/gidmapping", "0:200000:65536,65536:300000:1"}};
  std::vector<Mount> mounts;
  ASSERT_RPC_OK(Prepare("userns", "base", remap, &mounts));
  ASSERT_EQ(mounts.size(), 1u);
  EXPECT_EQ(mounts[0].type, "overlay");
  const auto& o = mounts[0].options;
  EXPECT_NE(std::find(o.begin(), o.end(), "uidmap=0:100000:65536"), o.end());
  EXPECT_NE(std::find(o.begin(), o.end(), "gidmap=0:200000:65536,65536:300000:1"), o.end());
  struct stat st;
  ASSERT_EQ(::stat((SnapshotDirOf("userns") + "/fs").c_str(), &st), 0);
  EXPECT_EQ(st.st_uid, 100000u);
  EXPECT_EQ(st.st_gid, 200000u);
  ASSERT_EQ(::stat((SnapshotDirOf("userns") + "/work").c_str(), &st), 0);
  EXPECT_EQ(st.st_uid, 100000u);
  // Mounts() repeats them; a view of one parent is an idmapped bind.
  std::vector<Mount> again;
  ASSERT_RPC_OK(Mounts("userns", &again));
  EXPECT_EQ(again[0].options, mounts[0].options);
  ASSERT_RPC_OK(View("userns-view", "base", remap, &mounts));
  EXPECT_EQ(mounts[0].type, "bind");
  EXPECT_NE(std::find(mounts[0].options.begin(), mounts[0].options.end(), "uidmap=0:100000:65536"),
            mounts[0].options.end());
  // Without the labels: no options, root-owned directories.
  ASSERT_RPC_OK(Prepare("plain", "base", {}, &mounts));
  for (const auto& opt : mounts[0].options) EXPECT_EQ(opt.find("uidmap="), std::string::npos);
  ASSERT_EQ(::stat((SnapshotDirOf("plain") + "/fs").c_str(), &st), 0);
  EXPECT_EQ(st.st_uid, 0u);
}

TEST_F(SnapshotsApiTest, MalformedOrHalfUidmappingLabelsAreInvalidArgument) {
  EXPECT_CODE(Prepare("only-uid", "", {{"containerd.io/snapshot/uidmapping", "0:100000:65536"}}),
              INVALID_ARGUMENT);
  EXPECT_CODE(Prepare("bad", "",
                      {{"containerd.io/snapshot/uidmapping", "0:100000"},
                       {"containerd.io/snapshot/gidmapping", "0:100000:65536"}}),
              INVALID_ARGUMENT);
  EXPECT_CODE(Prepare("no-root", "",
                      {{"containerd.io/snapshot/uidmapping", "1:100000:65536"},
                       {"containerd.io/snapshot/gidmapping", "0:100000:65536"}}),
              INVALID_ARGUMENT);
  pb::Info info;
  EXPECT_CODE(Stat("only-uid", &info), NOT_FOUND);
  ExpectNoProblems();
}

// ---- labels and timestamps ------------------------------------------------------------

TEST_F(SnapshotsApiTest, UpdateReplacesSetsAndDeletesLabelsAndKeepsCreatedTime) {
  int64_t t1 = NowNanos();
  CreateBaseSnapshots();
  ASSERT_FALSE(HasFatalFailure());
  int64_t t2 = NowNanos();

  struct Case {
    std::string name;
    pb::Kind kind;
    std::string parent;
  };
  for (const Case& tc : std::vector<Case>{{"c1", pb::COMMITTED, ""},
                                          {"c2", pb::COMMITTED, "c1"},
                                          {"a1", pb::ACTIVE, "c2"},
                                          {"a2", pb::ACTIVE, ""},
                                          {"v1", pb::VIEW, "c2"},
                                          {"v2", pb::VIEW, ""}}) {
    SCOPED_TRACE(tc.name);
    pb::Info st;
    ASSERT_RPC_OK(Stat(tc.name, &st));
    int64_t created = Nanos(st.created_at());
    EXPECT_GE(created, t1);
    EXPECT_LE(created, t2);
    EXPECT_EQ(Nanos(st.updated_at()), created) << "Updated equals Created at creation";
    EXPECT_EQ(st.kind(), tc.kind);
    EXPECT_EQ(st.parent(), tc.parent);
    EXPECT_EQ(st.name(), tc.name);

    // No field paths: all labels are replaced; parent and kind cannot change.
    Labels expected = {{"l1", "v1"}, {"l2", "v2"}, {"l3", "v3"}, kGcRoot};
    st.set_parent("doesnotexist");
    st.mutable_labels()->clear();
    st.mutable_labels()->insert(expected.begin(), expected.end());
    int64_t u1 = NowNanos();
    ASSERT_RPC_OK(Update(st, {}, &st));
    int64_t u2 = NowNanos();
    EXPECT_EQ(Nanos(st.created_at()), created) << "Created never changes";
    EXPECT_GE(Nanos(st.updated_at()), u1);
    EXPECT_LE(Nanos(st.updated_at()), u2);
    EXPECT_EQ(st.kind(), tc.kind);
    EXPECT_EQ(st.parent(), tc.parent);
    EXPECT_EQ(st.name(), tc.name);
    EXPECT_EQ(LabelsOf(st), expected);

    // labels.<k>: set from the request, or delete when absent there; others untouched.
    st.mutable_labels()->clear();
    (*st.mutable_labels())["l1"] = "updated";
    (*st.mutable_labels())["l4"] = "v4";
    ASSERT_RPC_OK(Update(st, {"labels.l1", "labels.l2"}, &st));
    expected = {{"l1", "updated"}, {"l3", "v3"}, kGcRoot};
    EXPECT_EQ(LabelsOf(st), expected);

    // "labels": replace all.
    expected = {{"l4", "v4"}, kGcRoot};
    st.mutable_labels()->clear();
    st.mutable_labels()->insert(expected.begin(), expected.end());
    ASSERT_RPC_OK(Update(st, {"labels"}, &st));
    EXPECT_EQ(LabelsOf(st), expected);

    // Immutable or unknown paths are InvalidArgument and change nothing.
    st.set_parent("doesnotexist");
    EXPECT_CODE(Update(st, {"parent"}), INVALID_ARGUMENT);
    EXPECT_CODE(Update(st, {"labels.l4", "name"}), INVALID_ARGUMENT);
    EXPECT_CODE(Update(st, {"labelsx"}), INVALID_ARGUMENT);
    pb::Info after;
    ASSERT_RPC_OK(Stat(tc.name, &after));
    EXPECT_EQ(after.parent(), tc.parent);
    EXPECT_EQ(LabelsOf(after), expected);
  }
}

TEST_F(SnapshotsApiTest, UpdateWithEmptyLabelValueDeletesTheLabel) {
  ASSERT_RPC_OK(Prepare("a", "", {{"keep", "1"}, {"drop", "2"}}));
  pb::Info info;
  ASSERT_RPC_OK(Stat("a", &info));
  (*info.mutable_labels())["drop"] = "";
  ASSERT_RPC_OK(Update(info, {"labels.drop"}, &info));
  EXPECT_EQ(LabelsOf(info), (Labels{{"keep", "1"}}));
}

TEST_F(SnapshotsApiTest, UpdatedTimeAdvancesWithEachUpdate) {
  ASSERT_RPC_OK(Prepare("a", ""));
  pb::Info first, second, third;
  ASSERT_RPC_OK(Stat("a", &first));
  (*first.mutable_labels())["n"] = "1";
  ASSERT_RPC_OK(Update(first, {"labels.n"}, &second));
  (*second.mutable_labels())["n"] = "2";
  ASSERT_RPC_OK(Update(second, {"labels.n"}, &third));
  EXPECT_GT(Nanos(second.updated_at()), Nanos(first.updated_at()));
  EXPECT_GT(Nanos(third.updated_at()), Nanos(second.updated_at()));
  EXPECT_EQ(Nanos(third.created_at()), Nanos(first.created_at()));
  pb::Info stat;
  ASSERT_RPC_OK(Stat("a", &stat));
  EXPECT_TRUE(SameInfo(stat, third));
}

TEST_F(SnapshotsApiTest, UpdateOfUnknownOrUnnamedSnapshotFails) {
  pb::Info info;
  info.set_name("missing");
  EXPECT_CODE(Update(info, {}), NOT_FOUND);
  info.set_name("");
  EXPECT_CODE(Update(info, {}), INVALID_ARGUMENT);
}

TEST_F(SnapshotsApiTest, LabelPairLargerThan4096BytesIsInvalidArgument) {
  Labels fits = {{"k", std::string(kMaxLabelSize - 1, 'v')}};
  Labels too_big = {{"k", std::string(kMaxLabelSize, 'v')}};
  EXPECT_RPC_OK(Prepare("fits", "", fits));
  EXPECT_CODE(Prepare("big", "", too_big), INVALID_ARGUMENT);
  EXPECT_CODE(Stat("big"), NOT_FOUND);
  ASSERT_RPC_OK(Prepare("base-a", ""));
  ASSERT_RPC_OK(Commit("base", "base-a"));
  EXPECT_CODE(View("big-view", "base", too_big), INVALID_ARGUMENT);
  ASSERT_RPC_OK(Prepare("to-commit", ""));
  EXPECT_CODE(Commit("big-commit", "to-commit", too_big), INVALID_ARGUMENT);
  EXPECT_CODE(Stat("big-commit"), NOT_FOUND);
  pb::Info info;
  ASSERT_RPC_OK(Stat("to-commit", &info));
  EXPECT_EQ(info.kind(), pb::ACTIVE) << "a refused commit leaves the snapshot active";
  info.mutable_labels()->insert(too_big.begin(), too_big.end());
  EXPECT_CODE(Update(info, {"labels.k"}), INVALID_ARGUMENT);
}

// ---- removal ------------------------------------------------------------------------

TEST_F(SnapshotsApiTest, RemovedKeysCanBeReused) {
  ASSERT_RPC_OK(Prepare("committed-a", "", GcRoot()));
  ASSERT_RPC_OK(Commit("committed-1", "committed-a", GcRoot()));
  ASSERT_RPC_OK(Prepare("reuse-1", "committed-1", GcRoot()));
  ASSERT_RPC_OK(Remove("reuse-1"));
  ASSERT_RPC_OK(View("reuse-1", "committed-1", GcRoot()));
  ASSERT_RPC_OK(Remove("reuse-1"));
  ASSERT_RPC_OK(Prepare("reuse-1", "", GcRoot()));
  ASSERT_RPC_OK(Remove("committed-1"));
  ASSERT_RPC_OK(Commit("committed-1", "reuse-1", GcRoot()));
  pb::Info info;
  ASSERT_RPC_OK(Stat("committed-1", &info));
  EXPECT_EQ(info.parent(), "");
  ExpectNoProblems();
}

TEST_F(SnapshotsApiTest, RemovingIntermediateSnapshotIsFailedPreconditionUntilChildrenAreGone) {
  std::string base = PrepareMounted("base", "");
  ASSERT_FALSE(base.empty());
  ASSERT_RPC_OK(Commit("committed-base", "base", GcRoot()));
  ASSERT_RPC_OK(Prepare("intermediate", "committed-base", GcRoot()));
  ASSERT_RPC_OK(Commit("committed-inter", "intermediate", GcRoot()));
  ASSERT_RPC_OK(Prepare("toplayer", "committed-inter", GcRoot()));

  grpc::Status s = Remove("committed-inter");
  EXPECT_CODE(s, FAILED_PRECONDITION);
  EXPECT_NE(s.error_message().find("cannot remove snapshot with child"), std::string::npos)
      << s.error_message();
  EXPECT_CODE(Remove("committed-base"), FAILED_PRECONDITION);

  EXPECT_RPC_OK(Remove("toplayer"));
  EXPECT_RPC_OK(Remove("committed-inter"));
  UnmountDir(base);
  EXPECT_RPC_OK(Remove("committed-base"));
  EXPECT_TRUE(ListAll().empty());
}

TEST_F(SnapshotsApiTest, RemoveOfUnknownKeyIsNotFound) {
  EXPECT_CODE(Remove("missing"), NOT_FOUND);
}

TEST_F(SnapshotsApiTest, RemovedSnapshotDirectoryIsDeletedInTheBackground) {
  ASSERT_RPC_OK(Prepare("a", ""));
  std::string dir = SnapshotDirOf("a");
  ASSERT_TRUE(fs::Exists(dir));
  ASSERT_RPC_OK(Remove("a"));
  EXPECT_TRUE(Eventually([&] { return !fs::Exists(dir); })) << dir << " is still there";
}

TEST_F(SnapshotsApiTest, CheckRightAfterRemovalsReportsNoOrphans) {
  std::vector<Change> many_files;
  for (int i = 0; i < 300; i++) many_files.push_back(AddFile("f" + std::to_string(i), "x", 0644));
  for (int i = 0; i < 8; i++) {
    std::string target = PrepareMounted("a" + std::to_string(i), "");
    ASSERT_FALSE(target.empty());
    Apply(many_files, target);
    UnmountDir(target);
  }
  for (int i = 0; i < 8; i++) ASSERT_RPC_OK(Remove("a" + std::to_string(i)));
  ExpectNoProblems();  // directories still being deleted are not orphans
  EXPECT_TRUE(Eventually([&] { return SnapshotDirEntries().empty(); }));
}

TEST_F(SnapshotsApiTest, WithoutBackgroundCleanupRemoveLeavesDirectoryUntilCleanup) {
  RestartService(OverlayOptions{.background_cleanup = false});
  ASSERT_FALSE(HasFatalFailure());
  std::string target = PrepareMounted("a", "");
  ASSERT_FALSE(target.empty());
  Apply({AddFile("data", "x", 0644)}, target);
  UnmountDir(target);
  std::string dir = SnapshotDirOf("a");
  ASSERT_RPC_OK(Remove("a"));
  EXPECT_CODE(Stat("a"), NOT_FOUND) << "the record goes at once";
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  EXPECT_TRUE(fs::Exists(dir + "/fs/data")) << "the directory stays until Cleanup";

  ASSERT_RPC_OK(Cleanup());
  EXPECT_FALSE(fs::Exists(dir));
  EXPECT_TRUE(SnapshotDirEntries().empty());
}

TEST_F(SnapshotsApiTest, CleanupKeepsDirectoriesOfLiveSnapshots) {
  RestartService(OverlayOptions{.background_cleanup = false});
  ASSERT_FALSE(HasFatalFailure());
  ASSERT_RPC_OK(Prepare("keep", ""));
  ASSERT_RPC_OK(Prepare("drop", ""));
  std::string keep = SnapshotDirOf("keep");
  ASSERT_RPC_OK(Remove("drop"));
  ASSERT_RPC_OK(Cleanup());
  EXPECT_TRUE(fs::Exists(keep + "/fs"));
  EXPECT_TRUE(fs::Exists(keep + "/work"));
  EXPECT_EQ(SnapshotDirEntries().size(), 1u);
  ASSERT_RPC_OK(Cleanup());  // nothing to do is fine
}

// ---- List (Walk) and filters -----------------------------------------------------------

TEST_F(SnapshotsApiTest, ListSelectsByKindNameParentAndLabels) {
  Labels gc = {{"containerd.io/gc.root", "check-walk"}};
  auto with = [&](const std::string& l) {
    Labels out = gc;
    out["l"] = l;
    return out;
  };
  ASSERT_RPC_OK(Prepare("a-np", "", gc));
  ASSERT_RPC_OK(Prepare("p-tmp", "", gc));
  ASSERT_RPC_OK(Commit("p", "p-tmp", gc));
  ASSERT_RPC_OK(Prepare("a", "p", gc));
  ASSERT_RPC_OK(View("v", "p", gc));
  ASSERT_RPC_OK(Prepare("p-wl-tmp", "", gc));
  ASSERT_RPC_OK(Commit("p-wl", "p-wl-tmp", with("1")));
  ASSERT_RPC_OK(Prepare("a-wl", "p-wl", with("2")));
  ASSERT_RPC_OK(View("v-wl", "p-wl", with("3")));
  ASSERT_RPC_OK(Prepare("a-np-wl", "", with("2")));
  ASSERT_RPC_OK(Prepare("dotted", "", {{"a.b", "x"}}));

  using Names = std::vector<std::string>;
  struct Case {
    std::vector<std::string> filters;
    Names want;
  };
  for (const Case& tc : std::vector<Case>{
           {{R"(labels."containerd.io/gc.root"==check-walk)"},
            {"a", "a-np", "a-np-wl", "a-wl", "p", "p-wl", "v", "v-wl"}},
           {{R"(kind==active,labels."containerd.io/gc.root"==check-walk)"},
            {"a", "a-np", "a-np-wl", "a-wl"}},
           {{R"(kind==view,labels."containerd.io/gc.root"==check-walk)"}, {"v", "v-wl"}},
           {{R"(kind==committed,labels."containerd.io/gc.root"==check-walk)"}, {"p", "p-wl"}},
           {{"name==p", "name==a-np-wl"}, {"a-np-wl", "p"}},  // OR of filters
           {{"name==a-wl,labels.l"}, {"a-wl"}},
           {{"parent==p"}, {"a", "v"}},
           {{R"(parent!="",labels."containerd.io/gc.root"==check-walk)"},
            {"a", "a-wl", "v", "v-wl"}},
           {{"labels.l"}, {"a-np-wl", "a-wl", "p-wl", "v-wl"}},
           {{"labels.l==2"}, {"a-np-wl", "a-wl"}},
           {{"labels.l!=2,labels.l"}, {"p-wl", "v-wl"}},
           {{"labels.l~=^[13]$"}, {"p-wl", "v-wl"}},
           {{"name~=/^a-np/"}, {"a-np", "a-np-wl"}},
           {{"kind==committed", "kind==view"}, {"p", "p-wl", "v", "v-wl"}},
           {{R"(labels."a.b"==x)"}, {"dotted"}},
           {{"name==nothing"}, {}},
           {{}, {"a", "a-np", "a-np-wl", "a-wl", "dotted", "p", "p-wl", "v", "v-wl"}},
       }) {
    EXPECT_EQ(ListNames(tc.filters), tc.want) << ::testing::PrintToString(tc.filters);
  }
}

TEST_F(SnapshotsApiTest, ListWithBadFilterIsInvalidArgument) {
  ASSERT_RPC_OK(Prepare("a", ""));
  std::vector<pb::Info> out;
  for (const char* bad :
       {"name==", "kind=active", "name==a,", R"(labels."unterminated)", "labels.key==/value/"}) {
    EXPECT_CODE(List({bad}, &out), INVALID_ARGUMENT) << bad;
  }
  EXPECT_CODE(List({"name==a", "name=="}, &out), INVALID_ARGUMENT);
}

TEST_F(SnapshotsApiTest, StatInsideListSeesTheSameInfo) {
  CreateBaseSnapshots();
  ASSERT_FALSE(HasFatalFailure());
  // Enough snapshots for several List messages.
  for (int i = 0; i < 250; i++) ASSERT_RPC_OK(Prepare("extra-" + std::to_string(i), "c2"));
  int seen = 0;
  grpc::Status s = ListEach({}, [&](const pb::Info& info) {
    pb::Info stat;
    ASSERT_RPC_OK(Stat(info.name(), &stat));
    EXPECT_TRUE(SameInfo(info, stat)) << info.DebugString() << " vs " << stat.DebugString();
    seen++;
  });
  EXPECT_RPC_OK(s);
  EXPECT_EQ(seen, 256);
}

TEST_F(SnapshotsApiTest, RemoveInsideListDoesNotDeadlock) {
  ASSERT_RPC_OK(Prepare("base-a", ""));
  ASSERT_RPC_OK(Commit("base", "base-a"));
  for (int i = 0; i < 150; i++) ASSERT_RPC_OK(Prepare("a-" + std::to_string(i), "base"));
  int removed = 0;
  grpc::Status s = ListEach({"kind==active"}, [&](const pb::Info& info) {
    EXPECT_RPC_OK(Remove(info.name()));
    removed++;
  });
  EXPECT_RPC_OK(s);
  EXPECT_EQ(removed, 150);
  EXPECT_EQ(ListNames({}), std::vector<std::string>{"base"});
}

// ---- layers with real mounts -------------------------------------------------------------

TEST_F(SnapshotsApiTest, FileUpdatedInUpperLayerShowsNewContentAndMode) {
  std::vector<Change> l1 = {AddDir("etc", 0700), AddFile("etc/hosts", "mydomain 10.0.0.1", 0644),
                            AddFile("etc/profile", "PATH=/usr/bin", 0644)};
  std::vector<Change> l2 = {AddFile("etc/hosts", "mydomain 10.0.0.2", 0644),
                            AddFile("etc/profile", "PATH=/usr/bin", 0666), AddDir("root", 0700),
                            AddFile("root/.bashrc", "PATH=/usr/sbin:/usr/bin", 0644)};
  for (int round = 0; round < 2; round++) {
    CheckLayers({l1, l2});
    ASSERT_FALSE(HasFatalFailure());
  }
}

TEST_F(SnapshotsApiTest, DirectoryRemovedAndRecreatedHidesLowerEntries) {
  CheckLayers({
      {AddDir("lib", 0700), AddFile("lib/hidden", "", 0644)},
      {RemovePath("lib"), AddDir("lib", 0700), AddFile("lib/not-hidden", "", 0644)},
      {AddFile("lib/newfile", "", 0644)},
  });
}

TEST_F(SnapshotsApiTest, ChownOfLowerFilesAndDirectoriesIsKept) {
  CheckLayers({
      {AddDir("opt", 0700), AddDir("opt/a", 0700), AddDir("opt/a/b", 0700),
       AddFile("opt/a/b/file.txt", "hello", 0644)},
      {ChownPath("opt", 1, 1), ChownPath("opt/a", 1, 1), ChownPath("opt/a/b", 1, 1),
       ChownPath("opt/a/b/file.txt", 1, 1)},
  });
}

TEST_F(SnapshotsApiTest, DirectoryOwnershipSurvivesCommits) {
  CheckLayers({
      {AddDir("dir1", 0700), AddDir("dir2", 0700), AddDir("dir3", 0700), AddDir("dir4", 0700),
       AddFile("dir4/f1", "...", 0644), AddDir("dir5", 0700), AddFile("dir5/f1", "...", 0644),
       ChownPath("dir1", 1, 1), ChownPath("dir2", 1, 1), ChownPath("dir3", 1, 1),
       ChownPath("dir5", 1, 1), ChownPath("dir5/f1", 1, 1)},
      {ChownPath("dir2", 0, 0), RemovePath("dir3"), ChownPath("dir4", 1, 1),
       ChownPath("dir4/f1", 1, 1)},
      {AddDir("dir3", 0700), ChownPath("dir3", 1, 1), RemovePath("dir5"), AddDir("dir5", 0700),
       ChownPath("dir5", 1, 1)},
  });
}

TEST_F(SnapshotsApiTest, FilesDeletedInChildAreGoneFromItsView) {
  CheckLayers({
      {AddFile("foo", "foo\n", 0777), AddFile("foobar", "foobar\n", 0777)},
      {RemovePath("foobar")},
      {},
  });
}

TEST_F(SnapshotsApiTest, HardlinkOfLowerFileSurvivesDeletionOfTheOriginal) {
  CheckLayers({
      {AddDir("dir1", 0700), AddFile("dir1/f1", "Hello", 0644), AddDir("dir2", 0700),
       AddFile("dir2/f2", "...", 0644)},
      {AddDir("dir3", 0700), AddFile("dir3/f1", "Hello", 0644), RemovePath("dir1"),
       HardLink("dir2/f2", "dir3/f2"), RemovePath("dir2/f2")},
  });
}

TEST_F(SnapshotsApiTest, RenamedLowerFilesAndDirectoriesMoveInTheView) {
  CheckLayers({
      {AddDir("dir1", 0700), AddDir("somefiles", 0700),
       AddFile("somefiles/f1", "was here first!", 0644),
       AddFile("somefiles/f2", "nothing interesting", 0644), AddDir("tree", 0755),
       AddFile("tree/leaf", "leaf", 0600), AddSymlink("../somefiles/f2", "tree/link")},
      {RenamePath("dir1", "dir2"), AddFile("somefiles/f1-overwrite", "new content 1", 0644),
       RenamePath("somefiles/f1-overwrite", "somefiles/f1"),
       RenamePath("somefiles/f2", "somefiles/f3"), RenamePath("tree", "moved-tree")},
  });
}

TEST_F(SnapshotsApiTest, ViewIsMountedReadOnly) {
  ASSERT_RPC_OK(Prepare("l1-a", ""));
  ASSERT_RPC_OK(Commit("l1", "l1-a"));
  ASSERT_RPC_OK(Prepare("l2-a", "l1"));
  ASSERT_RPC_OK(Commit("l2", "l2-a"));
  // No parent (a bind of an empty directory), one parent (a bind), two (overlay).
  for (const std::string parent : {"", "l1", "l2"}) {
    SCOPED_TRACE("parent \"" + parent + "\"");
    std::string key = "view-of-" + parent;
    std::string target = ViewMounted(key, parent);
    ASSERT_FALSE(target.empty());
    std::string file = target + "/testfile";
    int fd = ::open(file.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
    int err = errno;
    if (fd >= 0) ::close(fd);
    EXPECT_LT(fd, 0) << "writing into a view must fail";
    EXPECT_EQ(err, EROFS) << std::strerror(err);
    int rc = ::mkdir((target + "/dir").c_str(), 0755);
    err = errno;
    EXPECT_NE(rc, 0);
    EXPECT_EQ(err, EROFS) << std::strerror(err);
    UnmountDir(target);
    EXPECT_RPC_OK(Remove(key));
  }
}

TEST_F(SnapshotsApiTest, RootDirectoryOfNewSnapshotHasMode0755) {
  std::string base = PrepareMounted("preparing", "");
  ASSERT_FALSE(base.empty());
  struct stat st {};
  ASSERT_EQ(::stat(base.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0755u);
  UnmountDir(base);
  ASSERT_RPC_OK(Commit("base", "preparing"));

  std::string child = PrepareMounted("child", "base");
  ASSERT_FALSE(child.empty());
  ASSERT_EQ(::stat(child.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0755u);
}

TEST_F(SnapshotsApiTest, RootOwnerIsInheritedByChildLayers) {
  std::string base = PrepareMounted("base-a", "");
  ASSERT_FALSE(base.empty());
  ASSERT_EQ(::chown(base.c_str(), 1000, 1001), 0);
  UnmountDir(base);
  ASSERT_RPC_OK(Commit("base", "base-a"));
  std::string child = PrepareMounted("child", "base");
  ASSERT_FALSE(child.empty());
  struct stat st {};
  ASSERT_EQ(::stat(child.c_str(), &st), 0);
  EXPECT_EQ(st.st_uid, 1000u);
  EXPECT_EQ(st.st_gid, 1001u);
}

TEST_F(SnapshotsApiTest, ChainOf128LayersMountsWithLowerdirLongerThanAPage) {
  constexpr int kLayers = 128;
  std::string flat = NewDir("work");
  std::string parent;
  for (int i = 0; i < kLayers; i++) {
    SCOPED_TRACE("layer " + std::to_string(i));
    std::vector<Change> layer = {
        AddFile("layer-" + std::to_string(i), "layer " + std::to_string(i) + "\n", 0644),
        AddFile("overwriteme", std::to_string(i) + " WAS HERE!\n", 0777),
    };
    if (i == 0) {
      layer.push_back(AddDir("ONLYME", 0755));
    } else {
      layer.push_back(RemovePath("ONLYME"));
      layer.push_back(AddDir("ONLYME", 0755));
    }
    layer.push_back(AddFile("ONLYME/file-" + std::to_string(i), "only me!\n", 0777));

    std::string key = "prepare-layer-" + std::to_string(i);
    std::string target = PrepareMounted(key, parent);
    ASSERT_FALSE(target.empty());
    ExpectSameTree(flat, target);
    Apply(layer, flat);
    Apply(layer, target);
    ASSERT_FALSE(HasFatalFailure());
    ExpectSameTree(flat, target);
    UnmountDir(target);
    parent = "committed-" + std::to_string(i);
    ASSERT_RPC_OK(Commit(parent, key, GcRoot()));
  }

  std::vector<Mount> mounts;
  ASSERT_RPC_OK(View("fullview", parent, GcRoot(), &mounts));
  ASSERT_EQ(mounts.size(), 1u);
  size_t data_size = 0;
  for (const auto& o : mounts[0].options) data_size += o.size() + 1;
  EXPECT_GT(data_size, static_cast<size_t>(::sysconf(_SC_PAGESIZE)))
      << "the test must exercise a lowerdir longer than a page";
  std::string view = MountOnNewDir(mounts);
  ASSERT_FALSE(view.empty());
  ExpectSameTree(flat, view);
  for (int i = 0; i < kLayers; i++) {
    EXPECT_TRUE(fs::Exists(view + "/layer-" + std::to_string(i))) << i;
  }
  EXPECT_EQ(*fs::ReadFile(view + "/overwriteme"), "127 WAS HERE!\n");
  EXPECT_EQ(ReadTree(view + "/ONLYME").size(), 1u);
}

// ---- lifecycle edges ---------------------------------------------------------------------

TEST_F(SnapshotsApiTest, CloseTwiceIsFineAndLaterCallsAreUnavailable) {
  ASSERT_RPC_OK(Prepare("closeTwice-prepare", "", GcRoot()));
  ASSERT_RPC_OK(Commit("closeTwice", "closeTwice-prepare", GcRoot()));
  ASSERT_RPC_OK(Remove("closeTwice"));
  EXPECT_TRUE(overlay_->Close().ok());
  EXPECT_TRUE(overlay_->Close().ok());
  EXPECT_CODE(Stat("anything"), UNAVAILABLE);
  EXPECT_CODE(Prepare("new", ""), UNAVAILABLE);
  std::vector<pb::Info> out;
  EXPECT_CODE(List({}, &out), UNAVAILABLE);
}

TEST_F(SnapshotsApiTest, ReopenKeepsSnapshotsLabelsAndContentAndRemovesOrphans) {
  CommitLayer("base", "", {AddFile("f", "base", 0644)});
  ASSERT_FALSE(HasFatalFailure());
  std::string active = PrepareMounted("active", "base", {{"l", "active"}});
  ASSERT_FALSE(active.empty());
  Apply({AddFile("g", "written before restart", 0600)}, active);
  UnmountDir(active);
  ASSERT_RPC_OK(View("view", "base", {{"l", "view"}}));
  ASSERT_RPC_OK(Prepare(std::string("nul\0key", 7), "base", {{std::string("k\0", 2), "v"}}));
  pb::Info base;
  ASSERT_RPC_OK(Stat("base", &base));
  (*base.mutable_labels())["updated"] = "yes";
  ASSERT_RPC_OK(Update(base, {"labels.updated"}));
  auto before = ListAll();
  std::set<std::string> dirs_before;
  for (const auto& [name, info] : before) dirs_before.insert(SnapshotDirOf(name));
  ASSERT_EQ(before.size(), 4u);

  StopService();
  std::string orphan = state_ + "/snapshots/424242";
  ASSERT_TRUE(fs::MakeDirs(orphan + "/fs", 0755).ok());
  ASSERT_TRUE(fs::WriteFileAtomic(orphan + "/fs/leftover", "x").ok());
  StartService();
  ASSERT_FALSE(HasFatalFailure());

  EXPECT_FALSE(fs::Exists(orphan)) << "orphan directories are removed at open";
  auto after = ListAll();
  ASSERT_EQ(after.size(), before.size());
  for (const auto& [name, info] : before) {
    ASSERT_EQ(after.count(name), 1u) << name;
    EXPECT_TRUE(SameInfo(after[name], info)) << after[name].DebugString() << info.DebugString();
  }

  std::vector<Mount> mounts;
  ASSERT_RPC_OK(Mounts("active", &mounts));
  std::string target = MountOnNewDir(mounts);
  ASSERT_FALSE(target.empty());
  EXPECT_EQ(*fs::ReadFile(target + "/f"), "base");
  EXPECT_EQ(*fs::ReadFile(target + "/g"), "written before restart");
  UnmountDir(target);

  // New snapshots never reuse a directory of an existing one.
  ASSERT_RPC_OK(Prepare("after-restart", "base"));
  EXPECT_EQ(dirs_before.count(SnapshotDirOf("after-restart")), 0u);
  ASSERT_RPC_OK(Commit("after-restart-c", "after-restart"));
  ExpectNoProblems();
}

// A power loss may keep a record whose directories the file system journal had not
// committed yet: start-up makes them again, empty, with the modes and owner Prepare
// gave them.
TEST_F(SnapshotsApiTest, StartupMakesAgainDirectoriesThatACrashLost) {
  std::string base_target = PrepareMounted("base-a", "");
  ASSERT_FALSE(base_target.empty());
  Apply({AddFile("f", "base", 0644)}, base_target);
  UnmountDir(base_target);
  ASSERT_RPC_OK(Commit("base", "base-a"));
  ASSERT_EQ(::chown((SnapshotDirOf("base") + "/fs").c_str(), 1234, 4321), 0);
  ASSERT_RPC_OK(Prepare("active", "base"));
  ASSERT_RPC_OK(View("view", "base"));
  ASSERT_RPC_OK(Prepare("lone-a", ""));
  ASSERT_RPC_OK(Commit("lone", "lone-a"));
  std::string active = SnapshotDirOf("active");
  std::string view = SnapshotDirOf("view");
  std::string lone = SnapshotDirOf("lone");
  StopService();
  ASSERT_TRUE(fs::RemoveAll(active).ok());
  ASSERT_TRUE(fs::RemoveAll(view + "/fs").ok());
  ASSERT_TRUE(fs::RemoveAll(lone).ok());
  StartService();
  ASSERT_FALSE(HasFatalFailure());

  struct stat st;
  for (const auto& [path, mode] :
       std::vector<std::pair<std::string, mode_t>>{{active, 0700},
                                                   {active + "/fs", 0755},
                                                   {active + "/work", 0711},
                                                   {view + "/fs", 0755},
                                                   {lone, 0700},
                                                   {lone + "/fs", 0755}}) {
    ASSERT_EQ(::lstat(path.c_str(), &st), 0) << path << " was not made again";
    EXPECT_TRUE(S_ISDIR(st.st_mode)) << path;
    EXPECT_EQ(st.st_mode & 07777, mode) << path;
  }
  ASSERT_EQ(::lstat((active + "/fs").c_str(), &st), 0);
  EXPECT_EQ(st.st_uid, 1234u) << "a layer's root takes its parent's owner";
  EXPECT_EQ(st.st_gid, 4321u);
  EXPECT_FALSE(fs::Exists(lone + "/work")) << "a committed snapshot has no work directory";
  ExpectNoProblems();

  // The active snapshot works as before the crash: its parent's files, writable.
  std::vector<Mount> mounts;
  ASSERT_RPC_OK(Mounts("active", &mounts));
  std::string target = MountOnNewDir(mounts);
  ASSERT_FALSE(target.empty());
  EXPECT_EQ(*fs::ReadFile(target + "/f"), "base");
  Apply({AddFile("g", "after", 0644)}, target);
  EXPECT_EQ(*fs::ReadFile(active + "/fs/g"), "after");
}

TEST_F(SnapshotsApiTest, PrepareTakesSpareDirectoriesOutsideTheSnapshotsDirectory) {
  auto spares = [&] {
    auto names = fs::ListDir(state_ + "/spares");
    return names.ok() ? names->size() : size_t{0};
  };
  ASSERT_TRUE(Eventually([&] { return spares() == 8; })) << spares();
  for (int i = 0; i < 6; i++) ASSERT_RPC_OK(Prepare("s" + std::to_string(i), ""));
  EXPECT_EQ(SnapshotDirEntries().size(), 6u) << "spares are not snapshot directories";
  // Refilled in batches when half is used: between half and all of it.
  EXPECT_TRUE(Eventually([&] { return spares() >= 4; })) << spares();
  EXPECT_LE(spares(), 8u);
  for (int i = 0; i < 6; i++) {
    std::string dir = SnapshotDirOf("s" + std::to_string(i));
    struct stat st;
    ASSERT_EQ(::lstat((dir + "/fs").c_str(), &st), 0);
    EXPECT_EQ(st.st_mode & 07777, 0755u);
    ASSERT_EQ(::lstat((dir + "/work").c_str(), &st), 0);
    EXPECT_EQ(st.st_mode & 07777, 0711u);
    EXPECT_TRUE(fs::ListDir(dir + "/fs")->empty());
  }
  ExpectNoProblems();

  // Spares do not outlive the daemon as snapshots: Cleanup and restarts leave no trace.
  ASSERT_RPC_OK(Cleanup());
  EXPECT_EQ(SnapshotDirEntries().size(), 6u);
  RestartService(OverlayOptions{.spare_directories = 0});
  ASSERT_FALSE(HasFatalFailure());
  EXPECT_FALSE(fs::Exists(state_ + "/spares"));
  ASSERT_RPC_OK(Prepare("no-spare", ""));
  EXPECT_TRUE(fs::Exists(SnapshotDirOf("no-spare") + "/work"));
  ExpectNoProblems();
}

TEST_F(SnapshotsApiTest, PrepareMakesItsDirectoriesWhenASpareCannotTakeTheirPlace) {
  ASSERT_RPC_OK(Prepare("first", ""));
  std::string first = SnapshotDirOf("first");
  uint64_t next = std::stoull(fs::BaseName(first)) + 1;
  // A stale directory with the next id (say, left by a crash before start-up ran).
  std::string stale = fs::DirName(first) + "/" + std::to_string(next);
  ASSERT_TRUE(fs::MakeDirs(stale + "/fs", 0755).ok());
  ASSERT_TRUE(fs::WriteFileAtomic(stale + "/fs/junk", "x").ok());
  // A spare is ready, so Prepare tries it first and must fall back when it cannot move.
  ASSERT_TRUE(Eventually([&] {
    auto spares = fs::ListDir(state_ + "/spares");
    return spares.ok() && spares->size() >= 2;  // the first one is complete
  }));
  ASSERT_RPC_OK(Prepare("second", ""));
  ASSERT_EQ(SnapshotDirOf("second"), stale);
  EXPECT_FALSE(fs::Exists(stale + "/fs/junk")) << "the new snapshot starts empty";
  EXPECT_TRUE(fs::Exists(stale + "/work"));
  ExpectNoProblems();
}

TEST_F(SnapshotsApiTest, AdminVersionReportsRootAndSchema) {
  adminpb::VersionRequest req;
  adminpb::VersionResponse resp;
  grpc::ClientContext ctx;
  ASSERT_RPC_OK(admin_->Version(&ctx, req, &resp));
  EXPECT_EQ(resp.root(), state_);
  EXPECT_EQ(resp.schema_version(), metadata::kSchemaVersion);
  EXPECT_EQ(resp.pid(), ::getpid());
}

TEST_F(SnapshotsApiTest, CheckFindsAndRepairsOrphanAndMissingDirectories) {
  ASSERT_RPC_OK(Prepare("a-a", ""));
  ASSERT_RPC_OK(Commit("a", "a-a"));
  ExpectNoProblems();
  std::string orphan = state_ + "/snapshots/777777";
  ASSERT_TRUE(fs::MakeDirs(orphan + "/fs", 0755).ok());
  std::string fs_dir = SnapshotDirOf("a") + "/fs";
  ASSERT_TRUE(fs::RemoveAll(fs_dir).ok());

  std::vector<adminpb::Problem> problems;
  ASSERT_RPC_OK(Check(false, &problems));
  std::set<std::string> kinds;
  for (const auto& p : problems) kinds.insert(p.kind());
  EXPECT_EQ(kinds, (std::set<std::string>{"missing-directory", "orphan-directory"}));
  EXPECT_TRUE(fs::Exists(orphan)) << "no repair without asking";

  ASSERT_RPC_OK(Check(true, &problems));
  for (const auto& p : problems) EXPECT_TRUE(p.repaired()) << p.kind() << ": " << p.detail();
  EXPECT_FALSE(fs::Exists(orphan));
  EXPECT_TRUE(fs::Exists(fs_dir));
  ExpectNoProblems();
}

// ---- error classes -----------------------------------------------------------------------

TEST_F(SnapshotsApiTest, UnknownKeyOrParentIsNotFound) {
  pb::Info info;
  info.set_name("missing");
  int64_t size = 0, inodes = 0;
  EXPECT_CODE(Stat("missing"), NOT_FOUND);
  EXPECT_CODE(Mounts("missing"), NOT_FOUND);
  EXPECT_CODE(Usage("missing", &size, &inodes), NOT_FOUND);
  EXPECT_CODE(Remove("missing"), NOT_FOUND);
  EXPECT_CODE(Update(info, {}), NOT_FOUND);
  EXPECT_CODE(Commit("name", "missing"), NOT_FOUND);
  EXPECT_CODE(Prepare("a", "missing-parent"), NOT_FOUND);
  EXPECT_CODE(View("v", "missing-parent"), NOT_FOUND);
  EXPECT_TRUE(ListAll().empty()) << "failed calls create nothing";
  EXPECT_TRUE(SnapshotDirEntries().empty()) << "failed calls leave no directory";
}

TEST_F(SnapshotsApiTest, ParentThatIsNotCommittedIsInvalidArgument) {
  ASSERT_RPC_OK(Prepare("active", ""));
  ASSERT_RPC_OK(Prepare("c-a", ""));
  ASSERT_RPC_OK(Commit("c", "c-a"));
  ASSERT_RPC_OK(View("view", "c"));
  EXPECT_CODE(Prepare("child", "active"), INVALID_ARGUMENT);
  EXPECT_CODE(View("child-view", "active"), INVALID_ARGUMENT);
  EXPECT_CODE(Prepare("child2", "view"), INVALID_ARGUMENT);
  EXPECT_CODE(Stat("child"), NOT_FOUND);
  EXPECT_EQ(SnapshotDirEntries().size(), 3u);
}

TEST_F(SnapshotsApiTest, WrongKindForOperationIsFailedPrecondition) {
  ASSERT_RPC_OK(Prepare("c-a", ""));
  ASSERT_RPC_OK(Commit("c", "c-a"));
  ASSERT_RPC_OK(View("view", "c"));
  EXPECT_CODE(Commit("from-view", "view"), FAILED_PRECONDITION);
  EXPECT_CODE(Commit("from-committed", "c"), FAILED_PRECONDITION);
  EXPECT_CODE(Mounts("c"), FAILED_PRECONDITION);
  std::vector<Mount> mounts;
  EXPECT_RPC_OK(Mounts("view", &mounts));
  EXPECT_FALSE(mounts.empty());
}

TEST_F(SnapshotsApiTest, MountsReturnsTheSameMountsAsPrepare) {
  ASSERT_RPC_OK(Prepare("c-a", ""));
  ASSERT_RPC_OK(Commit("c", "c-a"));
  std::vector<Mount> prepared, again;
  ASSERT_RPC_OK(Prepare("a", "c", {}, &prepared));
  ASSERT_RPC_OK(Mounts("a", &again));
  ASSERT_EQ(prepared.size(), again.size());
  for (size_t i = 0; i < prepared.size(); i++) {
    EXPECT_EQ(prepared[i].type, again[i].type);
    EXPECT_EQ(prepared[i].source, again[i].source);
    EXPECT_EQ(prepared[i].options, again[i].options);
  }
}

// ---- Commit with containerd 2.2's parent field --------------------------------------------

TEST_F(SnapshotsApiTest, CommitWithSameParentIsAccepted) {
  ASSERT_RPC_OK(Prepare("p-a", ""));
  ASSERT_RPC_OK(Commit("p", "p-a"));
  ASSERT_RPC_OK(Prepare("a", "p"));
  ASSERT_RPC_OK(Commit("c", "a", {}, "p"));
  pb::Info info;
  ASSERT_RPC_OK(Stat("c", &info));
  EXPECT_EQ(info.parent(), "p");
  ExpectNoProblems();
}

TEST_F(SnapshotsApiTest, CommitRebasesSnapshotPreparedWithoutParent) {
  CommitLayer("lower", "",
              {AddFile("from-lower", "lower", 0644), AddFile("shadowed", "lower", 0644)});
  ASSERT_FALSE(HasFatalFailure());
  // Unpacked in parallel without its parent, as containerd 2.2 does.
  std::string target = PrepareMounted("upper-a", "");
  ASSERT_FALSE(target.empty());
  Apply({AddFile("from-upper", "upper", 0644), AddFile("shadowed", "upper", 0644)}, target);
  UnmountDir(target);
  ASSERT_RPC_OK(Commit("upper", "upper-a", GcRoot(), "lower"));

  pb::Info info;
  ASSERT_RPC_OK(Stat("upper", &info));
  EXPECT_EQ(info.parent(), "lower");
  EXPECT_CODE(Remove("lower"), FAILED_PRECONDITION) << "lower now has a child";

  std::string view = ViewMounted("check", "upper");
  ASSERT_FALSE(view.empty());
  EXPECT_EQ(*fs::ReadFile(view + "/from-lower"), "lower");
  EXPECT_EQ(*fs::ReadFile(view + "/from-upper"), "upper");
  EXPECT_EQ(*fs::ReadFile(view + "/shadowed"), "upper");
  UnmountDir(view);
  ExpectNoProblems();
}

TEST_F(SnapshotsApiTest, CommitWithDifferentParentIsInvalidArgument) {
  ASSERT_RPC_OK(Prepare("p1-a", ""));
  ASSERT_RPC_OK(Commit("p1", "p1-a"));
  ASSERT_RPC_OK(Prepare("p2-a", ""));
  ASSERT_RPC_OK(Commit("p2", "p2-a"));
  ASSERT_RPC_OK(Prepare("a", "p1"));
  EXPECT_CODE(Commit("c", "a", {}, "p2"), INVALID_ARGUMENT);
  pb::Info info;
  ASSERT_RPC_OK(Stat("a", &info));
  EXPECT_EQ(info.kind(), pb::ACTIVE);
  EXPECT_EQ(info.parent(), "p1");
  EXPECT_RPC_OK(Remove("p2")) << "the refused rebase left no child on p2";
}

TEST_F(SnapshotsApiTest, CommitRebaseOntoMissingOrUncommittedParentFails) {
  ASSERT_RPC_OK(Prepare("a", ""));
  ASSERT_RPC_OK(Prepare("other", ""));
  EXPECT_CODE(Commit("c", "a", {}, "missing"), NOT_FOUND);
  EXPECT_CODE(Commit("c", "a", {}, "other"), INVALID_ARGUMENT);
  EXPECT_CODE(Commit("c", "a", {}, "a"), INVALID_ARGUMENT) << "not onto itself";
  pb::Info info;
  ASSERT_RPC_OK(Stat("a", &info));
  EXPECT_EQ(info.kind(), pb::ACTIVE);
  ExpectNoProblems();
}

// ---- Usage ------------------------------------------------------------------------------

TEST_F(SnapshotsApiTest, UsageIsMeasuredForActiveAndStoredForCommitted) {
  std::string target = PrepareMounted("a", "");
  ASSERT_FALSE(target.empty());
  std::string big(1 << 20, '\0');
  for (size_t i = 0; i < big.size(); i++) big[i] = static_cast<char>('a' + i % 26);
  Apply({AddFile("big", big, 0644), AddFile("small", "s", 0644), AddDir("d", 0755)}, target);
  UnmountDir(target);

  int64_t size = 0, inodes = 0;
  ASSERT_RPC_OK(Usage("a", &size, &inodes));
  EXPECT_EQ(inodes, 4);  // root, big, small, d
  EXPECT_GE(size, 1 << 20);
  EXPECT_LT(size, 2 << 20);

  ASSERT_RPC_OK(Commit("c", "a"));
  int64_t committed_size = 0, committed_inodes = 0;
  ASSERT_RPC_OK(Usage("c", &committed_size, &committed_inodes));
  EXPECT_EQ(committed_size, size);
  EXPECT_EQ(committed_inodes, inodes);

  // Stored at commit: not measured again.
  auto fs_path = overlay_->FsPath("strata", "c");
  ASSERT_TRUE(fs_path.ok());
  ASSERT_TRUE(fs::WriteFileAtomic(*fs_path + "/sneaked-in", std::string(64 << 10, 'x')).ok());
  ASSERT_RPC_OK(Usage("c", &committed_size, &committed_inodes));
  EXPECT_EQ(committed_size, size);
  EXPECT_EQ(committed_inodes, inodes);
}

TEST_F(SnapshotsApiTest, UsageOfActiveChildCountsOnlyItsOwnLayer) {
  CommitLayer("base", "", {AddFile("big", std::string(1 << 20, 'b'), 0644)});
  ASSERT_FALSE(HasFatalFailure());
  std::string target = PrepareMounted("child", "base");
  ASSERT_FALSE(target.empty());
  int64_t size = 0, inodes = 0;
  ASSERT_RPC_OK(Usage("child", &size, &inodes));
  EXPECT_EQ(inodes, 1);
  Apply({AddFile("new", std::string(8192, 'n'), 0644)}, target);
  UnmountDir(target);
  ASSERT_RPC_OK(Usage("child", &size, &inodes));
  EXPECT_EQ(inodes, 2);
  EXPECT_GE(size, 8192);
  EXPECT_LT(size, 1 << 20);
}

// ---- bad input -----------------------------------------------------------------------------

TEST_F(SnapshotsApiTest, EmptyKeyOrNameIsInvalidArgument) {
  EXPECT_CODE(Prepare("", ""), INVALID_ARGUMENT);
  EXPECT_CODE(View("", ""), INVALID_ARGUMENT);
  ASSERT_RPC_OK(Prepare("a", ""));
  EXPECT_CODE(Commit("", "a"), INVALID_ARGUMENT);
  EXPECT_EQ(ListNames({}), std::vector<std::string>{"a"});
}

TEST_F(SnapshotsApiTest, OneMebibyteKeysWorkAndNeverBecomePaths) {
  std::string key(1 << 20, 'k');
  std::string name(1 << 20, 'n');
  key.back() = '/';
  name.front() = '.';
  ASSERT_RPC_OK(Prepare(key, "", GcRoot()));
  pb::Info info;
  ASSERT_RPC_OK(Stat(key, &info));
  EXPECT_EQ(info.name(), key);
  // Errors quoting such keys keep their class across the gRPC hop.
  EXPECT_CODE(Prepare(key, ""), ALREADY_EXISTS);
  EXPECT_CODE(Stat(name), NOT_FOUND);
  EXPECT_CODE(Prepare("x", name), NOT_FOUND);
  EXPECT_CODE(Prepare("x", key), INVALID_ARGUMENT);
  ASSERT_RPC_OK(Commit(name, key));
  ASSERT_RPC_OK(Stat(name, &info));
  EXPECT_EQ(info.name(), name);

  std::string child = PrepareMounted("child", name);
  ASSERT_FALSE(child.empty());
  UnmountDir(child);
  ASSERT_RPC_OK(Stat("child", &info));
  EXPECT_EQ(info.parent(), name);
  EXPECT_EQ(ListAll().size(), 2u);

  for (const auto& entry : SnapshotDirEntries()) {
    EXPECT_EQ(entry.find_first_not_of("0123456789"), std::string::npos)
        << "snapshot directory named after client data: " << entry.substr(0, 64);
  }
  EXPECT_CODE(Remove(name), FAILED_PRECONDITION);
  ASSERT_RPC_OK(Remove("child"));
  ASSERT_RPC_OK(Remove(name));
  ExpectNoProblems();
}

TEST_F(SnapshotsApiTest, KeysAndLabelsWithNulBytesRoundTripExactly) {
  const std::string parent("p\0q", 3);
  const std::string key("a\0b", 3);
  const Labels labels = {{std::string("k\0", 2), std::string("v\0v", 3)}, {"plain", "x"}};
  ASSERT_RPC_OK(Prepare("p-a", ""));
  ASSERT_RPC_OK(Commit(parent, "p-a", labels));
  ASSERT_RPC_OK(Prepare(key, parent, labels));
  ASSERT_RPC_OK(Prepare("a", ""));  // a prefix of the NUL key is a different key

  pb::Info info;
  ASSERT_RPC_OK(Stat(key, &info));
  EXPECT_EQ(info.name(), key);
  EXPECT_EQ(info.parent(), parent);
  EXPECT_EQ(LabelsOf(info), labels);
  ASSERT_RPC_OK(Stat(parent, &info));
  EXPECT_EQ(LabelsOf(info), labels);
  ASSERT_RPC_OK(Stat("a", &info));
  EXPECT_EQ(info.parent(), "");
  EXPECT_CODE(Stat(std::string("a\0", 2)), NOT_FOUND);

  EXPECT_EQ(ListNames({R"(name=="a\0b")"}), std::vector<std::string>{key});

  EXPECT_CODE(Remove(parent), FAILED_PRECONDITION);
  ASSERT_RPC_OK(Remove(key));
  ExpectNoProblems();
  ASSERT_RPC_OK(Remove(parent));
  EXPECT_EQ(ListNames({}), (std::vector<std::string>{"a"}));
}

TEST_F(SnapshotsApiTest, CommitNamesCannotCloseACycle) {
  ASSERT_RPC_OK(Prepare("a", ""));
  ASSERT_RPC_OK(Commit("c1", "a"));
  ASSERT_RPC_OK(Prepare("b", "c1"));
  EXPECT_CODE(Commit("c1", "b"), ALREADY_EXISTS) << "b would become its own parent";
  EXPECT_CODE(Commit("b", "b"), ALREADY_EXISTS);
  EXPECT_CODE(Prepare("c1", "c1"), ALREADY_EXISTS);
  ASSERT_RPC_OK(Commit("c2", "b"));
  ASSERT_RPC_OK(Prepare("x", "c2"));
  EXPECT_CODE(Commit("c1", "x"), ALREADY_EXISTS);
  EXPECT_CODE(Commit("c2", "x"), ALREADY_EXISTS);
  ASSERT_RPC_OK(Prepare("r", ""));
  EXPECT_CODE(Commit("r2", "r", {}, "r2"), NOT_FOUND) << "rebase onto its own new name";

  // Every parent chain ends.
  auto all = ListAll();
  for (const auto& [name, info] : all) {
    std::string p = info.parent();
    size_t steps = 0;
    while (!p.empty() && steps <= all.size()) {
      ASSERT_EQ(all.count(p), 1u) << p;
      p = all[p].parent();
      steps++;
    }
    EXPECT_LE(steps, all.size()) << "cycle through " << name;
  }
  ExpectNoProblems();
}

TEST_F(SnapshotsApiTest, ConcurrentConflictingCallsGetProperCodesAndLeaveConsistentState) {
  constexpr int kThreads = 16;
  constexpr int kOpsPerThread = 120;
  const std::vector<std::string> keys = {"k0", "k1", "k2", "k3"};
  const std::vector<std::string> names = {"c0", "c1", "c2", "c3"};
  std::vector<std::string> anything = keys;
  anything.insert(anything.end(), names.begin(), names.end());
  std::vector<std::string> parents = anything;
  parents.push_back("");

  const std::set<StatusCode> allowed = {StatusCode::OK, StatusCode::ALREADY_EXISTS,
                                        StatusCode::NOT_FOUND, StatusCode::FAILED_PRECONDITION,
                                        StatusCode::INVALID_ARGUMENT};
  std::mutex mu;
  std::map<StatusCode, int> counts;
  std::vector<std::string> unexpected;

  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; t++) {
    threads.emplace_back([&, t] {
      std::mt19937 rng(static_cast<unsigned>(t) * 7919u + 1);
      auto pick = [&](const std::vector<std::string>& v) { return v[rng() % v.size()]; };
      for (int i = 0; i < kOpsPerThread; i++) {
        grpc::Status s;
        std::string what;
        switch (rng() % 6) {
          case 0:
          case 1: {
            std::string key = pick(keys), parent = pick(parents);
            what = "prepare " + key + " on " + parent;
            s = Prepare(key, parent);
            break;
          }
          case 2: {
            std::string key = pick(keys), parent = pick(parents);
            what = "view " + key + " on " + parent;
            s = View(key, parent);
            break;
          }
          case 3: {
            std::string name = pick(anything), key = pick(keys);
            what = "commit " + key + " as " + name;
            s = Commit(name, key, {{"t", std::to_string(t)}});
            break;
          }
          case 4: {
            std::string key = pick(anything);
            what = "remove " + key;
            s = Remove(key);
            break;
          }
          default: {
            std::string key = pick(anything);
            what = "stat " + key;
            s = Stat(key);
            break;
          }
        }
        std::lock_guard<std::mutex> lock(mu);
        counts[s.error_code()]++;
        if (allowed.count(s.error_code()) == 0) {
          unexpected.push_back(what + ": " + CodeName(s.error_code()) + ": " + s.error_message());
        }
      }
    });
  }
  for (auto& th : threads) th.join();

  for (const auto& u : unexpected) ADD_FAILURE() << u;
  EXPECT_GT(counts[StatusCode::OK], 0);
  EXPECT_GT(counts[StatusCode::ALREADY_EXISTS] + counts[StatusCode::FAILED_PRECONDITION], 0)
      << "the calls did conflict";

  ExpectNoProblems();
  auto all = ListAll();
  for (const auto& [name, info] : all) {
    if (info.parent().empty()) continue;
    ASSERT_EQ(all.count(info.parent()), 1u) << name << " has a missing parent";
    EXPECT_EQ(all[info.parent()].kind(), pb::COMMITTED) << name;
  }

  // Everything can still be removed, top down, and then no directory is left.
  for (int round = 0; round < 16 && !ListAll().empty(); round++) {
    for (const auto& [name, info] : ListAll()) {
      grpc::Status s = Remove(name);
      EXPECT_TRUE(s.ok() || s.error_code() == StatusCode::FAILED_PRECONDITION)
          << name << ": " << s.error_message();
    }
  }
  EXPECT_TRUE(ListAll().empty());
  ASSERT_RPC_OK(Cleanup());
  EXPECT_TRUE(Eventually([&] { return SnapshotDirEntries().empty(); }));
  ExpectNoProblems();
}

TEST_F(SnapshotsApiTest, EachSnapshotterNameIsASeparateSetOfSnapshots) {
  // containerd's GC removes every snapshot of its snapshotter it did not create;
  // snapshots made under another name must be invisible to it.
  ASSERT_RPC_OK(Prepare("shared-key", ""));
  auto other = [&](auto make_request) {
    grpc::ClientContext ctx;
    Deadline(ctx);
    return make_request(ctx);
  };
  grpc::Status st = other([&](grpc::ClientContext& ctx) {
    pb::PrepareSnapshotRequest req;
    req.set_snapshotter("other");
    req.set_key("shared-key");
    pb::PrepareSnapshotResponse resp;
    return snapshots_->Prepare(&ctx, req, &resp);
  });
  ASSERT_TRUE(st.ok()) << st.error_message();
  st = other([&](grpc::ClientContext& ctx) {
    pb::CommitSnapshotRequest req;
    req.set_snapshotter("other");
    req.set_name("other-base");
    req.set_key("shared-key");
    google::protobuf::Empty resp;
    return snapshots_->Commit(&ctx, req, &resp);
  });
  ASSERT_TRUE(st.ok()) << st.error_message();

  // Under "strata" only its own snapshot is visible; the other name's parent is unknown.
  EXPECT_EQ(ListNames({}), std::vector<std::string>{"shared-key"});
  pb::Info info;
  ASSERT_RPC_OK(Stat("shared-key", &info));
  EXPECT_EQ(info.kind(), pb::ACTIVE);
  EXPECT_EQ(Prepare("child", "other-base").error_code(), grpc::StatusCode::NOT_FOUND);

  st = other([&](grpc::ClientContext& ctx) {
    pb::RemoveSnapshotRequest req;
    req.set_snapshotter("other");
    req.set_key("other-base");
    google::protobuf::Empty resp;
    return snapshots_->Remove(&ctx, req, &resp);
  });
  ASSERT_TRUE(st.ok()) << st.error_message();
  ASSERT_RPC_OK(Stat("shared-key", &info));
  auto check = overlay_->Check(false);
  ASSERT_TRUE(check.ok());
  EXPECT_TRUE(check->empty());
}

}  // namespace
}  // namespace strata::snapshotter
