// File access and parsing for the cgroup module: cgroupfs files, mountinfo, /proc/self/cgroup.
#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <sstream>
#include <thread>

#include "sandbox/cgroup_internal.h"
#include "sandbox/unique_fd.h"

namespace corral::cgroup_internal {
namespace {

constexpr size_t kMaxNameLength = 128;

std::vector<std::string> Split(std::string_view text, char separator) {
  std::vector<std::string> parts;
  size_t start = 0;
  while (start <= text.size()) {
    size_t end = text.find(separator, start);
    if (end == std::string_view::npos) end = text.size();
    if (end > start) parts.emplace_back(text.substr(start, end - start));
    start = end + 1;
  }
  return parts;
}

std::vector<std::string_view> Lines(std::string_view text) {
  std::vector<std::string_view> lines;
  size_t start = 0;
  while (start < text.size()) {
    size_t end = text.find('\n', start);
    if (end == std::string_view::npos) end = text.size();
    lines.push_back(text.substr(start, end - start));
    start = end + 1;
  }
  return lines;
}

bool ParseUint(std::string_view text, uint64_t* value) {
  while (!text.empty() && (text.back() == '\n' || text.back() == ' ')) text.remove_suffix(1);
  if (text == "max") {
    *value = UINT64_MAX;
    return true;
  }
  auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), *value);
  return error == std::errc() && end == text.data() + text.size();
}

// mountinfo escapes space, tab, newline and backslash in paths as \ooo.
std::string Unescape(std::string_view text) {
  std::string out;
  for (size_t i = 0; i < text.size(); ++i) {
    if (text[i] == '\\' && i + 3 < text.size()) {
      int value = 0;
      bool octal = true;
      for (size_t j = 1; j <= 3; ++j) {
        char c = text[i + j];
        if (c < '0' || c > '7') octal = false;
        value = value * 8 + (c - '0');
      }
      if (octal) {
        out.push_back(static_cast<char>(value));
        i += 3;
        continue;
      }
    }
    out.push_back(text[i]);
  }
  return out;
}

}  // namespace

Status CgroupFs::Write(const std::string& path, std::string_view data) const {
  int flags = O_WRONLY | O_TRUNC | O_CLOEXEC | O_NOFOLLOW;
  if (fake_tree_) flags |= O_CREAT;
  UniqueFd fd(::open(path.c_str(), flags, 0644));
  if (!fd) return ErrnoStatus("open `{}`", path);
  // cgroupfs takes one value per write(2); a short write would be a kernel refusal anyway.
  ssize_t written = ::write(fd.get(), data.data(), data.size());
  if (written < 0) return ErrnoStatus("write `{}`", path);
  if (static_cast<size_t>(written) != data.size()) {
    return Status::Internal(fmt::format("write `{}`: short write", path));
  }
  return Status::Ok();
}

Result<std::string> CgroupFs::Read(const std::string& path) const {
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW));
  if (!fd) return ErrnoStatus("open `{}`", path);
  std::string text;
  char buffer[4096];
  while (true) {
    ssize_t got = ::read(fd.get(), buffer, sizeof(buffer));
    if (got < 0 && errno == EINTR) continue;
    if (got < 0) return ErrnoStatus("read `{}`", path);
    if (got == 0) break;
    text.append(buffer, static_cast<size_t>(got));
  }
  return text;
}

bool CgroupFs::Exists(const std::string& path) const {
  struct stat st;
  return ::fstatat(AT_FDCWD, path.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0;
}

Result<uint64_t> CgroupFs::ReadNumber(const std::string& path) const {
  CORRAL_ASSIGN_OR_RETURN(std::string text, Read(path));
  uint64_t value = 0;
  if (!ParseUint(text, &value)) {
    return Status::Internal(fmt::format("parse `{}`: not a number: `{}`", path, text));
  }
  return value;
}

Result<uint64_t> CgroupFs::ReadKey(const std::string& path, std::string_view key) const {
  CORRAL_ASSIGN_OR_RETURN(std::string text, Read(path));
  for (std::string_view line : Lines(text)) {
    size_t space = line.find(' ');
    if (space == std::string_view::npos || line.substr(0, space) != key) continue;
    uint64_t value = 0;
    if (!ParseUint(line.substr(space + 1), &value)) {
      return Status::Internal(fmt::format("parse `{}`: bad `{}` line", path, key));
    }
    return value;
  }
  return uint64_t{0};
}

Result<std::vector<pid_t>> CgroupFs::ReadPids(const std::string& procs_path) const {
  CORRAL_ASSIGN_OR_RETURN(std::string text, Read(procs_path));
  std::vector<pid_t> pids;
  for (std::string_view line : Lines(text)) {
    uint64_t pid = 0;
    if (line.empty()) continue;
    if (!ParseUint(line, &pid) || pid == 0 || pid > INT32_MAX) {
      return Status::Internal(fmt::format("parse `{}`: bad pid `{}`", procs_path, line));
    }
    pids.push_back(static_cast<pid_t>(pid));
  }
  return pids;
}

Status CgroupFs::MakeDir(const std::string& path) const {
  if (::mkdir(path.c_str(), 0755) != 0) return ErrnoStatus("mkdir `{}`", path);
  return Status::Ok();
}

Status CgroupFs::RemoveDir(const std::string& path) const {
  if (fake_tree_) {
    // A fake directory holds the files the test and Write created; the kernel would drop them.
    DIR* dir = ::opendir(path.c_str());
    if (dir != nullptr) {
      while (dirent* entry = ::readdir(dir)) {
        if (entry->d_type == DT_REG) ::unlinkat(::dirfd(dir), entry->d_name, 0);
      }
      ::closedir(dir);
    }
  }
  constexpr int kAttempts = 50;
  for (int attempt = 0;; ++attempt) {
    if (::rmdir(path.c_str()) == 0 || errno == ENOENT) return Status::Ok();
    if (errno != EBUSY || attempt == kAttempts) return ErrnoStatus("rmdir `{}`", path);
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
}

Result<std::vector<std::string>> CgroupFs::ListSubdirs(const std::string& path) const {
  DIR* dir = ::opendir(path.c_str());
  if (dir == nullptr) return ErrnoStatus("open directory `{}`", path);
  std::vector<std::string> names;
  while (dirent* entry = ::readdir(dir)) {
    std::string_view name = entry->d_name;
    if (entry->d_type != DT_DIR || name == "." || name == "..") continue;
    names.emplace_back(name);
  }
  ::closedir(dir);
  return names;
}

bool CgroupDirs::has_v1() const {
  return !memory.empty() || !pids.empty() || !cpu.empty() || !cpuacct.empty() || !freezer.empty();
}

std::vector<std::string> CgroupDirs::All() const {
  std::vector<std::string> dirs;
  for (const std::string* dir : {&memory, &pids, &cpu, &cpuacct, &freezer, &unified}) {
    if (dir->empty()) continue;
    if (std::find(dirs.begin(), dirs.end(), *dir) == dirs.end()) dirs.push_back(*dir);
  }
  return dirs;
}

CgroupDirs CgroupDirs::Child(std::string_view name) const {
  CgroupDirs child;
  auto join = [name](const std::string& dir) {
    return dir.empty() ? std::string() : fmt::format("{}/{}", dir, name);
  };
  child.memory = join(memory);
  child.pids = join(pids);
  child.cpu = join(cpu);
  child.cpuacct = join(cpuacct);
  child.freezer = join(freezer);
  child.unified = join(unified);
  return child;
}

Status ValidateName(std::string_view name) {
  bool ok = !name.empty() && name.size() <= kMaxNameLength && name.front() != '.';
  for (char c : name) {
    bool allowed = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                   c == '_' || c == '.' || c == '-';
    if (!allowed) ok = false;
  }
  if (ok) return Status::Ok();
  return Status::InvalidArgument(fmt::format(
      "cgroup name `{}`: must be 1-128 of [A-Za-z0-9_.-], not starting with '.'", name));
}

Result<std::vector<Mount>> ParseMountInfo(std::string_view text) {
  // "36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 - ext3 /dev/root rw,errors=continue"
  std::vector<Mount> mounts;
  for (std::string_view line : Lines(text)) {
    std::vector<std::string> fields = Split(line, ' ');
    // Optional fields ("shared:4") run from the seventh field to a lone "-".
    constexpr size_t kFixedFields = 6;
    auto dash = fields.size() < kFixedFields
                    ? fields.end()
                    : std::find(fields.begin() + kFixedFields, fields.end(), "-");
    if (dash == fields.end() || fields.end() - dash < 4) {
      if (line.empty()) continue;
      return Status::InvalidArgument(fmt::format("mountinfo: malformed line `{}`", line));
    }
    Mount mount;
    mount.root = Unescape(fields[3]);
    mount.mount_point = Unescape(fields[4]);
    mount.fstype = *(dash + 1);
    mount.super_options = Split(*(dash + 3), ',');
    mounts.push_back(std::move(mount));
  }
  return mounts;
}

Result<std::vector<SelfCgroup>> ParseSelfCgroup(std::string_view text) {
  // "4:memory:/process_api/abc", "1:cpu,cpuacct:/", "0::/kubepods/pod1"
  std::vector<SelfCgroup> entries;
  for (std::string_view line : Lines(text)) {
    size_t first = line.find(':');
    size_t second = first == std::string_view::npos ? first : line.find(':', first + 1);
    if (second == std::string_view::npos) {
      if (line.empty()) continue;
      return Status::InvalidArgument(fmt::format("cgroup membership: malformed line `{}`", line));
    }
    SelfCgroup entry;
    entry.controllers = Split(line.substr(first + 1, second - first - 1), ',');
    entry.path = std::string(line.substr(second + 1));
    entries.push_back(std::move(entry));
  }
  return entries;
}

Status KillEach(const CgroupFs& fs, const std::string& procs_path) {
  CORRAL_ASSIGN_OR_RETURN(std::vector<pid_t> pids, fs.ReadPids(procs_path));
  for (pid_t pid : pids) {
    // ESRCH: it died between the listing and now, which is what we want.
    if (::kill(pid, SIGKILL) != 0 && errno != ESRCH) return ErrnoStatus("kill pid {}", pid);
  }
  return Status::Ok();
}

}  // namespace corral::cgroup_internal
