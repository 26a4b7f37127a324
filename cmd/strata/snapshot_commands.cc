#include "cmd/strata/snapshot_commands.h"

#include <algorithm>
#include <functional>
#include <iostream>
#include <map>
#include <nlohmann/json.hpp>

#include "cmd/strata/output.h"
#include "containerd/services/snapshots/v1/snapshots.grpc.pb.h"
#include "strata/admin/v1/admin.grpc.pb.h"

namespace strata::cli {
namespace {

namespace pb = ::containerd::services::snapshots::v1;
using nlohmann::json;

std::string KindString(pb::Kind k) {
  switch (k) {
    case pb::VIEW:
      return "view";
    case pb::ACTIVE:
      return "active";
    case pb::COMMITTED:
      return "committed";
    default:
      return "unknown";
  }
}

json InfoJson(const pb::Info& info) {
  json labels = json::object();
  for (const auto& [k, v] : info.labels()) labels[k] = v;
  return {{"name", info.name()},
          {"parent", info.parent()},
          {"kind", KindString(info.kind())},
          {"created", FormatTime(info.created_at().seconds(), info.created_at().nanos())},
          {"updated", FormatTime(info.updated_at().seconds(), info.updated_at().nanos())},
          {"labels", labels}};
}

json MountsJson(const google::protobuf::RepeatedPtrField<::containerd::types::Mount>& mounts) {
  json out = json::array();
  for (const auto& m : mounts) {
    json options = json::array();
    for (const auto& o : m.options()) options.push_back(o);
    out.push_back(
        {{"type", m.type()}, {"source", m.source()}, {"target", m.target()}, {"options", options}});
  }
  return out;
}

// Prints mounts as the mount(8) commands that would apply them at `target`.
void PrintMounts(const google::protobuf::RepeatedPtrField<::containerd::types::Mount>& mounts,
                 const std::string& target) {
  for (const auto& m : mounts) {
    std::string options;
    for (const auto& o : m.options()) options += (options.empty() ? "" : ",") + o;
    std::cout << "mount -t " << m.type() << " " << m.source() << " " << target
              << (m.target().empty() ? "" : "/" + m.target())
              << (options.empty() ? "" : " -o " + options) << "\n";
  }
}

// Parses "k=v" words into labels; "k=" and "k" give an empty value (a deletion).
std::map<std::string, std::string> ParseLabels(const std::vector<std::string>& words) {
  std::map<std::string, std::string> labels;
  for (const auto& w : words) {
    auto eq = w.find('=');
    if (eq == std::string::npos) {
      labels[w] = "";
    } else {
      labels[w.substr(0, eq)] = w.substr(eq + 1);
    }
  }
  return labels;
}

grpc::Status ListAll(Context& ctx, const std::vector<std::string>& filters,
                     std::vector<pb::Info>& out) {
  auto stub = pb::Snapshots::NewStub(ctx.channel);
  grpc::ClientContext cc;
  pb::ListSnapshotsRequest req;
  req.set_snapshotter(ctx.snapshotter);
  for (const auto& f : filters) req.add_filters(f);
  auto reader = stub->List(&cc, req);
  pb::ListSnapshotsResponse resp;
  while (reader->Read(&resp)) {
    for (const auto& info : resp.info()) out.push_back(info);
  }
  return reader->Finish();
}

}  // namespace

void AddSnapshotCommands(CLI::App& app, Context& ctx,
                         std::function<void(std::function<int()>)> run) {
  CLI::App* snap = app.add_subcommand("snapshot", "manage snapshots")->alias("snapshots");
  snap->require_subcommand(1);
  auto stub = [&ctx]() { return pb::Snapshots::NewStub(ctx.channel); };

  // ls
  {
    auto* cmd = snap->add_subcommand("ls", "list snapshots")->alias("list");
    auto filters = std::make_shared<std::vector<std::string>>();
    auto as_json = std::make_shared<bool>(false);
    cmd->add_option("--filter,-f", *filters, "containerd filter (repeat for OR)");
    cmd->add_flag("--json", *as_json, "print JSON");
    cmd->callback([=, &ctx] {
      run([=, &ctx] {
        std::vector<pb::Info> infos;
        grpc::Status st = ListAll(ctx, *filters, infos);
        if (!st.ok()) return Fail("list snapshots", st);
        std::sort(infos.begin(), infos.end(),
                  [](const auto& a, const auto& b) { return a.name() < b.name(); });
        if (*as_json) {
          json out = json::array();
          for (const auto& i : infos) out.push_back(InfoJson(i));
          std::cout << out.dump(2) << "\n";
          return 0;
        }
        std::vector<std::vector<std::string>> rows;
        for (const auto& i : infos) rows.push_back({i.name(), i.parent(), KindString(i.kind())});
        PrintTable({"KEY", "PARENT", "KIND"}, rows);
        return 0;
      });
    });
  }

  // info
  {
    auto* cmd = snap->add_subcommand("info", "show one snapshot");
    auto key = std::make_shared<std::string>();
    cmd->add_option("key", *key, "snapshot key")->required();
    cmd->callback([=, &ctx] {
      run([=, &ctx] {
        grpc::ClientContext cc;
        pb::StatSnapshotRequest req;
        req.set_snapshotter(ctx.snapshotter);
        req.set_key(*key);
        pb::StatSnapshotResponse resp;
        grpc::Status st = stub()->Stat(&cc, req, &resp);
        if (!st.ok()) return Fail("info " + *key, st);
        std::cout << InfoJson(resp.info()).dump(2) << "\n";
        return 0;
      });
    });
  }

  // tree
  {
    auto* cmd = snap->add_subcommand("tree", "show snapshots as a tree of parents");
    auto as_json = std::make_shared<bool>(false);
    cmd->add_flag("--json", *as_json, "print JSON");
    cmd->callback([=, &ctx] {
      run([=, &ctx] {
        std::vector<pb::Info> infos;
        grpc::Status st = ListAll(ctx, {}, infos);
        if (!st.ok()) return Fail("list snapshots", st);
        std::map<std::string, std::vector<const pb::Info*>> children;
        std::map<std::string, const pb::Info*> by_name;
        for (const auto& i : infos) by_name[i.name()] = &i;
        for (const auto& i : infos) {
          std::string parent = by_name.count(i.parent()) ? i.parent() : "";
          children[parent].push_back(&i);
        }
        for (auto& [p, list] : children) {
          std::sort(list.begin(), list.end(),
                    [](const auto* a, const auto* b) { return a->name() < b->name(); });
        }
        std::function<json(const std::string&)> build = [&](const std::string& parent) {
          json out = json::array();
          for (const auto* c : children[parent]) {
            json node = {{"name", c->name()}, {"kind", KindString(c->kind())}};
            node["children"] = build(c->name());
            out.push_back(node);
          }
          return out;
        };
        if (*as_json) {
          std::cout << build("").dump(2) << "\n";
          return 0;
        }
        std::function<void(const std::string&, const std::string&)> print =
            [&](const std::string& parent, const std::string& prefix) {
              const auto& list = children[parent];
              for (size_t n = 0; n < list.size(); n++) {
                bool last = n + 1 == list.size();
                std::cout << prefix << (last ? "└── " : "├── ") << list[n]->name() << " ("
                          << KindString(list[n]->kind()) << ")\n";
                print(list[n]->name(), prefix + (last ? "    " : "│   "));
              }
            };
        print("", "");
        return 0;
      });
    });
  }

  // mounts
  {
    auto* cmd = snap->add_subcommand("mounts", "print the mounts of an active snapshot or view");
    auto key = std::make_shared<std::string>();
    auto target = std::make_shared<std::string>("TARGET");
    auto as_json = std::make_shared<bool>(false);
    cmd->add_option("key", *key, "snapshot key")->required();
    cmd->add_option("target", *target, "mount target to print in the commands");
    cmd->add_flag("--json", *as_json, "print JSON");
    cmd->callback([=, &ctx] {
      run([=, &ctx] {
        grpc::ClientContext cc;
        pb::MountsRequest req;
        req.set_snapshotter(ctx.snapshotter);
        req.set_key(*key);
        pb::MountsResponse resp;
        grpc::Status st = stub()->Mounts(&cc, req, &resp);
        if (!st.ok()) return Fail("mounts " + *key, st);
        if (*as_json) {
          std::cout << MountsJson(resp.mounts()).dump(2) << "\n";
        } else {
          PrintMounts(resp.mounts(), *target);
        }
        return 0;
      });
    });
  }

  // usage
  {
    auto* cmd = snap->add_subcommand("usage", "disk usage of one or all snapshots");
    auto key = std::make_shared<std::string>();
    auto as_json = std::make_shared<bool>(false);
    cmd->add_option("key", *key, "snapshot key (default: all)");
    cmd->add_flag("--json", *as_json, "print JSON");
    cmd->callback([=, &ctx] {
      run([=, &ctx] {
        std::vector<std::string> keys;
        if (!key->empty()) {
          keys.push_back(*key);
        } else {
          std::vector<pb::Info> infos;
          grpc::Status st = ListAll(ctx, {}, infos);
          if (!st.ok()) return Fail("list snapshots", st);
          for (const auto& i : infos) keys.push_back(i.name());
          std::sort(keys.begin(), keys.end());
        }
        json out = json::array();
        std::vector<std::vector<std::string>> rows;
        for (const auto& k : keys) {
          grpc::ClientContext cc;
          pb::UsageRequest req;
          req.set_snapshotter(ctx.snapshotter);
          req.set_key(k);
          pb::UsageResponse resp;
          grpc::Status st = stub()->Usage(&cc, req, &resp);
          if (!st.ok()) return Fail("usage " + k, st);
          out.push_back({{"key", k}, {"size", resp.size()}, {"inodes", resp.inodes()}});
          rows.push_back({k, HumanBytes(resp.size()), std::to_string(resp.inodes())});
        }
        if (*as_json) {
          std::cout << (key->empty() ? out : out[0]).dump(2) << "\n";
        } else {
          PrintTable({"KEY", "SIZE", "INODES"}, rows);
        }
        return 0;
      });
    });
  }

  // prepare / view
  for (bool view : {false, true}) {
    auto* cmd = snap->add_subcommand(
        view ? "view" : "prepare",
        view ? "create a read-only view of a committed snapshot" : "create an active snapshot");
    auto key = std::make_shared<std::string>();
    auto parent = std::make_shared<std::string>();
    auto labels = std::make_shared<std::vector<std::string>>();
    auto target = std::make_shared<std::string>("TARGET");
    auto as_json = std::make_shared<bool>(false);
    cmd->add_option("key", *key, "new snapshot key")->required();
    cmd->add_option("parent", *parent, "committed parent (default: none)");
    cmd->add_option("--label", *labels, "label k=v (repeatable)");
    cmd->add_option("--target", *target, "mount target to print in the commands");
    cmd->add_flag("--json", *as_json, "print the mounts as JSON");
    cmd->callback([=, &ctx] {
      run([=, &ctx] {
        grpc::ClientContext cc;
        google::protobuf::RepeatedPtrField<::containerd::types::Mount> mounts;
        grpc::Status st;
        auto l = ParseLabels(*labels);
        if (view) {
          pb::ViewSnapshotRequest req;
          req.set_snapshotter(ctx.snapshotter);
          req.set_key(*key);
          req.set_parent(*parent);
          req.mutable_labels()->insert(l.begin(), l.end());
          pb::ViewSnapshotResponse resp;
          st = stub()->View(&cc, req, &resp);
          mounts = resp.mounts();
        } else {
          pb::PrepareSnapshotRequest req;
          req.set_snapshotter(ctx.snapshotter);
          req.set_key(*key);
          req.set_parent(*parent);
          req.mutable_labels()->insert(l.begin(), l.end());
          pb::PrepareSnapshotResponse resp;
          st = stub()->Prepare(&cc, req, &resp);
          mounts = resp.mounts();
        }
        if (!st.ok()) return Fail((view ? "view " : "prepare ") + *key, st);
        if (*as_json) {
          std::cout << MountsJson(mounts).dump(2) << "\n";
        } else {
          PrintMounts(mounts, *target);
        }
        return 0;
      });
    });
  }

  // commit
  {
    auto* cmd = snap->add_subcommand("commit", "commit an active snapshot under a name");
    auto name = std::make_shared<std::string>();
    auto key = std::make_shared<std::string>();
    auto labels = std::make_shared<std::vector<std::string>>();
    cmd->add_option("name", *name, "name of the committed snapshot")->required();
    cmd->add_option("key", *key, "active snapshot key")->required();
    cmd->add_option("--label", *labels, "label k=v (repeatable)");
    cmd->callback([=, &ctx] {
      run([=, &ctx] {
        grpc::ClientContext cc;
        pb::CommitSnapshotRequest req;
        req.set_snapshotter(ctx.snapshotter);
        req.set_name(*name);
        req.set_key(*key);
        auto l = ParseLabels(*labels);
        req.mutable_labels()->insert(l.begin(), l.end());
        google::protobuf::Empty resp;
        grpc::Status st = stub()->Commit(&cc, req, &resp);
        if (!st.ok()) return Fail("commit " + *key, st);
        return 0;
      });
    });
  }

  // label
  {
    auto* cmd = snap->add_subcommand("label", "set (k=v) or delete (k=) labels of a snapshot");
    auto key = std::make_shared<std::string>();
    auto words = std::make_shared<std::vector<std::string>>();
    auto as_json = std::make_shared<bool>(false);
    cmd->add_option("key", *key, "snapshot key")->required();
    cmd->add_option("labels", *words, "k=v to set, k= to delete");
    cmd->add_flag("--json", *as_json, "print the resulting info as JSON");
    cmd->callback([=, &ctx] {
      run([=, &ctx] {
        grpc::ClientContext cc;
        pb::UpdateSnapshotRequest req;
        req.set_snapshotter(ctx.snapshotter);
        req.mutable_info()->set_name(*key);
        for (const auto& [k, v] : ParseLabels(*words)) {
          if (!v.empty()) (*req.mutable_info()->mutable_labels())[k] = v;
          req.mutable_update_mask()->add_paths("labels." + k);
        }
        pb::UpdateSnapshotResponse resp;
        grpc::Status st;
        if (req.update_mask().paths_size() == 0) {
          // Nothing to change: show the current labels.
          pb::StatSnapshotRequest stat;
          stat.set_snapshotter(ctx.snapshotter);
          stat.set_key(*key);
          pb::StatSnapshotResponse stat_resp;
          st = stub()->Stat(&cc, stat, &stat_resp);
          *resp.mutable_info() = stat_resp.info();
        } else {
          st = stub()->Update(&cc, req, &resp);
        }
        if (!st.ok()) return Fail("label " + *key, st);
        if (*as_json) {
          std::cout << InfoJson(resp.info()).dump(2) << "\n";
        } else {
          for (const auto& [k, v] : std::map<std::string, std::string>(
                   resp.info().labels().begin(), resp.info().labels().end())) {
            std::cout << k << "=" << v << "\n";
          }
        }
        return 0;
      });
    });
  }

  // rm
  {
    auto* cmd = snap->add_subcommand("rm", "remove snapshots")->alias("remove");
    auto keys = std::make_shared<std::vector<std::string>>();
    cmd->add_option("keys", *keys, "snapshot keys")->required();
    cmd->callback([=, &ctx] {
      run([=, &ctx] {
        int rc = 0;
        for (const auto& k : *keys) {
          grpc::ClientContext cc;
          pb::RemoveSnapshotRequest req;
          req.set_snapshotter(ctx.snapshotter);
          req.set_key(k);
          google::protobuf::Empty resp;
          grpc::Status st = stub()->Remove(&cc, req, &resp);
          if (!st.ok()) rc = Fail("remove " + k, st);
        }
        return rc;
      });
    });
  }

  // check
  {
    auto* cmd = snap->add_subcommand("check", "check metadata against directories; --repair fixes");
    auto repair = std::make_shared<bool>(false);
    auto as_json = std::make_shared<bool>(false);
    cmd->add_flag("--repair", *repair, "repair what can be repaired");
    cmd->add_flag("--json", *as_json, "print JSON");
    cmd->callback([=, &ctx] {
      run([=, &ctx] {
        auto admin = ::strata::admin::v1::Admin::NewStub(ctx.channel);
        grpc::ClientContext cc;
        ::strata::admin::v1::CheckRequest req;
        req.set_repair(*repair);
        ::strata::admin::v1::CheckResponse resp;
        grpc::Status st = admin->Check(&cc, req, &resp);
        if (!st.ok()) return Fail("check", st);
        bool unrepaired = false;
        json out = json::array();
        for (const auto& p : resp.problems()) {
          out.push_back({{"kind", p.kind()}, {"detail", p.detail()}, {"repaired", p.repaired()}});
          if (!p.repaired()) unrepaired = true;
        }
        if (*as_json) {
          std::cout << json{{"problems", out}, {"consistent", resp.problems_size() == 0}}.dump(2)
                    << "\n";
        } else if (resp.problems_size() == 0) {
          std::cout << "ok: metadata and directories are consistent\n";
        } else {
          for (const auto& p : resp.problems()) {
            std::cout << p.kind() << ": " << p.detail() << (p.repaired() ? " [repaired]" : "")
                      << "\n";
          }
        }
        return unrepaired ? 3 : 0;
      });
    });
  }
}

}  // namespace strata::cli
