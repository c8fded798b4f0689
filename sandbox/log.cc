#include "sandbox/log.h"

#include <sys/time.h>
#include <unistd.h>

#include <atomic>
#include <ctime>
#include <mutex>

#include <nlohmann/json.hpp>

namespace corral {
namespace {

std::atomic<int> g_min_level{static_cast<int>(LogLevel::kInfo)};
std::atomic<int> g_format{static_cast<int>(LogFormat::kAuto)};
std::mutex g_sink_mutex;  // guards g_sink and serialises writes so lines never interleave
LogSink g_sink;

std::string_view LevelName(LogLevel level) {
  switch (level) {
    case LogLevel::kDebug: return "debug";
    case LogLevel::kInfo: return "info";
    case LogLevel::kWarn: return "warn";
    case LogLevel::kError: return "error";
  }
  return "info";
}

std::string UtcNow() {
  struct timeval tv;
  gettimeofday(&tv, nullptr);
  struct tm tm;
  gmtime_r(&tv.tv_sec, &tm);
  char buf[64];
  size_t n = strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%S", &tm);
  snprintf(buf + n, sizeof(buf) - n, ".%03ldZ", static_cast<long>(tv.tv_usec / 1000));
  return buf;
}

bool UseJson() {
  auto format = static_cast<LogFormat>(g_format.load());
  if (format == LogFormat::kAuto) return !isatty(STDERR_FILENO);
  return format == LogFormat::kJson;
}

std::string FormatLine(const LogRecord& r) {
  if (UseJson()) {
    nlohmann::json line = {{"time", UtcNow()},
                           {"level", LevelName(r.level)},
                           {"component", r.component},
                           {"msg", r.message}};
    if (r.context && !r.context->session.empty()) line["session"] = r.context->session;
    if (r.context && !r.context->tenant.empty()) line["tenant"] = r.context->tenant;
    // Replace invalid UTF-8 rather than throw: a log line must never take the daemon down.
    return line.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n";
  }
  std::string line = fmt::format("{} {:5} {}", UtcNow(), LevelName(r.level), r.component);
  if (r.context && !r.context->session.empty()) {
    line += fmt::format(" session={}", r.context->session);
  }
  if (r.context && !r.context->tenant.empty()) line += fmt::format(" tenant={}", r.context->tenant);
  line += fmt::format(": {}\n", r.message);
  return line;
}

void WriteAll(int fd, std::string_view data) {
  while (!data.empty()) {
    ssize_t n = write(fd, data.data(), data.size());
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return;
    data.remove_prefix(static_cast<size_t>(n));
  }
}

}  // namespace

void LogConfigure(LogLevel min_level, LogFormat format) {
  g_min_level = static_cast<int>(min_level);
  g_format = static_cast<int>(format);
}

bool ParseLogLevel(std::string_view text, LogLevel* level) {
  for (LogLevel l : {LogLevel::kDebug, LogLevel::kInfo, LogLevel::kWarn, LogLevel::kError}) {
    if (text == LevelName(l)) {
      *level = l;
      return true;
    }
  }
  return false;
}

bool ParseLogFormat(std::string_view text, LogFormat* format) {
  if (text == "auto") *format = LogFormat::kAuto;
  else if (text == "text") *format = LogFormat::kText;
  else if (text == "json") *format = LogFormat::kJson;
  else return false;
  return true;
}

LogSink LogSetSink(LogSink sink) {
  std::lock_guard<std::mutex> lock(g_sink_mutex);
  LogSink previous = std::move(g_sink);
  g_sink = std::move(sink);
  return previous;
}

bool LogEnabled(LogLevel level) { return static_cast<int>(level) >= g_min_level.load(); }

void LogWrite(LogLevel level, std::string_view component, const LogContext* context,
              std::string_view message) {
  LogRecord record{level, component, context, message};
  std::string line = FormatLine(record);
  std::lock_guard<std::mutex> lock(g_sink_mutex);
  if (g_sink) {
    g_sink(record, line);
  } else {
    WriteAll(STDERR_FILENO, line);
  }
}

}  // namespace corral
