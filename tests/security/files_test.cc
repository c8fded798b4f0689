// Hostile tenant, files (cases S01-S09 of the security cases).
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <set>

#include <catch2/catch.hpp>

#include "tests/support/sandbox_harness.h"
#include "tests/support/skip.h"

namespace corral::testing {
namespace {

bool OneOf(const std::string& value, std::initializer_list<const char*> allowed) {
  for (const char* candidate : allowed) {
    if (value == candidate) return true;
  }
  return false;
}

// What identifies a host file's state: a tenant that wrote, chmod-ed or replaced it changes one.
std::string HostFileState(const std::string& path) {
  struct stat st {};
  if (::lstat(path.c_str(), &st) != 0) return "absent";
  return std::to_string(st.st_ino) + ":" + std::to_string(st.st_mode) + ":" +
         std::to_string(st.st_uid) + ":" + std::to_string(st.st_size) + ":" +
         std::to_string(st.st_mtim.tv_sec) + "." + std::to_string(st.st_mtim.tv_nsec) + ":" +
         std::to_string(st.st_ctim.tv_sec) + "." + std::to_string(st.st_ctim.tv_nsec);
}

TEST_CASE("S01 host secrets, daemon config and state are not there", "[security][files]") {
  CORRAL_REQUIRE_SANDBOX();
  RunOptions options;
  options.vars = {{"SOURCE_DIR", CORRAL_SOURCE_DIR}, {"BUILD_DIR", CORRAL_BUILD_DIR}};
  SandboxResult result = RunPython(R"PY(
files = ["/etc/shadow", "/etc/gshadow", "/etc/sudoers", "/root/.bash_history",
         "/etc/ssh/ssh_host_ed25519_key", "/proc/1/root/etc/shadow", "/proc/self/root/etc/shadow",
         SOURCE_DIR + "/CMakeLists.txt", SOURCE_DIR + "/manager/corral.yaml",
         BUILD_DIR + "/CMakeCache.txt"]
dirs = ["/root", "/home", "/var/lib/corral", "/run/corral", "/run/corral/ids",
        "/run/corral/root", "/etc/corral", "/work",
        SOURCE_DIR, BUILD_DIR, "/var/log"]
for path in files:
    obs["read:" + path] = attempt(lambda: open(path, "rb").read(1))
for path in dirs:
    obs["list:" + path] = attempt(os.listdir, path)
emit()
)PY",
                                   options);
  INFO(result.Describe());
  REQUIRE_FALSE(result.observations.empty());
  for (const auto& [key, value] : result.observations.items()) {
    INFO(key << " -> " << value);
    // Not there, or refused; never read. /var/log is allowed to exist only if unreadable.
    CHECK(OneOf(value.get<std::string>(), {"ENOENT", "EACCES", "EPERM"}));
  }
}

TEST_CASE("S02 the root, system directories and site-packages are not writable",
          "[security][files]") {
  CORRAL_REQUIRE_SANDBOX();
  std::string name = "corral-sec-probe-" + UniqueTag();
  RunOptions options;
  options.vars = {{"NAME", name}};
  SandboxResult result = RunPython(R"PY(
import site, sysconfig
targets = ["/", "/etc", "/usr", "/usr/bin", "/lib", "/usr/lib", "/bin", "/usr/local/lib"]
paths = sysconfig.get_paths()
extra = [paths["purelib"], paths["platlib"], paths["stdlib"], "/usr/lib/python3/dist-packages"]
extra += site.getsitepackages()
for d in extra:
    if os.path.isdir(d):
        targets.append(d)
obs["site_dirs_present"] = sum(1 for d in extra if os.path.isdir(d))
for d in sorted(set(targets)):
    obs["create:" + d] = attempt(lambda: open(os.path.join(d, NAME), "x").close())
    obs["mkdir:" + d] = attempt(os.mkdir, os.path.join(d, NAME + ".d"))
    obs["symlink:" + d] = attempt(os.symlink, "/tmp", os.path.join(d, NAME + ".l"))
emit()
)PY",
                                   options);
  INFO(result.Describe());
  REQUIRE_FALSE(result.observations.empty());
  CHECK(result.observations.value("site_dirs_present", 0) > 0);
  for (const auto& [key, value] : result.observations.items()) {
    if (key == "site_dirs_present") continue;
    INFO(key << " -> " << value);
    CHECK(OneOf(value.get<std::string>(), {"EROFS", "EACCES"}));
  }
  for (const char* dir : {"/", "/etc", "/usr", "/usr/bin", "/lib", "/usr/lib"}) {
    CHECK_FALSE(std::filesystem::exists(std::filesystem::path(dir) / name));
  }
}

TEST_CASE("S03 listing directories shows only the sandbox's own view", "[security][files]") {
  CORRAL_REQUIRE_SANDBOX();
  // Files another session (here: the host) left in shared places must not show through.
  std::string marker = "corral-sec-marker-" + UniqueTag();
  std::vector<std::string> planted = {"/tmp/" + marker, "/var/tmp/" + marker, "/dev/shm/" + marker};
  for (const std::string& path : planted) std::ofstream(path) << "other session";
  RunOptions options;
  options.vars = {{"MARKER", marker}};
  SandboxResult result = RunPython(R"PY(
obs["root"] = sorted(os.listdir("/"))
obs["dotdot_is_root"] = os.stat("/..").st_ino == os.stat("/").st_ino
os.chdir("/tmp")
for _ in range(40):
    os.chdir("..")
obs["climbed_to_root"] = sorted(os.listdir(".")) == obs["root"]
obs["tmp"] = sorted(os.listdir("/tmp"))
found = []
for top in ("/tmp", "/var", "/dev", "/run", "/"):
    for dirpath, dirnames, filenames in os.walk(top):
        if dirpath.startswith("/proc") or dirpath.startswith("/sys"):
            dirnames[:] = []
            continue
        for n in dirnames + filenames:
            if MARKER in n or n.startswith("corral-security-"):
                found.append(os.path.join(dirpath, n))
obs["found"] = sorted(set(found))
pids = sorted(int(p) for p in os.listdir("/proc") if p.isdigit())
obs["pids"] = pids
obs["self_visible"] = os.getpid() in pids
cmdlines = []
for p in pids:
    try:
        cmdlines.append(open("/proc/%d/cmdline" % p, "rb").read().decode(errors="replace"))
    except OSError:
        pass
obs["foreign"] = [c for c in cmdlines if "python3" not in c]
emit()
)PY",
                                   options);
  for (const std::string& path : planted) std::filesystem::remove(path);
  INFO(result.Describe());
  REQUIRE_FALSE(result.observations.empty());
  CHECK(result.observations["dotdot_is_root"] == true);
  CHECK(result.observations["climbed_to_root"] == true);
  CHECK(result.observations["tmp"].empty());
  CHECK(result.observations["found"].empty());
  CHECK(result.observations["self_visible"] == true);
  // The tenant and at most a sandbox init: never the launcher or another session.
  CHECK(result.observations["pids"].size() <= 2);
  CHECK(result.observations["foreign"].size() <= 1);
  std::set<std::string> forbidden = {"work", "root", "home", "boot", "mnt", "media", "srv"};
  for (const auto& entry : result.observations["root"]) {
    INFO("/ holds " << entry);
    CHECK(forbidden.count(entry.get<std::string>()) == 0);
  }
}

TEST_CASE("S04 symlinks to host files planted for the launcher are never followed",
          "[security][files]") {
  CORRAL_REQUIRE_SANDBOX();
  std::string passwd_before = HostFileState("/etc/passwd");
  SandboxResult result = RunPython(R"PY(
names = ["outcome.json", "result.json", "stdout", "stderr", "output", "captured.txt"]
made = 0
for d in ("/tmp", os.getcwd(), "/dev/shm"):
    for n in names:
        for target in ("/etc/passwd", "/proc/1/environ", "/proc/self/environ"):
            try:
                os.symlink(target, os.path.join(d, n + "." + os.path.basename(target)))
                made += 1
            except OSError:
                pass
        try:
            os.symlink("/etc/passwd", os.path.join(d, n))
            made += 1
        except OSError:
            pass
obs["made"] = made
os.dup2(os.open("/dev/null", os.O_WRONLY), 2)
emit()
)PY");
  INFO(result.Describe());
  CHECK(result.reason() == "exited");
  CHECK(result.observations.value("made", 0) > 0);
  // The outcome came back as what the launcher wrote, not as a host file.
  CHECK(result.outcome.contains("sandbox"));
  CHECK(result.process.out.find("root:x:0:0") == std::string::npos);
  CHECK(result.process.err.find("root:x:0:0") == std::string::npos);
  CHECK(HostFileState("/etc/passwd") == passwd_before);
}

TEST_CASE("S05 swapping files for links to host paths makes the launcher touch nothing outside",
          "[security][files]") {
  CORRAL_REQUIRE_SANDBOX();
  std::vector<std::string> watched = {"/etc/passwd", "/etc/shadow", "/usr/bin/python3",
                                      "/etc/hosts", "/tmp"};
  std::vector<std::string> before;
  for (const std::string& path : watched) before.push_back(HostFileState(path));
  // A child keeps swapping links while the main process exits, so the race runs during the
  // launcher's teardown.
  SandboxResult result = RunPython(R"PY(
import time
obs["hardlink_python"] = attempt(os.link, "/usr/bin/python3", "/tmp/py")
obs["hardlink_passwd"] = attempt(os.link, "/etc/passwd", "/tmp/pw")
if os.fork() == 0:
    os.setsid()
    i = 0
    while True:
        for d in ("/tmp", "/dev/shm"):
            for n in ("a", "b", "outcome.json", "cgroup.procs", "."):
                p = os.path.join(d, "swap-" + n)
                try:
                    os.symlink("/etc/shadow" if i % 2 else "/etc/passwd", p + ".new")
                    os.replace(p + ".new", p)
                except OSError:
                    pass
        i += 1
time.sleep(0.5)
emit()
)PY");
  INFO(result.Describe());
  CHECK(result.reason() == "exited");
  CHECK(OneOf(result.Obs("hardlink_python"), {"EXDEV", "EPERM", "EROFS"}));
  CHECK(OneOf(result.Obs("hardlink_passwd"), {"EXDEV", "EPERM", "EROFS"}));
  for (size_t i = 0; i < watched.size() - 1; ++i) {
    INFO(watched[i]);
    CHECK(HostFileState(watched[i]) == before[i]);
  }
}

TEST_CASE("S06 the interpreter and bound binaries cannot be overwritten", "[security][files]") {
  CORRAL_REQUIRE_SANDBOX();
  std::string python = std::filesystem::canonical("/usr/bin/python3");
  std::string libc = std::filesystem::canonical("/lib/x86_64-linux-gnu/libc.so.6");
  std::vector<std::string> before = {HostFileState(python), HostFileState(libc)};
  // Non-destructive probes only: opening for write without truncating, chmod to the same
  // mode, utime to the same times. If one succeeds the test fails without harming the host.
  SandboxResult result = RunPython(R"PY(
import stat
targets = ["/proc/self/exe", sys.executable, os.path.realpath(sys.executable), "/usr/bin/env",
           os.path.realpath("/lib/x86_64-linux-gnu/libc.so.6")]
for t in targets:
    obs["open_rw:" + t] = attempt(lambda: os.close(os.open(t, os.O_RDWR)))
    obs["open_append:" + t] = attempt(lambda: os.close(os.open(t, os.O_WRONLY | os.O_APPEND)))
    st = os.stat(t)
    obs["chmod:" + t] = attempt(os.chmod, t, stat.S_IMODE(st.st_mode))
    obs["utime:" + t] = attempt(lambda: os.utime(t, ns=(st.st_atime_ns, st.st_mtime_ns)))
obs["rename_python"] = attempt(os.rename, os.path.realpath(sys.executable), "/usr/bin/x")
obs["unlink_env"] = attempt(os.unlink, "/usr/bin/env")
emit()
)PY");
  INFO(result.Describe());
  REQUIRE_FALSE(result.observations.empty());
  for (const auto& [key, value] : result.observations.items()) {
    INFO(key << " -> " << value);
    CHECK(OneOf(value.get<std::string>(), {"EROFS", "ETXTBSY", "EACCES", "EPERM"}));
  }
  CHECK(HostFileState(python) == before[0]);
  CHECK(HostFileState(libc) == before[1]);
}

TEST_CASE("S07 cgroupfs is not mounted and not mountable", "[security][files]") {
  CORRAL_REQUIRE_SANDBOX();
  SandboxResult result = RunPython(R"PY(
obs["sys_fs_cgroup_exists"] = os.path.exists("/sys/fs/cgroup")
obs["mkdir_cgroup"] = attempt(os.mkdir, "/sys/fs/cgroup/corral-escape")
obs["mkdir_memory"] = attempt(os.mkdir, "/sys/fs/cgroup/memory/corral-escape")
obs["release_agent"] = attempt(lambda: open("/sys/fs/cgroup/memory/release_agent", "w"))
mounts = open("/proc/self/mountinfo").read()
obs["cgroup_mounted"] = any(" - cgroup" in line for line in mounts.splitlines())
os.makedirs("/tmp/cg", exist_ok=True)
obs["mount_v1_memory"] = isolated(lambda: lc("mount", b"cgroup", b"/tmp/cg", b"cgroup",
                                             ctypes.c_ulong(0), b"memory"))
obs["mount_v1_rdma"] = isolated(lambda: lc("mount", b"cgroup", b"/tmp/cg", b"cgroup",
                                           ctypes.c_ulong(0), b"rdma"))
obs["mount_v2"] = isolated(lambda: lc("mount", b"cgroup2", b"/tmp/cg", b"cgroup2",
                                      ctypes.c_ulong(0), None))
obs["fsopen_cgroup"] = isolated(lambda: lc("syscall", ctypes.c_long(430), b"cgroup",
                                           ctypes.c_long(0)))
obs["proc_self_cgroup"] = open("/proc/self/cgroup").read().splitlines()
emit()
)PY");
  INFO(result.Describe());
  REQUIRE_FALSE(result.observations.empty());
  CHECK(result.observations["sys_fs_cgroup_exists"] == false);
  CHECK(result.observations["cgroup_mounted"] == false);
  for (const char* key : {"mkdir_cgroup", "mkdir_memory", "release_agent"}) {
    INFO(key);
    CHECK(OneOf(result.Obs(key), {"ENOENT", "EROFS", "EACCES"}));
  }
  for (const char* key : {"mount_v1_memory", "mount_v1_rdma", "mount_v2", "fsopen_cgroup"}) {
    INFO(key);
    CHECK(result.Obs(key) == "EPERM");
  }
  // The cgroup namespace hides where on the host the sandbox's cgroups live.
  for (const auto& line : result.observations["proc_self_cgroup"]) {
    std::string text = line.get<std::string>();
    INFO(text);
    CHECK(text.substr(text.rfind(':') + 1) == "/");
  }
}

TEST_CASE("S07 variant: kernel knobs under /proc are not writable", "[security][files]") {
  CORRAL_REQUIRE_SANDBOX();
  // The same kind as S07: a writable kernel interface (core_pattern runs a helper as host root,
  // like release_agent) must be refused.
  SandboxResult result = RunPython(R"PY(
for path in ("/proc/sys/kernel/core_pattern", "/proc/sysrq-trigger",
             "/proc/sys/kernel/modprobe", "/proc/sys/vm/drop_caches",
             "/proc/sys/kernel/hostname", "/proc/sys/fs/binfmt_misc/register"):
    obs[path] = attempt(lambda: open(path, "wb", buffering=0).write(b"x"))
obs["oom_score_adj_lower"] = attempt(
    lambda: open("/proc/self/oom_score_adj", "wb", buffering=0).write(b"-1000"))
emit()
)PY");
  INFO(result.Describe());
  REQUIRE_FALSE(result.observations.empty());
  for (const auto& [key, value] : result.observations.items()) {
    INFO(key << " -> " << value);
    CHECK(OneOf(value.get<std::string>(), {"EROFS", "EACCES", "EPERM", "ENOENT"}));
  }
}

TEST_CASE("S08 only null, zero, full, random and urandom exist in /dev", "[security][files]") {
  CORRAL_REQUIRE_SANDBOX();
  SandboxResult result = RunPython(R"PY(
import stat
devices = []
for dirpath, dirnames, filenames in os.walk("/dev"):
    for n in dirnames + filenames:
        p = os.path.join(dirpath, n)
        m = os.lstat(p).st_mode
        if stat.S_ISCHR(m) or stat.S_ISBLK(m):
            devices.append(os.path.relpath(p, "/dev"))
obs["devices"] = sorted(devices)
for p in ["/dev/mem", "/dev/kmem", "/dev/port", "/dev/kmsg", "/dev/sda", "/dev/vda",
          "/dev/net/tun", "/dev/tty", "/dev/console", "/dev/ptmx", "/dev/fuse", "/dev/kvm",
          "/dev/loop-control", "/dev/loop0", "/dev/vsock", "/dev/zram0", "/dev/cpu/0/msr",
          "/dev/hwrng", "/dev/btrfs-control", "/dev/vcs"]:
    obs["open:" + p] = attempt(lambda: os.close(os.open(p, os.O_RDONLY)))
obs["mknod_char_mem"] = attempt(os.mknod, "/tmp/mem", stat.S_IFCHR | 0o600, os.makedev(1, 1))
obs["mknod_block_vda"] = attempt(os.mknod, "/tmp/vda", stat.S_IFBLK | 0o600, os.makedev(254, 0))
obs["mknod_in_dev"] = attempt(os.mknod, "/dev/mem", stat.S_IFCHR | 0o600, os.makedev(1, 1))
obs["mknod_null_copy"] = attempt(os.mknod, "/tmp/null", stat.S_IFCHR | 0o666, os.makedev(1, 3))
with open("/dev/zero", "rb") as f:
    obs["zero_reads_zero"] = f.read(8) == bytes(8)
obs["full_write"] = attempt(lambda: open("/dev/full", "wb", buffering=0).write(b"x"))
obs["null_write"] = attempt(lambda: open("/dev/null", "wb", buffering=0).write(b"x"))
obs["urandom"] = len(open("/dev/urandom", "rb").read(16))
emit()
)PY");
  INFO(result.Describe());
  REQUIRE_FALSE(result.observations.empty());
  CHECK(result.observations["devices"] ==
        nlohmann::json({"full", "null", "random", "urandom", "zero"}));
  for (const auto& [key, value] : result.observations.items()) {
    if (key.rfind("open:", 0) != 0) continue;
    INFO(key << " -> " << value);
    CHECK(OneOf(value.get<std::string>(), {"ENOENT", "EACCES", "EPERM"}));
  }
  for (const char* key : {"mknod_char_mem", "mknod_block_vda", "mknod_null_copy"}) {
    INFO(key);
    CHECK(result.Obs(key) == "EPERM");
  }
  CHECK(OneOf(result.Obs("mknod_in_dev"), {"EPERM", "EROFS", "EEXIST", "EACCES"}));
  CHECK(result.observations["zero_reads_zero"] == true);
  CHECK(result.Obs("full_write") == "ENOSPC");
  CHECK(result.Obs("null_write") == "OK");
  CHECK(result.observations["urandom"] == 16);
}

TEST_CASE("S09 /tmp, /dev/shm and IPC are private to each sandbox", "[security][files]") {
  CORRAL_REQUIRE_SANDBOX();
  std::string tag = UniqueTag();
  RunOptions writer_options;
  writer_options.vars = {{"TAG", tag}};
  // A plants files, a SysV segment and an abstract socket, then waits for B to look.
  std::unique_ptr<SandboxRun> writer = SandboxRun::Start(R"PY(
open("/tmp/corral-sec-A-" + TAG, "w").write("A's secret")
open("/dev/shm/corral-sec-A-" + TAG, "w").write("A's secret")
obs["shmget"] = lc("shmget", ctypes.c_int(0x5ec0a11), ctypes.c_size_t(4096),
                   ctypes.c_int(0o1000 | 0o600))
listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
listener.bind("\0corral-sec-A-" + TAG)
listener.listen(1)
print("ready", flush=True)
sys.stdin.read()
emit()
)PY",
                                                         writer_options);
  REQUIRE(writer->WaitForOutput("ready"));

  RunOptions reader_options;
  reader_options.vars = {{"TAG", tag}};
  SandboxResult reader = RunPython(R"PY(
obs["tmp"] = sorted(os.listdir("/tmp"))
obs["shm"] = sorted(os.listdir("/dev/shm"))
obs["shmget"] = lc("shmget", ctypes.c_int(0x5ec0a11), ctypes.c_size_t(0), ctypes.c_int(0))
obs["sysvipc"] = open("/proc/sysvipc/shm").read().count("\n") - 1
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
obs["abstract_connect"] = attempt(s.connect, "\0corral-sec-A-" + TAG)
open("/tmp/mine", "w").write("B")
obs["own_write"] = open("/tmp/mine").read()
emit()
)PY",
                                   reader_options);
  SandboxResult written = writer->Finish();
  ExpectCleanedUp(written);
  INFO("writer: " << written.Describe() << "\nreader: " << reader.Describe());
  CHECK(written.Obs("shmget") == "OK");
  CHECK(reader.observations["tmp"] == nlohmann::json::array());
  CHECK(reader.observations["shm"] == nlohmann::json::array());
  CHECK(reader.Obs("shmget") == "ENOENT");
  CHECK(reader.observations["sysvipc"] == 0);
  CHECK(reader.Obs("abstract_connect") == "ECONNREFUSED");
  CHECK(reader.Obs("own_write") == "B");
  // Nothing of A reached the host either.
  CHECK_FALSE(std::filesystem::exists("/tmp/corral-sec-A-" + tag));
  CHECK_FALSE(std::filesystem::exists("/dev/shm/corral-sec-A-" + tag));
  std::ifstream host_ipc("/proc/sysvipc/shm");
  std::string host_segments((std::istreambuf_iterator<char>(host_ipc)), {});
  CHECK(host_segments.find(std::to_string(0x5ec0a11)) == std::string::npos);
}

}  // namespace
}  // namespace corral::testing
