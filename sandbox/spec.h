// A sandbox spec: everything a child needs to contain itself, computed in advance.
//
// Preparing a spec (PrepareSpec) is privileged work done by the launcher: it reads the policy,
// checks the host paths, resolves symlinks, formats mount options and the environment, compiles
// the seccomp filter. Applying it (ApplySpec) runs in the child between clone and exec, or in a
// process forked from a warm template, where the parent may have been multi-threaded: clone
// copies the allocator's locks in whatever state other threads held them. So ApplySpec uses
// only async-signal-safe system calls on plain data held here: no allocation, no locks, no
// logging, no libstdc++ container growth, no libseccomp. It reports a failure as a fixed
// {step, errno, detail} record on a pipe; the launcher turns the record into a Status.
//
// A SandboxSpec is neither copyable nor movable: the char* arrays point into its own storage.
#pragma once

#include <sys/capability.h>
#include <sys/resource.h>
#include <sys/types.h>

#include <cstdint>
#include <deque>
#include <memory>
#include <string>
#include <vector>

#include "sandbox/policy.h"
#include "sandbox/seccomp.h"
#include "sandbox/status.h"

namespace corral {

struct FdPass;
struct LaunchRequest;

// The named steps of ApplySpec, in the order they run (see the checklist in apply.cc).
enum class ApplyStep : int32_t {
  kSyncWait = 1,
  kCgroupNamespace,
  kKeepCapsAcrossSetuid,
  kSetgroups,
  kSetresgid,
  kSetresuid,
  kMount,  // detail: index into SandboxSpec::mounts
  kHostname,
  kLoopback,
  kDescriptors,
  kSetsid,
  kChdir,
  kRlimit,  // detail: index into SandboxSpec::rlimits
  kParentDeathSignal,
  kParentGone,
  kBoundingSet,
  kAmbientCapabilities,
  kSecurebits,
  kCapabilities,
  kNoNewPrivs,
  kSeccomp,
  kSendListener,
  kFork,
  kReportPid,
  kExec,
};

// "pivot_root", "setresuid", ... for messages.
const char* ApplyStepName(ApplyStep step);

// What the child writes to the error pipe when a step fails. Fixed size, written whole.
struct ApplyFailure {
  int32_t step;    // ApplyStep
  int32_t error;   // errno
  int32_t detail;  // index of the mount step or rlimit, else 0
};

enum class MountKind {
  kMakePrivate,  // mount(NULL, target, MS_REC|MS_PRIVATE)
  kMount,        // mount(source, target, fstype, flags, data): tmpfs, proc, bind
  kSetAttr,      // mount_setattr(target, recursive ? AT_RECURSIVE : 0, attr_set)
  kMkdir,        // mkdir(target, mode)
  kTouch,        // create an empty file (a bind target for a file)
  kSymlink,      // symlink(source, target)
  kWriteFile,    // write `data` (data_len bytes) to a new file `target` with `mode`
  kPivotRoot,    // make `target` the root, detach the old one
};

// One mount-namespace step. Strings point into the spec's storage.
struct MountStep {
  MountKind kind;
  const char* source = nullptr;
  const char* target = nullptr;
  const char* fstype = nullptr;
  unsigned long flags = 0;
  const char* data = nullptr;
  size_t data_len = 0;
  uint64_t attr_set = 0;
  bool recursive = false;
  mode_t mode = 0;
  const char* label = nullptr;  // "bind `/usr`", for the launcher's messages
};

struct RlimitStep {
  int resource;
  rlim_t soft;
  rlim_t hard;
  const char* label;
};

struct SandboxSpec {
  SandboxSpec() = default;
  SandboxSpec(const SandboxSpec&) = delete;
  SandboxSpec& operator=(const SandboxSpec&) = delete;
  ~SandboxSpec();

  // Namespaces: the clone flags (without CLONE_NEWCGROUP, which the child unshares once it
  // sits in its cgroup) and whether to unshare the cgroup namespace.
  int clone_flags = 0;
  bool cgroup_namespace = false;
  bool user_namespace = false;

  // Ids the process takes (inside ids under a user namespace, the host ids otherwise).
  uid_t uid = 0;
  gid_t gid = 0;

  std::vector<MountStep> mounts;
  const char* hostname = nullptr;  // null: keep
  bool loopback = false;

  // Descriptors: pass[i].parent_fd becomes pass[i].child_fd; 0..2 not passed get /dev/null.
  std::vector<std::pair<int, int>> fds;
  int max_target_fd = 2;

  const char* workdir = nullptr;
  std::vector<RlimitStep> rlimits;

  int cap_last_cap = 40;
  cap_t empty_caps = nullptr;  // cap_init(): every set empty; owned

  bool has_seccomp = false;
  SeccompProgram seccomp;

  // execve(exec_candidates[i], argv, envp) for each i until one does not fail with ENOENT:
  // one candidate for an absolute argv[0], one per PATH entry for a bare name.
  std::vector<const char*> exec_candidates;
  std::vector<char*> argv;  // null-terminated
  std::vector<char*> envp;  // null-terminated

  // The launcher's own argv and environment strings, inherited by the init (which never
  // execs): /proc/1/cmdline is readable by the tenant, so the init overwrites them.
  uintptr_t arg_start = 0, arg_end = 0, env_start = 0, env_end = 0;

  // Storage: a deque never moves its elements, so c_str() pointers stay valid.
  const char* Keep(std::string text);
  std::deque<std::string> strings;
};

// Where the launcher builds each sandbox's root: an empty directory over which every sandbox
// mounts its own tmpfs (or its image rootfs) inside its private mount namespace.
inline constexpr const char* kDefaultRootDir = "/run/corral/root";

struct PrepareOptions {
  std::string root_dir = kDefaultRootDir;
  uint32_t host_uid = 0;  // the leased host id (used as the ids when there is no user namespace)
  bool seccomp = true;    // false only when the host lacks seccomp and the policy allows that
};

// Builds the spec for `policy` + `request`. Fails (naming the path) on a missing non-optional
// bind source, an image rootfs that lacks a mount point, a bad environment, a filter that does
// not compile.
Result<std::unique_ptr<SandboxSpec>> PrepareSpec(const Policy& policy,
                                                 const LaunchRequest& request,
                                                 const PrepareOptions& options);

// The descriptors the child uses to talk to the launcher. ApplySpec moves them above every
// target descriptor, so it updates the numbers here.
struct ChildChannels {
  int sync_fd = -1;     // read: the go byte; EOF means the launcher is gone
  int error_fd = -1;    // write: an ApplyFailure; close-on-exec, so EOF means exec happened
  int control_fd = -1;  // unix seqpacket: seccomp listener (SCM_RIGHTS), command pid (creds)
  int status_fd = -1;   // write: the command's raw wait status, from the init
};

// Applies `spec` to the calling process (steps 3-12 of the checklist in apply.cc): cgroup
// namespace, ids, mounts and pivot_root, hostname, loopback, descriptors, setsid, workdir,
// rlimits, parent-death signal, capabilities, no_new_privs, seccomp. Async-signal-safe.
// On failure writes an ApplyFailure to channels->error_fd and returns false.
// `close_fds`: close every descriptor not passed instead of marking it close-on-exec (for a
// process that will not exec).
bool ApplySpec(const SandboxSpec& spec, ChildChannels* channels, bool close_fds);

// The cloned child's whole life: waits for the go byte, ApplySpec, then forks the command and
// stays behind as the sandbox's init (reaps orphans, reports the command's wait status, exits).
[[noreturn]] void RunSandboxChild(const SandboxSpec& spec, ChildChannels channels,
                                  const int* close_first, int close_count);

// Executes the command (the last, separate step). Async-signal-safe; returns only on failure,
// after reporting it.
void ExecCommand(const SandboxSpec& spec, const ChildChannels& channels);

// Writes a failure record. Async-signal-safe.
void ReportFailure(int error_fd, ApplyStep step, int error, int detail = 0);

// "pivot_root: Invalid argument", "bind `/usr`: No such file or directory".
Status FailureToStatus(const SandboxSpec& spec, const ApplyFailure& failure);

}  // namespace corral
