// Kill policy: a refused call is reported through the seccomp user-notification listener. The
// test plays the launcher: it takes the listener from the child over SCM_RIGHTS, reads the
// notification, checks the syscall number and kills the child.
#include <linux/seccomp.h>
#include <poll.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <functional>

#include <catch2/catch.hpp>

#include "sandbox/unique_fd.h"
#include "tests/unit/seccomp/seccomp_child.h"

namespace corral {
namespace {

using testing::ErrnoOf;
using testing::NextNotification;
using testing::Notification;
using testing::Supervised;

using testing::KillModeProgram;

int KillAndReap(pid_t pid) {
  kill(pid, SIGKILL);
  int status = 0;
  waitpid(pid, &status, 0);
  return status;
}

int Reap(pid_t pid) {
  int status = 0;
  waitpid(pid, &status, 0);
  return status;
}

void ExpectNotified(const std::function<int()>& body, long expected_nr) {
  Supervised child = testing::StartSupervised(KillModeProgram(), body);
  REQUIRE(child.listener.valid());
  Notification notification = NextNotification(child);
  int status = KillAndReap(child.pid);
  REQUIRE(notification.received);
  CHECK(notification.nr == expected_nr);
  CHECK(notification.pid == child.pid);
  CHECK((WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL));
}

TEST_CASE("kill mode: a refused syscall reaches the supervisor, which kills the child") {
  ExpectNotified([] { return ErrnoOf(syscall(SYS_ptrace, 0xffff, 0, 0, 0)); }, __NR_ptrace);
}

TEST_CASE("kill mode: a refused argument reaches the supervisor too") {
  ExpectNotified([] { return ErrnoOf(syscall(SYS_socket, AF_PACKET, SOCK_RAW, 0)); }, __NR_socket);
}

TEST_CASE("kill mode: an unknown number reaches the supervisor") {
  ExpectNotified([] { return ErrnoOf(syscall(1000)); }, 1000);
}

TEST_CASE("kill mode: a descendant's refused syscall is reported with its pid") {
  Supervised child = testing::StartSupervised(KillModeProgram(), [] {
    pid_t grandchild = fork();
    if (grandchild == 0) _exit(ErrnoOf(syscall(SYS_ptrace, 0xffff, 0, 0, 0)));
    int status = 0;
    waitpid(grandchild, &status, 0);
    return 0;
  });
  REQUIRE(child.listener.valid());
  Notification notification = NextNotification(child);
  kill(-child.pid, SIGKILL);  // the child's session: the grandchild too
  int status = Reap(child.pid);
  REQUIRE(notification.received);
  CHECK(notification.nr == __NR_ptrace);
  CHECK(notification.pid != child.pid);
  CHECK((WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL));
}

TEST_CASE("kill mode: clone3 still answers ENOSYS and allowed calls run") {
  Supervised child = testing::StartSupervised(KillModeProgram(), [] {
    if (getpid() <= 0) return 100;
    return ErrnoOf(syscall(__NR_clone3, 0, 0));
  });
  REQUIRE(child.listener.valid());
  int status = Reap(child.pid);
  CHECK((WIFEXITED(status) && WEXITSTATUS(status) == ENOSYS));
  CHECK_FALSE(NextNotification(child).received);  // hung up: nothing was reported
}

}  // namespace
}  // namespace corral
