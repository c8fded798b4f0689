#include "tests/support/daemon_harness.h"

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <httplib.h>
#include <yaml-cpp/yaml.h>

#include <atomic>
#include <catch2/catch.hpp>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <random>
#include <set>
#include <sstream>
#include <thread>

#include "tests/support/openapi_check.h"

extern char** environ;

namespace corral::testing {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;

// Start-up of a sandboxing daemon on a loaded CI machine: generous, and only a setup bound.
constexpr auto kStartBound = 120s;
constexpr auto kStopBound = 120s;

std::string UniqueSuffix() {
  static std::atomic<int> counter{0};
  std::random_device random;
  return fmt::format("{}-{}-{:06x}", getpid(), counter++, random() & 0xffffff);
}

std::string ReadFile(const std::string& path) {
  std::ifstream file(path);
  std::stringstream text;
  text << file.rdbuf();
  return text.str();
}

// Where this process sits in each cgroup hierarchy; the daemon it spawns starts there too.
std::vector<std::string> OwnCgroupDirs() {
  std::vector<std::string> dirs;
  std::istringstream lines(ReadFile("/proc/self/cgroup"));
  std::string line;
  while (std::getline(lines, line)) {
    size_t first = line.find(':');
    size_t second = line.find(':', first + 1);
    if (first == std::string::npos || second == std::string::npos) continue;
    std::string controllers = line.substr(first + 1, second - first - 1);
    std::string path = line.substr(second + 1);
    if (controllers.empty()) {
      controllers = fs::exists("/sys/fs/cgroup/unified") ? "unified" : "";
    } else if (controllers.starts_with("name=")) {
      controllers = controllers.substr(5);
    }
    std::string dir = "/sys/fs/cgroup/" + controllers + path;
    if (fs::is_directory(dir)) dirs.push_back(dir);
  }
  return dirs;
}

bool WaitExited(pid_t pid, std::chrono::seconds bound, int* status) {
  auto end = std::chrono::steady_clock::now() + bound;
  while (std::chrono::steady_clock::now() < end) {
    pid_t done = waitpid(pid, status, WNOHANG);
    if (done == pid) return true;
    std::this_thread::sleep_for(20ms);
  }
  return false;
}

}  // namespace

std::string HttpResult::code() const {
  if (json.is_object() && json.contains("error") && json["error"].contains("code")) {
    return json["error"]["code"].get<std::string>();
  }
  return "";
}

std::string MakeTempDir(const std::string& prefix) {
  std::string templ = (fs::temp_directory_path() / (prefix + "-XXXXXX")).string();
  char* made = mkdtemp(templ.data());
  REQUIRE(made != nullptr);
  return templ;
}

std::unique_ptr<Daemon> Daemon::Start(DaemonOptions options) {
  std::unique_ptr<Daemon> daemon(new Daemon());
  daemon->state_dir_ = options.state_dir.empty() ? MakeTempDir("corrald-test") : options.state_dir;
  daemon->cgroup_parent_ =
      options.cgroup_parent.empty() ? "corrald-test-" + UniqueSuffix() : options.cgroup_parent;
  daemon->log_path_ = daemon->state_dir_ + "/corrald.log";
  daemon->owns_state_dir_ = options.state_dir.empty();
  // A daemon killed with -9 leaves its port file; never mistake it for the new one's.
  unlink((daemon->state_dir_ + "/corrald.port").c_str());
  daemon->Launch(options);
  bool listening = daemon->WaitForPort();
  INFO("corrald log:\n" << daemon->log());
  REQUIRE(listening);
  return daemon;
}

void Daemon::Launch(const DaemonOptions& options) {
  std::vector<std::string> args = {
      std::string(CORRAL_BUILD_DIR) + "/corrald",
      "--config",
      std::string(CORRAL_SOURCE_DIR) + "/manager/corral.yaml",
      "--listen",
      "127.0.0.1:0",
      "--set",
      "state_dir=" + state_dir_,
      "--set",
      "cgroup.parent=" + cgroup_parent_,
      "--set",
      "log.format=text",
      // The pool's warm workers cost every daemon a sandbox each; tests that use the pool
      // size it themselves (overrides come later and win).
      "--set",
      "pool.size=0",
  };
  if (!options.policies_dir.empty()) {
    args.insert(args.end(), {"--set", "policies_dir=" + options.policies_dir});
  }
  for (const std::string& value : options.overrides) args.insert(args.end(), {"--set", value});

  std::vector<char*> argv;
  for (std::string& arg : args) argv.push_back(arg.data());
  argv.push_back(nullptr);
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_addopen(&actions, 1, log_path_.c_str(), O_WRONLY | O_CREAT | O_APPEND,
                                   0600);
  posix_spawn_file_actions_adddup2(&actions, 1, 2);
  std::vector<char*> envp;
  for (char** entry = environ; *entry != nullptr; ++entry) envp.push_back(*entry);
  std::vector<std::string> extra_env = options.env;
  for (std::string& entry : extra_env) envp.push_back(entry.data());
  envp.push_back(nullptr);
  int error = posix_spawn(&pid_, argv[0], &actions, nullptr, argv.data(), envp.data());
  posix_spawn_file_actions_destroy(&actions);
  REQUIRE(error == 0);
}

bool Daemon::WaitForPort() {
  std::string port_file = state_dir_ + "/corrald.port";
  auto end = std::chrono::steady_clock::now() + kStartBound;
  while (std::chrono::steady_clock::now() < end) {
    int status = 0;
    if (waitpid(pid_, &status, WNOHANG) == pid_) {
      pid_ = -1;
      return false;
    }
    std::string text = ReadFile(port_file);
    if (!text.empty() && text.back() == '\n') {
      port_ = std::stoi(text);
      return true;
    }
    std::this_thread::sleep_for(20ms);
  }
  return false;
}

Daemon::~Daemon() {
  if (running()) {
    int status = Terminate();
    CHECK(WIFEXITED(status));
    CHECK(WEXITSTATUS(status) == 0);
  }
  std::vector<std::string> mismatches = OpenApiMismatches();
  INFO("responses that do not match docs/openapi.yaml");
  CHECK(mismatches.empty());
  for (const std::string& mismatch : mismatches) WARN(mismatch);
  if (!keep_cgroup_parent_) {
    for (const std::string& dir : CgroupParentDirs()) rmdir(dir.c_str());
  }
  if (owns_state_dir_) fs::remove_all(state_dir_);
}

std::string Daemon::log() const {
  return ReadFile(log_path_);
}

std::vector<std::string> Daemon::OpenApiMismatches() {
  std::lock_guard<std::mutex> lock(mismatches_mutex_);
  return mismatches_;
}

HttpResult Daemon::Finish(const std::string& method, const std::string& path, int status,
                          std::string body) {
  HttpResult result;
  result.status = status;
  result.body = std::move(body);
  result.json = nlohmann::json::parse(result.body, nullptr, false);
  if (result.json.is_discarded()) result.json = nullptr;
  if (status != 0) {
    std::string problem = CheckAgainstOpenApi(method, path, status, result.body);
    if (!problem.empty()) {
      std::lock_guard<std::mutex> lock(mismatches_mutex_);
      mismatches_.push_back(problem + " body: " + result.body.substr(0, 300));
    }
  }
  return result;
}

namespace {

std::unique_ptr<httplib::Client> MakeClient(int port) {
  auto client = std::make_unique<httplib::Client>("127.0.0.1", port);
  client->set_connection_timeout(30s);
  client->set_read_timeout(600s);
  client->set_write_timeout(60s);
  return client;
}

}  // namespace

HttpResult Daemon::Get(const std::string& path) {
  auto response = MakeClient(port_)->Get(path.c_str());
  if (!response) return HttpResult{};
  return Finish("GET", path, response->status, response->body);
}

HttpResult Daemon::Delete(const std::string& path) {
  auto response = MakeClient(port_)->Delete(path.c_str());
  if (!response) return HttpResult{};
  return Finish("DELETE", path, response->status, response->body);
}

HttpResult Daemon::Post(const std::string& path, const nlohmann::json& body) {
  return PostRaw(path, body.dump());
}

HttpResult Daemon::PostRaw(const std::string& path, const std::string& body,
                           const std::string& content_type) {
  auto response = MakeClient(port_)->Post(path.c_str(), body, content_type.c_str());
  if (!response) return HttpResult{};
  return Finish("POST", path, response->status, response->body);
}

std::string Daemon::CreateSession(const nlohmann::json& body) {
  HttpResult created = Post("/v1/sessions", body);
  INFO(created.body);
  REQUIRE(created.status == 201);
  return created.json["session_id"].get<std::string>();
}

void Daemon::CreatePythonProgram(const std::string& session, const std::string& program_id,
                                 const std::string& source) {
  HttpResult created = Post("/v1/sessions/" + session + "/programs",
                            {{"program_id", program_id}, {"kind", "python"}, {"source", source}});
  INFO(created.body);
  REQUIRE(created.status == 201);
}

HttpResult Daemon::Execute(const std::string& session, const std::string& program_id,
                           const nlohmann::json& inputs, int timeout_ms) {
  nlohmann::json body = {{"inputs", inputs}};
  if (timeout_ms > 0) body["timeout_ms"] = timeout_ms;
  return Post("/v1/sessions/" + session + "/programs/" + program_id + "/execute", body);
}

int Daemon::Terminate() {
  int status = -1;
  if (!running()) return status;
  kill(pid_, SIGTERM);
  if (!WaitExited(pid_, kStopBound, &status)) {
    kill(pid_, SIGKILL);
    waitpid(pid_, &status, 0);
    FAIL_CHECK("corrald did not stop on SIGTERM; log:\n" << log());
  }
  pid_ = -1;
  return status;
}

void Daemon::KillHard() {
  if (!running()) return;
  kill(pid_, SIGKILL);
  int status = 0;
  waitpid(pid_, &status, 0);
  pid_ = -1;
  keep_cgroup_parent_ = true;
}

std::vector<std::string> Daemon::CgroupParentDirs() const {
  std::vector<std::string> dirs;
  for (const std::string& own : OwnCgroupDirs()) {
    std::string dir = own + "/" + cgroup_parent_;
    if (fs::is_directory(dir)) dirs.push_back(dir);
  }
  return dirs;
}

std::vector<std::string> Daemon::CgroupChildren() const {
  std::set<std::string> children;  // one name per sandbox, whichever hierarchies hold it
  for (const std::string& dir : CgroupParentDirs()) {
    std::error_code error;
    for (const auto& entry : fs::directory_iterator(dir, error)) {
      if (entry.is_directory()) children.insert(entry.path().filename().string());
    }
  }
  return {children.begin(), children.end()};
}

bool ProcessGone(pid_t pid) {
  std::string stat = ReadFile(fmt::format("/proc/{}/stat", pid));
  if (stat.empty()) return true;
  size_t paren = stat.rfind(')');
  return paren != std::string::npos && paren + 2 < stat.size() && stat[paren + 2] == 'Z';
}

std::string MakePolicyDir(const std::string& dir, const std::string& name,
                          const std::vector<std::pair<std::string, std::string>>& overrides) {
  std::string policies = dir + "/policies";
  fs::create_directories(policies);
  for (const auto& entry : fs::directory_iterator(std::string(CORRAL_SOURCE_DIR) + "/policies")) {
    fs::copy_file(entry.path(), policies + "/" + entry.path().filename().string(),
                  fs::copy_options::overwrite_existing);
  }
  YAML::Node policy = YAML::LoadFile(std::string(CORRAL_SOURCE_DIR) + "/policies/default.yaml");
  policy["name"] = name;
  for (const auto& [path, value] : overrides) {
    size_t dot = path.find('.');
    policy[path.substr(0, dot)][path.substr(dot + 1)] = value;
  }
  std::ofstream(policies + "/" + name + ".yaml") << YAML::Dump(policy) << "\n";
  return policies;
}

}  // namespace corral::testing
