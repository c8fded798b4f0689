// The launcher against the real kernel: real sandboxes under the shipped default policy.
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <set>
#include <thread>

#include "tests/unit/launcher/launcher_helpers.h"

namespace corral::testing {
namespace {

bool CgroupsGone(const std::vector<std::string>& paths) {
  for (const auto& path : paths) {
    if (std::filesystem::exists(path)) return false;
  }
  return true;
}

std::string ReadFile(const std::string& path) {
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

// A Python command that blocks until its stdin (a pipe the test holds) is closed.
struct BlockedSandbox {
  std::unique_ptr<Sandbox> sandbox;
  int stdin_write = -1;

  BlockedSandbox() = default;
  BlockedSandbox(BlockedSandbox&& other) noexcept
      : sandbox(std::move(other.sandbox)), stdin_write(std::exchange(other.stdin_write, -1)) {}

  void Release() {
    if (stdin_write >= 0) close(stdin_write);
    stdin_write = -1;
  }
  ~BlockedSandbox() { Release(); }
};

BlockedSandbox LaunchBlocked(Launcher& launcher, const Policy& policy, const std::string& tag) {
  int fds[2];
  REQUIRE(pipe2(fds, O_CLOEXEC) == 0);
  auto captured = std::make_shared<Captured>();
  LaunchRequest request =
      PythonRequest(tag, "import sys; sys.stdin.read(); print('released')", captured);
  request.fds.push_back({fds[0], 0});
  Result<std::unique_ptr<Sandbox>> sandbox = launcher.Launch(policy, std::move(request));
  close(fds[0]);
  INFO(sandbox.status().ToString());
  REQUIRE(sandbox.ok());
  BlockedSandbox blocked;
  blocked.sandbox = std::move(sandbox).value();
  blocked.stdin_write = fds[1];
  return blocked;
}

// The host's view of a pid's real uid (second field of "Uid:").
uint32_t HostUidOf(pid_t pid) {
  std::istringstream status(ReadFile(fmt::format("/proc/{}/status", pid)));
  for (std::string line; std::getline(status, line);) {
    if (line.rfind("Uid:", 0) == 0) return static_cast<uint32_t>(std::stoul(line.substr(4)));
  }
  return 0;
}

TEST_CASE("launcher: exit code and output propagate") {
  auto launcher = MakeLauncher();
  CORRAL_SKIP_IF(SandboxingUnavailable(*launcher), "no user namespaces or seccomp");
  RunResult run = RunPython(*launcher, DefaultPolicy(),
                            "import sys; print('out'); print('err', file=sys.stderr); "
                            "sys.exit(7)");
  CHECK(run.outcome.reason == OutcomeReason::kExited);
  CHECK(run.outcome.exit_code == 7);
  CHECK(run.outcome.ShellStatus() == 7);
  CHECK(run.out == "out\n");
  CHECK(run.err == "err\n");
  CHECK(run.outcome.output_bytes == 8);
  CHECK_FALSE(run.outcome.output_truncated);
}

TEST_CASE("launcher: identity, hostname and process view inside") {
  auto launcher = MakeLauncher();
  CORRAL_SKIP_IF(SandboxingUnavailable(*launcher), "no user namespaces or seccomp");
  setenv("CORRAL_TEST_CANARY", "secret", 1);
  RunResult run = RunPython(*launcher, DefaultPolicy(),
                            "import os, socket\n"
                            "print(os.getuid(), os.getgid(), os.getgroups())\n"
                            "print(socket.gethostname())\n"
                            "print(sorted(int(p) for p in os.listdir('/proc') if p.isdigit()))\n"
                            "print('CORRAL_TEST_CANARY' in os.environ, os.environ['HOME'])\n"
                            "print(open('/proc/1/cmdline').read().rstrip('\\0'))\n"
                            "print(open('/proc/1/comm').read().strip())\n");
  unsetenv("CORRAL_TEST_CANARY");
  CHECK(run.outcome.reason == OutcomeReason::kExited);
  // Only the sandbox's init (1) and the command (2) exist in its pid namespace.
  // The init is a copy of the launcher: the launcher's command line must not show through.
  CHECK(run.out == "1000 1000 []\ncorral\n[1, 2]\nFalse /tmp\ncorral-init\ncorral-init\n");
}

TEST_CASE("launcher: pid is the command's host pid, host uids are leased and distinct") {
  auto launcher = MakeLauncher();
  CORRAL_SKIP_IF(SandboxingUnavailable(*launcher), "no user namespaces or seccomp");
  Policy policy = DefaultPolicy();
  BlockedSandbox a = LaunchBlocked(*launcher, policy, "ida");
  BlockedSandbox b = LaunchBlocked(*launcher, policy, "idb");

  for (BlockedSandbox* s : {&a, &b}) {
    uint32_t uid = s->sandbox->host_uid();
    CHECK(uid >= policy.user.host_id_base);
    CHECK(uid < policy.user.host_id_base + policy.user.host_id_count);
    std::string cmdline = ReadFile(fmt::format("/proc/{}/cmdline", s->sandbox->pid()));
    CHECK(cmdline.find("sys.stdin.read()") != std::string::npos);
    CHECK(HostUidOf(s->sandbox->pid()) == uid);
  }
  CHECK(a.sandbox->host_uid() != b.sandbox->host_uid());
  CHECK(a.sandbox->Usage().memory_bytes > 0);

  a.Release();
  b.Release();
  CHECK(a.sandbox->Wait().exit_code == 0);
  CHECK(b.sandbox->Wait().exit_code == 0);
}

TEST_CASE("launcher: launches from many threads at once all start, each contained") {
  auto launcher = MakeLauncher();
  CORRAL_SKIP_IF(SandboxingUnavailable(*launcher), "no user namespaces or seccomp");
  Policy policy = DefaultPolicy();
  constexpr int kThreads = 6;
  std::vector<Outcome> outcomes(kThreads);
  std::vector<std::string> outputs(kThreads), errors(kThreads);
  std::vector<uint32_t> uids(kThreads);
  std::vector<std::thread> threads;
  for (int i = 0; i < kThreads; ++i) {
    threads.emplace_back([&, i] {
      auto captured = std::make_shared<Captured>();
      Result<std::unique_ptr<Sandbox>> sandbox = launcher->Launch(
          policy, PythonRequest("many", "import os; print(len(os.listdir('/proc/self/fd')))",
                                captured));
      if (!sandbox.ok()) {
        errors[i] = sandbox.status().ToString();
        return;
      }
      uids[i] = (*sandbox)->host_uid();
      outcomes[i] = (*sandbox)->Wait();
      outputs[i] = captured->out;
    });
  }
  for (auto& thread : threads) thread.join();
  for (int i = 0; i < kThreads; ++i) {
    INFO(errors[i]);
    CHECK(errors[i].empty());
    CHECK(outcomes[i].exit_code == 0);
    CHECK(outputs[i] == "4\n");  // 0-2 and listdir's own: nothing of the other launches
  }
  CHECK(std::set<uint32_t>(uids.begin(), uids.end()).size() == kThreads);
}

TEST_CASE("launcher: a missing bind source fails before anything is created") {
  auto launcher = MakeLauncher();
  CORRAL_SKIP_IF(SandboxingUnavailable(*launcher), "no user namespaces or seccomp");
  auto captured = std::make_shared<Captured>();
  LaunchRequest request = PythonRequest("badbind", "print(1)", captured);
  std::string name = request.name;
  request.extra_binds.push_back({"/nonexistent-corral-source", "", false, false});
  Result<std::unique_ptr<Sandbox>> sandbox = launcher->Launch(DefaultPolicy(), std::move(request));
  REQUIRE_FALSE(sandbox.ok());
  std::string message = sandbox.status().ToString();
  CHECK_THAT(message, Catch::Contains("launch `" + name + "`"));
  CHECK_THAT(message, Catch::Contains("bind `/nonexistent-corral-source`"));
  CHECK_THAT(message, Catch::Contains("No such file or directory"));
  Result<std::vector<std::string>> children = launcher->cgroups().ListChildren();
  REQUIRE(children.ok());
  CHECK(std::find(children->begin(), children->end(), name) == children->end());
}

TEST_CASE("launcher: a step failing in the child is named and cleaned up") {
  auto launcher = MakeLauncher();
  CORRAL_SKIP_IF(SandboxingUnavailable(*launcher), "no user namespaces or seccomp");
  auto captured = std::make_shared<Captured>();
  LaunchRequest request = PythonRequest("badwd", "print(1)", captured);
  std::string name = request.name;
  Policy policy = DefaultPolicy({"filesystem.workdir=/nonexistent-workdir"});
  Result<std::unique_ptr<Sandbox>> sandbox = launcher->Launch(policy, std::move(request));
  REQUIRE_FALSE(sandbox.ok());
  CHECK_THAT(sandbox.status().ToString(),
             Catch::Contains("chdir `/nonexistent-workdir`: No such file or directory"));
  Result<std::vector<std::string>> children = launcher->cgroups().ListChildren();
  REQUIRE(children.ok());
  CHECK(std::find(children->begin(), children->end(), name) == children->end());
}

TEST_CASE("launcher: a command that cannot be executed fails the launch") {
  auto launcher = MakeLauncher();
  CORRAL_SKIP_IF(SandboxingUnavailable(*launcher), "no user namespaces or seccomp");
  LaunchRequest request;
  request.name = UniqueName("noexec");
  request.argv = {"/usr/bin/no-such-program-corral"};
  Result<std::unique_ptr<Sandbox>> sandbox = launcher->Launch(DefaultPolicy(), request);
  REQUIRE_FALSE(sandbox.ok());
  CHECK_THAT(sandbox.status().ToString(),
             Catch::Contains("execve `/usr/bin/no-such-program-corral`"));
}

TEST_CASE("launcher: a bare command name is looked up in the sandbox's PATH") {
  auto launcher = MakeLauncher();
  CORRAL_SKIP_IF(SandboxingUnavailable(*launcher), "no user namespaces or seccomp");
  auto captured = std::make_shared<Captured>();
  LaunchRequest request = PythonRequest("path", "print('found')", captured);
  request.argv[0] = "python3";
  Result<std::unique_ptr<Sandbox>> sandbox = launcher->Launch(DefaultPolicy(), request);
  REQUIRE(sandbox.ok());
  CHECK((*sandbox)->Wait().exit_code == 0);
  CHECK(captured->out == "found\n");
}

TEST_CASE("launcher: invalid requests are refused") {
  auto launcher = MakeLauncher();
  LaunchRequest request;
  request.argv = {"/usr/bin/python3"};
  for (const std::string& name :
       std::vector<std::string>{"", "../x", "a/b", "-x", std::string(65, 'a')}) {
    request.name = name;
    Result<std::unique_ptr<Sandbox>> sandbox = launcher->Launch(DefaultPolicy(), request);
    INFO(name);
    REQUIRE_FALSE(sandbox.ok());
    CHECK(sandbox.status().category() == ErrorCategory::kInvalidArgument);
  }
  request.name = UniqueName("relative");
  request.argv = {"bin/python3"};
  CHECK_FALSE(launcher->Launch(DefaultPolicy(), request).ok());
}

TEST_CASE("launcher: Kill ends the sandbox as killed_by_request and removes its cgroup") {
  auto launcher = MakeLauncher();
  CORRAL_SKIP_IF(SandboxingUnavailable(*launcher), "no user namespaces or seccomp");
  BlockedSandbox blocked = LaunchBlocked(*launcher, DefaultPolicy(), "kill");
  std::vector<std::string> paths = blocked.sandbox->cgroup_paths();
  REQUIRE_FALSE(paths.empty());
  CHECK_FALSE(CgroupsGone(paths));
  blocked.sandbox->Kill(OutcomeReason::kKilledByRequest);
  Outcome outcome = blocked.sandbox->Wait();
  CHECK(outcome.reason == OutcomeReason::kKilledByRequest);
  CHECK(outcome.signal == SIGKILL);
  CHECK(blocked.sandbox->Exited());
  CHECK(CgroupsGone(paths));
}

TEST_CASE("launcher: destroying a live sandbox kills it and cleans up") {
  auto launcher = MakeLauncher();
  CORRAL_SKIP_IF(SandboxingUnavailable(*launcher), "no user namespaces or seccomp");
  std::vector<std::string> paths;
  pid_t pid;
  {
    BlockedSandbox blocked = LaunchBlocked(*launcher, DefaultPolicy(), "dtor");
    paths = blocked.sandbox->cgroup_paths();
    pid = blocked.sandbox->pid();
  }
  CHECK(CgroupsGone(paths));
  CHECK(kill(pid, 0) != 0);
}

TEST_CASE("launcher: destroying the launcher ends every sandbox it still runs") {
  auto launcher = MakeLauncher();
  CORRAL_SKIP_IF(SandboxingUnavailable(*launcher), "no user namespaces or seccomp");
  BlockedSandbox blocked = LaunchBlocked(*launcher, DefaultPolicy(), "shutdown");
  std::vector<std::string> paths = blocked.sandbox->cgroup_paths();
  launcher.reset();
  CHECK(blocked.sandbox->Exited());
  CHECK(blocked.sandbox->Wait().reason == OutcomeReason::kKilledByRequest);
  CHECK(CgroupsGone(paths));
}

TEST_CASE("launcher: the wall-time limit ends the sandbox as wall_timeout") {
  auto launcher = MakeLauncher();
  CORRAL_SKIP_IF(SandboxingUnavailable(*launcher), "no user namespaces or seccomp");
  RunResult run = RunPython(*launcher, DefaultPolicy({"limits.wall_time=500ms"}),
                            "import time; time.sleep(1000)");
  CHECK(run.outcome.reason == OutcomeReason::kWallTimeout);
  CHECK(run.outcome.ShellStatus() == 128 + SIGKILL);
}

TEST_CASE("launcher: the CPU-time limit ends the sandbox as cpu_timeout") {
  auto launcher = MakeLauncher();
  CORRAL_SKIP_IF(SandboxingUnavailable(*launcher), "no user namespaces or seccomp");
  RunResult run = RunPython(*launcher, DefaultPolicy({"limits.cpu_time=300ms"}),
                            "while True: pass");
  CHECK(run.outcome.reason == OutcomeReason::kCpuTimeout);
}

TEST_CASE("launcher: the memory limit ends the sandbox as oom_killed with its peak") {
  auto launcher = MakeLauncher();
  CORRAL_SKIP_IF(SandboxingUnavailable(*launcher), "no user namespaces or seccomp");
  RunResult run = RunPython(*launcher, DefaultPolicy({"limits.memory=64Mi"}),
                            "b = bytearray(512 * 1024 * 1024)");
  CHECK(run.outcome.reason == OutcomeReason::kOomKilled);
  CHECK(run.outcome.memory_peak_bytes >= 32ull << 20);
}

TEST_CASE("launcher: a fork bomb is reported as pids_limit") {
  auto launcher = MakeLauncher();
  CORRAL_SKIP_IF(SandboxingUnavailable(*launcher), "no user namespaces or seccomp");
  RunResult run = RunPython(*launcher, DefaultPolicy({"limits.pids=8"}),
                            "import os, time\n"
                            "for _ in range(64):\n"
                            "    if os.fork() == 0: time.sleep(100)\n");
  CHECK(run.outcome.reason == OutcomeReason::kPidsLimit);
  CHECK_THAT(run.err, Catch::Contains("BlockingIOError"));
}

TEST_CASE("launcher: output past the limit is truncated, and kills when the policy says") {
  auto launcher = MakeLauncher();
  CORRAL_SKIP_IF(SandboxingUnavailable(*launcher), "no user namespaces or seccomp");
  RunResult kept = RunPython(*launcher, DefaultPolicy({"limits.output=1Ki"}),
                             "print('x' * 4096)");
  CHECK(kept.outcome.reason == OutcomeReason::kExited);
  CHECK(kept.out.size() == 1024);
  CHECK(kept.outcome.output_bytes == 4097);
  CHECK(kept.outcome.output_truncated);

  RunResult killed = RunPython(
      *launcher, DefaultPolicy({"limits.output=1Ki", "limits.kill_on_output_limit=true"}),
      "while True: print('x' * 4096, flush=True)");
  CHECK(killed.outcome.reason == OutcomeReason::kOutputLimit);
  CHECK(killed.out.size() == 1024);
}

TEST_CASE("launcher: a refused syscall under a kill policy is seccomp_violation with its number") {
  auto launcher = MakeLauncher();
  CORRAL_SKIP_IF(SandboxingUnavailable(*launcher), "no user namespaces or seccomp");
  CORRAL_SKIP_IF(!launcher->host().seccomp_user_notif, "no seccomp user notifications");
  RunResult run = RunPython(*launcher, DefaultPolicy({"seccomp.action=kill"}),
                            "import ctypes; ctypes.CDLL(None).syscall(101, 16, 1, 0, 0)");
  CHECK(run.outcome.reason == OutcomeReason::kSeccompViolation);
  CHECK(run.outcome.seccomp_syscall == 101);
  CHECK(run.outcome.seccomp_syscall_name == "ptrace");
}

TEST_CASE("launcher: only passed descriptors reach the sandbox") {
  auto launcher = MakeLauncher();
  CORRAL_SKIP_IF(SandboxingUnavailable(*launcher), "no user namespaces or seccomp");
  int leaked = open("/dev/null", O_RDONLY);  // not close-on-exec: must still not leak
  int passed = open("/dev/zero", O_RDONLY | O_CLOEXEC);
  REQUIRE(leaked >= 0);
  REQUIRE(passed >= 0);
  auto captured = std::make_shared<Captured>();
  LaunchRequest request = PythonRequest(
      "fds", "import os; print(sorted(int(f) for f in os.listdir('/proc/self/fd')))", captured);
  request.fds.push_back({passed, 5});
  Result<std::unique_ptr<Sandbox>> sandbox = launcher->Launch(DefaultPolicy(), request);
  close(leaked);
  close(passed);
  REQUIRE(sandbox.ok());
  CHECK((*sandbox)->Wait().exit_code == 0);
  // 0-2 (stdin /dev/null, the output pipes), 3 for listdir itself, 5 passed.
  CHECK(captured->out == "[0, 1, 2, 3, 5]\n");
}

TEST_CASE("launcher: the filesystem is read-only except the private tmpfs") {
  auto launcher = MakeLauncher();
  CORRAL_SKIP_IF(SandboxingUnavailable(*launcher), "no user namespaces or seccomp");
  RunResult run = RunPython(*launcher, DefaultPolicy(),
                            "import os\n"
                            "for p in ['/x', '/etc/passwd', '/usr/x', '/dev/x']:\n"
                            "    try: open(p, 'a'); print('wrote', p)\n"
                            "    except OSError as e: print(e.errno)\n"
                            "open('/tmp/ok', 'w').write('1'); print(sorted(os.listdir('/dev')))\n"
                            "print(os.path.exists('/sys'), os.path.exists('/root'))\n");
  CHECK(run.out ==
        "30\n30\n30\n30\n['fd', 'full', 'null', 'random', 'shm', 'stderr', 'stdin', 'stdout', "
        "'urandom', 'zero']\nFalse False\n");
}

}  // namespace
}  // namespace corral::testing
