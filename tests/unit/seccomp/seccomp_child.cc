#include "tests/unit/seccomp/seccomp_child.h"

#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <cstring>

#include <fmt/format.h>
#include <catch2/catch.hpp>

namespace corral::testing {

ChildEnd RunInChild(const SeccompProgram* program, const std::function<int()>& body) {
  pid_t pid = fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    setsid();
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) _exit(kInstallFailed);
    if (program != nullptr && InstallSeccompProgram(*program) < 0) _exit(kInstallFailed);
    _exit(body());
  }
  int status = 0;
  REQUIRE(waitpid(pid, &status, 0) == pid);
  ChildEnd end;
  if (WIFEXITED(status)) {
    end.exited = true;
    end.exit_code = WEXITSTATUS(status);
  } else if (WIFSIGNALED(status)) {
    end.signal = WTERMSIG(status);
  }
  return end;
}

int ErrnoOf(long rc) {
  return rc < 0 ? errno : 0;
}

const SeccompProgram& DefaultProgram() {
  static const SeccompProgram program = ProgramFor(SeccompPolicy{});
  return program;
}

SeccompProgram ProgramFor(const SeccompPolicy& policy) {
  Result<SeccompProgram> program = BuildSeccompProgram(policy);
  INFO(program.status().ToString());
  REQUIRE(program.ok());
  return std::move(program).value();
}

std::string Describe(const ChildEnd& end) {
  if (end.exited) {
    return fmt::format("exited {} ({})", end.exit_code, std::strerror(end.exit_code));
  }
  return fmt::format("killed by signal {} ({})", end.signal, strsignal(end.signal));
}

}  // namespace corral::testing
