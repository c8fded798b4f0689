// Test harness for the hostile-tenant security suite: runs tenant Python under `corral-run` (or
// natively, unsandboxed, to confirm what the kernel itself answers) and checks that a finished
// sandbox left nothing behind.
//
// Tenant code is passed with `python3 -I -c`, never through a host file: the sandbox cannot see
// the host's temp files, and the probe must need nothing of the host. Every tenant program gets
// kTenantPrelude (helpers `sc`, `lc`, `attempt`, `isolated`, `emit`, the dict `obs`) and reports
// what it observed as one JSON object on the last line of its stdout.
//
// Thread safety: RunSandboxed, RunNative and SandboxRun may be used from any thread; they never
// call Catch2 macros. RunPython and ExpectCleanedUp assert, so call them on the test's thread.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

namespace corral::testing {

// Python helpers every tenant program starts with.
extern const char* const kTenantPrelude;

struct ProcessResult {
  int status = -1;         // shell style: exit code, or 128 + signal
  bool timed_out = false;  // the hard timeout ran out and the process group was killed
  std::string out;
  std::string err;
};

struct SpawnOptions {
  bool as_nobody = false;  // setuid/setgid 65534 with no groups (and so no capabilities)
  std::map<std::string, std::string> extra_env;  // added to this process's environment
  std::chrono::seconds timeout{120};             // hard limit: then the whole group is killed
};

// A child in its own process group with piped stdin, stdout and stderr. Destruction kills the
// group and reaps the child if it is still running.
class ChildProcess {
 public:
  // Returns nullptr (and fills *error) when fork or exec fails.
  static std::unique_ptr<ChildProcess> Spawn(const std::vector<std::string>& argv,
                                             const SpawnOptions& options, std::string* error);
  ~ChildProcess();
  pid_t pid() const { return pid_; }

  // Reads stdout until it holds `marker`; false at EOF or the hard timeout.
  bool WaitForOutput(std::string_view marker);
  // Writes `data` to stdin, closes it unless `keep_stdin_open`, and collects everything until
  // the child exits (or the hard timeout kills it).
  ProcessResult Finish(const std::string& data = "", bool keep_stdin_open = false);
  void CloseStdin();

 private:
  ChildProcess() = default;
  void KillGroup();
  bool Reap(bool block);
  void ReadAvailable(int fd, std::string* into, bool* eof);

  pid_t pid_ = -1;
  int stdin_fd_ = -1;
  int stdout_fd_ = -1;
  int stderr_fd_ = -1;
  int wait_status_ = 0;
  bool reaped_ = false;
  bool timed_out_ = false;
  std::chrono::steady_clock::time_point deadline_;
  std::string out_;
  std::string err_;
};

ProcessResult RunProcess(const std::vector<std::string>& argv, const std::string& stdin_data,
                         const SpawnOptions& options = {});

struct RunOptions {
  std::string policy = "default";  // a name under policies/ or a path
  std::vector<std::string> sets;   // "limits.memory=64Mi", passed as --set
  std::string stdin_data;
  bool keep_stdin_open = false;                  // tenant blocks on stdin until the sandbox ends
  std::map<std::string, std::string> vars;       // Python globals defined before the tenant code
  std::map<std::string, std::string> extra_env;  // given to corral-run itself (canaries)
  std::chrono::seconds timeout{120};
};

struct SandboxResult {
  ProcessResult process;
  // Both are JSON objects, empty when absent: the --outcome file, and the last line of stdout
  // parsed as the tenant's observations.
  nlohmann::json outcome = nlohmann::json::object();
  nlohmann::json observations = nlohmann::json::object();
  std::string leaks;         // what the sandbox left behind; empty when clean
  std::string launch_error;  // corral-run could not be started

  std::string reason() const;
  int signal() const;
  // Outcome field `key` as a number, or -1 when absent or not a number.
  int64_t OutcomeNumber(const std::string& key) const;
  // Outcome field `key` as a string, or "" when absent or not a string.
  std::string OutcomeText(const std::string& key) const;
  // Outcome field `key` is the boolean true.
  bool OutcomeFlag(const std::string& key) const;
  // Observation `key` as a string ("EPERM", "OK", ...), or "<missing>".
  std::string Obs(const std::string& key) const;
  // Everything an assertion message needs to explain a failure.
  std::string Describe() const;
};

// A sandbox started and not yet finished, for cases that coordinate two sandboxes.
class SandboxRun {
 public:
  static std::unique_ptr<SandboxRun> Start(const std::string& code, const RunOptions& options);
  ~SandboxRun();
  bool WaitForOutput(std::string_view marker);
  SandboxResult Finish();

 private:
  SandboxRun() = default;
  RunOptions options_;
  std::string dir_;
  std::string launch_error_;
  std::unique_ptr<ChildProcess> child_;
};

// Runs tenant code in a sandbox; never asserts (safe on any thread).
SandboxResult RunSandboxed(const std::string& code, const RunOptions& options = {});
// Runs tenant code in a sandbox and asserts on this thread that it launched and left nothing.
SandboxResult RunPython(const std::string& code, const RunOptions& options = {});
// Runs the same prelude + code natively, unsandboxed, as uid/gid 65534 without capabilities:
// what the kernel answers a process as unprivileged as the tenant when no filter is in the way.
SandboxResult RunNative(const std::string& code,
                        const std::map<std::string, std::string>& vars = {});

// Asserts (Catch2 CHECK) that the run launched, wrote an outcome and left nothing behind.
void ExpectCleanedUp(const SandboxResult& result);

// What a finished sandbox left: its cgroup directories, processes running as its host uid.
// Processes of that uid inside another live sandbox's cgroup (the uid was reused) are not
// counted. Empty when clean.
std::string FindLeaks(const nlohmann::json& outcome);
std::vector<pid_t> ProcessesOfUid(uint32_t uid);

std::string CorralRunPath();
bool CorralRunAvailable();
std::string PolicyPath(const std::string& name);
std::string UniqueTag();  // unique across concurrently running test processes

// A syscall (or any Python expression) the sandbox must refuse. Each probe runs in a forked
// child so a probe that succeeds (a new user namespace) cannot change the ones after it.
struct Probe {
  std::string name;
  long nr = -1;      // the syscall number, for the strict policy's kill report
  std::string expr;  // Python expression returning "OK" or an errno name
  std::string expected = "EPERM";
  // Require proof that the refusal is the filter's: the unsandboxed, unprivileged run must
  // answer differently, or else the strict policy must kill the process for this syscall.
  bool confirm = true;
};

// Probe for `syscall(nr, args...)`.
Probe SyscallProbe(std::string name, long nr, std::vector<long> args,
                   std::string expected = "EPERM");
// Runs the probes natively and in the sandbox and asserts each as described on Probe.
void ExpectRefused(const std::vector<Probe>& probes, const RunOptions& options = {});

}  // namespace corral::testing

// The security suite needs the real sandbox; say so instead of failing obscurely.
#define CORRAL_REQUIRE_SANDBOX() \
  CORRAL_SKIP_IF(!::corral::testing::CorralRunAvailable(), "corral-run is not built")
