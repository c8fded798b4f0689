// Hostile tenant, resources (cases S20-S31 of the security cases). Limits are set small with
// --set so each case ends in a second or two.
#include <signal.h>

#include <string>

#include <catch2/catch.hpp>

#include "tests/support/sandbox_harness.h"
#include "tests/support/skip.h"

namespace corral::testing {
namespace {

constexpr int64_t kMiB = 1 << 20;

RunOptions WithSets(std::vector<std::string> sets) {
  RunOptions options;
  options.sets = std::move(sets);
  return options;
}

// A neighbour that must still be able to fork and finish while a tenant abuses its own limits.
void ExpectNeighbourForks() {
  SandboxResult neighbour = RunPython(R"PY(
pids = []
for _ in range(8):
    pid = os.fork()
    if pid == 0:
        os._exit(7)
    pids.append(pid)
obs["codes"] = [os.WEXITSTATUS(os.waitpid(p, 0)[1]) for p in pids]
emit()
)PY");
  INFO("neighbour: " << neighbour.Describe());
  CHECK(neighbour.reason() == "exited");
  CHECK(neighbour.observations["codes"] == nlohmann::json(std::vector<int>(8, 7)));
  ProcessResult host = RunProcess({"/usr/bin/true"}, "");
  CHECK(host.status == 0);
}

TEST_CASE("S20 a fork bomb gets EAGAIN at the pids limit and neighbours still fork",
          "[security][resources]") {
  CORRAL_REQUIRE_SANDBOX();
  SECTION("the tenant sees EAGAIN and holds its children while others fork") {
    RunOptions options = WithSets({"limits.pids=16"});
    std::unique_ptr<SandboxRun> bomb = SandboxRun::Start(R"PY(
import time
children = []
while True:
    try:
        pid = os.fork()
    except OSError as e:
        obs["fork_error"] = ename(e.errno)
        break
    if pid == 0:
        time.sleep(60)
        os._exit(0)
    children.append(pid)
obs["forked"] = len(children)
print("ready", flush=True)
sys.stdin.read()
emit()
)PY",
                                                         options);
    REQUIRE(bomb->WaitForOutput("ready"));
    ExpectNeighbourForks();
    SandboxResult result = bomb->Finish();
    ExpectCleanedUp(result);
    INFO(result.Describe());
    CHECK(result.Obs("fork_error") == "EAGAIN");
    CHECK(result.observations.value("forked", 99) < 16);
  }
  SECTION("a bomb that dies of it is reported as pids_limit") {
    SandboxResult result = RunPython("while True:\n    os.fork()\n", WithSets({"limits.pids=16"}));
    INFO(result.Describe());
    CHECK(result.reason() == "pids_limit");
  }
}

TEST_CASE("S21 a thread bomb counts against the pids limit and gets EAGAIN",
          "[security][resources]") {
  CORRAL_REQUIRE_SANDBOX();
  SandboxResult result = RunPython(R"PY(
import threading, time
started = 0
try:
    while started < 1000:
        threading.Thread(target=time.sleep, args=(60,), daemon=True).start()
        started += 1
except RuntimeError as e:
    obs["python_error"] = str(e)
obs["python_threads"] = started
# pthread_create itself returns the errno: threads parked in pause(), no Python involved.
tid = ctypes.c_ulong()
pause = ctypes.cast(_libc.pause, ctypes.c_void_p)
rc = _libc.pthread_create(ctypes.byref(tid), None, pause, None)
obs["pthread_create"] = ename(rc) if rc else "OK"
obs["fork"] = attempt(os.fork)
emit()
os._exit(0)
)PY",
                                   WithSets({"limits.pids=16"}));
  INFO(result.Describe());
  CHECK(result.reason() == "exited");
  CHECK(result.observations.value("python_threads", 99) < 16);
  CHECK(result.Obs("python_error").find("can't start new thread") != std::string::npos);
  CHECK(result.Obs("pthread_create") == "EAGAIN");
  CHECK(result.Obs("fork") == "EAGAIN");
  ExpectNeighbourForks();
}

TEST_CASE("S22 allocating past the memory limit is reported as oom_killed with its peak",
          "[security][resources]") {
  CORRAL_REQUIRE_SANDBOX();
  const int64_t limit = 64 * kMiB;
  SandboxResult result = RunPython(R"PY(
try:
    huge = bytearray(10**10)
except MemoryError:
    pass
chunks = []
while True:
    chunks.append(b"x" * (1 << 20))
)PY",
                                   WithSets({"limits.memory=64Mi"}));
  INFO(result.Describe());
  CHECK(result.reason() == "oom_killed");
  CHECK(result.signal() == SIGKILL);
  int64_t peak = result.OutcomeNumber("memory_peak_bytes");
  CHECK(peak >= limit * 3 / 4);
  CHECK(peak <= limit);
}

TEST_CASE("S22 variant: anonymous mmap touched page by page is oom_killed",
          "[security][resources]") {
  CORRAL_REQUIRE_SANDBOX();
  SandboxResult result = RunPython(R"PY(
import mmap
area = mmap.mmap(-1, 1 << 30)
for offset in range(0, 1 << 30, 4096):
    area[offset] = 1
)PY",
                                   WithSets({"limits.memory=64Mi"}));
  INFO(result.Describe());
  CHECK(result.reason() == "oom_killed");
}

TEST_CASE("S23 memory split across multiprocessing children is capped as a whole",
          "[security][resources]") {
  CORRAL_REQUIRE_SANDBOX();
  SandboxResult result = RunPython(R"PY(
import multiprocessing, time
def hog():
    block = b"x" * (30 << 20)
    time.sleep(3)
if __name__ == "__main__":
    procs = [multiprocessing.Process(target=hog) for _ in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join()
    obs["exitcodes"] = [p.exitcode for p in procs]
    emit()
)PY",
                                   WithSets({"limits.memory=64Mi"}));
  INFO(result.Describe());
  CHECK(result.reason() == "oom_killed");
  CHECK(result.OutcomeNumber("memory_peak_bytes") > 0);
  CHECK(result.OutcomeNumber("memory_peak_bytes") <= 64 * kMiB);
}

TEST_CASE("S24 opening descriptors in a loop stops at EMFILE", "[security][resources]") {
  CORRAL_REQUIRE_SANDBOX();
  SandboxResult result = RunPython(R"PY(
import resource
obs["rlimit"] = list(resource.getrlimit(resource.RLIMIT_NOFILE))
fds = []
while True:
    try:
        fds.append(os.open("/dev/null", os.O_RDONLY))
    except OSError as e:
        obs["open_error"] = ename(e.errno)
        break
obs["highest"] = max(fds)
obs["socket"] = attempt(socket.socket)
obs["pipe"] = attempt(os.pipe)
obs["dup"] = attempt(os.dup, 0)
try:
    resource.setrlimit(resource.RLIMIT_NOFILE, (1 << 20, 1 << 20))
    obs["raise_limit"] = "OK"
except (ValueError, OSError) as e:
    obs["raise_limit"] = "refused"
for fd in fds:
    os.close(fd)
emit()
)PY",
                                   WithSets({"limits.open_files=64"}));
  INFO(result.Describe());
  CHECK(result.reason() == "exited");
  CHECK(result.observations["rlimit"] == nlohmann::json({64, 64}));
  CHECK(result.Obs("open_error") == "EMFILE");
  CHECK(result.observations.value("highest", 999) <= 63);
  CHECK(result.Obs("socket") == "EMFILE");
  CHECK(result.Obs("pipe") == "EMFILE");
  CHECK(result.Obs("dup") == "EMFILE");
  CHECK(result.Obs("raise_limit") == "refused");
}

// Writes 1 MiB chunks to `path` until an error; reports it and how far it got.
const char* const kGrowFile = R"PY(
written = 0
try:
    with open(PATH, "wb", buffering=0) as f:
        while written < (1 << 30):
            written += f.write(b"x" * (1 << 20))
except OSError as e:
    obs["error"] = ename(e.errno)
obs["written"] = written
emit()
)PY";

SandboxResult GrowFile(const std::string& path, std::vector<std::string> sets) {
  RunOptions options = WithSets(std::move(sets));
  options.vars = {{"PATH", path}};
  return RunPython(kGrowFile, options);
}

TEST_CASE("S25 a growing file stops at ENOSPC or EFBIG", "[security][resources]") {
  CORRAL_REQUIRE_SANDBOX();
  SECTION("tmpfs size: ENOSPC") {
    SandboxResult result =
        GrowFile("/tmp/big", {"filesystem.tmp_size=8Mi", "limits.file_size=512Mi"});
    INFO(result.Describe());
    CHECK(result.Obs("error") == "ENOSPC");
    CHECK(result.observations.value("written", int64_t{1} << 40) <= 8 * kMiB);
  }
  SECTION("file size limit: EFBIG") {
    SandboxResult result =
        GrowFile("/tmp/big", {"filesystem.tmp_size=64Mi", "limits.file_size=4Mi"});
    INFO(result.Describe());
    CHECK(result.Obs("error") == "EFBIG");
    CHECK(result.observations.value("written", int64_t{1} << 40) <= 4 * kMiB);
  }
  SECTION("/dev/shm size: ENOSPC") {
    SandboxResult result =
        GrowFile("/dev/shm/big", {"filesystem.shm_size=4Mi", "limits.file_size=512Mi"});
    INFO(result.Describe());
    CHECK(result.Obs("error") == "ENOSPC");
    CHECK(result.observations.value("written", int64_t{1} << 40) <= 4 * kMiB);
  }
  SECTION("tmpfs inodes: ENOSPC") {
    SandboxResult result = RunPython(R"PY(
count = 0
try:
    while count < 100000:
        open("/tmp/f%d" % count, "w").close()
        count += 1
except OSError as e:
    obs["error"] = ename(e.errno)
obs["count"] = count
emit()
)PY",
                                     WithSets({"filesystem.tmp_inodes=256"}));
    INFO(result.Describe());
    CHECK(result.Obs("error") == "ENOSPC");
    CHECK(result.observations.value("count", 100000) <= 256);
  }
}

TEST_CASE("S26 a busy loop ends at the CPU or wall limit, reported as such",
          "[security][resources]") {
  CORRAL_REQUIRE_SANDBOX();
  SECTION("one process, CPU limit") {
    SandboxResult result = RunPython("while True:\n    pass\n", WithSets({"limits.cpu_time=1s"}));
    INFO(result.Describe());
    CHECK(result.reason() == "cpu_timeout");
    CHECK(result.OutcomeNumber("cpu_time_ms") > 0);
  }
  SECTION("many processes, CPU limit counts them all") {
    SandboxResult result = RunPython(R"PY(
for _ in range(3):
    if os.fork() == 0:
        break
while True:
    pass
)PY",
                                     WithSets({"limits.cpu_time=1s", "limits.cpus=2"}));
    INFO(result.Describe());
    CHECK(result.reason() == "cpu_timeout");
  }
  SECTION("one process, wall limit") {
    SandboxResult result = RunPython("while True:\n    pass\n", WithSets({"limits.wall_time=1s"}));
    INFO(result.Describe());
    CHECK(result.reason() == "wall_timeout");
  }
  SECTION("a neighbour still finishes its work meanwhile") {
    std::unique_ptr<SandboxRun> spinner = SandboxRun::Start(
        "print('ready', flush=True)\nwhile True:\n    pass\n", WithSets({"limits.wall_time=20s"}));
    REQUIRE(spinner->WaitForOutput("ready"));
    SandboxResult neighbour = RunPython("obs['sum'] = sum(range(10**6))\nemit()\n");
    INFO(neighbour.Describe());
    CHECK(neighbour.reason() == "exited");
    CHECK(neighbour.Obs("sum") == "499999500000");
    SandboxResult spun = spinner->Finish();
    ExpectCleanedUp(spun);
    CHECK(spun.reason() == "wall_timeout");
  }
}

TEST_CASE("S27 sleeping or blocking on stdin forever ends as wall_timeout",
          "[security][resources]") {
  CORRAL_REQUIRE_SANDBOX();
  SECTION("sleep") {
    SandboxResult result =
        RunPython("import time\ntime.sleep(10**6)\n", WithSets({"limits.wall_time=1s"}));
    INFO(result.Describe());
    CHECK(result.reason() == "wall_timeout");
  }
  SECTION("blocking read on stdin") {
    RunOptions options = WithSets({"limits.wall_time=1s"});
    options.keep_stdin_open = true;
    SandboxResult result = RunPython("sys.stdin.read()\n", options);
    INFO(result.Describe());
    CHECK(result.reason() == "wall_timeout");
  }
  SECTION("stopped with SIGSTOP") {
    SandboxResult result = RunPython("import signal\nos.kill(os.getpid(), signal.SIGSTOP)\n",
                                     WithSets({"limits.wall_time=1s"}));
    INFO(result.Describe());
    CHECK(result.reason() == "wall_timeout");
  }
}

TEST_CASE("S28 ignoring SIGTERM does not outlast the timeout", "[security][resources]") {
  CORRAL_REQUIRE_SANDBOX();
  SandboxResult result = RunPython(R"PY(
import signal
for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
    signal.signal(sig, signal.SIG_IGN)
for _ in range(3):
    if os.fork() == 0:
        break
while True:
    pass
)PY",
                                   WithSets({"limits.wall_time=1s", "limits.cpus=2"}));
  INFO(result.Describe());
  CHECK(result.reason() == "wall_timeout");
  CHECK(result.signal() == SIGKILL);
  CHECK(result.process.status == 128 + SIGKILL);
}

TEST_CASE("S29 double-forked setsid survivors are killed when the sandbox ends",
          "[security][resources]") {
  CORRAL_REQUIRE_SANDBOX();
  // Survivors of three kinds: asleep, stopped, and one that keeps forking to dodge a kill.
  SandboxResult result = RunPython(R"PY(
import signal, time
def daemonize(body):
    if os.fork() == 0:
        os.setsid()
        if os.fork() == 0:
            signal.signal(signal.SIGHUP, signal.SIG_IGN)
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
            for fd in (0, 1, 2):
                os.close(fd)
            body()
            os._exit(0)
        os._exit(0)
def sleeper():
    time.sleep(10**6)
def stopper():
    os.kill(os.getpid(), signal.SIGSTOP)
    time.sleep(10**6)
def hopper():
    while True:
        if os.fork() != 0:
            os._exit(0)
        time.sleep(0.01)
for body in (sleeper, stopper, hopper):
    daemonize(body)
time.sleep(0.2)
print("returning")
)PY");
  INFO(result.Describe());
  CHECK(result.reason() == "exited");
  CHECK(result.process.status == 0);
  CHECK(result.process.out.find("returning") != std::string::npos);
  // RunPython has checked that no process of the sandbox's host uid and no cgroup remain.
}

TEST_CASE("S30 flooding stdout and stderr keeps at most the output limit",
          "[security][resources]") {
  CORRAL_REQUIRE_SANDBOX();
  const size_t limit = 64 * 1024;
  const auto limit_signed = static_cast<int64_t>(limit);
  auto kept = [](const SandboxResult& r) { return r.process.out.size() + r.process.err.size(); };
  SECTION("both streams at once, finite: truncated, not killed") {
    SandboxResult result = RunPython(R"PY(
import threading
def flood(fd):
    line = (b"%d" % fd) * 1023 + b"\n"
    for _ in range(4096):
        os.write(fd, line)
threads = [threading.Thread(target=flood, args=(fd,)) for fd in (1, 2)]
for t in threads:
    t.start()
for t in threads:
    t.join()
)PY",
                                     WithSets({"limits.output=64Ki", "limits.wall_time=60s"}));
    INFO(result.Describe().substr(0, 2000));
    CHECK(result.reason() == "exited");
    CHECK(result.OutcomeFlag("output_truncated"));
    CHECK(kept(result) <= limit);
    CHECK(result.OutcomeNumber("output_bytes") >= limit_signed);
  }
  SECTION("forever, with kill_on_output_limit: output_limit") {
    SandboxResult result = RunPython(
        "if os.fork() == 0:\n    while True:\n        os.write(2, b'e' * 4096)\n"
        "while True:\n    os.write(1, b'o' * 4096)\n",
        WithSets({"limits.output=64Ki", "limits.kill_on_output_limit=true"}));
    INFO(result.Describe().substr(0, 2000));
    CHECK(result.reason() == "output_limit");
    CHECK(result.OutcomeFlag("output_truncated"));
    CHECK(kept(result) <= limit);
  }
  SECTION("forever, under the strict policy: output_limit") {
    RunOptions options;
    options.policy = "strict";
    SandboxResult result = RunPython("while True:\n    os.write(1, b'o' * 4096)\n", options);
    INFO(result.Describe().substr(0, 2000));
    CHECK(result.reason() == "output_limit");
    CHECK(result.OutcomeFlag("output_truncated"));
  }
  SECTION("one 1 GiB write with no newline") {
    // Private zero pages mapped read-only cost no memory: the write is 1 GiB, the RSS is not.
    const char* code = R"PY(
import mmap
area = mmap.mmap(-1, 1 << 30, flags=mmap.MAP_PRIVATE, prot=mmap.PROT_READ)
view = memoryview(area)
done = 0
while done < len(view):
    done += os.write(1, view[done:])
)PY";
    SandboxResult killed =
        RunPython(code, WithSets({"limits.output=64Ki", "limits.kill_on_output_limit=true"}));
    INFO(killed.Describe().substr(0, 2000));
    CHECK(killed.reason() == "output_limit");
    CHECK(kept(killed) <= limit);
    SandboxResult kept_going =
        RunPython(code, WithSets({"limits.output=64Ki", "limits.wall_time=60s"}));
    INFO(kept_going.Describe().substr(0, 2000));
    CHECK(kept_going.reason() == "exited");
    CHECK(kept_going.OutcomeFlag("output_truncated"));
    CHECK(kept(kept_going) <= limit);
  }
}

TEST_CASE("S31 a 10 MB result is cut at the output limit and marked truncated",
          "[security][resources]") {
  CORRAL_REQUIRE_SANDBOX();
  SandboxResult result = RunPython("result = 'answer'\nsys.stdout.write(result + ' ' * 10**7)\n",
                                   WithSets({"limits.output=1Mi"}));
  INFO(result.Describe().substr(0, 2000));
  CHECK(result.reason() == "exited");
  CHECK(result.OutcomeFlag("output_truncated"));
  CHECK(result.process.out.size() <= static_cast<size_t>(kMiB));
  CHECK(result.process.out.rfind("answer", 0) == 0);
}

}  // namespace
}  // namespace corral::testing
