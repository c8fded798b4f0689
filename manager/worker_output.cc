#include "manager/worker_output.h"

#include <chrono>
#include <memory>
#include <string>

#include <nlohmann/json.hpp>

namespace corral {
namespace {

const Logger kLog("worker");

constexpr size_t kMaxLineBytes = 2048;
constexpr size_t kBytesPerWindow = 64 * 1024;
constexpr std::chrono::seconds kWindow{10};

class OutputLogger {
 public:
  explicit OutputLogger(LogContext context) : context_(std::move(context)) {}

  void Feed(int stream, std::string_view data) {
    std::string& partial = stream == 1 ? stdout_ : stderr_;
    for (char c : data) {
      if (c == '\n') {
        Emit(stream, partial);
        partial.clear();
      } else if (partial.size() < kMaxLineBytes) {
        partial.push_back(c);
      }
    }
  }

 private:
  void Emit(int stream, const std::string& line) {
    auto now = std::chrono::steady_clock::now();
    if (now - window_start_ >= kWindow) {
      if (dropped_ > 0) kLog.Warn(context_, "dropped {} bytes of worker output", dropped_);
      window_start_ = now;
      window_bytes_ = 0;
      dropped_ = 0;
    }
    if (window_bytes_ + line.size() > kBytesPerWindow) {
      dropped_ += line.size() + 1;
      return;
    }
    window_bytes_ += line.size() + 1;
    LogLine(stream, line);
  }

  // The worker logs JSON lines with the daemon's keys: re-log those at their own level with
  // this session's context; anything else (a tenant's stray print) as plain output.
  void LogLine(int stream, const std::string& line) {
    nlohmann::json parsed = nlohmann::json::parse(line, nullptr, false);
    if (parsed.is_object() && parsed.value("msg", nlohmann::json()).is_string()) {
      LogLevel level = LogLevel::kInfo;
      if (parsed.value("level", nlohmann::json()).is_string()) {
        ParseLogLevel(parsed["level"].get<std::string>(), &level);
      }
      Log(level, "worker", &context_, "{}", parsed["msg"].get<std::string>());
      return;
    }
    kLog.Info(context_, "{}: {}", stream == 1 ? "stdout" : "stderr", line);
  }

  const LogContext context_;
  std::string stdout_;
  std::string stderr_;
  std::chrono::steady_clock::time_point window_start_ = std::chrono::steady_clock::now();
  size_t window_bytes_ = 0;
  size_t dropped_ = 0;
};

}  // namespace

std::function<void(int stream, std::string_view data)> MakeWorkerOutputSink(LogContext context) {
  auto logger = std::make_shared<OutputLogger>(std::move(context));
  return [logger](int stream, std::string_view data) { logger->Feed(stream, data); };
}

}  // namespace corral
