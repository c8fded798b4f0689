// The policy's knobs: allow and deny lists (deny wins), the refusal errno, and the errors a
// bad policy gets before anything is installed.
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>

#include <catch2/catch.hpp>

#include "sandbox/seccomp_internal.h"
#include "tests/unit/seccomp/seccomp_child.h"

namespace corral {
namespace {

using testing::ChildEnd;
using testing::Describe;
using testing::ErrnoOf;
using testing::ProgramFor;
using testing::RunInChild;

bool ExitedWith(const ChildEnd& end, int code) {
  return end.exited && end.exit_code == code;
}

int CallGetcwd() {
  char buffer[256];
  return ErrnoOf(syscall(SYS_getcwd, buffer, sizeof buffer));
}

int CallPtrace() {
  return ErrnoOf(syscall(SYS_ptrace, 0xffff, 0, 0, 0));
}

TEST_CASE("deny removes a syscall from the profile") {
  SeccompPolicy policy;
  policy.deny = {"getcwd"};
  SeccompProgram program = ProgramFor(policy);
  ChildEnd end = RunInChild(&program, CallGetcwd);
  INFO(Describe(end));
  CHECK(ExitedWith(end, EPERM));
}

TEST_CASE("allow adds a syscall to the profile, and deny wins over allow") {
  SeccompPolicy policy;
  policy.allow = {"ptrace"};
  SeccompProgram allowed = ProgramFor(policy);
  ChildEnd end = RunInChild(&allowed, CallPtrace);
  INFO(Describe(end));
  CHECK(ExitedWith(end, ESRCH));  // the kernel's own answer: no such tracee

  policy.deny = {"ptrace"};
  SeccompProgram denied = ProgramFor(policy);
  end = RunInChild(&denied, CallPtrace);
  INFO(Describe(end));
  CHECK(ExitedWith(end, EPERM));
}

TEST_CASE("denying a guarded syscall refuses it whole") {
  SeccompPolicy policy;
  policy.deny = {"socket"};
  SeccompProgram program = ProgramFor(policy);
  ChildEnd end = RunInChild(&program, [] { return ErrnoOf(syscall(SYS_socket, AF_UNIX, 1, 0)); });
  INFO(Describe(end));
  CHECK(ExitedWith(end, EPERM));
}

TEST_CASE("the refusal errno comes from the policy") {
  SeccompPolicy policy;
  policy.errno_value = EACCES;
  SeccompProgram program = ProgramFor(policy);
  ChildEnd end = RunInChild(&program, CallPtrace);
  INFO(Describe(end));
  CHECK(ExitedWith(end, EACCES));
}

TEST_CASE("a bad seccomp policy is refused before anything is built") {
  struct BadPolicy {
    const char* what;
    SeccompPolicy policy;
    const char* message_part;
  };
  std::vector<BadPolicy> cases = {
      {"unknown profile", {.profile = "perl"}, "perl"},
      {"unknown name in allow", {.allow = {"no_such_call"}}, "no_such_call"},
      {"unknown name in deny", {.deny = {"getpid", "frobnicate"}}, "frobnicate"},
      {"another architecture's name", {.allow = {"socketcall"}}, "socketcall"},
      {"clone3 allowed", {.allow = {"clone3"}}, "clone3"},
      {"errno zero", {.errno_value = 0}, "errno"},
      {"errno out of range", {.errno_value = 5000}, "errno"},
  };
  for (const BadPolicy& c : cases) {
    INFO(c.what);
    Result<SeccompProgram> program = BuildSeccompProgram(c.policy);
    REQUIRE_FALSE(program.ok());
    CHECK(program.status().category() == ErrorCategory::kInvalidArgument);
    CHECK_THAT(program.status().message(), Catch::Contains(c.message_part));
  }
}

TEST_CASE("syscall names resolve both ways") {
  CHECK(SyscallName(__NR_ptrace) == "ptrace");
  CHECK(SyscallName(__NR_clone3) == "clone3");
  CHECK(SyscallName(5000) == "syscall_5000");
  CHECK(SyscallName(-1) == "syscall_-1");
  CHECK(UnknownSyscallNames({"ptrace", "nope", "socketcall", "getpid"}) ==
        std::vector<std::string>{"nope", "socketcall"});
}

TEST_CASE("the default program fits the kernel's limit on BPF programs") {
  CHECK(testing::DefaultProgram().instructions.size() <= BPF_MAXINSNS);
  CHECK_FALSE(testing::DefaultProgram().use_listener);
}

// "Anything but these values" must match exactly the complement: checked against every value
// of a small width.
TEST_CASE("complement matches cover exactly the values not listed") {
  using seccomp_internal::ArgMatch;
  const std::vector<std::vector<uint32_t>> kSets = {{0}, {255}, {1, 2}, {0, 8, 32, 33, 255}};
  for (const auto& values : kSets) {
    std::vector<ArgMatch> matches = seccomp_internal::ComplementMatches(values, 8);
    for (uint32_t candidate = 0; candidate < 256; ++candidate) {
      int hits = 0;
      for (const ArgMatch& m : matches) hits += (candidate & m.mask) == m.value ? 1 : 0;
      bool listed = std::find(values.begin(), values.end(), candidate) != values.end();
      INFO("value " << candidate << " listed " << listed);
      CHECK(hits == (listed ? 0 : 1));  // disjoint: each outside value matched exactly once
    }
  }
}

}  // namespace
}  // namespace corral
