#include "tests/support/fake_lm_server.h"

#include <httplib.h>

#include <chrono>
#include <regex>
#include <sstream>

#include <fmt/format.h>

namespace corral::testing {
namespace {

using namespace std::chrono_literals;

// A stalled request waits for this at most (the daemon under test times out well before).
constexpr auto kStallBound = 30s;

struct OutputField {
  std::string name;
  std::string type;
};

std::vector<OutputField> OutputFields(const std::string& system) {
  std::vector<OutputField> fields;
  size_t start = system.find("Your output fields are:");
  size_t end = system.find("All interactions will be structured");
  if (start == std::string::npos || end == std::string::npos) return fields;
  static const std::regex kLine(R"(^\d+\. `(\w+)` \((.*?)\)(: .*)?$)");
  std::istringstream lines(system.substr(start, end - start));
  std::string line;
  std::smatch match;
  while (std::getline(lines, line)) {
    if (std::regex_match(line, match, kLine)) fields.push_back({match[1], match[2]});
  }
  return fields;
}

// The values of the input sections of a user message, in order, joined by " | ".
std::string InputText(const std::string& user) {
  static const std::regex kHeader(R"(\[\[ ## (\w+) ## \]\]\n)");
  std::vector<std::string> values;
  auto begin = std::sregex_iterator(user.begin(), user.end(), kHeader);
  std::vector<std::smatch> headers(begin, std::sregex_iterator());
  for (size_t i = 0; i < headers.size(); ++i) {
    size_t from = headers[i].position(0) + headers[i].length(0);
    size_t to = i + 1 < headers.size() ? headers[i + 1].position(0) : user.find("\n\n", from);
    std::string value = user.substr(from, to == std::string::npos ? std::string::npos : to - from);
    while (!value.empty() && value.back() == '\n') value.pop_back();
    values.push_back(value);
  }
  std::string joined;
  for (const std::string& value : values) joined += (joined.empty() ? "" : " | ") + value;
  return joined;
}

std::vector<std::string> Words(const std::string& text) {
  std::vector<std::string> words;
  std::istringstream stream(text);
  std::string word;
  while (stream >> word) words.push_back(word);
  return words;
}

std::string Value(const OutputField& field, const std::string& text, const nlohmann::json& body) {
  std::string type = field.type;
  if (type.starts_with("Optional[")) type = type.substr(9, type.size() - 10);
  if (type == "int") return std::to_string(text.size());
  if (type == "float") return fmt::format("{:.1f}", text.size() / 2.0);
  if (type == "bool") return text.size() % 2 == 0 ? "True" : "False";
  if (type.starts_with("list")) {
    nlohmann::json words = Words(text);
    if (type == "list[int]") {
      words = nlohmann::json::array();
      for (const std::string& word : Words(text)) words.push_back(word.size());
    }
    return words.dump();
  }
  if (type.starts_with("dict")) return nlohmann::json{{"length", text.size()}}.dump();
  if (type.starts_with("Literal[")) {
    std::vector<std::string> choices;
    std::string inner = type.substr(8, type.size() - 9);
    for (size_t at = 0; at <= inner.size();) {
      size_t comma = inner.find(", ", at);
      choices.push_back(inner.substr(at, comma == std::string::npos ? comma : comma - at));
      if (comma == std::string::npos) break;
      at = comma + 2;
    }
    std::string choice = choices[text.size() % choices.size()];
    if (choice.size() >= 2 && (choice[0] == '\'' || choice[0] == '"')) {
      choice = choice.substr(1, choice.size() - 2);
    }
    return choice;
  }
  if (field.name == "reasoning") return "Let me think about " + text + ".";
  return fmt::format("{} t={}: {}", body.value("model", "?"),
                     body.value("temperature", nlohmann::json(nullptr)).dump(), text);
}

nlohmann::json Completion(const nlohmann::json& body, const std::string& content) {
  uint64_t prompt_chars = 0;
  for (const nlohmann::json& message : body.value("messages", nlohmann::json::array())) {
    prompt_chars += message.value("content", "").size();
  }
  uint64_t prompt = prompt_chars / 4 + 1, completion = content.size() / 4 + 1;
  return {{"id", "chatcmpl-fake"},
          {"object", "chat.completion"},
          {"created", 0},
          {"model", body.value("model", "")},
          {"choices",
           {{{"index", 0},
             {"message", {{"role", "assistant"}, {"content", content}}},
             {"finish_reason", "stop"}}}},
          {"usage",
           {{"prompt_tokens", prompt},
            {"completion_tokens", completion},
            {"total_tokens", prompt + completion}}}};
}

}  // namespace

std::string FakeAnswer(const nlohmann::json& body) {
  const nlohmann::json& messages = body.at("messages");
  // The inputs are in the last user message that has input sections (a corrective retry's
  // last message has none).
  std::string system, user, text;
  for (const nlohmann::json& message : messages) {
    if (message.value("role", "") == "system") system = message.value("content", "");
    if (message.value("role", "") != "user") continue;
    user = message.value("content", "");
    if (std::string inputs = InputText(user); !inputs.empty()) text = inputs;
  }
  std::vector<OutputField> fields = OutputFields(system);
  if (fields.empty()) return "echo: " + user;
  std::string answer;
  for (const OutputField& field : fields) {
    answer += "[[ ## " + field.name + " ## ]]\n" + Value(field, text, body) + "\n\n";
  }
  return answer + "[[ ## completed ## ]]\n";
}

FakeLmServer::FakeLmServer(int port) : server_(std::make_unique<httplib::Server>()) {
  server_->Post(
      "/v1/chat/completions", [this](const httplib::Request& request, httplib::Response& response) {
        nlohmann::json body = nlohmann::json::parse(request.body, nullptr, false);
        Mode mode;
        {
          std::lock_guard lock(mutex_);
          received_.push_back({body, request.get_header_value("Authorization")});
          mode = NextMode();
        }
        if (mode == Mode::kStall) Stall();
        if (mode == Mode::kFail500) {
          response.status = 500;
          response.set_content(R"({"error":{"message":"fake failure"}})", "application/json");
        } else if (mode == Mode::kRateLimit) {
          response.status = 429;
          response.set_header("Retry-After", "0");
          response.set_content(R"({"error":{"message":"slow down"}})", "application/json");
        } else if (mode == Mode::kNotJson) {
          response.set_content("this is not json", "text/plain");
        } else if (!body.is_object() || !body.contains("messages")) {
          response.status = 400;
          response.set_content(R"({"error":{"message":"no messages"}})", "application/json");
        } else {
          std::string content =
              mode == Mode::kMalformed ? "I will not follow the format." : FakeAnswer(body);
          response.set_content(Completion(body, content).dump(), "application/json");
        }
      });
  if (port == 0) {
    port_ = server_->bind_to_any_port("127.0.0.1");
  } else {
    port_ = server_->bind_to_port("127.0.0.1", port) ? port : 0;
  }
  if (port_ <= 0) {
    port_ = 0;
    return;
  }
  thread_ = std::thread([this] { server_->listen_after_bind(); });
  for (int i = 0; i < 1000 && !server_->is_running(); ++i) std::this_thread::sleep_for(5ms);
}

FakeLmServer::~FakeLmServer() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  released_.notify_all();
  server_->stop();
  if (thread_.joinable()) thread_.join();
}

std::string FakeLmServer::base_url() const {
  return fmt::format("http://127.0.0.1:{}/v1", port_);
}

void FakeLmServer::SetMode(Mode mode, int times) {
  std::lock_guard lock(mutex_);
  mode_ = mode;
  times_ = times;
  ++releases_;
  released_.notify_all();
}

FakeLmServer::Mode FakeLmServer::NextMode() {
  Mode mode = mode_;
  if (times_ > 0 && --times_ == 0) mode_ = Mode::kAnswer;
  return mode;
}

void FakeLmServer::Stall() {
  std::unique_lock lock(mutex_);
  uint64_t releases = releases_;
  released_.wait_for(lock, kStallBound, [&] { return stopping_ || releases_ != releases; });
}

std::vector<FakeLmServer::Received> FakeLmServer::received() {
  std::lock_guard lock(mutex_);
  return received_;
}

size_t FakeLmServer::count() {
  std::lock_guard lock(mutex_);
  return received_.size();
}

}  // namespace corral::testing
