// The cgroup module against directory trees laid out like cgroupfs: a cgroup2 mount as a
// Kubernetes node has it (the v2 limit, event and usage files, which this hybrid host cannot
// exercise for real), and a v1/hybrid tree with cpu and cpuacct co-mounted.
//
// A fake tree has no kernel behind it: files only hold what was written, cgroup.kill kills
// nothing, and "populated" is what the test wrote. The "no internal processes" rule (EBUSY on
// subtree_control, moving processes to the supervisor leaf) cannot be faked at all.
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "sandbox/cgroup.h"

namespace corral {
namespace {

namespace fs = std::filesystem;

class TempDir {
 public:
  TempDir() {
    std::string pattern = (fs::temp_directory_path() / "corral-cgroup-XXXXXX").string();
    REQUIRE(::mkdtemp(pattern.data()) != nullptr);
    path_ = pattern;
  }
  ~TempDir() { fs::remove_all(path_); }
  const fs::path& path() const { return path_; }

 private:
  fs::path path_;
};

void WriteText(const fs::path& path, const std::string& text) {
  fs::create_directories(path.parent_path());
  std::ofstream(path) << text;
}

std::string ReadText(const fs::path& path) {
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

// A cgroup2 mount at <tmp>/cg whose own cgroup is /kubepods/pod1, as in a pod.
struct FakeV2 {
  TempDir tmp;
  fs::path root = tmp.path() / "cg";
  fs::path own = root / "kubepods/pod1";
  fs::path parent = own / "corral";

  FakeV2() {
    WriteText(tmp.path() / "mountinfo",
              "22 1 8:1 / / rw,relatime - ext4 /dev/sda1 rw\n"
              "30 22 0:27 / " +
                  root.string() +
                  " rw,nosuid,nodev,noexec,relatime shared:4 - cgroup2 cgroup2 rw,nsdelegate\n");
    WriteText(tmp.path() / "self_cgroup", "0::/kubepods/pod1\n");
    WriteText(own / "cgroup.controllers", "cpuset cpu io memory pids\n");
    WriteText(own / "cgroup.subtree_control", "");
    WriteText(own / "cgroup.procs", "");
  }

  CgroupManagerOptions Options() const {
    CgroupManagerOptions options;
    options.mount_root = root.string();
    options.mountinfo_file = (tmp.path() / "mountinfo").string();
    options.self_cgroup_file = (tmp.path() / "self_cgroup").string();
    options.fake_tree = true;
    return options;
  }
};

std::unique_ptr<CgroupManager> OpenOrFail(const CgroupManagerOptions& options) {
  auto manager = CgroupManager::Open(options);
  INFO(manager.status().ToString());
  REQUIRE(manager.ok());
  return std::move(manager).value();
}

std::unique_ptr<Cgroup> CreateOrFail(CgroupManager& manager, const std::string& name,
                                     const CgroupLimits& limits) {
  auto cgroup = manager.Create(name, limits);
  INFO(cgroup.status().ToString());
  REQUIRE(cgroup.ok());
  return std::move(cgroup).value();
}

TEST_CASE("cgroup fake v2: layout detected, parent created, controllers enabled") {
  FakeV2 fake;
  auto manager = OpenOrFail(fake.Options());

  CHECK(manager->layout() == CgroupLayout::kV2);
  CHECK(fs::is_directory(fake.parent));
  CHECK(ReadText(fake.own / "cgroup.subtree_control") == "+cpu +memory +pids");
  CHECK(ReadText(fake.parent / "cgroup.subtree_control") == "+cpu +memory +pids");
  auto controllers = manager->Controllers();
  for (const char* name : {"memory", "pids", "cpu"}) {
    CHECK(std::find(controllers.begin(), controllers.end(), name) != controllers.end());
  }
  CHECK(std::find(controllers.begin(), controllers.end(), "kill") == controllers.end());
}

TEST_CASE("cgroup fake v2: a process already in the supervisor leaf keeps its parent") {
  FakeV2 fake;
  fs::create_directories(fake.own / "corral-supervisor");
  WriteText(fake.tmp.path() / "self_cgroup", "0::/kubepods/pod1/corral-supervisor\n");
  auto manager = OpenOrFail(fake.Options());

  CHECK(fs::is_directory(fake.parent));
  CHECK_FALSE(fs::exists(fake.own / "corral-supervisor/corral"));
}

TEST_CASE("cgroup fake v2: Create writes the limit files exactly") {
  FakeV2 fake;
  auto manager = OpenOrFail(fake.Options());
  auto cgroup = CreateOrFail(*manager, "s-1", {64 << 20, 16, 1.5});
  fs::path dir = fake.parent / "s-1";

  CHECK(cgroup->Paths() == std::vector<std::string>{dir.string()});
  CHECK(ReadText(dir / "memory.max") == "67108864");
  CHECK(ReadText(dir / "memory.swap.max") == "0");
  CHECK(ReadText(dir / "pids.max") == "16");
  CHECK(ReadText(dir / "cpu.max") == "150000 100000");
  WriteText(dir / "cgroup.events", "populated 0\nfrozen 0\n");
}

TEST_CASE("cgroup fake v2: unset limits leave the kernel defaults alone") {
  FakeV2 fake;
  auto manager = OpenOrFail(fake.Options());
  auto cgroup = CreateOrFail(*manager, "s-unlimited", {});
  fs::path dir = fake.parent / "s-unlimited";

  for (const char* file : {"memory.max", "memory.swap.max", "pids.max", "cpu.max"}) {
    CHECK_FALSE(fs::exists(dir / file));
  }
  WriteText(dir / "cgroup.events", "populated 0\nfrozen 0\n");
}

TEST_CASE("cgroup fake v2: Events and Usage parse the kernel's files") {
  FakeV2 fake;
  auto manager = OpenOrFail(fake.Options());
  auto cgroup = CreateOrFail(*manager, "s-2", {});
  fs::path dir = fake.parent / "s-2";
  WriteText(dir / "memory.events", "low 0\nhigh 0\nmax 7\noom 2\noom_kill 1\noom_group_kill 0\n");
  WriteText(dir / "pids.events", "max 3\n");
  WriteText(dir / "cgroup.events", "populated 1\nfrozen 0\n");
  WriteText(dir / "memory.current", "1048576\n");
  WriteText(dir / "memory.peak", "2097152\n");
  WriteText(dir / "pids.current", "3\n");
  WriteText(dir / "cpu.stat", "usage_usec 12345\nuser_usec 10000\nsystem_usec 2345\n");

  auto events = cgroup->Events();
  REQUIRE(events.ok());
  CHECK(events->oom_kills == 1);
  CHECK(events->pids_max_hits == 3);
  CHECK(events->populated);

  auto usage = cgroup->Usage();
  REQUIRE(usage.ok());
  CHECK(usage->memory_bytes == 1048576);
  CHECK(usage->memory_peak_bytes == 2097152);
  CHECK(usage->pids == 3);
  CHECK(usage->cpu_usec == 12345);

  // Before 5.19 there is no memory.peak: the highest current seen stands in for it.
  fs::remove(dir / "memory.peak");
  WriteText(dir / "memory.current", "4194304\n");
  REQUIRE(cgroup->Usage().ok());
  WriteText(dir / "memory.current", "1024\n");
  usage = cgroup->Usage();
  REQUIRE(usage.ok());
  CHECK(usage->memory_bytes == 1024);
  CHECK(usage->memory_peak_bytes == 4194304);
  WriteText(dir / "cgroup.events", "populated 0\nfrozen 0\n");
}

TEST_CASE("cgroup fake v2: KillAll writes cgroup.kill, Remove removes the directory") {
  FakeV2 fake;
  auto manager = OpenOrFail(fake.Options());
  auto cgroup = CreateOrFail(*manager, "s-3", {});
  fs::path dir = fake.parent / "s-3";
  WriteText(dir / "cgroup.kill", "");
  // A fake never empties by itself, so it already says what the kernel would after the kill.
  WriteText(dir / "cgroup.events", "populated 0\nfrozen 0\n");

  Status killed = cgroup->KillAll();
  INFO(killed.ToString());
  REQUIRE(killed.ok());
  CHECK(ReadText(dir / "cgroup.kill") == "1");

  REQUIRE(cgroup->Remove().ok());
  CHECK_FALSE(fs::exists(dir));
  CHECK(cgroup->Remove().ok());
  auto children = manager->ListChildren();
  REQUIRE(children.ok());
  CHECK(children->empty());
}

TEST_CASE("cgroup fake v2: without cgroup.kill, KillAll freezes, kills the listed, thaws") {
  FakeV2 fake;
  auto manager = OpenOrFail(fake.Options());
  auto cgroup = CreateOrFail(*manager, "s-freeze", {});
  fs::path dir = fake.parent / "s-freeze";
  WriteText(dir / "cgroup.freeze", "0");
  // Empty: a fake must not list pids, they would be this host's processes.
  WriteText(dir / "cgroup.procs", "");
  WriteText(dir / "cgroup.events", "populated 0\nfrozen 1\n");

  Status killed = cgroup->KillAll();
  INFO(killed.ToString());
  REQUIRE(killed.ok());
  CHECK_FALSE(fs::exists(dir / "cgroup.kill"));
  CHECK(ReadText(dir / "cgroup.freeze") == "0");
}

TEST_CASE("cgroup fake v2: the destructor removes the cgroup") {
  FakeV2 fake;
  auto manager = OpenOrFail(fake.Options());
  {
    auto cgroup = CreateOrFail(*manager, "s-4", {});
    WriteText(fake.parent / "s-4/cgroup.events", "populated 0\nfrozen 0\n");
  }
  CHECK_FALSE(fs::exists(fake.parent / "s-4"));
}

TEST_CASE("cgroup fake v2: RemoveStale removes leftovers and counts them") {
  FakeV2 fake;
  for (const char* name : {"old-a", "old-b"}) {
    WriteText(fake.parent / name / "cgroup.events", "populated 0\nfrozen 0\n");
  }
  auto manager = OpenOrFail(fake.Options());
  auto children = manager->ListChildren();
  REQUIRE(children.ok());
  CHECK(*children == std::vector<std::string>{"old-a", "old-b"});

  auto removed = manager->RemoveStale();
  REQUIRE(removed.ok());
  CHECK(*removed == 2);
  CHECK_FALSE(fs::exists(fake.parent / "old-a"));
  CHECK_FALSE(fs::exists(fake.parent / "old-b"));
}

TEST_CASE("cgroup fake v2: names that could escape the parent are refused") {
  FakeV2 fake;
  auto manager = OpenOrFail(fake.Options());
  const std::string kBad[] = {
      "", ".", "..", ".hidden", "a/b", "../x", "a b", "x\n", std::string(129, 'a')};
  for (const std::string& name : kBad) {
    INFO("name `" << name << "`");
    auto cgroup = manager->Create(name, {});
    REQUIRE_FALSE(cgroup.ok());
    CHECK(cgroup.status().category() == ErrorCategory::kInvalidArgument);
  }
  auto children = manager->ListChildren();
  REQUIRE(children.ok());
  CHECK(children->empty());
}

TEST_CASE("cgroup fake v2: an existing cgroup of the same name is not taken or removed") {
  FakeV2 fake;
  WriteText(fake.parent / "taken" / "cgroup.events", "populated 0\nfrozen 0\n");
  auto manager = OpenOrFail(fake.Options());

  auto cgroup = manager->Create("taken", {});
  REQUIRE_FALSE(cgroup.ok());
  CHECK(cgroup.status().category() == ErrorCategory::kAlreadyExists);
  CHECK(fs::exists(fake.parent / "taken" / "cgroup.events"));
}

TEST_CASE("cgroup fake v2: a symlink planted in the cgroup is never followed") {
  FakeV2 fake;
  auto manager = OpenOrFail(fake.Options());
  auto cgroup = CreateOrFail(*manager, "s-5", {});
  fs::path dir = fake.parent / "s-5";
  fs::path outside = fake.tmp.path() / "outside";
  WriteText(outside, "untouched");
  fs::create_symlink(outside, dir / "cgroup.procs");

  Status added = cgroup->AddProcess(::getpid());
  REQUIRE_FALSE(added.ok());
  CHECK_THAT(added.ToString(), Catch::Contains((dir / "cgroup.procs").string()));
  CHECK(ReadText(outside) == "untouched");
  fs::remove(dir / "cgroup.procs");
  WriteText(dir / "cgroup.events", "populated 0\nfrozen 0\n");
}

TEST_CASE("cgroup fake v2: a layout that is not mounted cannot be forced") {
  FakeV2 fake;
  CgroupManagerOptions options = fake.Options();
  options.force_layout = CgroupLayout::kV1;
  auto manager = CgroupManager::Open(options);
  REQUIRE_FALSE(manager.ok());
  CHECK(manager.status().category() == ErrorCategory::kUnsupported);
}

TEST_CASE("cgroup fake v2: an own cgroup outside the mounted subtree is refused") {
  FakeV2 fake;
  WriteText(fake.tmp.path() / "self_cgroup", "0::/../other\n");
  auto manager = CgroupManager::Open(fake.Options());
  REQUIRE_FALSE(manager.ok());
  CHECK(manager.status().category() == ErrorCategory::kFailedPrecondition);
}

TEST_CASE("cgroup fake v2: a mount point with a space is unescaped from mountinfo") {
  TempDir tmp;
  fs::path root = tmp.path() / "c g";
  WriteText(tmp.path() / "mountinfo",
            "30 22 0:27 / " + tmp.path().string() + "/c\\040g rw - cgroup2 cgroup2 rw\n");
  WriteText(tmp.path() / "self_cgroup", "0::/\n");
  WriteText(root / "cgroup.controllers", "memory pids\n");
  CgroupManagerOptions options;
  options.mount_root = root.string();
  options.mountinfo_file = (tmp.path() / "mountinfo").string();
  options.self_cgroup_file = (tmp.path() / "self_cgroup").string();
  options.fake_tree = true;

  auto manager = OpenOrFail(options);
  CHECK(manager->layout() == CgroupLayout::kV2);
  CHECK(ReadText(root / "cgroup.subtree_control") == "+memory +pids");
  CHECK(fs::is_directory(root / "corral"));
}

// A hybrid tree as some distributions mount it: cpu and cpuacct in one hierarchy, the memory
// hierarchy mounted from a subtree (a container's view), cgroup2 without controllers.
struct FakeHybrid {
  TempDir tmp;
  fs::path root = tmp.path() / "cg";

  FakeHybrid() {
    std::string r = root.string();
    WriteText(tmp.path() / "mountinfo", "31 23 0:28 / " + r +
                                            " rw - tmpfs tmpfs rw,mode=755\n"
                                            "32 31 0:29 / " +
                                            r +
                                            "/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct\n"
                                            "35 31 0:32 /box " +
                                            r +
                                            "/memory rw - cgroup cgroup rw,memory\n"
                                            "37 31 0:34 / " +
                                            r +
                                            "/freezer rw - cgroup cgroup rw,freezer\n"
                                            "39 31 0:36 / " +
                                            r +
                                            "/pids rw - cgroup cgroup rw,pids\n"
                                            "40 31 0:37 / " +
                                            r +
                                            "/systemd rw - cgroup cgroup rw,name=systemd\n"
                                            "41 31 0:38 / " +
                                            r + "/unified rw - cgroup2 cgroup2 rw\n");
    WriteText(tmp.path() / "self_cgroup",
              "9:name=systemd:/\n8:pids:/p\n6:freezer:/f\n4:memory:/box/m\n"
              "1:cpu,cpuacct:/c\n0::/u\n");
    for (const char* own : {"cpu,cpuacct/c", "memory/m", "freezer/f", "pids/p", "unified/u"}) {
      fs::create_directories(root / own);
    }
  }

  CgroupManagerOptions Options() const {
    CgroupManagerOptions options;
    options.mount_root = root.string() + "/";
    options.mountinfo_file = (tmp.path() / "mountinfo").string();
    options.self_cgroup_file = (tmp.path() / "self_cgroup").string();
    options.parent_name = "corral-fake";
    options.fake_tree = true;
    return options;
  }
};

TEST_CASE("cgroup fake hybrid: hierarchies found, v1 limit files written exactly") {
  FakeHybrid fake;
  auto manager = OpenOrFail(fake.Options());
  CHECK(manager->layout() == CgroupLayout::kHybrid);
  CHECK(ReadText(fake.root / "memory/m/corral-fake/memory.use_hierarchy") == "1");

  auto cgroup = CreateOrFail(*manager, "s-1", {32 << 20, 8, 0.25});
  std::vector<std::string> expected;
  for (const char* dir : {"memory/m", "pids/p", "cpu,cpuacct/c", "freezer/f", "unified/u"}) {
    expected.push_back((fake.root / dir / "corral-fake/s-1").string());
  }
  CHECK(cgroup->Paths() == expected);

  fs::path memory = fake.root / "memory/m/corral-fake/s-1";
  fs::path cpu = fake.root / "cpu,cpuacct/c/corral-fake/s-1";
  CHECK(ReadText(memory / "memory.limit_in_bytes") == "33554432");
  CHECK(ReadText(memory / "memory.memsw.limit_in_bytes") == "33554432");
  CHECK(ReadText(fake.root / "pids/p/corral-fake/s-1/pids.max") == "8");
  CHECK(ReadText(cpu / "cpu.cfs_period_us") == "100000");
  CHECK(ReadText(cpu / "cpu.cfs_quota_us") == "25000");
  WriteText(fake.root / "unified/u/corral-fake/s-1/cgroup.events", "populated 0\nfrozen 0\n");
}

}  // namespace
}  // namespace corral
