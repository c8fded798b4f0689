// The cgroup module on this host's real cgroupfs, in the hybrid layout these machines run (v1
// controllers, controller-less cgroup2 at /sys/fs/cgroup/unified), and forced to pure v1 so the
// freezer kill path runs too. Each test owns a parent named after its pid and removes it.
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <sys/wait.h>
#include <unistd.h>

#include <linux/magic.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <optional>
#include <sstream>
#include <thread>

#include "sandbox/cgroup.h"
#include "tests/support/skip.h"

namespace corral {
namespace {

namespace fs = std::filesystem;
using std::chrono::steady_clock;

// Readiness waits (not assertions on time): how long to wait for a child to reach a state.
constexpr std::chrono::seconds kReadyTimeout{60};

bool HostIsHybrid() {
  struct statfs memory, unified;
  return ::geteuid() == 0 && ::statfs("/sys/fs/cgroup/memory", &memory) == 0 &&
         memory.f_type == CGROUP_SUPER_MAGIC && ::statfs("/sys/fs/cgroup/unified", &unified) == 0 &&
         unified.f_type == CGROUP2_SUPER_MAGIC;
}

std::string ReadText(const fs::path& path) {
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  std::string value = text.str();
  while (!value.empty() && value.back() == '\n') value.pop_back();
  return value;
}

std::vector<pid_t> ReadPids(const fs::path& procs) {
  std::ifstream in(procs);
  std::vector<pid_t> pids;
  for (pid_t pid; in >> pid;) pids.push_back(pid);
  return pids;
}

// 'R', 'S', 'T' (stopped), 'Z' (zombie); 0 when the process is gone.
char ProcessState(pid_t pid) {
  std::string stat = ReadText(fmt::format("/proc/{}/stat", pid));
  size_t paren = stat.rfind(')');
  return paren == std::string::npos || paren + 2 >= stat.size() ? 0 : stat[paren + 2];
}

bool Dead(pid_t pid) {
  char state = ProcessState(pid);
  return state == 0 || state == 'Z' || state == 'X';
}

template <typename Check>
bool WaitFor(Check ready) {
  auto deadline = steady_clock::now() + kReadyTimeout;
  while (!ready()) {
    if (steady_clock::now() > deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return true;
}

// A child that execs `argv` only once the test has put it into its cgroup, so nothing it
// starts can run outside.
class GatedChild {
 public:
  explicit GatedChild(const std::vector<std::string>& argv) {
    std::vector<char*> args;
    for (const std::string& arg : argv) args.push_back(const_cast<char*>(arg.c_str()));
    args.push_back(nullptr);
    int gate[2];
    REQUIRE(::pipe2(gate, O_CLOEXEC) == 0);
    pid_ = ::fork();
    REQUIRE(pid_ >= 0);
    if (pid_ == 0) {
      char byte;
      ::close(gate[1]);
      if (::read(gate[0], &byte, 1) == 1) ::execv(args[0], args.data());
      ::_exit(127);
    }
    ::close(gate[0]);
    gate_ = gate[1];
  }
  ~GatedChild() {
    if (gate_ >= 0) ::close(gate_);
    if (pid_ > 0) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, nullptr, 0);
    }
  }

  pid_t pid() const { return pid_; }
  void Go() {
    REQUIRE(::write(gate_, "x", 1) == 1);
    ::close(gate_);
    gate_ = -1;
  }
  int Wait() {
    int status = 0;
    REQUIRE(::waitpid(pid_, &status, 0) == pid_);
    pid_ = -1;
    return status;
  }

 private:
  pid_t pid_ = -1;
  int gate_ = -1;
};

// A manager with a parent unique to this test, and the removal of that parent at the end.
class HostCgroups {
 public:
  explicit HostCgroups(std::string_view tag, std::optional<CgroupLayout> force = {},
                       bool use_cgroup_kill = true)
      : parent_name_(fmt::format("corral-test-{}-{}", ::getpid(), tag)),
        force_(force),
        use_cgroup_kill_(use_cgroup_kill) {
    Open();
    // The parent's directories, for the final cleanup: the dirnames of a probe's.
    auto probe = manager_->Create("probe", {});
    REQUIRE(probe.ok());
    for (const std::string& path : (*probe)->Paths()) {
      parent_dirs_.push_back(fs::path(path).parent_path());
    }
  }
  ~HostCgroups() { RemoveParent(); }

  void Open() {
    CgroupManagerOptions options;
    options.parent_name = parent_name_;
    options.force_layout = force_;
    options.use_cgroup_kill = use_cgroup_kill_;
    auto manager = CgroupManager::Open(options);
    INFO(manager.status().ToString());
    REQUIRE(manager.ok());
    manager_ = std::move(manager).value();
  }

  CgroupManager& manager() { return *manager_; }
  const std::string& parent_name() const { return parent_name_; }
  const std::vector<fs::path>& parent_dirs() const { return parent_dirs_; }

  std::unique_ptr<Cgroup> Create(const std::string& name, const CgroupLimits& limits) {
    auto cgroup = manager_->Create(name, limits);
    INFO(cgroup.status().ToString());
    REQUIRE(cgroup.ok());
    return std::move(cgroup).value();
  }

  // Leaves no cgroup of this test behind; checked, so a leak fails the test. A test that
  // stopped half-way may have left children: they are removed too, after the check.
  void RemoveParent() {
    if (manager_) {
      auto children = manager_->ListChildren();
      CHECK((children.ok() && children->empty()));
      (void)manager_->RemoveStale();
    }
    manager_.reset();
    for (const fs::path& dir : parent_dirs_) {
      ::rmdir(dir.c_str());
      CHECK_FALSE(fs::exists(dir));
    }
    parent_dirs_.clear();
  }

 private:
  std::string parent_name_;
  std::optional<CgroupLayout> force_;
  bool use_cgroup_kill_;
  std::unique_ptr<CgroupManager> manager_;
  std::vector<fs::path> parent_dirs_;
};

bool Has(const std::vector<std::string>& list, const std::string& item) {
  return std::find(list.begin(), list.end(), item) != list.end();
}

void RequireGone(const Cgroup& cgroup) {
  for (const std::string& path : cgroup.Paths()) CHECK_FALSE(fs::exists(path));
}

void CheckKilled(int status) {
  CHECK(WIFSIGNALED(status));
  CHECK(WTERMSIG(status) == SIGKILL);
}

// A session that tries to outlive its sandbox: a setsid child in its own session, a
// double-forked orphan, a child that stopped itself; the shell itself stays as a plain sleep.
constexpr const char* kEscapeScript =
    "setsid /bin/sleep 1000 & ( ( /bin/sleep 1000 & ) & ); "
    "/bin/sh -c 'kill -STOP $$; exec /bin/sleep 1000' & exec /bin/sleep 1000";

void KillsEscapedProcesses(HostCgroups& host, const std::string& procs_dir) {
  auto cgroup = host.Create("escape", {64 << 20, 64, 0});
  GatedChild child({"/bin/sh", "-c", kEscapeScript});
  REQUIRE(cgroup->AddProcess(child.pid()).ok());
  child.Go();

  // Ready when four processes live there: one stopped, one in another session.
  fs::path procs = fs::path(procs_dir) / "escape/cgroup.procs";
  std::vector<pid_t> pids;
  bool ready = WaitFor([&] {
    pids = ReadPids(procs);
    bool stopped = false, other_session = false;
    for (pid_t pid : pids) {
      stopped = stopped || ProcessState(pid) == 'T';
      pid_t sid = ::getsid(pid);
      other_session = other_session || (sid > 0 && sid != ::getsid(0) && sid == pid);
    }
    return pids.size() >= 4 && stopped && other_session;
  });
  REQUIRE(ready);

  Status killed = cgroup->KillAll();
  INFO(killed.ToString());
  REQUIRE(killed.ok());
  CheckKilled(child.Wait());
  for (pid_t pid : pids) CHECK(Dead(pid));
  auto populated = cgroup->Populated();
  REQUIRE(populated.ok());
  CHECK_FALSE(*populated);

  REQUIRE(cgroup->Remove().ok());
  RequireGone(*cgroup);
}

TEST_CASE("cgroup host: detects the hybrid layout and its controllers") {
  CORRAL_SKIP_IF(!HostIsHybrid(), "needs root on a host with cgroup v1 and cgroup2 at unified");
  HostCgroups host("detect");
  CHECK(host.manager().layout() == CgroupLayout::kHybrid);
  auto controllers = host.manager().Controllers();
  for (const char* name : {"memory", "memory_swap", "pids", "cpu", "cpuacct", "freezer", "kill"}) {
    INFO(name);
    CHECK(Has(controllers, name));
  }
  // memory, pids, cpu, cpuacct, freezer are separate mounts here, plus unified.
  CHECK(host.parent_dirs().size() == 6);
  auto children = host.manager().ListChildren();
  REQUIRE(children.ok());
  CHECK(children->empty());
}

TEST_CASE("cgroup host: limits land in the v1 files, the process in every hierarchy") {
  CORRAL_SKIP_IF(!HostIsHybrid(), "needs root on a host with cgroup v1 and cgroup2 at unified");
  HostCgroups host("place");
  auto cgroup = host.Create("sbx", {64 << 20, 32, 0.5});
  std::vector<std::string> paths = cgroup->Paths();
  REQUIRE(paths.size() == 6);
  auto path_of = [&](const char* hierarchy) {
    for (const std::string& path : paths) {
      if (path.find(fmt::format("/sys/fs/cgroup/{}/", hierarchy)) == 0) return fs::path(path);
    }
    FAIL("no path in hierarchy " << hierarchy);
    return fs::path();
  };
  CHECK(ReadText(path_of("memory") / "memory.limit_in_bytes") == "67108864");
  CHECK(ReadText(path_of("memory") / "memory.memsw.limit_in_bytes") == "67108864");
  CHECK(ReadText(path_of("pids") / "pids.max") == "32");
  CHECK(ReadText(path_of("cpu") / "cpu.cfs_period_us") == "100000");
  CHECK(ReadText(path_of("cpu") / "cpu.cfs_quota_us") == "50000");

  GatedChild child({"/bin/sleep", "1000"});
  REQUIRE(cgroup->AddProcess(child.pid()).ok());
  child.Go();
  for (const std::string& path : paths) {
    INFO(path);
    auto pids = ReadPids(fs::path(path) / "cgroup.procs");
    CHECK(std::find(pids.begin(), pids.end(), child.pid()) != pids.end());
  }
  auto populated = cgroup->Populated();
  REQUIRE(populated.ok());
  CHECK(*populated);

  REQUIRE(cgroup->KillAll().ok());
  CheckKilled(child.Wait());
  populated = cgroup->Populated();
  REQUIRE(populated.ok());
  CHECK_FALSE(*populated);
  REQUIRE(cgroup->Remove().ok());
  RequireGone(*cgroup);
  CHECK(cgroup->Remove().ok());
}

TEST_CASE("cgroup host: KillAll through cgroup.kill reaches setsid, orphaned, stopped children") {
  CORRAL_SKIP_IF(!HostIsHybrid(), "needs root on a host with cgroup v1 and cgroup2 at unified");
  HostCgroups host("escape-v2");
  KillsEscapedProcesses(host, host.parent_dirs().back().string());
}

TEST_CASE("cgroup host: without cgroup.kill, KillAll freezes through cgroup.freeze") {
  CORRAL_SKIP_IF(!HostIsHybrid(), "needs root on a host with cgroup v1 and cgroup2 at unified");
  HostCgroups host("escape-freeze", {}, /*use_cgroup_kill=*/false);
  CHECK_FALSE(Has(host.manager().Controllers(), "kill"));
  KillsEscapedProcesses(host, host.parent_dirs().back().string());
}

TEST_CASE("cgroup host: forced v1 kills through the freezer, escaped children included") {
  CORRAL_SKIP_IF(!HostIsHybrid(), "needs root on a host with cgroup v1 and cgroup2 at unified");
  HostCgroups host("escape-v1", CgroupLayout::kV1);
  CHECK(host.manager().layout() == CgroupLayout::kV1);
  CHECK_FALSE(Has(host.manager().Controllers(), "kill"));
  REQUIRE(host.parent_dirs().size() == 5);
  for (const fs::path& dir : host.parent_dirs()) {
    CHECK(dir.string().find("/sys/fs/cgroup/unified/") != 0);
  }
  KillsEscapedProcesses(host, host.parent_dirs().front().string());
}

TEST_CASE("cgroup host: a child past its memory limit is OOM-killed and counted") {
  CORRAL_SKIP_IF(!HostIsHybrid(), "needs root on a host with cgroup v1 and cgroup2 at unified");
  HostCgroups host("oom");
  constexpr uint64_t kLimit = 32 << 20;
  auto cgroup = host.Create("hog", {kLimit, 64, 0});
  GatedChild child({"/usr/bin/python3", "-c", "b = bytearray(200 << 20)"});
  REQUIRE(cgroup->AddProcess(child.pid()).ok());
  child.Go();
  CheckKilled(child.Wait());

  auto events = cgroup->Events();
  REQUIRE(events.ok());
  CHECK(events->oom_kills >= 1);
  auto usage = cgroup->Usage();
  REQUIRE(usage.ok());
  CHECK(usage->memory_peak_bytes >= kLimit / 2);
  CHECK(usage->memory_peak_bytes <= kLimit);
}

TEST_CASE("cgroup host: forks past the pids limit fail and are counted") {
  CORRAL_SKIP_IF(!HostIsHybrid(), "needs root on a host with cgroup v1 and cgroup2 at unified");
  HostCgroups host("pids");
  auto cgroup = host.Create("forker", {64 << 20, 8, 0});
  GatedChild child({"/bin/sh", "-c",
                    "i=0; while [ $i -lt 20 ]; do /bin/sleep 1000 & i=$((i+1)); done 2>/dev/null"});
  REQUIRE(cgroup->AddProcess(child.pid()).ok());
  child.Go();
  child.Wait();

  auto events = cgroup->Events();
  REQUIRE(events.ok());
  CHECK(events->pids_max_hits >= 1);
  auto usage = cgroup->Usage();
  REQUIRE(usage.ok());
  CHECK(usage->pids >= 1);
  CHECK(usage->pids <= 8);
  // Forks were refused at the limit, so the cgroup held exactly 8 at its peak.
  CHECK(usage->pids_peak == 8);
  REQUIRE(cgroup->KillAll().ok());
  auto populated = cgroup->Populated();
  REQUIRE(populated.ok());
  CHECK_FALSE(*populated);
}

TEST_CASE("cgroup host: CPU usage grows while a child spins") {
  CORRAL_SKIP_IF(!HostIsHybrid(), "needs root on a host with cgroup v1 and cgroup2 at unified");
  HostCgroups host("cpu");
  auto cgroup = host.Create("spin", {64 << 20, 8, 0.5});
  GatedChild child({"/bin/sh", "-c", "while :; do :; done"});
  REQUIRE(cgroup->AddProcess(child.pid()).ok());
  auto before = cgroup->Usage();
  REQUIRE(before.ok());
  child.Go();

  bool grew = WaitFor([&] {
    auto now = cgroup->Usage();
    return now.ok() && now->cpu_usec > before->cpu_usec + 20000;
  });
  CHECK(grew);
  REQUIRE(cgroup->KillAll().ok());
  CheckKilled(child.Wait());
}

// What a crashed daemon leaves: cgroups with live processes, and no Cgroup object to remove
// them. A forked process creates them and exits without running any destructor.
void LeaveStaleCgroups(const std::string& parent_name) {
  pid_t creator = ::fork();
  REQUIRE(creator >= 0);
  if (creator == 0) {
    CgroupManagerOptions options;
    options.parent_name = parent_name;
    auto manager = CgroupManager::Open(options);
    if (!manager.ok()) ::_exit(1);
    for (const char* name : {"stale-a", "stale-b"}) {
      auto cgroup = (*manager)->Create(name, {});
      if (!cgroup.ok()) ::_exit(2);
      pid_t sleeper = ::fork();
      if (sleeper == 0) {
        ::execl("/bin/sleep", "sleep", "1000", nullptr);
        ::_exit(127);
      }
      if (sleeper < 0 || !(*cgroup)->AddProcess(sleeper).ok()) ::_exit(3);
      // Dropped as a crash drops it: without the destructor that would remove it.
      (void)cgroup->release();
    }
    ::_exit(0);
  }
  int status = 0;
  REQUIRE(::waitpid(creator, &status, 0) == creator);
  REQUIRE(WIFEXITED(status));
  REQUIRE(WEXITSTATUS(status) == 0);
}

TEST_CASE("cgroup host: RemoveStale kills and removes what a crashed run left") {
  CORRAL_SKIP_IF(!HostIsHybrid(), "needs root on a host with cgroup v1 and cgroup2 at unified");
  HostCgroups host("stale");
  LeaveStaleCgroups(host.parent_name());
  // A crash in the middle of Create leaves a cgroup in some hierarchies only.
  REQUIRE(::mkdir((host.parent_dirs().front() / "stale-partial").c_str(), 0755) == 0);
  host.Open();

  auto children = host.manager().ListChildren();
  REQUIRE(children.ok());
  REQUIRE(*children == std::vector<std::string>{"stale-a", "stale-b", "stale-partial"});
  std::vector<pid_t> sleepers;
  for (const char* name : {"stale-a", "stale-b"}) {
    auto pids = ReadPids(host.parent_dirs().front() / name / "cgroup.procs");
    CHECK(pids.size() == 1);
    sleepers.insert(sleepers.end(), pids.begin(), pids.end());
  }

  auto removed = host.manager().RemoveStale();
  INFO(removed.status().ToString());
  REQUIRE(removed.ok());
  CHECK(*removed == 3);
  for (pid_t pid : sleepers) CHECK(Dead(pid));
  children = host.manager().ListChildren();
  REQUIRE(children.ok());
  CHECK(children->empty());
}

}  // namespace
}  // namespace corral
