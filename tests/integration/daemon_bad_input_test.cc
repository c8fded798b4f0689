// Hostile HTTP input (S52): every case gets a clear 400 or 413 naming what is wrong, nothing
// is created, and the session that exists keeps working.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <catch2/catch.hpp>

#include "tests/support/daemon_harness.h"

namespace corral::testing {
namespace {

struct BadCase {
  std::string name;
  std::string path;  // appended to /v1/sessions
  std::string body;
  int status;
  std::string code;
  std::string named;  // text the message must contain
};

std::string Nested(int depth) {
  return std::string(depth, '[') + std::string(depth, ']');
}

std::vector<BadCase> Cases() {
  std::string huge(2 << 20, 'a');
  std::string big(600 << 10, 'a');
  return {
      {"not JSON", "", "hello", 400, "invalid_json", "JSON"},
      {"truncated JSON", "", "{\"session_id\": \"x", 400, "invalid_json", "JSON"},
      {"an array", "", "[1, 2]", 400, "invalid_json", "object"},
      {"wrong type", "", R"({"session_id": 5})", 400, "invalid_field", "session_id"},
      {"unknown field", "", R"({"bogus": 1})", 400, "invalid_field", "bogus"},
      {"slash in id", "", R"({"session_id": "a/b"})", 400, "invalid_field", "session_id"},
      {"dot-dot id", "", R"({"session_id": ".."})", 400, "invalid_field", "session_id"},
      {"dot-dot inside id", "", R"({"session_id": "a..b"})", 400, "invalid_field", "session_id"},
      {"NUL in id", "", R"({"session_id": "a\u0000b"})", 400, "invalid_field", "session_id"},
      {"10 KB id", "", R"({"session_id": ")" + std::string(10240, 'x') + "\"}", 400,
       "invalid_field", "session_id"},
      {"big user id", "", R"({"user_id": ")" + big + "\"}", 400, "invalid_field", "user_id"},
      {"policy path", "", R"({"policy": "../../etc/passwd"})", 400, "invalid_field", "policy"},
      {"unknown policy", "", R"({"policy": "nonexistent"})", 400, "policy_not_found",
       "nonexistent"},
      {"pool backend", "", R"({"backend": "pool"})", 400, "backend_unavailable", "pool"},
      {"metadata not object", "", R"({"metadata": [1]})", 400, "invalid_field", "metadata"},
      {"huge metadata", "", R"({"metadata": {"x": ")" + big + "\"}}", 400, "invalid_field",
       "metadata"},
      {"body over the limit", "", R"({"session_id": ")" + huge + "\"}", 413, "payload_too_large",
       "max_request_bytes"},
      {"100000 nested arrays", "", Nested(100000), 400, "invalid_json", "nested"},
      {"nested metadata", "", R"({"metadata": {"x": )" + Nested(100000) + "}}", 400, "invalid_json",
       "nested"},
  };
}

std::vector<BadCase> CallCases(const std::string& s) {
  std::string base = "/" + s;
  return {
      {"no command", base + "/call", "{}", 400, "invalid_field", "command"},
      {"unknown command", base + "/call", R"({"command": "drop_session"})", 400, "unknown_command",
       "drop_session"},
      {"args not object", base + "/call", R"({"command": "ping", "args": 3})", 400, "invalid_field",
       "args"},
      {"bad timeout", base + "/call", R"({"command": "ping", "timeout_ms": "soon"})", 400,
       "invalid_field", "timeout_ms"},
      {"negative timeout", base + "/call", R"({"command": "ping", "timeout_ms": -5})", 400,
       "invalid_field", "timeout_ms"},
      {"bad kind", base + "/programs", R"({"program_id": "p", "kind": "ruby", "source": ""})", 400,
       "invalid_field", "kind"},
      {"program id with slash", base + "/programs",
       R"({"program_id": "a/b", "kind": "python", "source": ""})", 400, "invalid_field",
       "program_id"},
      {"inputs not object", base + "/programs/p/execute", R"({"inputs": "x"})", 400,
       "invalid_field", "inputs"},
      {"unknown session", "/nope/call", R"({"command": "ping"})", 404, "session_not_found", "nope"},
  };
}

void CheckCase(Daemon& daemon, const BadCase& c) {
  HttpResult r = daemon.PostRaw("/v1/sessions" + c.path, c.body);
  INFO(c.name << ": " << r.status << " " << r.body.substr(0, 400));
  CHECK(r.status == c.status);
  CHECK(r.code() == c.code);
  CHECK(r.json["error"]["message"].get<std::string>().find(c.named) != std::string::npos);
}

TEST_CASE("daemon: hostile request bodies get 400/413 naming the field, nothing created (S52)") {
  auto daemon = Daemon::Start();
  std::string s = daemon->CreateSession({{"session_id", "keeper"}});
  daemon->CreatePythonProgram(s, "p", "def forward():\n    return 'ok'\n");
  for (const BadCase& c : Cases()) CheckCase(*daemon, c);
  for (const BadCase& c : CallCases(s)) CheckCase(*daemon, c);

  // Ids in paths are held to the same rules.
  HttpResult dotdot = daemon->Get("/v1/sessions/..%2F..%2Fetc");
  CHECK((dotdot.status == 400 || dotdot.status == 404));
  HttpResult nul = daemon->Get("/v1/sessions/a%00b");
  CHECK(nul.status == 400);
  CHECK(nul.code() == "invalid_field");
  HttpResult long_id = daemon->Get("/v1/sessions/" + std::string(5000, 'x'));
  CHECK(long_id.status == 400);

  HttpResult listed = daemon->Get("/v1/sessions");
  REQUIRE(listed.json["sessions"].size() == 1);
  CHECK(listed.json["sessions"][0]["session_id"] == "keeper");
  CHECK(daemon->Execute(s, "p").json["outputs"] == "ok");
  CHECK(daemon->CgroupChildren().size() == 1);
}

// Sends `request` as it is on a fresh connection and returns all the daemon answered.
std::string RawExchange(int port, const std::string& request) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  REQUIRE(fd >= 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_port = htons(static_cast<uint16_t>(port));
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  REQUIRE(connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)) == 0);
  REQUIRE(send(fd, request.data(), request.size(), MSG_NOSIGNAL) ==
          static_cast<ssize_t>(request.size()));
  std::string answer;
  char buffer[4096];
  for (ssize_t n; (n = recv(fd, buffer, sizeof(buffer), 0)) > 0;) answer.append(buffer, n);
  close(fd);
  return answer;
}

TEST_CASE("daemon: a POST without Content-Length is told to send one, nothing created") {
  auto daemon = Daemon::Start();
  // What `curl -X POST URL` sends: no body, no Content-Length.
  std::string answer = RawExchange(
      daemon->port(), "POST /v1/sessions HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
  INFO(answer);
  CHECK(answer.rfind("HTTP/1.1 400", 0) == 0);
  CHECK(answer.find("\"length_required\"") != std::string::npos);
  CHECK(answer.find("needs a Content-Length header") != std::string::npos);
  CHECK(daemon->Get("/v1/sessions").json["sessions"].empty());
}

}  // namespace
}  // namespace corral::testing
