// corrald: the session sandbox manager daemon.
//
//   corrald --config FILE [--listen HOST:PORT] [--set path.in.config=value ...]
//
// Start-up is a checklist: config, logging, state directory, the instance lock, backend (which
// removes what a crashed previous run left under its cgroup parent), HTTP bind, port and pid
// files, serve.
// SIGTERM or SIGINT: stop accepting, end every session (in-flight calls answer 503
// `shutting_down`), remove the port and pid files, exit 0.
#include <fcntl.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <thread>

#include "manager/api.h"
#include "manager/config.h"
#include "manager/http_server.h"
#include "manager/instance_lock.h"
#include "manager/lm_gateway.h"
#include "manager/pool_backend.h"
#include "manager/process_backend.h"
#include "manager/sandbox_worker.h"
#include "manager/session_registry.h"
#include "manager/version.h"
#include "sandbox/log.h"
#include "sandbox/unique_fd.h"

namespace corral {
namespace {

namespace fs = std::filesystem;

const Logger kLog("corrald");

// Written by the signal handler, read by the shutdown thread: a self-pipe, because the only
// things a handler may do are async-signal-safe, and a blocked signal mask would be inherited
// by every sandboxed worker.
int g_signal_pipe[2] = {-1, -1};

extern "C" void OnSignal(int signo) {
  int saved = errno;
  unsigned char byte = static_cast<unsigned char>(signo);
  ssize_t ignored = write(g_signal_pipe[1], &byte, 1);
  (void)ignored;
  errno = saved;
}

Status InstallSignalHandlers() {
  if (pipe2(g_signal_pipe, O_CLOEXEC | O_NONBLOCK) != 0) return ErrnoStatus("pipe2");
  struct sigaction action {};
  action.sa_handler = OnSignal;
  sigemptyset(&action.sa_mask);
  action.sa_flags = SA_RESTART;
  if (sigaction(SIGTERM, &action, nullptr) != 0) return ErrnoStatus("sigaction SIGTERM");
  if (sigaction(SIGINT, &action, nullptr) != 0) return ErrnoStatus("sigaction SIGINT");
  signal(SIGPIPE, SIG_IGN);  // a client that hangs up must not kill the daemon
  return Status::Ok();
}

int WaitForSignal() {
  int flags = fcntl(g_signal_pipe[0], F_GETFL);
  fcntl(g_signal_pipe[0], F_SETFL, flags & ~O_NONBLOCK);
  unsigned char byte = 0;
  while (read(g_signal_pipe[0], &byte, 1) < 0 && errno == EINTR) {
  }
  return byte;
}

// Written whole or not at all (rename), so a reader never sees half a port number.
Status WriteFileAtomic(const std::string& path, const std::string& text) {
  std::string tmp = path + ".tmp";
  {
    std::ofstream file(tmp, std::ios::trunc);
    if (!file) return ErrnoStatus("write `{}`", tmp);
    file << text << "\n";
    if (!file.flush()) return ErrnoStatus("write `{}`", tmp);
  }
  if (rename(tmp.c_str(), path.c_str()) != 0) return ErrnoStatus("rename `{}`", path);
  return Status::Ok();
}

Status PrepareStateDir(const std::string& dir) {
  std::error_code error;
  fs::create_directories(dir, error);
  if (error) return Status::FromErrno(error.value(), fmt::format("create state_dir `{}`", dir));
  if (chmod(dir.c_str(), 0700) != 0) return ErrnoStatus("chmod state_dir `{}`", dir);
  return Status::Ok();
}

// Every HTTP connection holds a descriptor while it is served or timed out (S53), and the
// distro default soft limit (1024) is below `http.max_connections` plus the sessions' channels.
// The soft limit is raised to the hard one; sandboxes get their own from their policy.
Status RaiseOpenFileLimit() {
  struct rlimit limit {};
  if (getrlimit(RLIMIT_NOFILE, &limit) != 0) return ErrnoStatus("getrlimit RLIMIT_NOFILE");
  if (limit.rlim_cur == limit.rlim_max) return Status::Ok();
  limit.rlim_cur = limit.rlim_max;
  if (setrlimit(RLIMIT_NOFILE, &limit) != 0) return ErrnoStatus("setrlimit RLIMIT_NOFILE");
  return Status::Ok();
}

struct Options {
  std::string config_path;
  std::string listen;
  std::vector<std::string> overrides;
};

int Run(const Options& options) {
  std::vector<std::string> overrides = options.overrides;
  if (!options.listen.empty()) overrides.push_back("listen=" + options.listen);
  Result<DaemonConfig> config = LoadConfigFile(options.config_path, overrides);
  if (!config.ok()) {
    kLog.Error(kNoSession, "config: {}", config.status().ToString());
    return 2;
  }
  LogConfigure(config->log_level, config->log_format);
  kLog.Info(kNoSession, "corrald {} starting with `{}`", kVersion, options.config_path);

  auto fail = [](const Status& status) {
    kLog.Error(kNoSession, "start: {}", status.ToString());
    return 1;
  };
  Status step = InstallSignalHandlers();
  if (!step.ok()) return fail(step);
  step = RaiseOpenFileLimit();
  if (!step.ok()) return fail(step);
  step = PrepareStateDir(config->state_dir);
  if (!step.ok()) return fail(step);
  // Before anything is cleaned up: a second daemon must never take the first one's sessions.
  Result<InstanceLock> instance = InstanceLock::Acquire(*config);
  if (!instance.ok()) return fail(instance.status());
  Result<ListenAddress> listen = ParseListenAddress(config->listen);
  if (!listen.ok()) return fail(listen.status());

  // A previous daemon killed with -9 left its port file: a client must never read that one.
  std::string port_file = config->state_dir + "/corrald.port";
  std::string pid_file = config->state_dir + "/corrald.pid";
  unlink(port_file.c_str());

  // Declared before the backends, so it outlives every worker whose model requests it answers.
  Result<std::unique_ptr<LmGateway>> gateway = LmGateway::Create(config->lm);
  if (!gateway.ok()) return fail(Status(gateway.status()).Context("lm"));
  Result<std::unique_ptr<WorkerLauncher>> launcher =
      WorkerLauncher::Create(*config, gateway->get());
  if (!launcher.ok()) return fail(launcher.status());
  Result<std::unique_ptr<ProcessBackend>> process =
      ProcessBackend::Create(*config, launcher->get());
  if (!process.ok()) return fail(process.status());
  std::map<std::string, Backend*> backends = {{"process", process->get()}};
  std::unique_ptr<PoolBackend> pool;
  if (config->pool.size > 0) {
    Result<std::unique_ptr<PoolBackend>> created = PoolBackend::Create(*config, launcher->get());
    if (!created.ok()) return fail(Status(created.status()).Context("pool"));
    pool = std::move(created).value();
    backends["pool"] = pool.get();
  }
  if (backends.count(config->default_backend) == 0) {
    return fail(Status::InvalidArgument(
        fmt::format("default_backend `{}` is off (pool.size is 0)", config->default_backend)));
  }
  SessionRegistry registry(*config, backends);
  Result<std::vector<std::shared_ptr<Session>>> restored = registry.Restore();
  if (!restored.ok()) return fail(Status(restored.status()).Context("restore sessions"));
  // A restored session gets the default model settings (they are not kept in the store).
  for (const std::shared_ptr<Session>& session : *restored) {
    (*gateway)->SetSession(session->id(), session->log_context().tenant, (*gateway)->Defaults(),
                           session);
  }
  registry.StartReaper();

  ApiContext context;
  context.config = &config.value();
  context.registry = &registry;
  context.lm = gateway->get();
  context.pool = pool.get();
  context.ready = [&backends, &registry] {
    if (!registry.accepting()) {
      return Status::Unavailable("the daemon is shutting down").WithReason("shutting_down");
    }
    for (const auto& [name, backend] : backends) CORRAL_TRY(backend->Ready());
    return Status::Ok();
  };
  HttpServer server(config->http, config->limits.max_request_bytes, AllRoutes(&context));
  Result<int> port = server.Bind(*listen);
  if (!port.ok()) return fail(port.status());

  step = WriteFileAtomic(pid_file, std::to_string(getpid()));
  if (step.ok()) step = WriteFileAtomic(port_file, std::to_string(*port));
  if (!step.ok()) return fail(step);
  kLog.Info(kNoSession, "listening on {}:{}", listen->host, *port);

  std::thread stopper([&] {
    int signo = WaitForSignal();
    kLog.Info(kNoSession, "signal {}: shutting down", signo);
    server.Stop();
    registry.Shutdown();
  });
  Status served = server.Serve();
  if (!served.ok()) kLog.Error(kNoSession, "serve: {}", served.ToString());
  OnSignal(SIGTERM);  // wakes the stopper when Serve ended on its own
  stopper.join();
  registry.Shutdown();

  unlink(port_file.c_str());
  unlink(pid_file.c_str());
  kLog.Info(kNoSession, "stopped");
  return served.ok() ? 0 : 1;
}

}  // namespace
}  // namespace corral

int main(int argc, char** argv) {
  corral::Options options;
  bool version = false;
  CLI::App app{"corrald: session sandbox manager"};
  app.add_option("--config", options.config_path, "the daemon's YAML config file");
  app.add_option("--listen", options.listen, "HOST:PORT to listen on (port 0: ephemeral)");
  app.add_option("--set", options.overrides, "override a config value: path.in.config=value");
  app.add_flag("--version", version, "print the version and exit");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  if (version) {
    std::printf("corrald %s\n", corral::kVersion);
    return 0;
  }
  if (options.config_path.empty()) {
    std::fprintf(stderr, "corrald: --config FILE is required (see --help)\n");
    return 2;
  }
  return corral::Run(options);
}
