#include "tests/unit/seccomp/seccomp_child.h"

#include <linux/seccomp.h>
#include <poll.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <cstring>

#include <fmt/format.h>
#include <catch2/catch.hpp>

namespace corral::testing {

namespace {

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

}  // namespace

Supervised StartSupervised(const SeccompProgram& program, const std::function<int()>& body) {
  int pair[2];
  REQUIRE(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pair) == 0);
  UniqueFd parent_end(pair[0]), child_end(pair[1]);
  pid_t pid = fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    setsid();
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) _exit(kInstallFailed);
    int listener = InstallSeccompProgram(program);
    if (listener < 0 || !SendFd(child_end.get(), listener)) _exit(kInstallFailed);
    close(listener);
    _exit(body());
  }
  child_end.reset();
  Supervised child;
  child.pid = pid;
  child.listener = ReceiveFd(parent_end.get());
  return child;
}

Notification NextNotification(const Supervised& child) {
  pollfd ready{child.listener.get(), POLLIN, 0};
  while (poll(&ready, 1, -1) < 0 && errno == EINTR) {
  }
  Notification result;
  if ((ready.revents & POLLIN) == 0) return result;
  seccomp_notif notification;
  std::memset(&notification, 0, sizeof notification);
  if (ioctl(child.listener.get(), SECCOMP_IOCTL_NOTIF_RECV, &notification) != 0) return result;
  result.received = true;
  result.nr = notification.data.nr;
  result.pid = static_cast<pid_t>(notification.pid);
  return result;
}

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

const SeccompProgram& KillModeProgram() {
  static const SeccompProgram program = [] {
    SeccompPolicy policy;
    policy.action = SeccompAction::kKill;
    return ProgramFor(policy);
  }();
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
