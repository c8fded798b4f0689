// The syscalls allowed only for safe arguments: clone without namespace flags, socket for
// local and IP stream/datagram sockets, ioctl except TIOCSTI and TIOCLINUX (matched on the low
// 32 bits of the command), personality for the values that only change uname.
#include <fcntl.h>
#include <linux/sched.h>
#include <sys/ioctl.h>
#include <sys/personality.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <thread>

#include <catch2/catch.hpp>

#include "tests/unit/seccomp/seccomp_child.h"

namespace corral {
namespace {

using testing::ChildEnd;
using testing::DefaultProgram;
using testing::Describe;
using testing::ErrnoOf;
using testing::RunInChild;

// A syscall argument register.
using Word = unsigned long;

bool ExitedWith(const ChildEnd& end, int code) {
  return end.exited && end.exit_code == code;
}

// --- clone ----------------------------------------------------------------------------------

int CloneWith(unsigned long flags) {
  long rc = syscall(SYS_clone, flags | SIGCHLD, 0, 0, 0, 0);
  if (rc == 0) _exit(0);  // a child the filter should not have let through
  if (rc > 0) waitpid(static_cast<pid_t>(rc), nullptr, 0);
  return ErrnoOf(rc);
}

TEST_CASE("clone with a namespace flag is refused") {
  const unsigned long kHighGarbage = 0xdead00000000ul;
  for (Word flag : {Word{CLONE_NEWUSER}, Word{CLONE_NEWNS}, Word{CLONE_NEWPID}, Word{CLONE_NEWNET},
                    Word{CLONE_NEWIPC}, Word{CLONE_NEWUTS}, Word{CLONE_NEWCGROUP},
                    CLONE_NEWUSER | kHighGarbage}) {
    INFO("clone flags " << std::hex << flag);
    ChildEnd end = RunInChild(&DefaultProgram(), [flag] { return CloneWith(flag); });
    INFO(Describe(end));
    CHECK(ExitedWith(end, EPERM));
  }
}

TEST_CASE("fork and threads still work under the filter") {
  ChildEnd end = RunInChild(&DefaultProgram(), [] {
    pid_t pid = fork();
    if (pid < 0) return errno;
    if (pid == 0) _exit(7);
    int status = 0;
    if (waitpid(pid, &status, 0) != pid || !WIFEXITED(status) || WEXITSTATUS(status) != 7) {
      return 100;
    }
    int from_thread = -1;
    std::thread thread([&] { from_thread = 5; });
    thread.join();
    return from_thread == 5 ? 0 : 101;
  });
  INFO(Describe(end));
  CHECK(ExitedWith(end, 0));
}

// --- socket ---------------------------------------------------------------------------------

struct SocketCase {
  const char* what;
  unsigned long family;
  unsigned long type;
};

int OpenSocket(const SocketCase& c) {
  long fd = syscall(SYS_socket, c.family, c.type, 0);
  if (fd >= 0) close(static_cast<int>(fd));
  return ErrnoOf(fd);
}

TEST_CASE("sockets other than local and IP stream or datagram are refused") {
  const SocketCase kRefused[] = {
      {"AF_VSOCK", AF_VSOCK, SOCK_STREAM},
      {"AF_ALG", AF_ALG, SOCK_SEQPACKET},
      {"AF_PACKET", AF_PACKET, SOCK_RAW},
      {"AF_NETLINK", AF_NETLINK, SOCK_RAW},
      {"AF_INET SOCK_RAW", AF_INET, SOCK_RAW},
      {"AF_INET6 SOCK_RAW", AF_INET6, SOCK_RAW},
      {"AF_INET SOCK_RAW with flags", AF_INET, SOCK_RAW | SOCK_NONBLOCK | SOCK_CLOEXEC},
      {"AF_INET SOCK_PACKET", AF_INET, SOCK_PACKET},
      {"AF_PACKET with high bits (the kernel reads an int)", (1ul << 32) | AF_PACKET, SOCK_RAW},
  };
  for (const SocketCase& c : kRefused) {
    INFO(c.what);
    ChildEnd end = RunInChild(&DefaultProgram(), [&c] { return OpenSocket(c); });
    INFO(Describe(end));
    CHECK(ExitedWith(end, EPERM));
  }
}

TEST_CASE("local and IP stream and datagram sockets work") {
  const SocketCase kAllowed[] = {
      {"AF_UNIX SOCK_STREAM", AF_UNIX, SOCK_STREAM},
      {"AF_UNIX SOCK_DGRAM", AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC},
      {"AF_UNIX SOCK_SEQPACKET", AF_UNIX, SOCK_SEQPACKET},
      {"AF_INET SOCK_STREAM", AF_INET, SOCK_STREAM | SOCK_CLOEXEC},
      {"AF_INET SOCK_DGRAM", AF_INET, SOCK_DGRAM | SOCK_NONBLOCK},
      {"AF_INET6 SOCK_STREAM", AF_INET6, SOCK_STREAM},
  };
  for (const SocketCase& c : kAllowed) {
    INFO(c.what);
    ChildEnd end = RunInChild(&DefaultProgram(), [&c] { return OpenSocket(c); });
    INFO(Describe(end));
    CHECK(ExitedWith(end, 0));
  }
}

// --- ioctl ----------------------------------------------------------------------------------

// On a pipe, so that without the filter the terminal ioctls fail harmlessly with ENOTTY.
int IoctlOnPipe(unsigned long command) {
  int fds[2];
  if (pipe(fds) != 0) return 200;
  int value = 0;
  return ErrnoOf(syscall(SYS_ioctl, fds[0], command, &value));
}

TEST_CASE("ioctl TIOCSTI and TIOCLINUX are refused, also with high bits on the command") {
  const unsigned long kHighHalf = 0xdeadbeeful << 32;  // the kernel reads an unsigned int
  for (Word command :
       {Word{TIOCSTI}, Word{TIOCLINUX}, kHighHalf | TIOCSTI, kHighHalf | TIOCLINUX}) {
    INFO("ioctl command " << std::hex << command);
    ChildEnd native = RunInChild(nullptr, [command] { return IoctlOnPipe(command); });
    CHECK(ExitedWith(native, ENOTTY));
    ChildEnd end = RunInChild(&DefaultProgram(), [command] { return IoctlOnPipe(command); });
    INFO(Describe(end));
    CHECK(ExitedWith(end, EPERM));
  }
}

TEST_CASE("ordinary ioctls work") {
  // 0xdead0000 | TIOCSTI differs from TIOCSTI in the low 32 bits: another command to the
  // kernel (ENOTTY), so the filter lets it through.
  for (Word command :
       {Word{FIONREAD}, Word{FIOCLEX}, Word{TIOCGWINSZ}, 0xdead0000 | Word{TIOCSTI}}) {
    INFO("ioctl command " << std::hex << command);
    ChildEnd native = RunInChild(nullptr, [command] { return IoctlOnPipe(command); });
    ChildEnd end = RunInChild(&DefaultProgram(), [command] { return IoctlOnPipe(command); });
    INFO(Describe(end));
    CHECK(end.exited);
    CHECK(end.exit_code == native.exit_code);  // TIOCGWINSZ: ENOTTY from the kernel, not EPERM
  }
}

// --- personality ----------------------------------------------------------------------------

TEST_CASE("personality allows only the values that change uname") {
  // The kernel reads an unsigned int: 1 << 32 is PER_LINUX to it, and allowed as such.
  for (Word persona : {0x0ul, 0x8ul, 0x20000ul, 0x20008ul, 0xfffffffful, Word{1} << 32}) {
    INFO("personality " << std::hex << persona);
    ChildEnd end = RunInChild(&DefaultProgram(),
                              [persona] { return ErrnoOf(syscall(SYS_personality, persona)); });
    INFO(Describe(end));
    CHECK(ExitedWith(end, 0));
  }
  for (Word persona : {Word{ADDR_NO_RANDOMIZE}, Word{READ_IMPLIES_EXEC}, Word{MMAP_PAGE_ZERO},
                       0x1ul, (Word{1} << 32) | ADDR_NO_RANDOMIZE}) {
    INFO("personality " << std::hex << persona);
    ChildEnd end = RunInChild(&DefaultProgram(),
                              [persona] { return ErrnoOf(syscall(SYS_personality, persona)); });
    INFO(Describe(end));
    CHECK(ExitedWith(end, EPERM));
  }
}

}  // namespace
}  // namespace corral
