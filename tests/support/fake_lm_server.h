// A small OpenAI-compatible model server for the tests: real HTTP on 127.0.0.1 (an ephemeral
// port), the real JSON of the chat-completions API (POST /v1/chat/completions), served from a
// thread of the test process so tests can steer it and see what it received.
//
// It answers deterministically from the prompt: it reads the output fields (name and type)
// that a signature's system message lists and the input sections of the last user message,
// and fills one `[[ ## field ## ]]` section per output with a value of the field's type
// derived from the inputs, the model name and the temperature (FakeAnswer). A request without
// fields (a tenant's own corral.lm call) gets "echo: <last user message>". It can be told to
// fail (500), rate-limit (429), stall, answer without sections, or send a body that is not
// JSON, for the next n requests or for good.
//
// Thread safety: every method may be called from any thread.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

namespace httplib {
class Server;
}

namespace corral::testing {

class FakeLmServer {
 public:
  enum class Mode { kAnswer, kFail500, kRateLimit, kStall, kMalformed, kNotJson };
  struct Received {
    nlohmann::json body;
    std::string authorization;  // the Authorization header as sent
  };

  // Listening on 127.0.0.1:`port` (0: an ephemeral one) once it returns; port() is 0 when the
  // port could not be bound.
  explicit FakeLmServer(int port = 0);
  ~FakeLmServer();
  FakeLmServer(const FakeLmServer&) = delete;
  FakeLmServer& operator=(const FakeLmServer&) = delete;

  int port() const { return port_; }
  std::string base_url() const;  // http://127.0.0.1:<port>/v1

  // `mode` for the next `times` requests (then kAnswer again); times < 0: until changed.
  void SetMode(Mode mode, int times = -1);
  std::vector<Received> received();
  size_t count();

 private:
  Mode NextMode();
  void Stall();

  std::unique_ptr<httplib::Server> server_;
  std::thread thread_;
  int port_ = 0;

  std::mutex mutex_;  // guards every member below
  std::condition_variable released_;
  Mode mode_ = Mode::kAnswer;
  int times_ = -1;
  bool stopping_ = false;
  uint64_t releases_ = 0;  // bumped by SetMode: stalled requests then answer
  std::vector<Received> received_;
};

// The answer FakeLmServer gives to a chat-completions request body.
std::string FakeAnswer(const nlohmann::json& body);

}  // namespace corral::testing
