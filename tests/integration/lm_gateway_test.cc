// The language-model gateway end to end: a real corrald, real sandboxed workers, and the fake
// OpenAI-compatible server of tests/support/fake_lm_server.h on loopback as the endpoint.
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <filesystem>
#include <fstream>
#include <thread>

#include "tests/support/daemon_harness.h"
#include "tests/support/fake_lm_server.h"

namespace corral::testing {
namespace {

using Mode = FakeLmServer::Mode;

// Distinctive, so that finding it anywhere means it leaked.
constexpr char kKey[] = "sk-corral-test-key-5d2c9a71e04b";
constexpr char kFileKey[] = "sk-corral-file-key-0b7e3f19c8aa";

// A daemon whose endpoint `fake` (the default) is `server`, model `fake-model`, key from the
// environment; short timeouts and backoff so failure cases stay fast.
std::unique_ptr<Daemon> StartDaemon(FakeLmServer& server,
                                    const std::vector<std::string>& extra = {}) {
  DaemonOptions options;
  options.env = {std::string("CORRAL_TEST_LM_KEY=") + kKey};
  options.overrides = {"lm.endpoints.fake.base_url=" + server.base_url(),
                       "lm.endpoints.fake.model=fake-model",
                       "lm.endpoints.fake.api_key_env=CORRAL_TEST_LM_KEY",
                       "lm.endpoints.fake.timeout=2s",
                       "lm.endpoints.fake.retries=1",
                       "lm.endpoints.fake.retry_backoff=10ms",
                       "lm.default_endpoint=fake"};
  options.overrides.insert(options.overrides.end(), extra.begin(), extra.end());
  return Daemon::Start(options);
}

void CreateSignature(Daemon& daemon, const std::string& session, const std::string& program_id,
                     nlohmann::json body) {
  body["program_id"] = program_id;
  body["kind"] = "signature";
  HttpResult created = daemon.Post("/v1/sessions/" + session + "/programs", body);
  INFO(created.body);
  REQUIRE(created.status == 201);
}

nlohmann::json Outputs(Daemon& daemon, const std::string& session, const std::string& program,
                       const nlohmann::json& inputs) {
  HttpResult run = daemon.Execute(session, program, inputs);
  INFO(run.body);
  REQUIRE(run.status == 200);
  return run.json["outputs"];
}

nlohmann::json Usage(Daemon& daemon, const std::string& session) {
  HttpResult info = daemon.Get("/v1/sessions/" + session);
  REQUIRE(info.status == 200);
  return info.json["lm"]["usage"];
}

// A temporary directory, removed also when a REQUIRE ends the test early.
struct TempDir {
  std::string path;
  explicit TempDir(const std::string& prefix) : path(MakeTempDir(prefix)) {}
  ~TempDir() { std::filesystem::remove_all(path); }
};

// A port on loopback where nothing listens.
int ClosedPort() {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  REQUIRE(bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)) == 0);
  socklen_t size = sizeof(address);
  getsockname(fd, reinterpret_cast<sockaddr*>(&address), &size);
  close(fd);
  return ntohs(address.sin_port);
}

const nlohmann::json kTypedSignature = {{"inputs",
                                         {{{"name", "question"}, {"description", "what is asked"}},
                                          {{"name", "context"}, {"type", "list[str]"}}}},
                                        {"outputs",
                                         {{{"name", "answer"}, {"description", "a short answer"}},
                                          {{"name", "words"}, {"type", "int"}},
                                          {{"name", "score"}, {"type", "float"}},
                                          {{"name", "sure"}, {"type", "bool"}},
                                          {{"name", "tags"}, {"type", "list[str]"}},
                                          {{"name", "meta"}, {"type", "dict"}},
                                          {{"name", "label"}, {"type", "Literal['yes', 'no']"}}}}};

TEST_CASE("lm: a signature program is answered by the configured endpoint, typed, and cached") {
  FakeLmServer server;
  auto daemon = StartDaemon(server);
  std::string session = daemon->CreateSession({{"session_id", "typed"}});
  CreateSignature(*daemon, session, "qa",
                  {{"signature", kTypedSignature}, {"instructions", "Answer from the context."}});
  nlohmann::json inputs = {{"question", "Is it?"}, {"context", {"a", "b"}}};

  // Every output comes back as its declared type, derived by the server from the inputs.
  nlohmann::json outputs = Outputs(*daemon, session, "qa", inputs);
  std::string text = R"(Is it? | ["a", "b"])";
  CHECK(outputs["answer"] == "fake-model t=0.0: " + text);
  CHECK(outputs["words"] == text.size());
  CHECK(outputs["score"] == Approx(text.size() / 2.0));
  CHECK(outputs["sure"] == (text.size() % 2 == 0));
  CHECK(outputs["tags"] == nlohmann::json({"Is", "it?", "|", R"(["a",)", R"("b"])"}));
  CHECK(outputs["meta"] == nlohmann::json({{"length", text.size()}}));
  CHECK(outputs["label"] == (text.size() % 2 == 0 ? "yes" : "no"));

  // What the endpoint received: the model, the settings, the key, and the prompt.
  std::vector<FakeLmServer::Received> received = server.received();
  REQUIRE(received.size() == 1);
  const nlohmann::json& body = received[0].body;
  CHECK(received[0].authorization == std::string("Bearer ") + kKey);
  CHECK(body["model"] == "fake-model");
  CHECK(body["temperature"] == 0.0);
  CHECK(body["max_tokens"] == 1024);
  REQUIRE(body["messages"].size() == 2);
  std::string system = body["messages"][0]["content"];
  std::string user = body["messages"][1]["content"];
  CHECK(body["messages"][0]["role"] == "system");
  CHECK(system.find("1. `question` (str): what is asked\n2. `context` (list[str])\n") !=
        std::string::npos);
  CHECK(system.find("1. `answer` (str): a short answer\n2. `words` (int)\n3. `score` (float)\n"
                    "4. `sure` (bool)\n5. `tags` (list[str])\n6. `meta` (dict)\n"
                    "7. `label` (Literal['yes', 'no'])\n") != std::string::npos);
  CHECK(system.find("Answer from the context.") != std::string::npos);
  CHECK(user.find("[[ ## question ## ]]\nIs it?\n\n[[ ## context ## ]]\n[\"a\", \"b\"]") !=
        std::string::npos);

  // The same request at temperature 0 is answered from the session's cache.
  CHECK(Outputs(*daemon, session, "qa", inputs) == outputs);
  CHECK(server.count() == 1);
  nlohmann::json usage = Usage(*daemon, session);
  CHECK(usage["calls"] == 1);
  CHECK(usage["cache_hits"] == 1);
  CHECK(usage["errors"] == 0);
  CHECK(usage["prompt_tokens"].get<int>() > 0);
  CHECK(usage["completion_tokens"].get<int>() > 0);
  HttpResult stats = daemon->Post("/v1/sessions/" + session + "/call", {{"command", "get_stats"}});
  REQUIRE(stats.status == 200);
  CHECK(stats.json["result"]["lm"]["cache_hits"] == 1);
}

TEST_CASE("lm: chain of thought returns its reasoning, and demos are prior turns") {
  FakeLmServer server;
  auto daemon = StartDaemon(server);
  std::string session = daemon->CreateSession();
  CreateSignature(*daemon, session, "cot",
                  {{"signature", "question -> answer"},
                   {"chain_of_thought", true},
                   {"demos", {{{"question", "1+1?"}, {"reasoning", "add"}, {"answer", "2"}}}}});
  nlohmann::json outputs = Outputs(*daemon, session, "cot", {{"question", "2+2?"}});
  CHECK(outputs["reasoning"] == "Let me think about 2+2?.");
  CHECK(outputs["answer"] == "fake-model t=0.0: 2+2?");

  nlohmann::json messages = server.received().at(0).body["messages"];
  REQUIRE(messages.size() == 4);
  CHECK(messages[1]["role"] == "user");
  CHECK(messages[1]["content"].get<std::string>().find("[[ ## question ## ]]\n1+1?") !=
        std::string::npos);
  CHECK(messages[2]["role"] == "assistant");
  CHECK(messages[2]["content"].get<std::string>().find(
            "[[ ## reasoning ## ]]\nadd\n\n[[ ## answer ## ]]\n2") != std::string::npos);
  std::string system = messages[0]["content"];
  CHECK(system.find("1. `reasoning` (str)") < system.find("2. `answer` (str)"));
}

TEST_CASE("lm: a malformed reply gets one corrective retry, then a typed lm_parse_error") {
  FakeLmServer server;
  auto daemon = StartDaemon(server, {"lm.cache=false"});
  std::string session = daemon->CreateSession();
  CreateSignature(*daemon, session, "qa", {{"signature", "question -> answer, n: int"}});

  server.SetMode(Mode::kMalformed, 1);
  nlohmann::json outputs = Outputs(*daemon, session, "qa", {{"question", "q"}});
  CHECK(outputs["n"] == 1);
  std::vector<FakeLmServer::Received> received = server.received();
  REQUIRE(received.size() == 2);
  nlohmann::json retry = received[1].body["messages"];
  REQUIRE(retry.size() == 4);
  CHECK(retry[2] ==
        nlohmann::json({{"role", "assistant"}, {"content", "I will not follow the format."}}));
  CHECK(retry[3]["content"].get<std::string>().find("could not be used") != std::string::npos);

  server.SetMode(Mode::kMalformed);
  HttpResult failed = daemon->Execute(session, "qa", {{"question", "q"}});
  CHECK(failed.status == 422);
  CHECK(failed.code() == "lm_parse_error");
  CHECK(failed.json["error"]["details"]["raw_reply"] == "I will not follow the format.");
  CHECK(server.count() == 4);

  server.SetMode(Mode::kNotJson);
  HttpResult bad = daemon->Execute(session, "qa", {{"question", "q"}});
  CHECK(bad.status == 502);
  CHECK(bad.code() == "lm_bad_response");
  CHECK(bad.json["error"]["details"]["status"] == 200);
}

TEST_CASE("lm: upstream 429, 500, a stall and a refused connection each give their typed error") {
  FakeLmServer server;
  int closed = ClosedPort();
  auto daemon =
      StartDaemon(server, {"lm.cache=false", "lm.endpoints.fake.timeout=1s",
                           fmt::format("lm.endpoints.down.base_url=http://127.0.0.1:{}/v1", closed),
                           "lm.endpoints.down.model=none"});
  std::string session = daemon->CreateSession();
  CreateSignature(*daemon, session, "qa", {{"signature", "question -> answer"}});
  nlohmann::json inputs = {{"question", "q"}};

  server.SetMode(Mode::kRateLimit);
  HttpResult limited = daemon->Execute(session, "qa", inputs);
  CHECK(limited.status == 429);
  CHECK(limited.code() == "lm_rate_limited");
  CHECK(limited.json["error"]["details"]["status"] == 429);
  CHECK(server.count() == 2);  // one retry (retries=1)

  server.SetMode(Mode::kFail500);
  HttpResult failed = daemon->Execute(session, "qa", inputs);
  CHECK(failed.status == 502);
  CHECK(failed.code() == "lm_unavailable");
  CHECK(failed.json["error"]["details"]["status"] == 500);
  CHECK(server.count() == 4);

  server.SetMode(Mode::kStall);
  HttpResult stalled = daemon->Execute(session, "qa", inputs);
  CHECK(stalled.status == 504);
  CHECK(stalled.code() == "lm_timeout");
  // The call's own deadline (here shorter than the endpoint's timeout) bounds model time too,
  // and ends it early enough for the worker to answer: the session survives.
  HttpResult short_call = daemon->Execute(session, "qa", inputs, 600);
  server.SetMode(Mode::kAnswer);  // releases the stalled requests
  CHECK(short_call.status == 504);
  CHECK(short_call.code() == "lm_timeout");

  HttpResult configured =
      daemon->Post("/v1/sessions/" + session + "/call",
                   {{"command", "configure_lm"}, {"args", {{"endpoint", "down"}}}});
  REQUIRE(configured.status == 200);
  HttpResult refused = daemon->Execute(session, "qa", inputs);
  CHECK(refused.status == 502);
  CHECK(refused.code() == "lm_unavailable");
  CHECK(refused.json["error"]["details"]["status"].is_null());

  // None of it harmed the session: it still answers, and counted every failure.
  HttpResult info = daemon->Get("/v1/sessions/" + session);
  CHECK(info.json["status"] == "ready");
  CHECK(info.json["lm"]["usage"]["errors"] == 5);
  daemon->Post("/v1/sessions/" + session + "/call",
               {{"command", "configure_lm"}, {"args", {{"endpoint", "fake"}}}});
  CHECK(Outputs(*daemon, session, "qa", inputs)["answer"] == "fake-model t=0.0: q");
}

TEST_CASE("lm: a key that cannot be read stops the daemon, naming its source but not a key") {
  TempDir temp("corral-lm-nokey");
  const std::string& dir = temp.path;
  std::vector<std::string> args = {std::string(CORRAL_BUILD_DIR) + "/corrald",
                                   "--config",
                                   std::string(CORRAL_SOURCE_DIR) + "/manager/corral.yaml",
                                   "--listen",
                                   "127.0.0.1:0",
                                   "--set",
                                   "state_dir=" + dir,
                                   "--set",
                                   "log.format=text",
                                   "--set",
                                   "lm.endpoints.x.base_url=http://127.0.0.1:1/v1",
                                   "--set",
                                   "lm.endpoints.x.model=m",
                                   "--set",
                                   "lm.endpoints.x.api_key_env=CORRAL_TEST_UNSET_KEY_VARIABLE"};
  std::string command;
  for (const std::string& arg : args) command += "'" + arg + "' ";
  FILE* pipe = popen((command + "2>&1").c_str(), "r");
  REQUIRE(pipe != nullptr);
  std::string output;
  char buffer[4096];
  while (size_t n = fread(buffer, 1, sizeof(buffer), pipe)) output.append(buffer, n);
  int status = pclose(pipe);
  INFO(output);
  CHECK(WEXITSTATUS(status) == 1);
  CHECK(output.find("`CORRAL_TEST_UNSET_KEY_VARIABLE` (api_key_env) is not set") !=
        std::string::npos);
  CHECK(output.find("endpoint `x`") != std::string::npos);
}

TEST_CASE("lm: calls per minute per session and per tenant, and tokens per day") {
  FakeLmServer server;
  {
    auto daemon = StartDaemon(server, {"lm.cache=false", "lm.limits.session_calls_per_minute=2",
                                       "lm.limits.tenant_calls_per_minute=3"});
    std::string a = daemon->CreateSession({{"tenant", "t1"}});
    std::string b = daemon->CreateSession({{"tenant", "t1"}});
    std::string c = daemon->CreateSession({{"tenant", "t2"}});
    for (const std::string& session : {a, b, c}) {
      CreateSignature(*daemon, session, "qa", {{"signature", "question -> answer"}});
    }
    nlohmann::json inputs = {{"question", "q"}};
    Outputs(*daemon, a, "qa", inputs);
    Outputs(*daemon, a, "qa", inputs);
    HttpResult third = daemon->Execute(a, "qa", inputs);
    CHECK(third.status == 429);
    CHECK(third.code() == "lm_rate_limited");
    CHECK(third.json["error"]["details"]["limit"] == "lm.limits.session_calls_per_minute");

    Outputs(*daemon, b, "qa", inputs);  // the tenant's third call
    HttpResult tenant = daemon->Execute(b, "qa", inputs);
    CHECK(tenant.status == 429);
    CHECK(tenant.json["error"]["details"]["limit"] == "lm.limits.tenant_calls_per_minute");

    Outputs(*daemon, c, "qa", inputs);  // another tenant is not affected
    CHECK(server.count() == 4);
    CHECK(Usage(*daemon, a)["errors"] == 1);
  }
  {
    auto daemon = StartDaemon(server, {"lm.cache=false", "lm.limits.session_tokens_per_day=1",
                                       "lm.limits.tenant_tokens_per_day=1000000"});
    std::string session = daemon->CreateSession();
    CreateSignature(*daemon, session, "qa", {{"signature", "question -> answer"}});
    Outputs(*daemon, session, "qa", {{"question", "q"}});  // spends more than one token
    HttpResult over = daemon->Execute(session, "qa", {{"question", "q"}});
    CHECK(over.status == 429);
    CHECK(over.json["error"]["details"]["limit"] == "lm.limits.session_tokens_per_day");
  }
}

TEST_CASE("lm: the key never reaches a sandbox, a log line or an API response") {
  FakeLmServer server;
  TempDir temp("corral-lm-key");
  const std::string& dir = temp.path;
  std::ofstream(dir + "/key") << kFileKey << "\n";
  auto daemon = StartDaemon(
      server, {"log.level=debug", "lm.endpoints.filed.base_url=" + server.base_url(),
               "lm.endpoints.filed.model=filed-model",
               "lm.endpoints.filed.api_key_file=" + dir + "/key", "lm.endpoints.filed.retries=0"});
  std::vector<HttpResult> responses;
  auto keep = [&](HttpResult result) {
    responses.push_back(result);
    return result;
  };
  std::string session = daemon->CreateSession({{"session_id", "spy"}});

  // Tenant code records every byte the worker reads from its channel: every frame sent in.
  daemon->CreatePythonProgram(session, "recorder",
                              "import corral_protocol\n"
                              "FRAMES = []\n"
                              "_read = corral_protocol.Channel._read_exact\n"
                              "def _spy(self, size):\n"
                              "    data = _read(self, size)\n"
                              "    FRAMES.append(data.decode('utf-8', 'replace'))\n"
                              "    return data\n"
                              "corral_protocol.Channel._read_exact = _spy\n"
                              "def forward():\n"
                              "    return ''.join(FRAMES)\n");
  CreateSignature(*daemon, session, "qa", {{"signature", "question -> answer"}});
  daemon->CreatePythonProgram(session, "ask",
                              "import corral\n"
                              "def forward(q):\n"
                              "    return corral.lm_result([{'role': 'user', 'content': q}])\n");
  keep(daemon->Execute(session, "qa", {{"question", "where is the key?"}}));
  keep(daemon->Execute(session, "ask", {{"q", "tell me the key"}}));
  keep(daemon->Post("/v1/sessions/" + session + "/call",
                    {{"command", "configure_lm"}, {"args", {{"endpoint", "filed"}}}}));
  keep(daemon->Execute(session, "ask", {{"q", "and the other one"}}));
  server.SetMode(Mode::kFail500);
  keep(daemon->Execute(session, "ask", {{"q", "now fail"}}));
  server.SetMode(Mode::kAnswer);

  // Everything the sandbox can see of its environment and its processes.
  daemon->CreatePythonProgram(session, "dump",
                              "import os, glob\n"
                              "def forward():\n"
                              "    seen = [repr(dict(os.environ))]\n"
                              "    for path in glob.glob('/proc/*/cmdline') + "
                              "glob.glob('/proc/*/environ'):\n"
                              "        try:\n"
                              "            seen.append(open(path, 'rb').read().decode('utf-8', "
                              "'replace'))\n"
                              "        except OSError:\n"
                              "            pass\n"
                              "    return seen\n");
  HttpResult frames = keep(daemon->Execute(session, "recorder"));
  HttpResult dump = keep(daemon->Execute(session, "dump"));
  REQUIRE(frames.status == 200);
  REQUIRE(dump.status == 200);
  std::string recorded = frames.json["outputs"].get<std::string>();
  CHECK(recorded.find("\"lm_response\"") != std::string::npos);  // the recorder saw them
  CHECK(recorded.find("echo: tell me the key") != std::string::npos);
  CHECK(dump.json["outputs"].size() > 2);
  keep(daemon->Get("/v1/sessions/" + session));
  keep(daemon->Get("/v1/sessions"));
  keep(daemon->Get("/v1/lm/endpoints"));
  keep(daemon->Get("/openapi.yaml"));

  // The endpoint got both keys, so they were really in use.
  std::vector<FakeLmServer::Received> received = server.received();
  REQUIRE(received.size() == 4);
  CHECK(received[0].authorization == std::string("Bearer ") + kKey);
  CHECK(received[2].authorization == std::string("Bearer ") + kFileKey);
  for (const std::string& key : {std::string(kKey), std::string(kFileKey)}) {
    INFO(key);
    CHECK(recorded.find(key) == std::string::npos);
    for (const HttpResult& response : responses)
      CHECK(response.body.find(key) == std::string::npos);
    CHECK(daemon->log().find(key) == std::string::npos);
  }
}

TEST_CASE("lm: sessions with the same program id and different endpoints or settings") {
  FakeLmServer server;
  auto daemon = StartDaemon(server, {"lm.endpoints.fake2.base_url=" + server.base_url(),
                                     "lm.endpoints.fake2.model=other-model"});
  HttpResult endpoints = daemon->Get("/v1/lm/endpoints");
  REQUIRE(endpoints.status == 200);
  CHECK(endpoints.json["default_endpoint"] == "fake");
  CHECK(endpoints.json["endpoints"].size() == 2);
  CHECK(endpoints.json["endpoints"][1]["name"] == "fake2");

  std::string one = daemon->CreateSession({{"lm", {{"endpoint", "fake"}}}});
  std::string two = daemon->CreateSession({{"lm", {{"endpoint", "fake2"}, {"temperature", 0.5}}}});
  for (const std::string& session : {one, two}) {
    CreateSignature(*daemon, session, "qa", {{"signature", "question -> answer"}});
  }
  nlohmann::json inputs = {{"question", "same?"}};
  CHECK(Outputs(*daemon, one, "qa", inputs)["answer"] == "fake-model t=0.0: same?");
  CHECK(Outputs(*daemon, two, "qa", inputs)["answer"] == "other-model t=0.5: same?");
  HttpResult info = daemon->Get("/v1/sessions/" + two);
  CHECK(info.json["lm"]["endpoint"] == "fake2");
  CHECK(info.json["lm"]["temperature"] == 0.5);

  HttpResult configured = daemon->Post(
      "/v1/sessions/" + one + "/call",
      {{"command", "configure_lm"}, {"args", {{"temperature", 0.7}, {"max_tokens", 64}}}});
  REQUIRE(configured.status == 200);
  CHECK(configured.json["result"]["lm"]["temperature"] == 0.7);
  CHECK(Outputs(*daemon, one, "qa", inputs)["answer"] == "fake-model t=0.7: same?");
  CHECK(server.received().back().body["max_tokens"] == 64);

  // Unknown endpoints and bad settings are 400s naming them.
  HttpResult unknown = daemon->Post("/v1/sessions", {{"lm", {{"endpoint", "nope"}}}});
  CHECK(unknown.status == 400);
  CHECK(unknown.code() == "unknown_lm_endpoint");
  CHECK(unknown.json["error"]["message"].get<std::string>().find("`nope`") != std::string::npos);
  HttpResult reconfigured =
      daemon->Post("/v1/sessions/" + one + "/call",
                   {{"command", "configure_lm"}, {"args", {{"endpoint", "nope"}}}});
  CHECK(reconfigured.status == 400);
  CHECK(reconfigured.code() == "unknown_lm_endpoint");
  HttpResult hot = daemon->Post("/v1/sessions", {{"lm", {{"temperature", 9}}}});
  CHECK(hot.status == 400);
  CHECK(hot.json["error"]["details"]["field"] == "lm.temperature");
  CHECK(daemon->Get("/v1/sessions").json["sessions"].size() == 2);  // nothing was started
}

TEST_CASE("lm: the daemon serves several model requests of one worker at once") {
  FakeLmServer server;
  auto daemon = StartDaemon(server, {"lm.cache=false", "lm.endpoints.fake.timeout=60s"});
  std::string session = daemon->CreateSession();
  // Raw frames on the channel: three requests sent before any reply is read.
  daemon->CreatePythonProgram(session, "burst",
                              "import json, os, struct\n"
                              "def frame(message):\n"
                              "    body = json.dumps(message).encode()\n"
                              "    return struct.pack('>I', len(body)) + body\n"
                              "def read():\n"
                              "    size = struct.unpack('>I', os.read(3, 4))[0]\n"
                              "    body = b''\n"
                              "    while len(body) < size:\n"
                              "        body += os.read(3, size - len(body))\n"
                              "    return json.loads(body)\n"
                              "def forward():\n"
                              "    for name in ('a', 'b', 'c'):\n"
                              "        os.write(3, frame({'type': 'lm_request', 'id': name,\n"
                              "                           'messages': [{'role': 'user', "
                              "'content': name}], 'settings': {}}))\n"
                              "    replies = [read() for _ in range(3)]\n"
                              "    return {r['id']: r['result']['content'] for r in replies}\n");
  // The server holds every request until all three are in flight at once.
  server.SetMode(Mode::kStall);
  HttpResult run;
  std::thread caller([&] { run = daemon->Execute(session, "burst"); });
  bool all_in_flight = false;
  for (int i = 0; i < 2000 && !all_in_flight; ++i) {
    all_in_flight = server.count() == 3;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  server.SetMode(Mode::kAnswer);
  caller.join();
  CHECK(all_in_flight);
  INFO(run.body);
  REQUIRE(run.status == 200);
  nlohmann::json outputs = run.json["outputs"];
  CHECK(outputs == nlohmann::json({{"a", "echo: a"}, {"b", "echo: b"}, {"c", "echo: c"}}));
  CHECK(server.count() == 3);
  CHECK(Usage(*daemon, session)["calls"] == 3);
}

TEST_CASE("lm: two users, each with a signature program called qa_bot") {
  FakeLmServer server;
  auto daemon = StartDaemon(server, {"lm.endpoints.fake2.base_url=" + server.base_url(),
                                     "lm.endpoints.fake2.model=bob-model"});
  std::string alice = daemon->CreateSession({{"session_id", "alice-1"}, {"user_id", "alice"}});
  std::string bob = daemon->CreateSession(
      {{"session_id", "bob-1"}, {"user_id", "bob"}, {"lm", {{"endpoint", "fake2"}}}});
  CreateSignature(*daemon, alice, "qa_bot",
                  {{"signature", "question -> answer"}, {"instructions", "Answer as Alice."}});
  CreateSignature(
      *daemon, bob, "qa_bot",
      {{"signature", "question -> answer, confident: bool"}, {"chain_of_thought", true}});
  daemon->CreatePythonProgram(bob, "classifier",
                              "import corral\n"
                              "def forward(text):\n"
                              "    return {'label': corral.lm('classify: ' + text)}\n");

  nlohmann::json alice_out = Outputs(*daemon, alice, "qa_bot", {{"question", "hello"}});
  nlohmann::json bob_out = Outputs(*daemon, bob, "qa_bot", {{"question", "hello"}});
  CHECK(alice_out == nlohmann::json({{"answer", "fake-model t=0.0: hello"}}));
  CHECK(bob_out["answer"] == "bob-model t=0.0: hello");
  CHECK(bob_out["confident"] == false);  // "hello" has an odd length
  CHECK(bob_out["reasoning"] == "Let me think about hello.");
  CHECK(Outputs(*daemon, bob, "classifier", {{"text", "hi"}})["label"] == "echo: classify: hi");

  // Alice's prompt carried her instructions, Bob's did not.
  std::vector<FakeLmServer::Received> received = server.received();
  REQUIRE(received.size() == 3);
  CHECK(received[0].body["messages"][0]["content"].get<std::string>().find("Answer as Alice.") !=
        std::string::npos);
  CHECK(received[1].body["messages"][0]["content"].get<std::string>().find("Answer as Alice.") ==
        std::string::npos);

  CHECK(daemon->Execute(alice, "classifier", {{"text", "x"}}).code() == "program_not_found");
  CHECK(Usage(*daemon, alice)["calls"] == 1);
  CHECK(Usage(*daemon, bob)["calls"] == 2);
  CHECK(daemon->Delete("/v1/sessions/" + alice).status == 204);
  CHECK(daemon->Delete("/v1/sessions/" + bob).status == 204);
}

TEST_CASE("lm: pool sessions sharing one worker each reach their own endpoint and quota") {
  FakeLmServer server;
  auto daemon =
      StartDaemon(server, {"pool.size=1", "lm.endpoints.fake2.base_url=" + server.base_url(),
                           "lm.endpoints.fake2.model=bob-model"});
  for (int i = 0; i < 600 && daemon->Get("/readyz").status != 200; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  REQUIRE(daemon->Get("/readyz").status == 200);
  // One tenant, one worker: both sessions' programs live in the same interpreter.
  std::string alice =
      daemon->CreateSession({{"session_id", "alice-p"}, {"backend", "pool"}, {"tenant", "acme"}});
  std::string bob = daemon->CreateSession({{"session_id", "bob-p"},
                                           {"backend", "pool"},
                                           {"tenant", "acme"},
                                           {"lm", {{"endpoint", "fake2"}}}});
  for (const std::string& session : {alice, bob}) {
    CreateSignature(*daemon, session, "qa_bot", {{"signature", "question -> answer"}});
  }
  daemon->CreatePythonProgram(bob, "raw",
                              "import corral\n"
                              "def forward(text):\n"
                              "    return corral.lm(text)\n");

  CHECK(Outputs(*daemon, alice, "qa_bot", {{"question", "hi"}})["answer"] ==
        "fake-model t=0.0: hi");
  CHECK(Outputs(*daemon, bob, "qa_bot", {{"question", "hi"}})["answer"] == "bob-model t=0.0: hi");
  CHECK(Outputs(*daemon, bob, "raw", {{"text", "yo"}}) == "echo: yo");
  CHECK(Usage(*daemon, alice)["calls"] == 1);
  CHECK(Usage(*daemon, bob)["calls"] == 2);
  HttpResult pool = daemon->Get("/v1/pool");
  REQUIRE(pool.status == 200);
  CHECK(pool.json["workers"][0]["sessions_held"] == 2);
}

}  // namespace
}  // namespace corral::testing
