// Policy parsing as tables: shipped files parse, and each kind of bad file fails with a message
// that names the source, the path and the reason.
#include <cerrno>
#include <string>
#include <vector>

#include <catch2/catch.hpp>

#include "sandbox/policy.h"

namespace corral {
namespace {

constexpr const char* kSource = "policies/x.yaml";

std::string ShippedPolicy(const std::string& name) {
  return std::string(CORRAL_SOURCE_DIR) + "/policies/" + name + ".yaml";
}

void RequirePolicyError(const Status& status) {
  CHECK(status.category() == ErrorCategory::kInvalidArgument);
  CHECK(status.reason() == "invalid_policy");
}

TEST_CASE("shipped policies load and say what they promise", "[policy]") {
  auto plain = LoadPolicyFile(ShippedPolicy("default"));
  REQUIRE(plain.ok());
  CHECK(plain->name == "default");
  CHECK(plain->limits.memory == 256ull << 20);
  CHECK(plain->limits.pids == 64);
  CHECK(plain->seccomp.action == SeccompAction::kErrno);
  CHECK(plain->seccomp.errno_value == EPERM);
  CHECK(plain->environment.at("PYTHONDONTWRITEBYTECODE") == "1");
  CHECK(plain->filesystem.binds.size() == 8);

  auto strict = LoadPolicyFile(ShippedPolicy("strict"));
  REQUIRE(strict.ok());
  CHECK(strict->limits.memory == 128ull << 20);
  CHECK(strict->limits.cpus == 0.5);
  CHECK(strict->limits.wall_time == std::chrono::seconds(60));
  CHECK(strict->limits.output == 256 * 1024);
  CHECK(strict->limits.kill_on_output_limit);
  CHECK(strict->seccomp.action == SeccompAction::kKill);

  auto numeric = LoadPolicyFile(ShippedPolicy("numeric"));
  REQUIRE(numeric.ok());
  CHECK(numeric->limits.memory == 2ull << 30);
  CHECK(numeric->limits.address_space == 0);
  CHECK(numeric->limits.cpus == 2);
  CHECK(numeric->environment_from_cpus.size() == 5);
}

TEST_CASE("a minimal policy is the documented defaults", "[policy]") {
  auto parsed = ParsePolicy("name: t\n", kSource);
  REQUIRE(parsed.ok());
  Policy expected;
  expected.name = "t";
  expected.source = kSource;
  CHECK(*parsed == expected);
}

TEST_CASE("the name defaults to the file name", "[policy]") {
  auto parsed = ParsePolicy("limits: {memory: 64Mi}\n", "/etc/corral/my-policy.yaml");
  REQUIRE(parsed.ok());
  CHECK(parsed->name == "my-policy");
}

TEST_CASE("binds are paths or maps; the target defaults to the source", "[policy]") {
  auto parsed = ParsePolicy(
      "filesystem:\n"
      "  binds:\n"
      "    - /usr\n"
      "    - {source: /srv/data, target: /data, writable: true, optional: true}\n",
      kSource);
  REQUIRE(parsed.ok());
  const auto& binds = parsed->filesystem.binds;
  REQUIRE(binds.size() == 2);
  CHECK(binds[0] == BindMount{"/usr", "/usr", false, false});
  CHECK(binds[1] == BindMount{"/srv/data", "/data", true, true});
}

TEST_CASE("overrides apply before validation", "[policy]") {
  auto parsed = ParsePolicy("name: t\nlimits:\n  pids: 10\n", kSource,
                            {"limits.memory=128Mi", "seccomp.allow=[ptrace]", "environment.LANG=C",
                             "namespaces.net=false", "limits.pids=20",
                             "filesystem.binds=[/usr, {source: /opt, optional: true}]"});
  REQUIRE(parsed.ok());
  CHECK(parsed->limits.memory == 128ull << 20);
  CHECK(parsed->limits.pids == 20);
  CHECK(parsed->seccomp.allow == std::vector<std::string>{"ptrace"});
  CHECK(parsed->environment.at("LANG") == "C");
  CHECK_FALSE(parsed->namespaces.net);
  REQUIRE(parsed->filesystem.binds.size() == 2);
  CHECK(parsed->filesystem.binds[1].optional);
}

TEST_CASE("a missing policy file is an error with its errno", "[policy]") {
  auto parsed = LoadPolicyFile("/nonexistent/corral/policy.yaml");
  REQUIRE_FALSE(parsed.ok());
  RequirePolicyError(parsed.status());
  CHECK(parsed.status().sys_errno() == ENOENT);
  CHECK_THAT(parsed.status().ToString(),
             Catch::Contains("/nonexistent/corral/policy.yaml: open: No such file"));
}

struct BadCase {
  const char* what;
  const char* yaml;
  std::vector<std::string> overrides;
  const char* message;  // expected substring of the error
};

const BadCase kBadCases[] = {
    {"unknown key at the top",
     "nmae: t\n",
     {},
     "policies/x.yaml: nmae: unknown key (did you mean `name`?)"},
    {"unknown key nested",
     "limits:\n  memroy: 1Mi\n",
     {},
     "policies/x.yaml: limits.memroy: unknown key"},
    {"unknown key in a bind",
     "filesystem:\n  binds: [{source: /usr, mode: rw}]\n",
     {},
     "filesystem.binds[0].mode: unknown key"},
    {"section of the wrong type", "limits: 5\n", {}, "limits: expected a map, got a scalar"},
    {"list of the wrong type",
     "filesystem:\n  binds: /usr\n",
     {},
     "filesystem.binds: expected a list, got a scalar"},
    {"scalar of the wrong type",
     "limits:\n  memory: [1]\n",
     {},
     "limits.memory: expected a size, got a list"},
    {"missing value", "limits:\n  memory:\n", {}, "limits.memory: expected a size, got nothing"},
    {"bad size",
     "limits:\n  memory: 12Zb\n",
     {},
     "policies/x.yaml: limits.memory: bad size `12Zb` (use a number with an optional suffix"},
    {"the line of a bad value", "name: t\nlimits:\n  memory: 12Zb\n", {}, "(line 3)"},
    {"bad duration", "limits:\n  wall_time: 5x\n", {}, "limits.wall_time: bad duration `5x`"},
    {"bad count", "limits:\n  pids: -1\n", {}, "limits.pids: expected a whole number"},
    {"bad bool",
     "namespaces:\n  net: yes\n",
     {},
     "namespaces.net: expected true or false, got `yes`"},
    {"bad enum",
     "seccomp:\n  action: warn\n",
     {},
     "seccomp.action: unknown value `warn` (known: errno, kill)"},
    {"bad errno name", "seccomp:\n  errno: EWHAT\n", {}, "seccomp.errno: unknown value `EWHAT`"},
    {"unknown syscall name",
     "seccomp:\n  allow: [ptrace, not_a_call]\n",
     {},
     "seccomp.allow[1]: unknown syscall `not_a_call`"},
    {"syscall both allowed and denied",
     "seccomp:\n  allow: [ptrace]\n  deny: [ptrace]\n",
     {},
     "seccomp.deny: a syscall is both"},
    {"unknown optional facility",
     "optional: [cgroup.magic]\n",
     {},
     "optional[0]: unknown value `cgroup.magic`"},
    {"relative path",
     "filesystem:\n  binds: [usr]\n",
     {},
     "filesystem.binds[0]: path `usr` must be absolute"},
    {"`..` in a path",
     "filesystem:\n  binds: [{source: /usr/../etc}]\n",
     {},
     "path `/usr/../etc` must not contain `..`"},
    {"relative workdir", "filesystem:\n  workdir: tmp\n", {}, "filesystem.workdir: path `tmp`"},
    {"bind over /proc",
     "filesystem:\n  binds: [{source: /srv, target: /proc}]\n",
     {},
     "`/proc` is mounted by the launcher itself"},
    {"bind target twice",
     "filesystem:\n  binds: [/usr, {source: /opt, target: /usr}]\n",
     {},
     "filesystem.binds[1]: `/usr` is bound twice"},
    {"bad env name",
     "environment:\n  1BAD: x\n",
     {},
     "environment.1BAD: `1BAD` is not a valid environment name"},
    {"bad env name from cpus",
     "environment_from_cpus: [OMP-THREADS]\n",
     {},
     "environment_from_cpus[0]: `OMP-THREADS` is not a valid environment name"},
    {"variable set twice",
     "environment: {A: x}\nenvironment_from_cpus: [A]\n",
     {},
     "environment_from_cpus: a variable is also set in environment"},
    {"bad hostname", "hostname: -box-\n", {}, "hostname: `-box-` is not a valid host name"},
    {"user namespace off",
     "namespaces:\n  user: false\n",
     {},
     "policies/x.yaml: namespaces.user: must be true: host id mapping needs a user namespace"},
    {"host ids of real accounts",
     "user:\n  host_id_base: 1000\n",
     {},
     "user.host_id_base: must be at least 65536"},
    {"unbounded tmpfs", "filesystem:\n  tmp_size: 0\n", {}, "filesystem.tmp_size: must be above 0"},
    {"memory too small",
     "limits:\n  memory: 1Mi\n",
     {},
     "limits.memory: must be 0 (no limit) or at least 8Mi"},
    {"cpus out of range",
     "limits:\n  cpus: 2000\n",
     {},
     "limits.cpus: must be between 0 (no quota) and 1024"},
    {"duplicate key",
     "limits:\n  memory: 1Gi\n  memory: 2Gi\n",
     {},
     "limits.memory: duplicate key"},
    {"bad override path",
     "name: t\n",
     {"limits.memroy=1Mi"},
     "policies/x.yaml: override `limits.memroy=1Mi`: limits.memroy: unknown key"},
    {"override of a whole section",
     "name: t\n",
     {"limits={memory: 1Gi}"},
     "override `limits={memory: 1Gi}`: limits: a section; set one of its fields"},
    {"override without a value",
     "name: t\n",
     {"limits.memory"},
     "override `limits.memory`: expected path=value"},
    {"bad override value syntax",
     "name: t\n",
     {"limits.memory=[1"},
     "override `limits.memory=[1`: line 1"},
    {"bad override value",
     "name: t\n",
     {"limits.memory=lots"},
     "override `limits.memory=lots`: limits.memory: bad size `lots`"},
    {"override into a scalar",
     "limits: 5\n",
     {"limits.memory=1Gi"},
     "override `limits.memory=1Gi`: limits: expected a map"},
    {"empty file", "", {}, "policies/x.yaml: the policy is empty"},
    {"only comments", "# nothing here\n", {}, "the policy is empty"},
    {"not a map", "- a\n- b\n", {}, "expected a map of settings at the top, got a list"},
    {"YAML syntax error",
     "name: t\nlimits:\n  memory: 1Mi\n pids: 3\n",
     {},
     "policies/x.yaml: line 4, column 2: bad YAML"},
};

TEST_CASE("each kind of bad policy fails with its path and reason", "[policy]") {
  for (const BadCase& bad : kBadCases) {
    SECTION(bad.what) {
      auto parsed = ParsePolicy(bad.yaml, kSource, bad.overrides);
      REQUIRE_FALSE(parsed.ok());
      RequirePolicyError(parsed.status());
      CHECK_THAT(parsed.status().message(), Catch::Contains(bad.message));
    }
  }
}

TEST_CASE("an override of a good file names itself when its value is bad", "[policy]") {
  auto parsed = LoadPolicyFile(ShippedPolicy("default"), {"limits.cpus=-1"});
  REQUIRE_FALSE(parsed.ok());
  CHECK_THAT(parsed.status().message(), Catch::Contains("default.yaml: override `limits.cpus=-1`"));
  CHECK_THAT(parsed.status().message(), Catch::Contains("limits.cpus: must be between"));
}

}  // namespace
}  // namespace corral
