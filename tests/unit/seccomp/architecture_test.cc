// Foreign architectures and numbers outside the native table: x32 numbers and the i386
// `int 0x80` entry kill the process (their numbers mean other syscalls); clone3 and numbers the
// filter does not know answer ENOSYS so libc falls back instead of crashing.
#include <signal.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>

#include <catch2/catch.hpp>

#include "tests/support/skip.h"
#include "tests/unit/seccomp/seccomp_child.h"

namespace corral {
namespace {

using testing::ChildEnd;
using testing::DefaultProgram;
using testing::Describe;
using testing::ErrnoOf;
using testing::RunInChild;

constexpr long kX32Bit = 0x40000000;  // __X32_SYSCALL_BIT
constexpr long kI386Getpid = 20;

// The raw x86_64 `syscall` instruction, with no libc wrapper to reject odd numbers.
long RawSyscall(long nr) {
  long ret;
  asm volatile("syscall" : "=a"(ret) : "a"(nr) : "rcx", "r11", "memory");
  return ret;
}

// The i386 compatibility entry.
long Int80Syscall(long nr) {
  long ret;
  asm volatile("int $0x80" : "=a"(ret) : "a"(nr) : "r8", "r9", "r10", "r11", "memory");
  return ret;
}

int AsErrno(long ret) {
  return ret < 0 ? static_cast<int>(-ret) : 0;
}

TEST_CASE("an x32 syscall number kills the process with SIGSYS") {
  ChildEnd end =
      RunInChild(&DefaultProgram(), [] { return AsErrno(RawSyscall(__NR_getpid | kX32Bit)); });
  INFO(Describe(end));
  CHECK((!end.exited && end.signal == SIGSYS));
}

TEST_CASE("an i386 int 0x80 syscall kills the process with SIGSYS") {
  ChildEnd native = RunInChild(nullptr, [] { return AsErrno(Int80Syscall(kI386Getpid)); });
  CORRAL_SKIP_IF(!native.exited, "kernel built without IA32 emulation: int 0x80 faults");
  REQUIRE(native.exit_code == 0);

  ChildEnd end = RunInChild(&DefaultProgram(), [] { return AsErrno(Int80Syscall(kI386Getpid)); });
  INFO(Describe(end));
  CHECK((!end.exited && end.signal == SIGSYS));
}

TEST_CASE("clone3 answers ENOSYS so libc falls back to clone") {
  ChildEnd native = RunInChild(nullptr, [] { return ErrnoOf(syscall(__NR_clone3, 0, 0)); });
  REQUIRE(native.exited);
  REQUIRE(native.exit_code == EINVAL);

  ChildEnd end = RunInChild(&DefaultProgram(), [] { return ErrnoOf(syscall(__NR_clone3, 0, 0)); });
  INFO(Describe(end));
  CHECK((end.exited && end.exit_code == ENOSYS));
}

TEST_CASE("numbers the filter does not know answer ENOSYS, not a crash") {
  // A gap in the x86_64 table, numbers far beyond it, and the last one below the x32 range.
  for (long nr : {400L, 1000L, 100000L, kX32Bit - 1}) {
    INFO("syscall number " << nr);
    ChildEnd end = RunInChild(&DefaultProgram(), [nr] { return ErrnoOf(syscall(nr)); });
    INFO(Describe(end));
    CHECK((end.exited && end.exit_code == ENOSYS));
  }
}

TEST_CASE("ordinary syscalls still work under the filter") {
  ChildEnd end = RunInChild(&DefaultProgram(), [] {
    char buffer[256];
    if (getcwd(buffer, sizeof buffer) == nullptr) return errno;
    if (getpid() <= 0) return 100;
    return 0;
  });
  INFO(Describe(end));
  CHECK((end.exited && end.exit_code == 0));
}

}  // namespace
}  // namespace corral
