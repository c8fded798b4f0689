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
using testing::ProgramFor;

const SeccompProgram& KillProgram() {
  static const SeccompProgram program = [] {
    SeccompPolicy policy;
    policy.action = SeccompAction::kKill;
    return ProgramFor(policy);
  }();
  return program;
}

bool SendFd(int socket, int fd) {
  char byte = 'L';
  iovec iov{&byte, 1};
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int))] = {};
  msghdr message{};
  message.msg_iov = &iov;
  message.msg_iovlen = 1;
  message.msg_control = control;
  message.msg_controllen = sizeof control;
  cmsghdr* header = CMSG_FIRSTHDR(&message);
  header->cmsg_level = SOL_SOCKET;
  header->cmsg_type = SCM_RIGHTS;
  header->cmsg_len = CMSG_LEN(sizeof(int));
  std::memcpy(CMSG_DATA(header), &fd, sizeof(int));
  return sendmsg(socket, &message, 0) == 1;
}

UniqueFd ReceiveFd(int socket) {
  char byte = 0;
  iovec iov{&byte, 1};
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int))] = {};
  msghdr message{};
  message.msg_iov = &iov;
  message.msg_iovlen = 1;
  message.msg_control = control;
  message.msg_controllen = sizeof control;
  if (recvmsg(socket, &message, MSG_CMSG_CLOEXEC) != 1) return UniqueFd();
  cmsghdr* header = CMSG_FIRSTHDR(&message);
  if (header == nullptr || header->cmsg_type != SCM_RIGHTS) return UniqueFd();
  int fd = -1;
  std::memcpy(&fd, CMSG_DATA(header), sizeof(int));
  return UniqueFd(fd);
}

// A child under the kill program, and the listener it handed over.
struct Supervised {
  pid_t pid = -1;
  UniqueFd listener;
};

Supervised StartSupervised(const std::function<int()>& body) {
  int pair[2];
  REQUIRE(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pair) == 0);
  UniqueFd parent_end(pair[0]), child_end(pair[1]);
  pid_t pid = fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    setsid();
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) _exit(testing::kInstallFailed);
    int listener = InstallSeccompProgram(KillProgram());
    if (listener < 0 || !SendFd(child_end.get(), listener)) _exit(testing::kInstallFailed);
    close(listener);
    _exit(body());
  }
  child_end.reset();
  Supervised child;
  child.pid = pid;
  child.listener = ReceiveFd(parent_end.get());
  return child;
}

// Waits for one notification; -1 when the listener hung up (the child ended without one).
long NextNotifiedSyscall(const Supervised& child) {
  pollfd ready{child.listener.get(), POLLIN, 0};
  while (poll(&ready, 1, -1) < 0 && errno == EINTR) {
  }
  if ((ready.revents & POLLIN) == 0) return -1;
  seccomp_notif notification;
  std::memset(&notification, 0, sizeof notification);
  if (ioctl(child.listener.get(), SECCOMP_IOCTL_NOTIF_RECV, &notification) != 0) return -1;
  if (static_cast<pid_t>(notification.pid) != child.pid) return -2;
  return notification.data.nr;
}

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
  Supervised child = StartSupervised(body);
  REQUIRE(child.listener.valid());
  long nr = NextNotifiedSyscall(child);
  int status = KillAndReap(child.pid);
  CHECK(nr == expected_nr);
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

TEST_CASE("kill mode: clone3 still answers ENOSYS and allowed calls run") {
  Supervised child = StartSupervised([] {
    if (getpid() <= 0) return 100;
    return ErrnoOf(syscall(__NR_clone3, 0, 0));
  });
  REQUIRE(child.listener.valid());
  int status = Reap(child.pid);
  CHECK((WIFEXITED(status) && WEXITSTATUS(status) == ENOSYS));
  CHECK(NextNotifiedSyscall(child) == -1);  // hung up: nothing was reported
}

}  // namespace
}  // namespace corral
