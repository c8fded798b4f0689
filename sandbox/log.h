// The one logger of corral: levelled, format-checked, UTC time, session and tenant on every
// line. Text on a terminal, JSON lines for a service (the Python worker writes the same keys).
// Never writes to stdout; never given secrets or environments.
//
// Thread safety: every function may be called from any thread; lines are written whole.
// Not async-signal-safe: never call between fork and exec.
#pragma once

#include <functional>
#include <string>
#include <string_view>
#include <utility>

#include <fmt/format.h>

namespace corral {

enum class LogLevel { kDebug = 0, kInfo, kWarn, kError };
enum class LogFormat { kAuto, kText, kJson };

// Who a line is about. Empty fields are left out of the line.
struct LogContext {
  std::string session;
  std::string tenant;
};

struct LogRecord {
  LogLevel level;
  std::string_view component;  // "sandbox", "http", "process_backend", ...
  const LogContext* context;   // may be null
  std::string_view message;
};

// Where lines go. The default writes to standard error; tests inject their own to capture.
using LogSink = std::function<void(const LogRecord&, std::string_view formatted_line)>;

void LogConfigure(LogLevel min_level, LogFormat format);
bool ParseLogLevel(std::string_view text, LogLevel* level);
bool ParseLogFormat(std::string_view text, LogFormat* format);
// Replaces the sink; returns the previous one. A null sink restores standard error.
LogSink LogSetSink(LogSink sink);
bool LogEnabled(LogLevel level);
void LogWrite(LogLevel level, std::string_view component, const LogContext* context,
              std::string_view message);

template <typename... Args>
void Log(LogLevel level, std::string_view component, const LogContext* context,
         fmt::format_string<Args...> format, Args&&... args) {
  if (!LogEnabled(level)) return;
  LogWrite(level, component, context, fmt::format(format, std::forward<Args>(args)...));
}

// A component's logger: `Logger log("process_backend"); log.Info(ctx, "started pid {}", pid);`
class Logger {
 public:
  explicit Logger(std::string_view component) : component_(component) {}

  template <typename... Args>
  void Debug(const LogContext& ctx, fmt::format_string<Args...> f, Args&&... a) const {
    Log(LogLevel::kDebug, component_, &ctx, f, std::forward<Args>(a)...);
  }
  template <typename... Args>
  void Info(const LogContext& ctx, fmt::format_string<Args...> f, Args&&... a) const {
    Log(LogLevel::kInfo, component_, &ctx, f, std::forward<Args>(a)...);
  }
  template <typename... Args>
  void Warn(const LogContext& ctx, fmt::format_string<Args...> f, Args&&... a) const {
    Log(LogLevel::kWarn, component_, &ctx, f, std::forward<Args>(a)...);
  }
  template <typename... Args>
  void Error(const LogContext& ctx, fmt::format_string<Args...> f, Args&&... a) const {
    Log(LogLevel::kError, component_, &ctx, f, std::forward<Args>(a)...);
  }

 private:
  std::string_view component_;
};

// For lines that concern no session.
inline const LogContext kNoSession{};

}  // namespace corral
