// Hostile tenant, processes and privilege (cases S10-S19 of the security cases).
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fstream>
#include <sstream>

#include <catch2/catch.hpp>

#include "tests/support/sandbox_harness.h"
#include "tests/support/skip.h"

namespace corral::testing {
namespace {

std::string HostHostname() {
  char name[256] = {};
  ::gethostname(name, sizeof name - 1);
  return name;
}

TEST_CASE("S10 /proc shows only the sandbox's processes and the policy's environment",
          "[security][process]") {
  CORRAL_REQUIRE_SANDBOX();
  // A secret in the launcher's own environment stands for the daemon's secrets.
  std::string canary = "corral-canary-" + UniqueTag();
  RunOptions options;
  options.extra_env = {{"CORRAL_SECURITY_CANARY", canary}, {"AWS_SECRET_ACCESS_KEY", canary}};
  // The tenant's own command line holds its program text, so the program names the canary's
  // prefix in two halves, never whole.
  SandboxResult result = RunPython(R"PY(
CANARY = "corral-" + "canary-"
pids = [p for p in os.listdir("/proc") if p.isdigit()]
seen = []
hits = []
for p in pids:
    for part in ("environ", "cmdline"):
        try:
            data = open("/proc/%s/%s" % (p, part), "rb").read()
        except OSError as e:
            continue
        seen.append(data.decode(errors="replace"))
        if CANARY.encode() in data:
            hits.append(p + "/" + part)
obs["canary_hits"] = hits
obs["launcher_visible"] = any(("corral" + "-run") in s or ("--" + "outcome") in s for s in seen)
obs["env_keys"] = sorted(os.environ.keys())
obs["env_has_canary"] = any(CANARY in v for v in os.environ.values())
emit()
)PY",
                                   options);
  INFO(result.Describe());
  REQUIRE_FALSE(result.observations.empty());
  CHECK(result.observations["canary_hits"].empty());
  CHECK(result.observations["launcher_visible"] == false);
  CHECK(result.observations["env_has_canary"] == false);
  // Only what the policy lists: every variable name appears in the policy file.
  std::ifstream policy_file(PolicyPath("default"));
  std::string policy((std::istreambuf_iterator<char>(policy_file)), {});
  for (const auto& key : result.observations["env_keys"]) {
    INFO("environment variable " << key);
    CHECK(policy.find(key.get<std::string>()) != std::string::npos);
  }
}

TEST_CASE("S11 ptrace, process_vm_readv, pidfd_getfd and kcmp are refused", "[security][process]") {
  CORRAL_REQUIRE_SANDBOX();
  // pidfd_open alone is no attack (it grants what kill() does); the attack is pidfd_getfd on
  // what it returns, covered here with a bad descriptor and in the variant with a real one.
  ExpectRefused({
      SyscallProbe("ptrace_attach", 101, {16, 0x3fffffff, 0, 0}),
      SyscallProbe("ptrace_seize", 101, {0x4206, 0x3fffffff, 0, 0}),
      SyscallProbe("process_vm_readv", 310, {0x3fffffff, 1, 1, 1, 1, 0}),
      SyscallProbe("process_vm_writev", 311, {0x3fffffff, 1, 1, 1, 1, 0}),
      SyscallProbe("pidfd_getfd", 438, {-1, 0, 0}),
      SyscallProbe("kcmp", 312, {0x3fffffff, 0x3fffffff, 0, 0, 0}),
  });
}

TEST_CASE("S11 variant: tracing or reading the tenant's own child is refused",
          "[security][process]") {
  CORRAL_REQUIRE_SANDBOX();
  // Against its own child these calls succeed natively, so a refusal can only be the filter's.
  const char* code = R"PY(
import time
_libc.prctl(4, 1, 0, 0, 0)  # PR_SET_DUMPABLE: the native run changed uid, which clears it
child = os.fork()
if child == 0:
    time.sleep(60)
    os._exit(0)
buf = ctypes.create_string_buffer(8)
class IoVec(ctypes.Structure):
    _fields_ = [("base", ctypes.c_void_p), ("len", ctypes.c_size_t)]
local = IoVec(ctypes.cast(buf, ctypes.c_void_p), 8)
remote = IoVec(ctypes.cast(buf, ctypes.c_void_p), 8)
obs["process_vm_readv_child"] = lc("syscall", ctypes.c_long(310), ctypes.c_long(child),
                                   ctypes.byref(local), ctypes.c_long(1), ctypes.byref(remote),
                                   ctypes.c_long(1), ctypes.c_long(0))
pidfd = _libc.syscall(ctypes.c_long(434), ctypes.c_long(child), ctypes.c_long(0))
obs["pidfd_open_child"] = "OK" if pidfd >= 0 else ename(ctypes.get_errno())
obs["pidfd_getfd_child"] = sc(438, pidfd, 0, 0) if pidfd >= 0 else "no pidfd"
obs["kcmp_child"] = sc(312, os.getpid(), child, 0, 0, 0)
obs["ptrace_seize_child"] = sc(101, 0x4206, child, 0, 0)
os.kill(child, 9)
os.waitpid(child, 0)
child = os.fork()  # a fresh one: a child already traced would refuse the attach by itself
if child == 0:
    time.sleep(60)
    os._exit(0)
obs["ptrace_attach_child"] = sc(101, 16, child, 0, 0)
os.kill(child, 9)
os.waitpid(child, 0)
emit()
)PY";
  SandboxResult native = RunNative(code);
  SandboxResult inside = RunPython(code);
  INFO("native: " << native.Describe() << "\nsandboxed: " << inside.Describe());
  for (const char* key :
       {"process_vm_readv_child", "kcmp_child", "ptrace_seize_child", "ptrace_attach_child"}) {
    INFO(key);
    CHECK(native.Obs(key) == "OK");
    CHECK(inside.Obs(key) == "EPERM");
  }
  CHECK(native.Obs("pidfd_getfd_child") == "OK");
  // pidfd_open + pidfd_getfd: stealing the child's stdin must be refused at one of the two.
  CHECK((inside.Obs("pidfd_open_child") == "EPERM" || inside.Obs("pidfd_getfd_child") == "EPERM"));
}

TEST_CASE("S12 kill(-1) and killing every pid only hit the sandbox's own processes",
          "[security][process]") {
  CORRAL_REQUIRE_SANDBOX();
  // A host process and a neighbour sandbox that must both outlive the attack.
  std::string error;
  SpawnOptions host_options;
  host_options.as_nobody = true;
  std::unique_ptr<ChildProcess> host_canary =
      ChildProcess::Spawn({"/usr/bin/sleep", "60"}, host_options, &error);
  REQUIRE(host_canary);
  std::unique_ptr<SandboxRun> neighbour = SandboxRun::Start(R"PY(
print("ready", flush=True)
sys.stdin.read()
print("neighbour-ok")
)PY",
                                                            RunOptions{});
  REQUIRE(neighbour->WaitForOutput("ready"));

  SandboxResult attacker = RunPython(R"PY(
import signal, time
children = []
for _ in range(3):
    pid = os.fork()
    if pid == 0:
        time.sleep(60)
        os._exit(0)
    children.append(pid)
signal.signal(signal.SIGTERM, signal.SIG_IGN)
obs["kill_minus_one"] = attempt(os.kill, -1, signal.SIGKILL)
statuses = [os.waitpid(pid, 0)[1] for pid in children]
obs["children_killed"] = all(os.WIFSIGNALED(s) and os.WTERMSIG(s) == 9 for s in statuses)
killed = 0
for pid in range(1, 32769):
    if pid == os.getpid():
        continue
    try:
        os.kill(pid, signal.SIGKILL)
        killed += 1
    except OSError:
        pass
obs["killed_by_loop"] = killed
emit()
)PY");
  SandboxResult neighbour_result = neighbour->Finish();
  ExpectCleanedUp(neighbour_result);
  INFO("attacker: " << attacker.Describe() << "\nneighbour: " << neighbour_result.Describe());
  CHECK(attacker.Obs("kill_minus_one") == "OK");
  CHECK(attacker.observations["children_killed"] == true);
  // Only its own pid namespace: the three children (already dead) and at most a sandbox init.
  CHECK(attacker.observations.value("killed_by_loop", 99) <= 1);
  CHECK(neighbour_result.reason() == "exited");
  CHECK(neighbour_result.process.status == 0);
  CHECK(neighbour_result.process.out.find("neighbour-ok") != std::string::npos);
  int status = 0;
  CHECK(::waitpid(host_canary->pid(), &status, WNOHANG) == 0);
  CHECK(::kill(host_canary->pid(), 0) == 0);
}

TEST_CASE("S13 TIOCSTI and TIOCLINUX are refused on every descriptor", "[security][process]") {
  CORRAL_REQUIRE_SANDBOX();
  std::vector<Probe> probes;
  for (int fd : {0, 1, 2, -1}) {
    probes.push_back(SyscallProbe("tiocsti_fd" + std::to_string(fd), 16, {fd, 0x5412, 1}));
    probes.push_back(SyscallProbe("tioclinux_fd" + std::to_string(fd), 16, {fd, 0x541C, 1}));
  }
  // The kernel reads the command as 32 bits: high bits must not slip past the filter.
  probes.push_back(SyscallProbe("tiocsti_high_bits", 16, {0, 0x100005412L, 1}));
  probes.push_back(SyscallProbe("tiocsti_all_high_bits", 16, {0, -0xffffabeeL, 1}));
  probes.push_back(
      Probe{"open_dev_tty", -1, "attempt(os.open, '/dev/tty', os.O_RDWR)", "ENOENT", false});
  ExpectRefused(probes);
}

TEST_CASE("S14 new namespaces and setns are refused", "[security][process]") {
  CORRAL_REQUIRE_SANDBOX();
  const long kNewUser = 0x10000000, kNewNs = 0x20000, kNewNet = 0x40000000, kNewPid = 0x20000000;
  const long kNewIpc = 0x8000000, kNewUts = 0x4000000, kNewCgroup = 0x2000000, kNewTime = 0x80;
  const long kCloneFs = 0x200, kSigchld = 17;
  std::vector<Probe> probes = {
      SyscallProbe("unshare_user", 272, {kNewUser}),
      SyscallProbe("unshare_user_mount", 272, {kNewUser | kNewNs}),
      SyscallProbe("unshare_user_net", 272, {kNewUser | kNewNet}),
      SyscallProbe("unshare_user_pid", 272, {kNewUser | kNewPid}),
      SyscallProbe("unshare_user_ipc_uts", 272, {kNewUser | kNewIpc | kNewUts}),
      SyscallProbe("unshare_user_cgroup_time", 272, {kNewUser | kNewCgroup | kNewTime}),
      SyscallProbe("unshare_mount", 272, {kNewNs}),
      SyscallProbe("unshare_net", 272, {kNewNet}),
      // CLONE_FS with a new user or mount namespace is EINVAL once past the filter.
      SyscallProbe("clone_newuser", 56, {kNewUser | kCloneFs | kSigchld, 0, 0, 0, 0}),
      SyscallProbe("clone_newns", 56, {kNewNs | kCloneFs | kSigchld, 0, 0, 0, 0}),
      SyscallProbe("setns_bad_fd", 308, {-1, 0}),
  };
  for (const char* ns : {"user", "mnt", "net", "pid", "ipc", "uts", "cgroup"}) {
    // setns_bad_fd shows the filter at work; these show no namespace is joinable at all.
    Probe probe{std::string("setns_") + ns, 308,
                fmt::format("sc(308, os.open('/proc/self/ns/{}', os.O_RDONLY), 0)", ns)};
    probe.confirm = false;
    probes.push_back(probe);
  }
  probes.push_back(Probe{"unshare_command", -1,
                         "'EPERM' if os.system('/usr/bin/unshare -U /usr/bin/true 2>/dev/null')"
                         " != 0 else 'OK'",
                         "EPERM", false});
  ExpectRefused(probes);
}

TEST_CASE("S15 the mount family and the new mount API are refused", "[security][process]") {
  CORRAL_REQUIRE_SANDBOX();
  ExpectRefused({
      SyscallProbe("mount", 165, {1, 1, 1, 0, 1}),
      SyscallProbe("umount2", 166, {1, 0}),
      SyscallProbe("pivot_root", 155, {1, 1}),
      SyscallProbe("chroot", 161, {1}),
      SyscallProbe("open_tree", 428, {-1, 1, 0}),
      SyscallProbe("move_mount", 429, {-1, 1, -1, 1, 0}),
      SyscallProbe("fsopen", 430, {1, 0}),
      SyscallProbe("fsconfig", 431, {-1, 0, 0, 0, 0}),
      SyscallProbe("fsmount", 432, {-1, 0, 0}),
      SyscallProbe("fspick", 433, {-1, 1, 0}),
      SyscallProbe("mount_setattr", 442, {-1, 1, 0, 1, 0}),
      Probe{"mount_tmpfs_real", 165,
            "lc('mount', b'none', b'/tmp', b'tmpfs', ctypes.c_ulong(0), None)", "EPERM", false},
      Probe{"chroot_real", 161, "lc('chroot', b'/tmp')", "EPERM", false},
  });
}

TEST_CASE("S16 setuid and file-capability binaries gain no privilege", "[security][process]") {
  CORRAL_REQUIRE_SANDBOX();
  // The loader tells: with LD_SHOW_AUXV it prints the auxiliary vector, AT_SECURE and AT_EUID
  // included, unless the exec granted privilege (secure mode), when it stays silent. Natively
  // the setuid binaries run silent; in the sandbox they must print AT_SECURE 0, AT_EUID 1000.
  const char* code = R"PY(
import shutil, subprocess
def auxv_of(argv):
    try:
        p = subprocess.run(argv, env={"LD_SHOW_AUXV": "1", "PATH": "/usr/bin:/bin"},
                           stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired) as e:
        return {"error": repr(e)}
    fields = dict(l.split(":", 1) for l in p.stdout.splitlines() if l.startswith("AT_"))
    return {"secure": fields.get("AT_SECURE", "hidden").strip(),
            "euid": fields.get("AT_EUID", "hidden").strip(),
            "ran": "util-linux" in p.stdout + p.stderr}
for binary in ("/usr/bin/su", "/usr/bin/mount", "/usr/bin/umount"):
    obs[binary] = auxv_of([binary, "--version"])
copy = "/tmp/suid-copy"
try:
    shutil.copy("/usr/bin/su", copy)
    os.chmod(copy, 0o6755)
    obs["copied"] = auxv_of([copy, "--version"])
except OSError as e:
    obs["copied"] = {"error": ename(e.errno)}
emit()
)PY";
  SandboxResult native = RunNative(code);
  SandboxResult inside = RunPython(code);
  INFO("native: " << native.Describe() << "\nsandboxed: " << inside.Describe());
  REQUIRE_FALSE(inside.observations.empty());
  for (const char* binary : {"/usr/bin/su", "/usr/bin/mount", "/usr/bin/umount"}) {
    INFO(binary);
    REQUIRE(native.observations.contains(binary));
    CHECK(native.observations[binary]["secure"] == "hidden");
    CHECK(native.observations[binary]["ran"] == true);
    CHECK(inside.observations[binary]["ran"] == true);
    CHECK(inside.observations[binary]["secure"] == "0");
    CHECK(inside.observations[binary]["euid"] == "1000");
  }
  // A setuid copy is owned by the tenant itself; it may not run at all (noexec /tmp), and if it
  // runs it is as the tenant.
  const nlohmann::json& copied = inside.observations["copied"];
  INFO("copied: " << copied.dump());
  if (!copied.contains("error")) {
    CHECK(copied["euid"] == "1000");
  }
}

TEST_CASE("S17 no capabilities, no_new_privs and seccomp in the worker and a grandchild",
          "[security][process]") {
  CORRAL_REQUIRE_SANDBOX();
  SandboxResult result = RunPython(R"PY(
import subprocess
def fields(text):
    keep = ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb", "NoNewPrivs", "Seccomp")
    return {l.split(":")[0]: l.split()[1] for l in text.splitlines() if l.split(":")[0] in keep}
obs["self"] = fields(open("/proc/self/status").read())
grandchild = ("import subprocess, sys; sys.stdout.write(subprocess.run(['/usr/bin/cat', "
              "'/proc/self/status'], capture_output=True, text=True).stdout)")
out = subprocess.run([sys.executable, "-I", "-c", grandchild], capture_output=True, text=True)
obs["grandchild"] = fields(out.stdout)
PR_CAP_AMBIENT, RAISE, CAP_NET_RAW, CAP_SYS_ADMIN = 47, 2, 13, 21
obs["ambient_raise_net_raw"] = lc("prctl", PR_CAP_AMBIENT, RAISE, CAP_NET_RAW, 0, 0)
obs["ambient_raise_sys_admin"] = lc("prctl", PR_CAP_AMBIENT, RAISE, CAP_SYS_ADMIN, 0, 0)
class Header(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]
class Data(ctypes.Structure):
    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32),
                ("inheritable", ctypes.c_uint32)]
header = Header(0x20080522, 0)
data = (Data * 2)(Data(0xffffffff, 0xffffffff, 0xffffffff), Data(0x1ff, 0x1ff, 0x1ff))
obs["capset_all"] = lc("capset", ctypes.byref(header), data)
obs["setuid_0"] = attempt(os.setuid, 0)
obs["no_new_privs_clear"] = lc("prctl", 38, 0, 0, 0, 0)
emit()
)PY");
  INFO(result.Describe());
  REQUIRE_FALSE(result.observations.empty());
  for (const char* who : {"self", "grandchild"}) {
    const nlohmann::json& status = result.observations[who];
    INFO(who << ": " << status.dump());
    for (const char* set : {"CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"}) {
      CHECK(status.value(set, std::string("?")) == "0000000000000000");
    }
    CHECK(status.value("NoNewPrivs", std::string("?")) == "1");
    CHECK(status.value("Seccomp", std::string("?")) == "2");
  }
  CHECK(result.Obs("ambient_raise_net_raw") == "EPERM");
  CHECK(result.Obs("ambient_raise_sys_admin") == "EPERM");
  CHECK(result.Obs("capset_all") == "EPERM");
  CHECK((result.Obs("setuid_0") == "EPERM" || result.Obs("setuid_0") == "EINVAL"));
  // PR_SET_NO_NEW_PRIVS with 0 is EINVAL: the flag cannot be cleared.
  CHECK(result.Obs("no_new_privs_clear") == "EINVAL");
}

TEST_CASE("S18 reboot, kexec, modules, swap, acct and sethostname are refused",
          "[security][process]") {
  CORRAL_REQUIRE_SANDBOX();
  std::string hostname = HostHostname();
  RunOptions options;
  options.vars = {{"HOST_NAME", hostname}};
  ExpectRefused(
      {
          SyscallProbe("reboot", 169, {0, 0, 0, 0}),
          SyscallProbe("kexec_load", 246, {0, 0, 0, 0xffffffff}),
          SyscallProbe("kexec_file_load", 320, {-1, -1, 0, 1, 0xffffffff}),
          SyscallProbe("init_module", 175, {1, 0, 1}),
          SyscallProbe("finit_module", 313, {-1, 1, 0}),
          SyscallProbe("delete_module", 176, {1, 0}),
          SyscallProbe("swapon", 167, {1, 0}),
          SyscallProbe("swapoff", 168, {1}),
          SyscallProbe("acct", 163, {1}),
          SyscallProbe("sethostname", 170, {1, 5}),
          SyscallProbe("setdomainname", 171, {1, 5}),
          Probe{"sethostname_host_name", 170,
                "lc('sethostname', HOST_NAME.encode(), ctypes.c_size_t(len(HOST_NAME)))", "EPERM",
                false},
      },
      options);
  CHECK(HostHostname() == hostname);
}

TEST_CASE("S19 setting the clock is refused", "[security][process]") {
  CORRAL_REQUIRE_SANDBOX();
  // adjtimex with modes set is refused by the kernel without CAP_SYS_TIME whether or not the
  // filter lets adjtimex through (reading the clock state is harmless), so no confirmation.
  Probe adjtimex_set{"adjtimex_set", 159,
                     "lc('adjtimex', ctypes.byref((ctypes.c_long * 26)(0x8001)))"};
  adjtimex_set.confirm = false;
  Probe clock_adjtime_set{
      "clock_adjtime_set", 305,
      "lc('clock_adjtime', ctypes.c_int(0), ctypes.byref((ctypes.c_long * 26)(0x8001)))"};
  clock_adjtime_set.confirm = false;
  ExpectRefused({
      SyscallProbe("clock_settime", 227, {0, 1}),
      SyscallProbe("settimeofday", 164, {1, 0}),
      Probe{"clock_settime_now", 227,
            "lc('clock_settime', ctypes.c_int(0), ctypes.byref((ctypes.c_long * 2)(0, 0)))"},
      adjtimex_set,
      clock_adjtime_set,
  });
}

}  // namespace
}  // namespace corral::testing
