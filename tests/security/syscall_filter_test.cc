// Hostile tenant, syscall filter (cases S36-S44 of the security cases).
//
// Refusals are checked with probes that a kernel without the filter answers harmlessly and
// differently (bad descriptor, bad pointer, no such pid), run natively as an unprivileged user
// first; where the kernel itself answers EPERM, the strict policy must kill for the syscall.
#include <csignal>
#include <filesystem>
#include <fstream>

#include <catch2/catch.hpp>

#include "tests/support/sandbox_harness.h"
#include "tests/support/skip.h"

namespace corral::testing {
namespace {

// Runs machine code from an anonymous executable page and prints what it returned: a process
// the filter lets live reports the call's result.
const char* const kStubRunner = R"PY(
import mmap
def imm(v):
    return (v & 0xffffffff).to_bytes(4, "little")
def run_stub(code):
    page = mmap.mmap(-1, 4096, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
    page.write(code)
    address = ctypes.addressof(ctypes.c_char.from_buffer(page))
    return ctypes.CFUNCTYPE(ctypes.c_int)(address)()
ONE = imm(1)
# mov edi/esi/edx/r10d/r8d, 1 (bad pointers); mov eax, nr; syscall; ret
def x32_call(nr):
    return (b"\xbf" + ONE + b"\xbe" + ONE + b"\xba" + ONE + b"\x41\xba" + ONE +
            b"\x41\xb8" + ONE + b"\xb8" + imm(0x40000000 | nr) + b"\x0f\x05\xc3")
# push rbx; mov ebx/ecx/edx/esi/edi, 1; mov eax, nr; int 0x80; pop rbx; ret
def i386_call(nr):
    return (b"\x53\xbb" + ONE + b"\xb9" + ONE + b"\xba" + ONE + b"\xbe" + ONE +
            b"\xbf" + ONE + b"\xb8" + imm(nr) + b"\xcd\x80\x5b\xc3")
)PY";

// The call through a foreign entry point must never run: native, the same stub returns.
void ExpectForeignEntryKilled(const std::string& call) {
  std::string code = std::string(kStubRunner) + "r = run_stub(" + call +
                     ")\nobs['returned'] = ename(-r) if r < 0 else r\n"
                     "emit()\n";
  SandboxResult native = RunNative(code);
  INFO("native: " << native.Describe());
  REQUIRE(native.process.status == 0);
  REQUIRE(native.Obs("returned") != "<missing>");

  SandboxResult inside = RunPython(code);
  INFO("sandboxed: " << inside.Describe());
  CHECK(inside.Obs("returned") == "<missing>");
  CHECK(inside.signal() == SIGSYS);
  CHECK(inside.process.status == 128 + SIGSYS);
  CHECK(inside.reason() == "seccomp_violation");
}

TEST_CASE("probe self-check: a policy that allows mount lets the probe see EFAULT",
          "[security][seccomp]") {
  CORRAL_REQUIRE_SANDBOX();
  // The refusal probes are only worth something if an unfiltered call answers differently:
  // with mount added to the allow-list, the bad-pointer mount reaches the kernel.
  std::ifstream in(PolicyPath("default"));
  std::string policy((std::istreambuf_iterator<char>(in)), {});
  const std::string empty_allow = "  allow: []";
  REQUIRE(policy.find(empty_allow) != std::string::npos);
  policy.replace(policy.find(empty_allow), empty_allow.size(), "  allow: [mount]");
  std::string path =
      (std::filesystem::temp_directory_path() / ("corral-security-weak-" + UniqueTag() + ".yaml"));
  std::ofstream(path) << policy;
  RunOptions options;
  options.policy = path;
  SandboxResult result =
      RunPython("obs['mount'] = sc(165, BAD, BAD, BAD, 0, BAD)\nemit()\n", options);
  std::filesystem::remove(path);
  INFO(result.Describe());
  CHECK(result.Obs("mount") == "EFAULT");
}

TEST_CASE("S36 a denied syscall with the x32 bit set kills the process", "[security][seccomp]") {
  CORRAL_REQUIRE_SANDBOX();
  SECTION("mount") {
    ExpectForeignEntryKilled("x32_call(165)");
  }
  SECTION("getpid, an allowed call") {
    ExpectForeignEntryKilled("x32_call(39)");
  }
}

TEST_CASE("S37 a denied syscall through int 0x80 kills the process", "[security][seccomp]") {
  CORRAL_REQUIRE_SANDBOX();
  SECTION("i386 mount") {
    ExpectForeignEntryKilled("i386_call(21)");
  }
  SECTION("i386 getpid, an allowed call natively") {
    ExpectForeignEntryKilled("i386_call(20)");
  }
}

TEST_CASE("S38 io_uring is refused", "[security][seccomp]") {
  CORRAL_REQUIRE_SANDBOX();
  // The case allows ENOSYS or EPERM; the filter says which, and the probe accepts either.
  std::string code = R"PY(
obs["io_uring_setup"] = isolated(lambda: sc(425, 1, BAD))
obs["io_uring_enter"] = isolated(lambda: sc(426, -1, 0, 0, 0, 0, 0))
obs["io_uring_register"] = isolated(lambda: sc(427, -1, 0, 0, 0))
emit()
)PY";
  SandboxResult native = RunNative(code);
  SandboxResult inside = RunPython(code);
  INFO("native: " << native.Describe() << "\nsandboxed: " << inside.Describe());
  CHECK(native.Obs("io_uring_setup") == "EFAULT");
  CHECK(native.Obs("io_uring_enter") == "EBADF");
  for (const char* name : {"io_uring_setup", "io_uring_enter", "io_uring_register"}) {
    INFO(name);
    CHECK((inside.Obs(name) == "EPERM" || inside.Obs(name) == "ENOSYS"));
  }
}

TEST_CASE("S39 clone3 gets ENOSYS while threads, subprocess and multiprocessing work",
          "[security][seccomp]") {
  CORRAL_REQUIRE_SANDBOX();
  ExpectRefused({SyscallProbe("clone3_bad_pointer", 435, {1, 88}, "ENOSYS"),
                 SyscallProbe("clone3_zero_size", 435, {0, 0}, "ENOSYS")});

  SandboxResult result = RunPython(R"PY(
import asyncio, multiprocessing, subprocess, threading
box = []
t = threading.Thread(target=lambda: box.append(sum(range(10))))
t.start(); t.join()
obs["thread"] = box
obs["subprocess"] = subprocess.run(["/usr/bin/true"]).returncode
obs["posix_spawn"] = os.waitpid(os.posix_spawn("/usr/bin/true", ["true"], {}), 0)[1]
for method in ("fork", "spawn", "forkserver"):
    with multiprocessing.get_context(method).Pool(2) as pool:
        obs["pool_" + method] = pool.map(abs, [-1, -2, -3])  # a builtin: -c has no module
async def child():
    proc = await asyncio.create_subprocess_exec("/usr/bin/true")
    return await proc.wait()
obs["asyncio_subprocess"] = asyncio.run(child())
emit()
)PY");
  INFO(result.Describe());
  CHECK(result.reason() == "exited");
  CHECK(result.Obs("thread") == "[45]");
  CHECK(result.Obs("subprocess") == "0");
  CHECK(result.Obs("posix_spawn") == "0");
  CHECK(result.Obs("pool_fork") == "[1,2,3]");
  CHECK(result.Obs("pool_spawn") == "[1,2,3]");
  CHECK(result.Obs("pool_forkserver") == "[1,2,3]");
  CHECK(result.Obs("asyncio_subprocess") == "0");
}

TEST_CASE("S40 bpf, perf_event_open and userfaultfd are refused", "[security][seccomp]") {
  CORRAL_REQUIRE_SANDBOX();
  ExpectRefused({
      SyscallProbe("bpf", 321, {0, 1, 8}),
      SyscallProbe("perf_event_open", 298, {1, 0, -1, -1, 0}),
      SyscallProbe("userfaultfd", 323, {0xffff}),
      Probe{"open_dev_userfaultfd", -1, "attempt(os.open, '/dev/userfaultfd', os.O_RDWR)", "ENOENT",
            false},
  });
}

TEST_CASE("S41 the keyring calls are refused and nothing persists", "[security][seccomp]") {
  CORRAL_REQUIRE_SANDBOX();
  ExpectRefused({
      SyscallProbe("add_key", 248, {1, 1, 1, 0, 0}),
      SyscallProbe("request_key", 249, {1, 1, 1, 0}),
      SyscallProbe("keyctl", 250, {9999, 0, 0, 0, 0}),
  });

  // One session stores a key, the next looks for it: both refused, in both orders of events.
  std::string tag = UniqueTag();
  const char* store = R"PY(
KEY_SPEC_USER_KEYRING = -4
obs["add_key"] = lc("syscall", ctypes.c_long(248), b"user", TAG.encode(), b"secret",
                    ctypes.c_long(6), ctypes.c_long(KEY_SPEC_USER_KEYRING))
emit()
)PY";
  const char* fetch = R"PY(
KEY_SPEC_USER_KEYRING = -4
obs["request_key"] = lc("syscall", ctypes.c_long(249), b"user", TAG.encode(), None,
                        ctypes.c_long(KEY_SPEC_USER_KEYRING))
try:
    obs["proc_keys_has_tag"] = TAG in open("/proc/keys").read()
except OSError as e:
    obs["proc_keys_has_tag"] = False
emit()
)PY";
  RunOptions options;
  options.vars["TAG"] = "corral-sec-" + tag;
  SandboxResult first = RunPython(store, options);
  SandboxResult second = RunPython(fetch, options);
  INFO(first.Describe() << "\n" << second.Describe());
  CHECK(first.Obs("add_key") == "EPERM");
  CHECK(second.Obs("request_key") == "EPERM");
  CHECK(second.Obs("proc_keys_has_tag") == "false");
}

TEST_CASE("S42 syslog, handle, fanotify and quota calls are refused", "[security][seccomp]") {
  CORRAL_REQUIRE_SANDBOX();
  ExpectRefused({
      SyscallProbe("syslog", 103, {3, 1, 10}),
      SyscallProbe("open_by_handle_at", 304, {-1, 1, 0}),
      SyscallProbe("name_to_handle_at", 303, {-1, 1, 1, 1, 0}),
      SyscallProbe("fanotify_init", 300, {0, 0}),
      SyscallProbe("quotactl", 179, {0, 1, 0, 1}),
      SyscallProbe("quotactl_fd", 443, {-1, 0, 0, 1}),
      Probe{"open_dev_kmsg", -1, "attempt(os.open, '/dev/kmsg', os.O_RDONLY)", "ENOENT", false},
  });
}

TEST_CASE("S43 an unknown syscall number gets ENOSYS, not a crash", "[security][seccomp]") {
  CORRAL_REQUIRE_SANDBOX();
  // Natively these are ENOSYS too, so no confirmation applies; the point is the answer and that
  // the process lives on to report it.
  std::vector<Probe> probes;
  for (long nr : {500L, 1000L, 4095L, 100000L, 0x3fffffffL, -1L}) {
    Probe probe = SyscallProbe("nr_" + std::to_string(nr), nr, {}, "ENOSYS");
    probe.confirm = false;
    probes.push_back(probe);
  }
  ExpectRefused(probes);
}

// Under the strict policy a refused call kills the whole process, and the outcome names it.
void ExpectStrictKill(const std::string& call, long nr, const std::string& name) {
  RunOptions options;
  options.policy = "strict";
  SandboxResult result = RunPython(call + "\nprint('survived')\n", options);
  INFO(result.Describe());
  CHECK(result.process.out.find("survived") == std::string::npos);
  CHECK(result.reason() == "seccomp_violation");
  CHECK(result.OutcomeNumber("seccomp_syscall") == nr);
  CHECK(result.OutcomeText("seccomp_syscall_name") == name);
  CHECK(result.process.status >= 128);
}

TEST_CASE("S44 under the strict policy a denied syscall kills and is reported",
          "[security][seccomp]") {
  CORRAL_REQUIRE_SANDBOX();
  SECTION("mount") {
    ExpectStrictKill("sc(165, BAD, BAD, BAD, 0, BAD)", 165, "mount");
  }
  SECTION("ptrace") {
    ExpectStrictKill("sc(101, 16, NOPID, 0, 0)", 101, "ptrace");
  }
  SECTION("unshare") {
    ExpectStrictKill("sc(272, 0x10000000)", 272, "unshare");
  }
  SECTION("bpf") {
    ExpectStrictKill("sc(321, 0, BAD, 8)", 321, "bpf");
  }
  SECTION("keyctl") {
    ExpectStrictKill("sc(250, 9999, 0, 0, 0, 0)", 250, "keyctl");
  }
  SECTION("ioctl TIOCSTI, refused by argument") {
    ExpectStrictKill("sc(16, 0, 0x5412, BAD)", 16, "ioctl");
  }
  SECTION("from a second thread, the whole process dies") {
    ExpectStrictKill(
        "import threading\nt = threading.Thread(target=lambda: sc(165, BAD, BAD, BAD, 0, BAD))\n"
        "t.start(); t.join()",
        165, "mount");
  }
}

TEST_CASE("S44 variant: a denied syscall in a forked child is reported as seccomp_violation",
          "[security][seccomp]") {
  CORRAL_REQUIRE_SANDBOX();
  // The worker forks (multiprocessing): a violation there is no less a violation, even when the
  // parent carries on and exits normally.
  RunOptions options;
  options.policy = "strict";
  SandboxResult result = RunPython(R"PY(
pid = os.fork()
if pid == 0:
    sc(101, 16, NOPID, 0, 0)
    os._exit(0)
_, status = os.waitpid(pid, 0)
obs["child_signal"] = os.WTERMSIG(status) if os.WIFSIGNALED(status) else None
emit()
)PY",
                                   options);
  INFO(result.Describe());
  if (!result.observations.empty()) CHECK(result.Obs("child_signal") == "31");
  CHECK(result.reason() == "seccomp_violation");
  CHECK(result.OutcomeNumber("seccomp_syscall") == 101);
}

}  // namespace
}  // namespace corral::testing
