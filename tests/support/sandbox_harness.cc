#include "tests/support/sandbox_harness.h"

#include <dirent.h>
#include <fcntl.h>
#include <grp.h>
#include <poll.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include <fmt/format.h>
#include <catch2/catch.hpp>

extern char** environ;

namespace corral::testing {

const char* const kTenantPrelude = R"PY(
import ctypes, errno, json, os, socket, sys
_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long
obs = {}
BAD = 1            # an address no process maps: a call that reaches the kernel gets EFAULT
NOPID = 0x3fffffff  # a pid that cannot exist: a call that reaches the kernel gets ESRCH

def ename(code):
    return errno.errorcode.get(code, str(code))

def sc(nr, *args):
    ctypes.set_errno(0)
    r = _libc.syscall(ctypes.c_long(nr), *[ctypes.c_long(a) for a in args])
    return "OK" if r >= 0 else ename(ctypes.get_errno())

def lc(name, *args):
    ctypes.set_errno(0)
    r = getattr(_libc, name)(*args)
    return "OK" if r >= 0 else ename(ctypes.get_errno())

def attempt(fn, *args):
    try:
        fn(*args)
        return "OK"
    except OSError as e:
        return ename(e.errno)

def isolated(fn):
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.write(w, str(fn()).encode())
        finally:
            os._exit(0)
    os.close(w)
    data = b""
    while True:
        chunk = os.read(r, 4096)
        if not chunk:
            break
        data += chunk
    os.close(r)
    _, status = os.waitpid(pid, 0)
    if os.WIFSIGNALED(status):
        return "SIG%d" % os.WTERMSIG(status)
    return data.decode()

def sock(family, kind, proto=0):
    try:
        socket.socket(family, kind, proto).close()
        return "OK"
    except OSError as e:
        return ename(e.errno)

def emit():
    sys.stdout.flush()
    sys.stdout.write("\n" + json.dumps(obs) + "\n")
    sys.stdout.flush()
)PY";

namespace {

using Clock = std::chrono::steady_clock;

struct IgnoreSigpipe {
  // A child that exits before reading its stdin must not kill the test process.
  IgnoreSigpipe() { ::signal(SIGPIPE, SIG_IGN); }
} ignore_sigpipe;

int ShellStatus(int wait_status) {
  if (WIFEXITED(wait_status)) return WEXITSTATUS(wait_status);
  if (WIFSIGNALED(wait_status)) return 128 + WTERMSIG(wait_status);
  return -1;
}

void SetNonBlocking(int fd) {
  ::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) | O_NONBLOCK);
}

void CloseFd(int* fd) {
  if (*fd >= 0) ::close(*fd);
  *fd = -1;
}

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream buffer;
  buffer << in.rdbuf();
  return buffer.str();
}

nlohmann::json ParseLastLine(const std::string& out) {
  size_t end = out.find_last_not_of("\n");
  if (end == std::string::npos) return nlohmann::json::object();
  size_t start = out.rfind('\n', end);
  start = start == std::string::npos ? 0 : start + 1;
  nlohmann::json parsed = nlohmann::json::parse(out.substr(start, end - start + 1), nullptr,
                                                /*allow_exceptions=*/false);
  if (parsed.is_discarded() || !parsed.is_object()) return nlohmann::json::object();
  return parsed;
}

std::string PythonGlobals(const std::map<std::string, std::string>& vars) {
  // A JSON string literal is a valid Python string literal.
  std::string text;
  for (const auto& [name, value] : vars) text += name + " = " + nlohmann::json(value).dump() + "\n";
  return text;
}

std::string TenantProgram(const std::string& code, const std::map<std::string, std::string>& vars) {
  return std::string(kTenantPrelude) + PythonGlobals(vars) + code;
}

std::vector<std::string> PythonArgv(const std::string& program) {
  return {"/usr/bin/python3", "-I", "-c", program};
}

std::string MakeTempDir() {
  std::string pattern = (std::filesystem::temp_directory_path() / "corral-security-XXXXXX");
  if (::mkdtemp(pattern.data()) == nullptr) return "";
  return pattern;
}

// The launcher's parent cgroup name and our leaf, from a sandbox cgroup path.
std::pair<std::string, std::string> ParentAndLeaf(const std::string& cgroup_path) {
  std::filesystem::path path(cgroup_path);
  return {path.parent_path().filename().string(), path.filename().string()};
}

// True when `pid` sits in a cgroup `<parent>/<leaf>` with a leaf other than `ours`: a live
// neighbour sandbox that was given the same host uid after ours ended.
bool InNeighbourSandbox(pid_t pid, const std::string& parent, const std::string& ours) {
  std::istringstream lines(ReadFile(fmt::format("/proc/{}/cgroup", pid)));
  std::string needle = "/" + parent + "/";
  for (std::string line; std::getline(lines, line);) {
    size_t at = line.find(needle);
    if (at == std::string::npos) continue;
    std::string rest = line.substr(at + needle.size());
    std::string leaf = rest.substr(0, rest.find('/'));
    if (!leaf.empty() && leaf != ours) return true;
  }
  return false;
}

}  // namespace

// --- ChildProcess -------------------------------------------------------------------------

std::unique_ptr<ChildProcess> ChildProcess::Spawn(const std::vector<std::string>& argv,
                                                  const SpawnOptions& options, std::string* error) {
  // Everything the child needs is built before fork: the test process has threads, so only
  // async-signal-safe calls may run between fork and exec.
  std::vector<char*> args;
  for (const std::string& arg : argv) args.push_back(const_cast<char*>(arg.c_str()));
  args.push_back(nullptr);
  std::vector<std::string> env_strings;
  for (char** entry = environ; *entry != nullptr; ++entry) env_strings.emplace_back(*entry);
  for (const auto& [key, value] : options.extra_env) env_strings.push_back(key + "=" + value);
  std::vector<char*> env;
  for (std::string& entry : env_strings) env.push_back(entry.data());
  env.push_back(nullptr);

  int in[2], out[2], err[2];
  if (::pipe2(in, O_CLOEXEC) != 0 || ::pipe2(out, O_CLOEXEC) != 0 || ::pipe2(err, O_CLOEXEC) != 0) {
    *error = fmt::format("pipe2: {}", std::strerror(errno));
    return nullptr;
  }
  pid_t pid = ::fork();
  if (pid < 0) {
    *error = fmt::format("fork: {}", std::strerror(errno));
    for (int fd : {in[0], in[1], out[0], out[1], err[0], err[1]}) ::close(fd);
    return nullptr;
  }
  if (pid == 0) {
    ::setpgid(0, 0);
    ::signal(SIGPIPE, SIG_DFL);
    sigset_t none;
    sigemptyset(&none);
    ::sigprocmask(SIG_SETMASK, &none, nullptr);
    ::dup2(in[0], 0);
    ::dup2(out[1], 1);
    ::dup2(err[1], 2);
    if (options.as_nobody) {
      if (::chdir("/") != 0 || ::setgroups(0, nullptr) != 0 || ::setgid(65534) != 0 ||
          ::setuid(65534) != 0) {
        ::_exit(126);
      }
    }
    ::execve(args[0], args.data(), env.data());
    ::_exit(127);
  }
  ::setpgid(pid, pid);  // also here, so the group exists before any kill
  ::close(in[0]);
  ::close(out[1]);
  ::close(err[1]);

  std::unique_ptr<ChildProcess> child(new ChildProcess());
  child->pid_ = pid;
  child->stdin_fd_ = in[1];
  child->stdout_fd_ = out[0];
  child->stderr_fd_ = err[0];
  child->deadline_ = Clock::now() + options.timeout;
  SetNonBlocking(child->stdin_fd_);
  SetNonBlocking(child->stdout_fd_);
  SetNonBlocking(child->stderr_fd_);
  return child;
}

ChildProcess::~ChildProcess() {
  if (!reaped_) {
    KillGroup();
    Reap(/*block=*/true);
  }
  CloseFd(&stdin_fd_);
  CloseFd(&stdout_fd_);
  CloseFd(&stderr_fd_);
}

void ChildProcess::KillGroup() {
  if (pid_ > 0 && !reaped_) ::kill(-pid_, SIGKILL);
}

bool ChildProcess::Reap(bool block) {
  if (reaped_) return true;
  pid_t got = ::waitpid(pid_, &wait_status_, block ? 0 : WNOHANG);
  if (got == pid_) reaped_ = true;
  return reaped_;
}

void ChildProcess::ReadAvailable(int fd, std::string* into, bool* eof) {
  char buffer[65536];
  while (true) {
    ssize_t n = ::read(fd, buffer, sizeof buffer);
    if (n > 0) {
      into->append(buffer, n);
      continue;
    }
    if (n == 0) *eof = true;
    if (n < 0 && errno == EINTR) continue;
    return;
  }
}

void ChildProcess::CloseStdin() {
  CloseFd(&stdin_fd_);
}

bool ChildProcess::WaitForOutput(std::string_view marker) {
  bool eof = false;
  while (out_.find(marker) == std::string::npos) {
    if (eof || Clock::now() >= deadline_) return false;
    pollfd fds[2] = {{stdout_fd_, POLLIN, 0}, {stderr_fd_, POLLIN, 0}};
    ::poll(fds, 2, 100);
    ReadAvailable(stdout_fd_, &out_, &eof);
    bool err_eof = false;
    ReadAvailable(stderr_fd_, &err_, &err_eof);
  }
  return true;
}

ProcessResult ChildProcess::Finish(const std::string& data, bool keep_stdin_open) {
  size_t written = 0;
  bool out_eof = false, err_eof = false;
  if (data.empty() && !keep_stdin_open) CloseStdin();
  // Collect until both pipes close, or until the child has exited: a descendant that escaped
  // and still holds a pipe must make the leak check fail, not hang the test.
  while (!(out_eof && err_eof)) {
    if (Clock::now() >= deadline_) {
      timed_out_ = true;
      KillGroup();
      break;
    }
    pollfd fds[3] = {{stdout_fd_, POLLIN, 0}, {stderr_fd_, POLLIN, 0}, {stdin_fd_, POLLOUT, 0}};
    int count = stdin_fd_ >= 0 && written < data.size() ? 3 : 2;
    ::poll(fds, count, 100);
    if (count == 3 && (fds[2].revents & (POLLOUT | POLLERR | POLLHUP))) {
      ssize_t n = ::write(stdin_fd_, data.data() + written, data.size() - written);
      if (n > 0) written += n;
      if (n < 0 && errno != EAGAIN && errno != EINTR) written = data.size();
      if (written == data.size() && !keep_stdin_open) CloseStdin();
    }
    ReadAvailable(stdout_fd_, &out_, &out_eof);
    ReadAvailable(stderr_fd_, &err_, &err_eof);
    if (Reap(/*block=*/false)) {
      ReadAvailable(stdout_fd_, &out_, &out_eof);
      ReadAvailable(stderr_fd_, &err_, &err_eof);
      break;
    }
  }
  CloseStdin();
  if (!Reap(/*block=*/false)) {
    // Pipes closed but the child lingers: give it until the deadline, then kill it.
    while (!Reap(/*block=*/false)) {
      if (Clock::now() >= deadline_) {
        timed_out_ = true;
        KillGroup();
        Reap(/*block=*/true);
        break;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
  }
  return ProcessResult{ShellStatus(wait_status_), timed_out_, out_, err_};
}

ProcessResult RunProcess(const std::vector<std::string>& argv, const std::string& stdin_data,
                         const SpawnOptions& options) {
  std::string error;
  std::unique_ptr<ChildProcess> child = ChildProcess::Spawn(argv, options, &error);
  if (!child) return ProcessResult{-1, false, "", error};
  return child->Finish(stdin_data);
}

// --- SandboxResult ------------------------------------------------------------------------

std::string SandboxResult::reason() const {
  if (!outcome.is_object() || !outcome.contains("reason")) return "<no outcome>";
  return outcome["reason"].get<std::string>();
}

int SandboxResult::signal() const {
  if (!outcome.is_object() || !outcome.contains("signal") || !outcome["signal"].is_number()) {
    return -1;
  }
  return outcome["signal"].get<int>();
}

int64_t SandboxResult::OutcomeNumber(const std::string& key) const {
  if (!outcome.contains(key) || !outcome[key].is_number()) return -1;
  return outcome[key].get<int64_t>();
}

std::string SandboxResult::OutcomeText(const std::string& key) const {
  if (!outcome.contains(key) || !outcome[key].is_string()) return "";
  return outcome[key].get<std::string>();
}

bool SandboxResult::OutcomeFlag(const std::string& key) const {
  return outcome.contains(key) && outcome[key].is_boolean() && outcome[key].get<bool>();
}

std::string SandboxResult::Obs(const std::string& key) const {
  if (!observations.is_object() || !observations.contains(key)) return "<missing>";
  const nlohmann::json& value = observations[key];
  return value.is_string() ? value.get<std::string>() : value.dump();
}

std::string SandboxResult::Describe() const {
  auto tail = [](const std::string& text) {
    return text.size() > 3000 ? "..." + text.substr(text.size() - 3000) : text;
  };
  return fmt::format(
      "status {}{}\noutcome: {}\nobservations: {}\nleaks: {}\nlaunch error: {}\n"
      "stdout: {}\nstderr: {}",
      process.status, process.timed_out ? " (hard timeout)" : "", outcome.dump(),
      observations.dump(), leaks, launch_error, tail(process.out), tail(process.err));
}

// --- sandbox runs -------------------------------------------------------------------------

std::string CorralRunPath() {
  if (const char* path = std::getenv("CORRAL_RUN"); path != nullptr && *path != '\0') {
    return path;
  }
  std::string own = std::string(CORRAL_BUILD_DIR) + "/corral-run";
  if (::access(own.c_str(), X_OK) == 0) return own;
  return std::string(CORRAL_SOURCE_DIR) + "/build/corral-run";
}

bool CorralRunAvailable() {
  return ::access(CorralRunPath().c_str(), X_OK) == 0;
}

std::string PolicyPath(const std::string& name) {
  if (name.find('/') != std::string::npos) return name;
  return std::string(CORRAL_SOURCE_DIR) + "/policies/" + name + ".yaml";
}

std::string UniqueTag() {
  static std::atomic<int> counter{0};
  return fmt::format("{}-{}-{}", ::getpid(), counter++,
                     Clock::now().time_since_epoch().count() % 1000000);
}

std::unique_ptr<SandboxRun> SandboxRun::Start(const std::string& code, const RunOptions& options) {
  std::unique_ptr<SandboxRun> run(new SandboxRun());
  run->options_ = options;
  run->dir_ = MakeTempDir();
  if (run->dir_.empty()) {
    run->launch_error_ = fmt::format("mkdtemp: {}", std::strerror(errno));
    return run;
  }
  std::vector<std::string> argv = {CorralRunPath(), "--policy", PolicyPath(options.policy)};
  for (const std::string& set : options.sets) {
    argv.push_back("--set");
    argv.push_back(set);
  }
  argv.insert(argv.end(), {"--outcome", run->dir_ + "/outcome.json", "--"});
  for (std::string& arg : PythonArgv(TenantProgram(code, options.vars))) argv.push_back(arg);

  SpawnOptions spawn;
  spawn.timeout = options.timeout;
  spawn.extra_env = options.extra_env;
  run->child_ = ChildProcess::Spawn(argv, spawn, &run->launch_error_);
  return run;
}

SandboxRun::~SandboxRun() {
  child_.reset();
  if (!dir_.empty()) {
    std::error_code ignored;
    std::filesystem::remove_all(dir_, ignored);
  }
}

bool SandboxRun::WaitForOutput(std::string_view marker) {
  return child_ && child_->WaitForOutput(marker);
}

SandboxResult SandboxRun::Finish() {
  SandboxResult result;
  result.launch_error = launch_error_;
  if (!child_) return result;
  result.process = child_->Finish(options_.stdin_data, options_.keep_stdin_open);
  std::string outcome_text = ReadFile(dir_ + "/outcome.json");
  result.outcome = nlohmann::json::parse(outcome_text, nullptr, /*allow_exceptions=*/false);
  if (result.outcome.is_discarded() || !result.outcome.is_object()) {
    result.outcome = nlohmann::json::object();
  }
  result.observations = ParseLastLine(result.process.out);
  result.leaks = FindLeaks(result.outcome);
  return result;
}

SandboxResult RunSandboxed(const std::string& code, const RunOptions& options) {
  return SandboxRun::Start(code, options)->Finish();
}

SandboxResult RunPython(const std::string& code, const RunOptions& options) {
  SandboxResult result = RunSandboxed(code, options);
  ExpectCleanedUp(result);
  return result;
}

SandboxResult RunNative(const std::string& code, const std::map<std::string, std::string>& vars) {
  SpawnOptions spawn;
  spawn.as_nobody = true;
  SandboxResult result;
  result.process = RunProcess(PythonArgv(TenantProgram(code, vars)), "", spawn);
  result.observations = ParseLastLine(result.process.out);
  return result;
}

// --- cleanup ------------------------------------------------------------------------------

std::vector<pid_t> ProcessesOfUid(uint32_t uid) {
  std::vector<pid_t> found;
  DIR* proc = ::opendir("/proc");
  if (proc == nullptr) return found;
  while (dirent* entry = ::readdir(proc)) {
    char* end = nullptr;
    long pid = std::strtol(entry->d_name, &end, 10);
    if (*end != '\0' || pid <= 0) continue;
    std::istringstream lines(ReadFile(fmt::format("/proc/{}/status", pid)));
    for (std::string line; std::getline(lines, line);) {
      if (line.rfind("Uid:", 0) != 0) continue;
      std::istringstream ids(line.substr(4));
      for (uint64_t id; ids >> id;) {
        if (id == uid) {
          found.push_back(static_cast<pid_t>(pid));
          break;
        }
      }
      break;
    }
  }
  ::closedir(proc);
  return found;
}

std::string FindLeaks(const nlohmann::json& outcome) {
  if (!outcome.is_object() || !outcome.contains("sandbox")) return "no outcome to check against";
  const nlohmann::json& sandbox = outcome["sandbox"];
  std::string leaks;
  std::string parent, ours;
  if (sandbox.contains("cgroup") && sandbox["cgroup"].is_array()) {
    for (const nlohmann::json& path : sandbox["cgroup"]) {
      std::string text = path.get<std::string>();
      if (std::filesystem::exists(text)) leaks += fmt::format("cgroup `{}` still exists; ", text);
      std::tie(parent, ours) = ParentAndLeaf(text);
    }
  }
  if (!sandbox.contains("host_uid") || !sandbox["host_uid"].is_number()) {
    return leaks + "outcome names no host_uid";
  }
  uint32_t uid = sandbox["host_uid"].get<uint32_t>();
  for (pid_t pid : ProcessesOfUid(uid)) {
    if (!parent.empty() && InNeighbourSandbox(pid, parent, ours)) continue;
    std::string comm = ReadFile(fmt::format("/proc/{}/comm", pid));
    if (!comm.empty() && comm.back() == '\n') comm.pop_back();
    leaks += fmt::format("pid {} ({}) still runs as host uid {}; ", pid, comm, uid);
  }
  return leaks;
}

void ExpectCleanedUp(const SandboxResult& result) {
  INFO(result.Describe());
  CHECK(result.launch_error.empty());
  CHECK_FALSE(result.process.timed_out);
  CHECK_FALSE(result.outcome.empty());
  CHECK(result.leaks.empty());
}

// --- refusal probes -----------------------------------------------------------------------

Probe SyscallProbe(std::string name, long nr, std::vector<long> args, std::string expected) {
  std::string expr = fmt::format("sc({}", nr);
  for (long arg : args) expr += fmt::format(", {}", arg);
  expr += ")";
  return Probe{std::move(name), nr, std::move(expr), std::move(expected)};
}

namespace {

std::string ProbeProgram(const std::vector<Probe>& probes) {
  std::string code;
  for (const Probe& probe : probes) {
    code += fmt::format("obs[{}] = isolated(lambda: {})\n", nlohmann::json(probe.name).dump(),
                        probe.expr);
  }
  return code + "emit()\n";
}

// Under the strict policy a filtered syscall kills the process and the outcome names it; a call
// the filter lets through would instead return to Python and print "survived".
std::vector<SandboxResult> RunUnderStrict(const std::vector<Probe>& probes,
                                          const RunOptions& options) {
  std::vector<SandboxResult> results(probes.size());
  std::vector<std::thread> threads;
  for (size_t i = 0; i < probes.size(); ++i) {
    threads.emplace_back([&, i] {
      RunOptions strict = options;
      strict.policy = "strict";
      results[i] =
          RunSandboxed(fmt::format("r = {}\nprint('survived', r)\n", probes[i].expr), strict);
    });
  }
  for (std::thread& thread : threads) thread.join();
  return results;
}

}  // namespace

void ExpectRefused(const std::vector<Probe>& probes, const RunOptions& options) {
  SandboxResult native = RunNative(ProbeProgram(probes), options.vars);
  SandboxResult inside = RunPython(ProbeProgram(probes), options);
  INFO("native run: " << native.Describe());
  INFO("sandboxed run: " << inside.Describe());
  REQUIRE_FALSE(native.observations.empty());
  REQUIRE_FALSE(inside.observations.empty());

  std::vector<Probe> ambiguous;
  for (const Probe& probe : probes) {
    INFO("probe " << probe.name << " = " << probe.expr << ": native " << native.Obs(probe.name)
                  << ", sandboxed " << inside.Obs(probe.name));
    CHECK(inside.Obs(probe.name) == probe.expected);
    if (probe.confirm && native.Obs(probe.name) == probe.expected) ambiguous.push_back(probe);
  }
  if (ambiguous.empty()) return;

  // The kernel itself refuses these to an unprivileged process with the same errno, so the
  // errno cannot show the filter at work: the strict policy must kill for them instead.
  std::vector<SandboxResult> strict = RunUnderStrict(ambiguous, options);
  for (size_t i = 0; i < ambiguous.size(); ++i) {
    INFO("strict confirmation of " << ambiguous[i].name << ": " << strict[i].Describe());
    ExpectCleanedUp(strict[i]);
    CHECK(strict[i].reason() == "seccomp_violation");
    CHECK(strict[i].OutcomeNumber("seccomp_syscall") == ambiguous[i].nr);
  }
}

}  // namespace corral::testing
