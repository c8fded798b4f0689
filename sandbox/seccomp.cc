// Builds the seccomp filter with libseccomp in the launcher and installs it in the child.
//
// Shape of the filter (native x86_64 only; anything else kills the process):
//   allowed syscall            -> ALLOW (some only for safe arguments, see the guards below)
//   clone3                     -> ERRNO(ENOSYS), so libc falls back to clone
//   other syscall we know      -> the policy's errno, or NOTIFY under a kill policy
//   number libseccomp doesn't  -> ERRNO(ENOSYS) (NOTIFY under a kill policy): newer than us
// Every known number gets an explicit rule because the default action must stay ENOSYS for
// numbers this build has never heard of (libc and Python fall back on ENOSYS, not on EPERM).
#include "sandbox/seccomp.h"

#include <fcntl.h>
#include <linux/sched.h>
#include <linux/seccomp.h>
#include <seccomp.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <memory>
#include <set>

#include "sandbox/seccomp_internal.h"
#include "sandbox/unique_fd.h"

namespace corral {
namespace {

using seccomp_internal::ArgMatch;
using seccomp_internal::ComplementMatches;

// libseccomp's x86_64 table ends below 500; scanning a little further costs nothing.
constexpr int kMaxSyscallNumber = 1024;
constexpr uint64_t kLow32 = 0xffffffffu;

struct FilterDeleter {
  void operator()(void* ctx) const { seccomp_release(ctx); }
};
using FilterContext = std::unique_ptr<void, FilterDeleter>;

// The actions one filter uses, fixed by the policy.
struct Actions {
  uint32_t fallback;  // the default: numbers libseccomp does not know
  uint32_t refuse;    // known syscalls (or arguments) the policy refuses
};

Status LibseccompError(int rc, std::string what) {
  return Status::FromErrno(-rc, "libseccomp: " + std::move(what));
}

scmp_arg_cmp Masked(unsigned arg, ArgMatch match) {
  return scmp_arg_cmp{arg, SCMP_CMP_MASKED_EQ, match.mask, match.value};
}

// A rule whose action is the filter's default adds nothing (libseccomp refuses it), so skip.
Status AddRule(scmp_filter_ctx ctx, const Actions& actions, uint32_t action, int nr,
               std::vector<scmp_arg_cmp> conditions = {}) {
  if (action == actions.fallback) return Status::Ok();
  int rc = seccomp_rule_add_exact_array(ctx, action, nr, conditions.size(), conditions.data());
  if (rc < 0) return LibseccompError(rc, fmt::format("add rule for syscall {}", nr));
  return Status::Ok();
}

// One rule per match on argument `arg`, after the shared `prefix` conditions.
Status AddMatchRules(scmp_filter_ctx ctx, const Actions& actions, uint32_t action, int nr,
                     const std::vector<scmp_arg_cmp>& prefix, unsigned arg,
                     const std::vector<ArgMatch>& matches) {
  for (const ArgMatch& match : matches) {
    std::vector<scmp_arg_cmp> conditions = prefix;
    conditions.push_back(Masked(arg, match));
    CORRAL_TRY(AddRule(ctx, actions, action, nr, conditions));
  }
  return Status::Ok();
}

std::vector<ArgMatch> Exactly(std::span<const uint32_t> values, uint64_t mask) {
  std::vector<ArgMatch> matches;
  for (uint32_t value : values) matches.push_back({mask, value});
  return matches;
}

// The guards. Each one partitions every value of the arguments it looks at into rules that
// allow and rules that refuse, with no gap and no overlap: libseccomp lets an unconditional rule
// override conditional ones of the same syscall, and a call no rule matches would fall to the
// default action (ENOSYS) instead of the refusal.

// clone: no new namespaces. A process that makes its own user namespace regains every
// capability inside it and reaches kernel code (mount, netfilter) that is a rich source of
// privilege escalations. x86_64 passes the flags in the first argument.
constexpr uint64_t kNamespaceFlags[] = {CLONE_NEWNS,  CLONE_NEWUTS, CLONE_NEWIPC,    CLONE_NEWUSER,
                                        CLONE_NEWPID, CLONE_NEWNET, CLONE_NEWCGROUP, CLONE_NEWTIME};

Status AddCloneRules(scmp_filter_ctx ctx, const Actions& actions, int nr) {
  uint64_t all = 0;
  for (uint64_t flag : kNamespaceFlags) all |= flag;
  CORRAL_TRY(AddRule(ctx, actions, SCMP_ACT_ALLOW, nr, {Masked(0, {all, 0})}));
  for (uint64_t flag : kNamespaceFlags) {
    CORRAL_TRY(AddRule(ctx, actions, actions.refuse, nr, {Masked(0, {flag, flag})}));
  }
  return Status::Ok();
}

// socket: local, IPv4 and IPv6 only, and no raw or packet sockets. AF_PACKET and SOCK_RAW
// sniff and forge traffic; AF_VSOCK reaches the hypervisor; AF_ALG and AF_NETLINK expose large
// kernel surfaces with a history of exploits, and nothing in Python's stdlib needs them. The
// kernel reads the family and type as int, so only their low 32 bits are compared; the type's
// low 4 bits are the kind, the rest SOCK_NONBLOCK and SOCK_CLOEXEC.
constexpr uint32_t kSocketFamilies[] = {AF_UNIX, AF_INET, AF_INET6};
constexpr uint32_t kInetSocketTypes[] = {SOCK_STREAM, SOCK_DGRAM};
constexpr int kSocketTypeBits = 4;

Status AddSocketRules(scmp_filter_ctx ctx, const Actions& actions, int nr) {
  CORRAL_TRY(AddMatchRules(ctx, actions, actions.refuse, nr, {}, 0,
                           ComplementMatches(kSocketFamilies, 32)));
  CORRAL_TRY(AddRule(ctx, actions, SCMP_ACT_ALLOW, nr, {Masked(0, {kLow32, AF_UNIX})}));
  for (uint32_t family : {AF_INET, AF_INET6}) {
    std::vector<scmp_arg_cmp> is_family = {Masked(0, {kLow32, family})};
    CORRAL_TRY(AddMatchRules(ctx, actions, SCMP_ACT_ALLOW, nr, is_family, 1,
                             Exactly(kInetSocketTypes, 0xf)));
    CORRAL_TRY(AddMatchRules(ctx, actions, actions.refuse, nr, is_family, 1,
                             ComplementMatches(kInetSocketTypes, kSocketTypeBits)));
  }
  return Status::Ok();
}

// ioctl: TIOCSTI pushes characters into a terminal's input (typing commands into the shell
// that started us, CVE-2016-7545 and kin); TIOCLINUX does the same through the console
// selection. The command is an unsigned int, so the match is on its low 32 bits: setting the
// high half must not slip past the rule.
constexpr uint32_t kRefusedIoctls[] = {TIOCSTI, TIOCLINUX};

Status AddIoctlRules(scmp_filter_ctx ctx, const Actions& actions, int nr) {
  CORRAL_TRY(
      AddMatchRules(ctx, actions, actions.refuse, nr, {}, 1, Exactly(kRefusedIoctls, kLow32)));
  return AddMatchRules(ctx, actions, SCMP_ACT_ALLOW, nr, {}, 1,
                       ComplementMatches(kRefusedIoctls, 32));
}

// personality: the values Docker allows. PER_LINUX (0), PER_LINUX32 (8) and UNAME26 (0x20000)
// only change what uname reports; 0xffffffff queries. Everything else is refused, above all
// ADDR_NO_RANDOMIZE (turns ASLR off for what we exec), READ_IMPLIES_EXEC (makes data
// executable) and MMAP_PAGE_ZERO (maps page 0, the classic NULL-dereference exploit aid).
constexpr uint32_t kPersonalities[] = {0x0, 0x8, 0x20000, 0x20008, 0xffffffff};

Status AddPersonalityRules(scmp_filter_ctx ctx, const Actions& actions, int nr) {
  CORRAL_TRY(
      AddMatchRules(ctx, actions, SCMP_ACT_ALLOW, nr, {}, 0, Exactly(kPersonalities, kLow32)));
  return AddMatchRules(ctx, actions, actions.refuse, nr, {}, 0,
                       ComplementMatches(kPersonalities, 32));
}

using GuardAdder = Status (*)(scmp_filter_ctx, const Actions&, int);

struct Guard {
  const char* name;
  GuardAdder add;
};

// Allowed syscalls that are allowed only for safe arguments. Allowing one in a policy never
// lifts its guard; denying it refuses it whole.
constexpr Guard kGuards[] = {
    {"clone", AddCloneRules},
    {"socket", AddSocketRules},
    {"ioctl", AddIoctlRules},
    {"personality", AddPersonalityRules},
};

GuardAdder FindGuard(int nr) {
  for (const Guard& guard : kGuards) {
    if (seccomp_syscall_resolve_name(guard.name) == nr) return guard.add;
  }
  return nullptr;
}

int NativeNumber(std::string_view name) {
  return seccomp_syscall_resolve_name(std::string(name).c_str());
}

// Names must be native syscalls: a typo or another architecture's name would otherwise be
// silently ignored, and the operator would believe a call refused that is not.
Status CheckPolicyNames(const SeccompPolicy& policy) {
  for (const auto* names : {&policy.allow, &policy.deny}) {
    auto unknown = UnknownSyscallNames(*names);
    if (!unknown.empty()) {
      return Status::InvalidArgument(
          fmt::format("unknown syscall `{}` in seccomp policy", unknown.front()));
    }
  }
  if (std::find(policy.allow.begin(), policy.allow.end(), "clone3") != policy.allow.end()) {
    return Status::InvalidArgument(
        "seccomp policy cannot allow `clone3`: its flags are in memory the filter cannot read");
  }
  if (policy.action == SeccompAction::kErrno &&
      (policy.errno_value <= 0 || policy.errno_value > 4095)) {
    return Status::InvalidArgument(
        fmt::format("seccomp errno {} is not an errno value", policy.errno_value));
  }
  return Status::Ok();
}

// The numbers the policy allows: profile + allow - deny (deny wins).
Result<std::set<int>> AllowedNumbers(const SeccompPolicy& policy) {
  auto profile = seccomp_internal::ProfileAllowList(policy.profile);
  if (profile.empty()) {
    return Status::InvalidArgument(fmt::format("unknown seccomp profile `{}`", policy.profile));
  }
  CORRAL_TRY(CheckPolicyNames(policy));

  std::set<int> allowed;
  for (std::string_view name : profile) {
    int nr = NativeNumber(name);
    if (nr >= 0) allowed.insert(nr);  // unknown to this libseccomp: falls to ENOSYS
  }
  for (const std::string& name : policy.allow) allowed.insert(NativeNumber(name));
  for (const std::string& name : policy.deny) allowed.erase(NativeNumber(name));
  return allowed;
}

Status AddSyscallRule(scmp_filter_ctx ctx, const Actions& actions, int nr, bool allowed) {
  if (nr == __NR_clone3) return AddRule(ctx, actions, SCMP_ACT_ERRNO(ENOSYS), nr);
  if (!allowed) return AddRule(ctx, actions, actions.refuse, nr);
  if (GuardAdder guard = FindGuard(nr)) return guard(ctx, actions, nr);
  return AddRule(ctx, actions, SCMP_ACT_ALLOW, nr);
}

// Every number libseccomp can name gets a rule; the rest fall to the default action.
Status AddSyscallRules(scmp_filter_ctx ctx, const Actions& actions, const std::set<int>& allowed) {
  for (int nr = 0; nr < kMaxSyscallNumber; ++nr) {
    char* name = seccomp_syscall_resolve_num_arch(SCMP_ARCH_NATIVE, nr);
    if (name == nullptr) continue;
    std::free(name);
    CORRAL_TRY_CTX(AddSyscallRule(ctx, actions, nr, allowed.count(nr) != 0), "syscall `{}`",
                   SyscallName(nr));
  }
  return Status::Ok();
}

Result<FilterContext> NewFilter(const Actions& actions) {
  FilterContext ctx(seccomp_init(actions.fallback));
  if (!ctx) return Status::Internal("libseccomp: seccomp_init failed");

  // Foreign architectures kill the whole process: an i386 (`int 0x80`) or x32 number names a
  // different syscall than the native one our rules were written for. libseccomp's x86_64
  // filter sends x32 numbers (bit 30 set) to this action too; a unit test holds it to that.
  int rc = seccomp_attr_set(ctx.get(), SCMP_FLTATR_ACT_BADARCH, SCMP_ACT_KILL_PROCESS);
  if (rc < 0) return LibseccompError(rc, "set bad-architecture action");
  // A binary search over ~370 syscalls instead of a linear scan on every call.
  rc = seccomp_attr_set(ctx.get(), SCMP_FLTATR_CTL_OPTIMIZE, 2);
  if (rc < 0) return LibseccompError(rc, "set optimization level");
  return ctx;
}

// libseccomp 2.5 exports only to a descriptor; a memfd brings the program back into memory.
Result<std::vector<sock_filter>> ExportBpf(scmp_filter_ctx ctx) {
  UniqueFd memfd(memfd_create("corral-seccomp", MFD_CLOEXEC));
  if (!memfd) return ErrnoStatus("memfd_create for the seccomp program");
  int rc = seccomp_export_bpf(ctx, memfd.get());
  if (rc < 0) return LibseccompError(rc, "export BPF");

  off_t size = lseek(memfd.get(), 0, SEEK_END);
  if (size < 0) return ErrnoStatus("size the exported seccomp program");
  if (size == 0 || size % sizeof(sock_filter) != 0) {
    return Status::Internal(fmt::format("libseccomp exported {} bytes of BPF", size));
  }
  std::vector<sock_filter> instructions(size / sizeof(sock_filter));
  ssize_t got = pread(memfd.get(), instructions.data(), size, 0);
  if (got != size) return ErrnoStatus("read back the exported seccomp program");
  return instructions;
}

}  // namespace

namespace seccomp_internal {

namespace {

void CollectComplement(std::span<const uint32_t> values, int width, int depth, uint64_t prefix,
                       std::vector<ArgMatch>& out) {
  if (depth == width) return;  // `prefix` is one of the values
  int bit = width - 1 - depth;
  uint64_t mask = ((uint64_t{1} << width) - 1) & ~((uint64_t{1} << bit) - 1);
  for (uint64_t branch : {uint64_t{0}, uint64_t{1} << bit}) {
    uint64_t child = prefix | branch;
    bool leads_to_value =
        std::any_of(values.begin(), values.end(), [&](uint32_t v) { return (v & mask) == child; });
    if (leads_to_value) {
      CollectComplement(values, width, depth + 1, child, out);
    } else {
      out.push_back({mask, child});
    }
  }
}

}  // namespace

std::vector<ArgMatch> ComplementMatches(std::span<const uint32_t> values, int width) {
  std::vector<ArgMatch> out;
  CollectComplement(values, width, 0, 0, out);
  return out;
}

}  // namespace seccomp_internal

Result<SeccompProgram> BuildSeccompProgram(const SeccompPolicy& policy) {
  CORRAL_ASSIGN_OR_RETURN(std::set<int> allowed, AllowedNumbers(policy));

  bool kill = policy.action == SeccompAction::kKill;
  Actions actions;
  actions.refuse = kill ? SCMP_ACT_NOTIFY : SCMP_ACT_ERRNO(policy.errno_value);
  actions.fallback = kill ? SCMP_ACT_NOTIFY : SCMP_ACT_ERRNO(ENOSYS);

  CORRAL_ASSIGN_OR_RETURN(FilterContext ctx, NewFilter(actions));
  CORRAL_TRY_CTX(AddSyscallRules(ctx.get(), actions, allowed), "build seccomp filter");
  SeccompProgram program;
  CORRAL_ASSIGN_OR_RETURN(program.instructions, ExportBpf(ctx.get()));
  program.use_listener = kill;
  return program;
}

int InstallSeccompProgram(const SeccompProgram& program) {
  if (program.instructions.empty() || program.instructions.size() > BPF_MAXINSNS) return -EINVAL;
  sock_fprog fprog;
  fprog.len = static_cast<unsigned short>(program.instructions.size());
  fprog.filter = const_cast<sock_filter*>(program.instructions.data());
  unsigned long flags = program.use_listener ? SECCOMP_FILTER_FLAG_NEW_LISTENER : 0;
  long rc = syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, flags, &fprog);
  if (rc < 0) return -errno;
  return program.use_listener ? static_cast<int>(rc) : 0;
}

std::string SyscallName(long nr) {
  char* name = nr >= 0 && nr <= INT32_MAX
                   ? seccomp_syscall_resolve_num_arch(SCMP_ARCH_NATIVE, static_cast<int>(nr))
                   : nullptr;
  if (name == nullptr) return fmt::format("syscall_{}", nr);
  std::string result(name);
  std::free(name);
  return result;
}

std::vector<std::string> UnknownSyscallNames(const std::vector<std::string>& names) {
  std::vector<std::string> unknown;
  for (const std::string& name : names) {
    // Negative numbers are libseccomp's pseudo-syscalls: names of other architectures.
    if (seccomp_syscall_resolve_name(name.c_str()) < 0) unknown.push_back(name);
  }
  return unknown;
}

}  // namespace corral
