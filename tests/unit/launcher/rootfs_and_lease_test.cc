// An image rootfs as the sandbox's root, and host-id leases.
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>

#include "sandbox/user_ns.h"
#include "tests/unit/launcher/launcher_helpers.h"

namespace corral::testing {
namespace {

namespace fs = std::filesystem;

// A temporary directory, searchable by the sandbox's unprivileged host uid.
struct TempDir {
  TempDir() {
    char pattern[] = "/tmp/corral-launcher-XXXXXX";
    REQUIRE(mkdtemp(pattern) != nullptr);
    path = pattern;
    chmod(path.c_str(), 0755);
  }
  ~TempDir() { fs::remove_all(path); }
  std::string path;
};

TEST_CASE("launcher: an image rootfs is the read-only root, with host binds on its dirs") {
  auto launcher = MakeLauncher();
  CORRAL_SKIP_IF(SandboxingUnavailable(*launcher), "no user namespaces or seccomp");
  TempDir image;
  for (const char* dir : {"proc", "dev", "tmp", "usr", "etc", "image-only"}) {
    fs::create_directory(image.path + "/" + dir);
    chmod((image.path + "/" + dir).c_str(), 0755);
  }
  for (const char* link : {"bin", "lib", "lib64"}) {
    fs::create_symlink(std::string("usr/") + link, image.path + "/" + link);
  }
  fs::copy_file("/etc/ld.so.cache", image.path + "/etc/ld.so.cache");
  chmod((image.path + "/etc/ld.so.cache").c_str(), 0644);

  Policy policy = DefaultPolicy();
  policy.filesystem.rootfs = image.path;
  policy.filesystem.binds.clear();
  auto captured = std::make_shared<Captured>();
  LaunchRequest request = PythonRequest(
      "rootfs",
      "import os\n"
      "print(sorted(os.listdir('/')))\n"
      "try: open('/image-only/x', 'w')\n"
      "except OSError as e: print(e.errno)\n",
      captured);
  request.extra_binds.push_back({"/usr", "", false, false});
  Result<std::unique_ptr<Sandbox>> sandbox = launcher->Launch(policy, request);
  INFO(sandbox.status().ToString());
  REQUIRE(sandbox.ok());
  CHECK((*sandbox)->Wait().exit_code == 0);
  CHECK(captured->out ==
        "['bin', 'dev', 'etc', 'image-only', 'lib', 'lib64', 'proc', 'tmp', 'usr']\n30\n");
}

TEST_CASE("launcher: an image rootfs without a mount point is refused by name") {
  auto launcher = MakeLauncher();
  TempDir image;
  Policy policy = DefaultPolicy();
  policy.filesystem.rootfs = image.path;
  policy.filesystem.binds.clear();
  LaunchRequest request;
  request.name = UniqueName("rootfs-bad");
  request.argv = {"/usr/bin/python3"};
  Result<std::unique_ptr<Sandbox>> sandbox = launcher->Launch(policy, request);
  REQUIRE_FALSE(sandbox.ok());
  CHECK_THAT(sandbox.status().ToString(), Catch::Contains("mount point `/proc`"));
}

TEST_CASE("id lease: ids are exclusive until released") {
  TempDir locks;
  Result<IdLease> first = IdLease::Acquire(locks.path, 5000, 2);
  Result<IdLease> second = IdLease::Acquire(locks.path, 5000, 2);
  REQUIRE(first.ok());
  REQUIRE(second.ok());
  CHECK(first->id() != second->id());
  CHECK(first->id() >= 5000);
  CHECK(first->id() < 5002);

  Result<IdLease> third = IdLease::Acquire(locks.path, 5000, 2);
  REQUIRE_FALSE(third.ok());
  CHECK(third.status().category() == ErrorCategory::kResourceExhausted);

  uint32_t freed = first->id();
  first->Release();
  Result<IdLease> again = IdLease::Acquire(locks.path, 5000, 2);
  REQUIRE(again.ok());
  CHECK(again->id() == freed);
}

}  // namespace
}  // namespace corral::testing
