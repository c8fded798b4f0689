// The seccomp profiles as data: each an allow-list of x86_64 syscall names.
//
// "python" is modelled on what Docker's default profile allows an unprivileged container,
// minus what corral refuses on top (see sandbox/seccomp.h): ptrace and process_vm_*, io_uring_*,
// memfd_secret, process_madvise, pidfd_getfd, the keyring, the mount family and the new mount
// API, unshare/setns, chroot, handle-based opens, and the NUMA policy calls. Everything not
// listed here is refused. clone, socket, ioctl and personality are listed but also guarded by
// argument rules in sandbox/seccomp.cc; clone3 is never allowed (its flags live in memory the
// filter cannot read, so it answers ENOSYS and libc falls back to clone).
#include <span>
#include <string_view>

#include "sandbox/seccomp_internal.h"

namespace corral::seccomp_internal {
namespace {

// Grouped by concern, several names a line: a table to read, not code to format.
// clang-format off
constexpr std::string_view kPythonProfile[] = {
    // Files and descriptors.
    "read", "write", "open", "openat", "openat2", "creat", "close", "close_range", "lseek",
    "pread64", "pwrite64", "readv", "writev", "preadv", "pwritev", "preadv2", "pwritev2",
    "dup", "dup2", "dup3", "pipe", "pipe2", "fcntl", "flock", "fsync", "fdatasync", "syncfs",
    "sync", "sync_file_range", "truncate", "ftruncate", "fallocate", "fadvise64", "readahead",
    "sendfile", "splice", "tee", "vmsplice", "copy_file_range", "ioctl",
    "stat", "fstat", "lstat", "newfstatat", "statx", "statfs", "fstatfs", "access",
    "faccessat", "faccessat2", "getdents", "getdents64", "getcwd", "chdir", "fchdir",
    "rename", "renameat", "renameat2", "mkdir", "mkdirat", "rmdir", "link", "linkat",
    "unlink", "unlinkat", "symlink", "symlinkat", "readlink", "readlinkat", "mknod",
    "mknodat", "chmod", "fchmod", "fchmodat", "fchmodat2", "chown", "fchown", "lchown",
    "fchownat", "umask", "utime", "utimes", "futimesat", "utimensat",
    "setxattr", "lsetxattr", "fsetxattr", "getxattr", "lgetxattr", "fgetxattr", "listxattr",
    "llistxattr", "flistxattr", "removexattr", "lremovexattr", "fremovexattr",
    "inotify_init", "inotify_init1", "inotify_add_watch", "inotify_rm_watch", "memfd_create",
    // Memory.
    "brk", "mmap", "munmap", "mremap", "mprotect", "msync", "mincore", "madvise", "mlock",
    "mlock2", "munlock", "mlockall", "munlockall", "membarrier", "pkey_mprotect", "pkey_alloc",
    "pkey_free",
    // A libc built with CET shadow stacks allocates one per thread with it.
    "map_shadow_stack",
    // Processes, threads and identity (ids only change within the sandbox's user namespace).
    "clone", "fork", "vfork", "execve", "execveat", "exit", "exit_group", "wait4", "waitid",
    "kill", "tkill", "tgkill", "getpid", "getppid", "gettid", "getpgid", "setpgid", "getpgrp",
    "getsid", "setsid", "getuid", "geteuid", "getgid", "getegid", "setuid", "setgid",
    "setreuid", "setregid", "setresuid", "getresuid", "setresgid", "getresgid", "getgroups",
    "setgroups", "setfsuid", "setfsgid", "capget", "capset", "prctl", "arch_prctl",
    "personality", "set_tid_address", "set_robust_list", "get_robust_list", "rseq", "futex",
    "futex_waitv", "futex_wake", "futex_wait", "futex_requeue", "seccomp", "getrlimit",
    "setrlimit", "prlimit64", "getrusage", "getpriority", "setpriority", "ioprio_get",
    "ioprio_set", "sched_yield", "sched_setparam", "sched_getparam", "sched_setscheduler",
    "sched_getscheduler", "sched_get_priority_max", "sched_get_priority_min",
    "sched_rr_get_interval", "sched_setaffinity", "sched_getaffinity", "sched_setattr",
    "sched_getattr", "getcpu", "pidfd_open", "pidfd_send_signal", "process_mrelease",
    "landlock_create_ruleset", "landlock_add_rule", "landlock_restrict_self",
    // Signals.
    "rt_sigaction", "rt_sigprocmask", "rt_sigreturn", "rt_sigpending", "rt_sigtimedwait",
    "rt_sigqueueinfo", "rt_tgsigqueueinfo", "rt_sigsuspend", "sigaltstack", "signalfd",
    "signalfd4", "pause", "restart_syscall",
    // Time (reading only: clock_settime, settimeofday, adjtimex are refused).
    "time", "gettimeofday", "clock_gettime", "clock_getres", "clock_nanosleep", "nanosleep",
    "times", "alarm", "getitimer", "setitimer", "timer_create", "timer_settime",
    "timer_gettime", "timer_getoverrun", "timer_delete", "timerfd_create", "timerfd_settime",
    "timerfd_gettime",
    // Waiting and events.
    "poll", "ppoll", "select", "pselect6", "epoll_create", "epoll_create1", "epoll_ctl",
    "epoll_wait", "epoll_pwait", "epoll_pwait2", "eventfd", "eventfd2",
    // Sockets (socket itself is limited to AF_UNIX, AF_INET and AF_INET6 by argument rules).
    "socket", "socketpair", "bind", "listen", "accept", "accept4", "connect", "shutdown",
    "getsockname", "getpeername", "setsockopt", "getsockopt", "sendto", "recvfrom",
    "sendmsg", "recvmsg", "sendmmsg", "recvmmsg",
    // System V and POSIX IPC (private to the sandbox's IPC namespace).
    "shmget", "shmat", "shmdt", "shmctl", "semget", "semop", "semtimedop", "semctl", "msgget",
    "msgsnd", "msgrcv", "msgctl", "mq_open", "mq_unlink", "mq_timedsend", "mq_timedreceive",
    "mq_notify", "mq_getsetattr",
    // Asynchronous I/O (the old interface; io_uring is refused).
    "io_setup", "io_destroy", "io_submit", "io_cancel", "io_getevents", "io_pgetevents",
    // System information.
    "uname", "sysinfo", "getrandom",
};
// clang-format on

struct Profile {
  std::string_view name;
  std::span<const std::string_view> allow;
};

constexpr Profile kProfiles[] = {
    {"python", kPythonProfile},
};

}  // namespace

std::span<const std::string_view> ProfileAllowList(std::string_view profile) {
  for (const Profile& entry : kProfiles) {
    if (entry.name == profile) return entry.allow;
  }
  return {};
}

}  // namespace corral::seccomp_internal
