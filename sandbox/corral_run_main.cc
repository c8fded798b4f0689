// corral-run: runs one command under a policy and reports how it ended.
//
//   corral-run --policy FILE [--set path=value ...] [--outcome FILE] [--name NAME]
//              [--cgroup-parent NAME] [--bind SRC[:DST] ...] -- CMD ARGS...
//   corral-run --check [--policy FILE]
//
// stdin is passed through; stdout and stderr go through the launcher, bounded by
// limits.output. The outcome record (JSON) goes to --outcome, or is the last line of stderr.
// Exit status: the command's (128 + signal when a signal ended it), 125 when the sandbox could
// not start, 2 for a bad command line, policy, --name or --bind, 128 + signal when corral-run
// itself got SIGINT or SIGTERM (the sandbox is killed first, reason killed_by_request).
#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <thread>

#include <CLI/CLI.hpp>
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "sandbox/launcher.h"
#include "sandbox/log.h"
#include "sandbox/policy.h"

namespace corral {
namespace {

constexpr const char* kVersion = "corral-run 0.1.0";
constexpr int kUsageError = 2;
constexpr int kLaunchError = 125;

struct Options {
  std::string policy_file;
  std::vector<std::string> overrides;
  std::string outcome_file;
  std::string name;
  std::string cgroup_parent = "corral-run";
  std::vector<std::string> binds;
  bool check = false;
  std::vector<std::string> command;
};

void WriteAll(int fd, std::string_view data) {
  while (!data.empty()) {
    ssize_t n = write(fd, data.data(), data.size());
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return;
    data.remove_prefix(static_cast<size_t>(n));
  }
}

Result<BindMount> ParseBind(const std::string& text) {
  BindMount bind;
  size_t colon = text.find(':');
  bind.source = text.substr(0, colon);
  if (colon != std::string::npos) bind.target = text.substr(colon + 1);
  if (bind.source.empty() || bind.source[0] != '/' ||
      (colon != std::string::npos && (bind.target.empty() || bind.target[0] != '/'))) {
    return Status::InvalidArgument(fmt::format("--bind `{}`: want SRC[:DST], absolute paths",
                                               text));
  }
  return bind;
}

void PrintCheck(const HostSupport& host, const Policy& policy, bool have_policy) {
  auto yes = [](bool b) { return b ? "yes" : "no"; };
  fmt::print("kernel: {}\n", host.kernel);
  fmt::print("cgroup layout: {}\n", CgroupLayoutName(host.cgroup_layout));
  fmt::print("cgroup controllers: {}\n", fmt::join(host.cgroup_controllers, " "));
  fmt::print("user namespaces: {}\n", yes(host.user_namespaces));
  fmt::print("seccomp: {}\n", yes(host.seccomp));
  fmt::print("seccomp user notifications: {}\n", yes(host.seccomp_user_notif));
  fmt::print("host id range: {}-{}\n", policy.user.host_id_base,
             policy.user.host_id_base + policy.user.host_id_count - 1);
  std::vector<std::string> missing = host.MissingFor(policy);
  std::string subject = have_policy ? fmt::format("policy `{}`", policy.name) : "default policy";
  if (missing.empty()) {
    fmt::print("{}: runnable\n", subject);
  } else {
    fmt::print("{}: NOT runnable, missing: {}\n", subject, fmt::join(missing, ", "));
  }
}

int RunCheck(const Options& options) {
  Policy policy;
  bool have_policy = !options.policy_file.empty();
  if (have_policy) {
    Result<Policy> loaded = LoadPolicyFile(options.policy_file, options.overrides);
    if (!loaded.ok()) {
      fmt::print(stderr, "corral-run: {}\n", loaded.status().ToString());
      return kUsageError;
    }
    policy = *loaded;
  }
  CgroupManagerOptions cgroup_options;
  cgroup_options.parent_name = options.cgroup_parent;
  Result<std::unique_ptr<CgroupManager>> cgroups = CgroupManager::Open(cgroup_options);
  if (!cgroups.ok()) fmt::print("cgroups: unusable: {}\n", cgroups.status().ToString());
  HostSupport host = ProbeHost(cgroups.ok() ? cgroups->get() : nullptr);
  PrintCheck(host, policy, have_policy);
  bool runnable = cgroups.ok() && host.MissingFor(policy).empty();
  return runnable ? 0 : 1;
}

// The last byte the command wrote to stderr: the record must start a line of its own.
std::atomic<char> g_last_stderr_byte{'\n'};

void WriteOutcome(const Options& options, nlohmann::json record) {
  std::string line = record.dump();
  if (options.outcome_file.empty()) {
    WriteAll(STDERR_FILENO, (g_last_stderr_byte == '\n' ? "" : "\n") + line + "\n");
    return;
  }
  std::ofstream out(options.outcome_file, std::ios::trunc);
  out << line << "\n";
  if (!out) fmt::print(stderr, "corral-run: write `{}` failed\n", options.outcome_file);
}

nlohmann::json LaunchFailedRecord(const Options& options, const Status& status) {
  Outcome outcome;
  outcome.reason = OutcomeReason::kLaunchFailed;
  outcome.message = status.ToString();
  nlohmann::json record = OutcomeToJson(outcome);
  record["sandbox"] = {{"name", options.name}};
  return record;
}

// SIGINT and SIGTERM are blocked in every thread (the launcher's included; the sandbox resets
// its own mask) and taken here, so the sandbox is killed and reaped before corral-run exits.
std::atomic<int> g_signal{0};

void WatchSignals(Sandbox* sandbox, sigset_t set) {
  std::thread([sandbox, set] {
    int sig = 0;
    if (sigwait(&set, &sig) == 0) {
      g_signal = sig;
      sandbox->Kill(OutcomeReason::kKilledByRequest);
    }
  }).detach();
}

int Run(const Options& options) {
  Result<Policy> policy = LoadPolicyFile(options.policy_file, options.overrides);
  if (!policy.ok()) {
    fmt::print(stderr, "corral-run: {}\n", policy.status().ToString());
    return kUsageError;
  }
  LaunchRequest request;
  request.name = options.name;
  request.argv = options.command;
  for (const auto& text : options.binds) {
    Result<BindMount> bind = ParseBind(text);
    if (!bind.ok()) {
      fmt::print(stderr, "corral-run: {}\n", bind.status().ToString());
      return kUsageError;
    }
    request.extra_binds.push_back(*bind);
  }
  // A closed stdin stays closed: the sandbox gets /dev/null there.
  if (fcntl(STDIN_FILENO, F_GETFD) >= 0) request.fds.push_back({STDIN_FILENO, 0});
  request.output_sink = [](int stream, std::string_view data) {
    if (stream == 2 && !data.empty()) g_last_stderr_byte = data.back();
    WriteAll(stream == 2 ? STDERR_FILENO : STDOUT_FILENO, data);
  };

  // A closed stdout must not kill corral-run (and with it the sandbox's cleanup): EPIPE is
  // handled where the output is written. The sandbox resets every disposition itself.
  signal(SIGPIPE, SIG_IGN);
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);

  LauncherOptions launcher_options;
  launcher_options.cgroups.parent_name = options.cgroup_parent;
  Result<std::unique_ptr<Launcher>> launcher = Launcher::Create(launcher_options);
  Result<std::unique_ptr<Sandbox>> sandbox =
      launcher.ok() ? (*launcher)->Launch(*policy, std::move(request))
                    : Result<std::unique_ptr<Sandbox>>(launcher.status());
  if (!sandbox.ok()) {
    fmt::print(stderr, "corral-run: {}\n", sandbox.status().ToString());
    WriteOutcome(options, LaunchFailedRecord(options, sandbox.status()));
    // A bad --name or --bind is the command line's fault; anything else, the sandbox's.
    bool usage = sandbox.status().category() == ErrorCategory::kInvalidArgument;
    return usage ? kUsageError : kLaunchError;
  }
  WatchSignals(sandbox->get(), set);
  Outcome outcome = (*sandbox)->Wait();

  nlohmann::json record = OutcomeToJson(outcome);
  record["sandbox"] = {{"name", (*sandbox)->name()},
                       {"host_uid", (*sandbox)->host_uid()},
                       {"cgroup", (*sandbox)->cgroup_paths()},
                       {"pid", (*sandbox)->pid()}};
  WriteOutcome(options, record);
  if (g_signal != 0) return 128 + g_signal;
  return outcome.ShellStatus();
}

void DefineFlags(CLI::App& app, Options& options) {
  app.add_option("--policy", options.policy_file, "policy file (YAML)");
  app.add_option("--set", options.overrides, "override a policy field: path.in.policy=value")
      ->type_name("PATH=VALUE")
      ->allow_extra_args(false);  // one value per flag, so `--` still starts the command
  app.add_option("--outcome", options.outcome_file,
                 "write the outcome record (JSON) here instead of stderr's last line");
  app.add_option("--name", options.name, "sandbox name (default run-<pid>)");
  app.add_option("--cgroup-parent", options.cgroup_parent,
                 "cgroup parent this run owns (default corral-run)");
  app.add_option("--bind", options.binds, "extra read-only bind: SRC[:DST]")
      ->type_name("SRC[:DST]")
      ->allow_extra_args(false);
  app.add_flag("--check", options.check, "report what this host supports (and the policy needs)");
  app.set_version_flag("--version", kVersion);
  app.add_option("command", options.command, "command and arguments, after --");
}

int Main(int argc, char** argv) {
  LogConfigure(LogLevel::kWarn, LogFormat::kAuto);
  CLI::App app{"Run one command in a corral sandbox under a policy."};
  Options options;
  DefineFlags(app, options);
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForVersion& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    fmt::print(stderr, "corral-run: {}\nRun with --help for usage.\n", e.what());
    return kUsageError;
  }
  if (options.check) return RunCheck(options);
  if (options.policy_file.empty() || options.command.empty()) {
    fmt::print(stderr, "corral-run: {} is required\nRun with --help for usage.\n",
               options.policy_file.empty() ? "--policy" : "a command after --");
    return kUsageError;
  }
  if (options.name.empty()) options.name = fmt::format("run-{}", getpid());
  return Run(options);
}

}  // namespace
}  // namespace corral

int main(int argc, char** argv) { return corral::Main(argc, argv); }
