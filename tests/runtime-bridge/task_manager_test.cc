// The task manager's start-up reconciliation: what a crash of stratad leaves behind
// (a task half created, tasks that exited or died while no daemon ran) is cleaned up
// or brought up to date when the next stratad opens the manager. Real RocksDB store,
// real overlay snapshots and mounts.
#include <gtest/gtest.h>
#include <stdlib.h>
#include <unistd.h>

#include <fstream>

#include "core/clock.h"
#include "core/fs.h"
#include "core/mount.h"
#include "metadata/store.h"
#include "runtime-bridge/shim.h"
#include "runtime-bridge/task_record.pb.h"
#include "runtime-bridge/tasks.h"
#include "snapshotter/overlay.h"

namespace strata::runtime {
namespace {

namespace pb = ::strata::runtime::v1;

class TaskManagerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/strata-tasks-XXXXXX";
    root_ = ::mkdtemp(tmpl);
    auto store = metadata::Store::Open(root_ + "/metadata");
    ASSERT_TRUE(store.ok()) << store.status().ToString();
    store_ = std::move(*store);
    auto overlay = snapshotter::Overlay::Open(root_, store_.get());
    ASSERT_TRUE(overlay.ok()) << overlay.status().ToString();
    overlay_ = std::move(*overlay);
    auto snaps = overlay_->ForName("strata-images");
    ASSERT_TRUE(snaps->Prepare("base-a", "", {}).ok());
    ASSERT_TRUE(snaps->Commit("base", "base-a", {}, "").ok());
    options_.root = root_;
    options_.snapshotter = "strata-images";
  }
  void TearDown() override {
    manager_.reset();
    for (const auto& m : mounted_) (void)Unmount(m, true);
    (void)overlay_->Close();
    overlay_.reset();
    store_.reset();
    (void)fs::RemoveAll(root_);
  }

  // A task as a crashed stratad left it: record, snapshot, bundle, mounted rootfs.
  pb::TaskRecord LeaveTask(const std::string& id, pb::TaskState state) {
    pb::TaskRecord r;
    r.set_id(id);
    r.set_name("t-" + id.substr(0, 4));
    r.set_state(state);
    r.set_runtime("/usr/sbin/runc");
    r.set_runtime_root(root_ + "/runtime/runc");
    r.set_snapshotter("strata-images");
    r.set_snapshot_key("strata-task/" + id);
    r.set_bundle(root_ + "/tasks/" + id);
    r.set_created_unix_nanos(NowUnixNanos());
    r.set_shim_pid(0);
    r.set_pid(0);
    EXPECT_TRUE(fs::MakeDirs(r.bundle() + "/rootfs").ok());
    auto mounts = overlay_->ForName("strata-images")->Prepare(r.snapshot_key(), "base", {});
    EXPECT_TRUE(mounts.ok()) << mounts.status().ToString();
    EXPECT_TRUE(MountAll(*mounts, r.bundle() + "/rootfs").ok());
    mounted_.push_back(r.bundle() + "/rootfs");
    metadata::Batch batch;
    batch.PutTask(id, r.SerializeAsString());
    EXPECT_TRUE(store_->Commit(batch).ok());
    return r;
  }

  void Open() {
    auto m = TaskManager::Open(options_, store_.get(), overlay_.get(), nullptr, nullptr);
    ASSERT_TRUE(m.ok()) << m.status().ToString();
    manager_ = std::move(*m);
  }

  std::string root_;
  std::unique_ptr<metadata::Store> store_;
  std::unique_ptr<snapshotter::Overlay> overlay_;
  std::unique_ptr<TaskManager> manager_;
  TaskManagerOptions options_;
  std::vector<std::string> mounted_;
};

TEST_F(TaskManagerTest, HalfCreatedTaskIsRemovedAtStart) {
  pb::TaskRecord r = LeaveTask(std::string(64, 'a'), pb::TASK_STATE_CREATING);
  Open();
  EXPECT_FALSE(IsMountPoint(r.bundle() + "/rootfs"));
  EXPECT_FALSE(fs::Exists(r.bundle()));
  EXPECT_TRUE(overlay_->ForName("strata-images")->Stat(r.snapshot_key()).status().IsNotFound());
  auto rows = store_->LoadTasks();
  ASSERT_TRUE(rows.ok());
  EXPECT_TRUE(rows->empty());
  auto list = manager_->List(true);
  ASSERT_TRUE(list.ok());
  EXPECT_TRUE(list->empty());
}

TEST_F(TaskManagerTest, TaskThatExitedWhileNoDaemonRanShowsItsExitCode) {
  pb::TaskRecord r = LeaveTask(std::string(64, 'b'), pb::TASK_STATE_RUNNING);
  ASSERT_TRUE(
      fs::WriteFileAtomic(r.bundle() + "/" + ExitFileName(""), "3 1700000000000000000\n").ok());
  Open();
  auto t = manager_->Get(r.name());
  ASSERT_TRUE(t.ok()) << t.status().ToString();
  EXPECT_EQ(t->state, TaskState::kStopped);
  EXPECT_EQ(t->exit_code, 3);
  EXPECT_EQ(t->finished_unix_nanos, 1700000000000000000);
  EXPECT_TRUE(IsMountPoint(r.bundle() + "/rootfs")) << "a stopped task keeps its rootfs until rm";
  // The state change was recorded.
  auto rows = store_->LoadTasks();
  ASSERT_TRUE(rows.ok());
  ASSERT_EQ(rows->size(), 1u);
  pb::TaskRecord stored;
  ASSERT_TRUE(stored.ParseFromString((*rows)[0].second));
  EXPECT_EQ(stored.state(), pb::TASK_STATE_STOPPED);
  // And rm takes everything.
  ASSERT_TRUE(manager_->Delete(r.name(), false).ok());
  EXPECT_FALSE(fs::Exists(r.bundle()));
  EXPECT_TRUE(overlay_->ForName("strata-images")->Stat(r.snapshot_key()).status().IsNotFound());
}

TEST_F(TaskManagerTest, TaskWhoseProcessesVanishedWithoutARecordIsStoppedWithUnknownCode) {
  pb::TaskRecord r = LeaveTask(std::string(64, 'c'), pb::TASK_STATE_RUNNING);
  Open();
  auto t = manager_->Get(std::string(64, 'c').substr(0, 6));  // an id prefix works
  ASSERT_TRUE(t.ok()) << t.status().ToString();
  EXPECT_EQ(t->state, TaskState::kStopped);
  EXPECT_EQ(t->exit_code, 255);
}

TEST_F(TaskManagerTest, CorruptTaskRecordFailsOpenNamingTheStore) {
  metadata::Batch batch;
  batch.PutTask("x", "\xff\xff not a record");
  ASSERT_TRUE(store_->Commit(batch).ok());
  auto m = TaskManager::Open(options_, store_.get(), overlay_.get(), nullptr, nullptr);
  ASSERT_FALSE(m.ok());
  EXPECT_EQ(m.status().code(), Code::kDataLoss);
  EXPECT_NE(m.status().message().find(store_->path()), std::string::npos);
}

TEST_F(TaskManagerTest, UnknownTasksAreNotFoundAndAmbiguousPrefixesRefused) {
  LeaveTask("ab" + std::string(62, '1'), pb::TASK_STATE_STOPPED);
  LeaveTask("ab" + std::string(62, '2'), pb::TASK_STATE_STOPPED);
  Open();
  EXPECT_TRUE(manager_->Get("nosuch").status().IsNotFound());
  EXPECT_EQ(manager_->Get("ab").status().code(), Code::kInvalidArgument);
  EXPECT_TRUE(manager_->Get("ab1").ok());
  EXPECT_EQ(manager_->Start("ab1").status().code(), Code::kFailedPrecondition);
  ExecOptions exec;
  exec.args = {"true"};
  EXPECT_EQ(manager_->Exec("ab1", exec).status().code(), Code::kFailedPrecondition);
}

}  // namespace
}  // namespace strata::runtime
