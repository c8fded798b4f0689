// Python 3.11 with the stdlib the worker relies on (threads, subprocess, multiprocessing with
// fork, spawn and forkserver, asyncio, sqlite3, ctypes, mmap, tempfile, select/epoll, signals)
// runs under the default policy: stdlib_smoke.py checks each result and exits 0.
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <string>

#include <catch2/catch.hpp>

#include "tests/unit/seccomp/seccomp_child.h"

namespace corral {
namespace {

using testing::ChildEnd;
using testing::Describe;

constexpr char kPython[] = "/usr/bin/python3";
const std::string kScript = CORRAL_SOURCE_DIR "/tests/unit/seccomp/stdlib_smoke.py";

int ExecSmokeScript() {
  const char* argv[] = {kPython, "-I", kScript.c_str(), nullptr};
  execv(kPython, const_cast<char* const*>(argv));
  return errno;
}

TEST_CASE("python stdlib smoke script runs under the errno policy") {
  ChildEnd end = testing::RunInChild(&testing::DefaultProgram(), ExecSmokeScript);
  INFO(Describe(end));
  CHECK((end.exited && end.exit_code == 0));
}

// Under the kill policy every refused call is reported, so this names any syscall the stdlib
// needs that the profile refuses (the errno run above could hide one Python tolerates).
TEST_CASE("python stdlib smoke script makes no refused syscall") {
  testing::Supervised child = testing::StartSupervised(testing::KillModeProgram(), ExecSmokeScript);
  REQUIRE(child.listener.valid());
  testing::Notification notification = testing::NextNotification(child);
  if (notification.received) kill(-child.pid, SIGKILL);  // the child's whole session
  int status = 0;
  waitpid(child.pid, &status, 0);
  INFO("refused syscall " << SyscallName(notification.nr) << " from pid " << notification.pid);
  CHECK_FALSE(notification.received);
  CHECK((WIFEXITED(status) && WEXITSTATUS(status) == 0));
}

}  // namespace
}  // namespace corral
