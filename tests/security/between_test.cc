// Hostile tenant, between sandboxes (cases S46-S48 of the security cases), and a batch of cases
// run all at once, since sandboxes are started concurrently in production.
#include <signal.h>

#include <functional>
#include <set>
#include <thread>

#include <catch2/catch.hpp>

#include "tests/support/sandbox_harness.h"
#include "tests/support/skip.h"

namespace corral::testing {
namespace {

TEST_CASE("S46 a neighbour at its pids limit does not limit another sandbox",
          "[security][between]") {
  CORRAL_REQUIRE_SANDBOX();
  RunOptions hog_options;
  hog_options.sets = {"limits.pids=16"};
  std::unique_ptr<SandboxRun> hog = SandboxRun::Start(R"PY(
import time
count = 0
while True:
    try:
        pid = os.fork()
    except OSError as e:
        obs["error"] = ename(e.errno)
        break
    if pid == 0:
        time.sleep(60)
        os._exit(0)
    count += 1
obs["count"] = count
print("ready", flush=True)
sys.stdin.read()
emit()
)PY",
                                                      hog_options);
  REQUIRE(hog->WaitForOutput("ready"));
  // B forks more than A's whole limit while A sits at it.
  SandboxResult b = RunPython(R"PY(
import threading, time
pids = []
for _ in range(24):
    pid = os.fork()
    if pid == 0:
        time.sleep(0.5)
        os._exit(0)
    pids.append(pid)
threads = [threading.Thread(target=time.sleep, args=(0.1,)) for _ in range(8)]
for t in threads:
    t.start()
for t in threads:
    t.join()
obs["children"] = sum(1 for p in pids if os.waitpid(p, 0)[1] == 0)
emit()
)PY");
  SandboxResult a = hog->Finish();
  ExpectCleanedUp(a);
  INFO("A: " << a.Describe() << "\nB: " << b.Describe());
  CHECK(a.Obs("error") == "EAGAIN");
  CHECK(b.reason() == "exited");
  CHECK(b.observations.value("children", 0) == 24);
  CHECK(a.outcome["sandbox"]["host_uid"] != b.outcome["sandbox"]["host_uid"]);
}

TEST_CASE("S47 two sandboxes each under their own memory limit are not OOM-killed",
          "[security][between]") {
  CORRAL_REQUIRE_SANDBOX();
  const char* hold = R"PY(
block = b"x" * (48 << 20)
print("ready", flush=True)
sys.stdin.read()
obs["held"] = len(block)
emit()
)PY";
  RunOptions options;
  options.sets = {"limits.memory=64Mi"};
  std::unique_ptr<SandboxRun> a = SandboxRun::Start(hold, options);
  std::unique_ptr<SandboxRun> b = SandboxRun::Start(hold, options);
  REQUIRE(a->WaitForOutput("ready"));
  REQUIRE(b->WaitForOutput("ready"));
  for (SandboxResult result : {a->Finish(), b->Finish()}) {
    ExpectCleanedUp(result);
    INFO(result.Describe());
    CHECK(result.reason() == "exited");
    CHECK(result.Obs("held") == std::to_string(48 << 20));
    CHECK(result.OutcomeNumber("memory_peak_bytes") >= int64_t{48} << 20);
  }
}

TEST_CASE("S48 /etc/hosts and /etc/resolv.conf are read-only", "[security][between]") {
  CORRAL_REQUIRE_SANDBOX();
  // The default policy binds neither file: then creating one is what must fail.
  SandboxResult result = RunPython(R"PY(
for path in ("/etc/hosts", "/etc/resolv.conf", "/etc/passwd", "/etc/nsswitch.conf",
             "/etc/ld.so.cache"):
    obs["write:" + path] = attempt(lambda: open(path, "w").close())
    if os.path.exists(path):
        obs["rename:" + path] = attempt(os.rename, path, path + ".x")
        obs["unlink:" + path] = attempt(os.unlink, path)
        obs["replace:" + path] = attempt(os.rename, "/proc/self/cmdline", path)
obs["mkdir_etc"] = attempt(os.mkdir, "/etc/corral-probe")
emit()
)PY");
  INFO(result.Describe());
  REQUIRE_FALSE(result.observations.empty());
  for (const auto& [key, value] : result.observations.items()) {
    INFO(key << " -> " << value);
    std::string text = value.get<std::string>();
    if (key.rfind("write:", 0) == 0 || key == "mkdir_etc") {
      CHECK(text == "EROFS");
    } else {
      // Renames over a read-only mount: EROFS, or EXDEV/EBUSY across and onto mount points.
      CHECK((text == "EROFS" || text == "EXDEV" || text == "EBUSY"));
    }
  }
}

// One case of the concurrent batch: code, options and what its result must show.
struct BatchCase {
  std::string name;
  std::string code;
  RunOptions options;
  std::function<void(const SandboxResult&)> check;
};

std::vector<BatchCase> RepresentativeCases() {
  auto sets = [](std::vector<std::string> values) {
    RunOptions options;
    options.sets = std::move(values);
    return options;
  };
  RunOptions strict;
  strict.policy = "strict";
  return {
      {"S01 shadow",
       "obs['r'] = attempt(lambda: open('/etc/shadow').read())\nemit()\n",
       {},
       [](const SandboxResult& r) { CHECK((r.Obs("r") == "ENOENT" || r.Obs("r") == "EACCES")); }},
      {"S02 write /usr",
       "obs['r'] = attempt(lambda: open('/usr/x', 'x'))\nemit()\n",
       {},
       [](const SandboxResult& r) { CHECK(r.Obs("r") == "EROFS"); }},
      {"S08 /dev/mem",
       "obs['r'] = attempt(os.open, '/dev/mem', os.O_RDONLY)\nemit()\n",
       {},
       [](const SandboxResult& r) { CHECK(r.Obs("r") == "ENOENT"); }},
      {"S15 mount",
       "obs['r'] = sc(165, BAD, BAD, BAD, 0, BAD)\nemit()\n",
       {},
       [](const SandboxResult& r) { CHECK(r.Obs("r") == "EPERM"); }},
      {"S17 caps",
       "obs['r'] = [l for l in open('/proc/self/status') if l.startswith('CapEff')][0]\nemit()\n",
       {},
       [](const SandboxResult& r) { CHECK(r.Obs("r") == "CapEff:\t0000000000000000\n"); }},
      {"S20 fork bomb", "while True:\n    os.fork()\n", sets({"limits.pids=16"}),
       [](const SandboxResult& r) { CHECK(r.reason() == "pids_limit"); }},
      {"S22 memory", "a = []\nwhile True:\n    a.append(b'x' * (1 << 20))\n",
       sets({"limits.memory=64Mi"}),
       [](const SandboxResult& r) { CHECK(r.reason() == "oom_killed"); }},
      {"S24 descriptors",
       "try:\n    while True:\n        os.open('/dev/null', 0)\nexcept OSError as e:\n"
       "    obs['r'] = ename(e.errno)\nemit()\n",
       sets({"limits.open_files=32"}),
       [](const SandboxResult& r) { CHECK(r.Obs("r") == "EMFILE"); }},
      {"S27 sleep", "import time\ntime.sleep(10**6)\n", sets({"limits.wall_time=1s"}),
       [](const SandboxResult& r) { CHECK(r.reason() == "wall_timeout"); }},
      {"S32 network",
       "s = socket.socket()\nobs['r'] = attempt(s.connect, ('1.1.1.1', 80))\nemit()\n",
       {},
       [](const SandboxResult& r) { CHECK(r.Obs("r") == "ENETUNREACH"); }},
      {"S39 clone3",
       "obs['r'] = sc(435, BAD, 88)\nemit()\n",
       {},
       [](const SandboxResult& r) { CHECK(r.Obs("r") == "ENOSYS"); }},
      {"S44 strict", "sc(101, 16, NOPID, 0, 0)\n", strict,
       [](const SandboxResult& r) {
         CHECK(r.reason() == "seccomp_violation");
         CHECK(r.OutcomeNumber("seccomp_syscall") == 101);
       }},
  };
}

TEST_CASE("all security cases concurrently (serial)", "[security][between]") {
  CORRAL_REQUIRE_SANDBOX();
  // Every case at once, twice over, so the launcher's shared state (host uid leases, cgroup
  // parent, supervisor) is exercised under contention. "serial": it wants the machine alone.
  std::vector<BatchCase> cases = RepresentativeCases();
  size_t rounds = 2;
  std::vector<SandboxResult> results(cases.size() * rounds);
  std::vector<std::thread> threads;
  for (size_t i = 0; i < results.size(); ++i) {
    threads.emplace_back([&, i] {
      const BatchCase& c = cases[i % cases.size()];
      results[i] = RunSandboxed(c.code, c.options);
    });
  }
  for (std::thread& thread : threads) thread.join();

  for (size_t i = 0; i < results.size(); ++i) {
    const BatchCase& c = cases[i % cases.size()];
    INFO(c.name << ": " << results[i].Describe());
    ExpectCleanedUp(results[i]);
    c.check(results[i]);
  }
}

}  // namespace
}  // namespace corral::testing
