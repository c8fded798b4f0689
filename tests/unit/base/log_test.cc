// The logger through its injected sink: the keys every line carries, in both formats, and
// level filtering.
#include "sandbox/log.h"

#include <regex>
#include <string>
#include <vector>

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

namespace corral {
namespace {

struct CapturedLine {
  LogLevel level;
  std::string component;
  std::string line;
};

// Captures lines for the life of the test and puts the logger back the way it was (the
// defaults: info, auto) afterwards, so tests in one process do not leak settings.
class LogCapture {
 public:
  LogCapture(LogLevel level, LogFormat format) {
    LogConfigure(level, format);
    previous_ = LogSetSink([this](const LogRecord& record, std::string_view line) {
      lines_.push_back({record.level, std::string(record.component), std::string(line)});
    });
  }
  ~LogCapture() {
    LogSetSink(std::move(previous_));
    LogConfigure(LogLevel::kInfo, LogFormat::kAuto);
  }

  const std::vector<CapturedLine>& lines() const { return lines_; }

 private:
  LogSink previous_;
  std::vector<CapturedLine> lines_;  // written under the logger's own lock
};

TEST_CASE("JSON lines carry time, level, component, msg, session and tenant", "[log]") {
  LogCapture capture(LogLevel::kDebug, LogFormat::kJson);
  Logger log("process_backend");
  LogContext ctx{"s-42", "acme"};
  log.Info(ctx, "started pid {}", 1234);

  REQUIRE(capture.lines().size() == 1);
  const std::string& line = capture.lines()[0].line;
  CHECK(line.back() == '\n');
  nlohmann::json json = nlohmann::json::parse(line);
  CHECK(std::regex_match(json["time"].get<std::string>(),
                         std::regex(R"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z)")));
  CHECK(json["level"] == "info");
  CHECK(json["component"] == "process_backend");
  CHECK(json["msg"] == "started pid 1234");
  CHECK(json["session"] == "s-42");
  CHECK(json["tenant"] == "acme");
}

TEST_CASE("JSON lines leave out an empty session and survive bad UTF-8", "[log]") {
  LogCapture capture(LogLevel::kDebug, LogFormat::kJson);
  Logger log("http");
  log.Warn(kNoSession, "bad byte \xff in a request");

  REQUIRE(capture.lines().size() == 1);
  nlohmann::json json = nlohmann::json::parse(capture.lines()[0].line);
  CHECK(json["level"] == "warn");
  CHECK_FALSE(json.contains("session"));
  CHECK_FALSE(json.contains("tenant"));
  CHECK_THAT(json["msg"].get<std::string>(), Catch::StartsWith("bad byte "));
}

TEST_CASE("text lines carry level, component, session and tenant", "[log]") {
  LogCapture capture(LogLevel::kDebug, LogFormat::kText);
  Logger log("sandbox");
  LogContext ctx{"s-7", "acme"};
  log.Error(ctx, "mount `{}`: {}", "/proc", "Operation not permitted");

  REQUIRE(capture.lines().size() == 1);
  const std::string& line = capture.lines()[0].line;
  CHECK(std::regex_search(line, std::regex(R"(^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z error)")));
  CHECK_THAT(line, Catch::Contains(" sandbox "));
  CHECK_THAT(line, Catch::Contains("session=s-7"));
  CHECK_THAT(line, Catch::Contains("tenant=acme"));
  CHECK_THAT(line, Catch::EndsWith(": mount `/proc`: Operation not permitted\n"));
}

TEST_CASE("lines below the configured level are dropped", "[log]") {
  LogCapture capture(LogLevel::kWarn, LogFormat::kText);
  Logger log("sandbox");
  CHECK_FALSE(LogEnabled(LogLevel::kInfo));
  CHECK(LogEnabled(LogLevel::kError));
  log.Debug(kNoSession, "debug");
  log.Info(kNoSession, "info");
  log.Warn(kNoSession, "warn");
  log.Error(kNoSession, "error");

  REQUIRE(capture.lines().size() == 2);
  CHECK(capture.lines()[0].level == LogLevel::kWarn);
  CHECK(capture.lines()[1].level == LogLevel::kError);
  CHECK(capture.lines()[1].component == "sandbox");
}

TEST_CASE("log levels and formats parse from their names", "[log]") {
  LogLevel level = LogLevel::kInfo;
  CHECK(ParseLogLevel("debug", &level));
  CHECK(level == LogLevel::kDebug);
  CHECK(ParseLogLevel("error", &level));
  CHECK(level == LogLevel::kError);
  CHECK_FALSE(ParseLogLevel("loud", &level));

  LogFormat format = LogFormat::kAuto;
  CHECK(ParseLogFormat("json", &format));
  CHECK(format == LogFormat::kJson);
  CHECK(ParseLogFormat("text", &format));
  CHECK(format == LogFormat::kText);
  CHECK_FALSE(ParseLogFormat("xml", &format));
}

}  // namespace
}  // namespace corral
