// Request bodies and ids: JSON limits and the field table checks.
#include <array>
#include <catch2/catch.hpp>
#include <set>

#include "manager/http_errors.h"
#include "manager/http_server.h"
#include "manager/request_validation.h"

namespace corral {
namespace {

const std::array kFields = {
    FieldSpec{"id", FieldType::kString, true, kSessionIdPattern},
    FieldSpec{"note", FieldType::kString, false, "", 8},
    FieldSpec{"count", FieldType::kInteger, false, "", 0, 1, 10},
    FieldSpec{"meta", FieldType::kObject, false, "", 20},
};

TEST_CASE("validation: JSON bodies") {
  CHECK(ParseJsonBody("", true).ok());
  CHECK_FALSE(ParseJsonBody("", false).ok());
  CHECK(ParseJsonBody(R"({"a": [1, {"b": "[[[["}]})", false).ok());
  CHECK(ParseJsonBody("nope", false).status().reason() == "invalid_json");
  CHECK(ParseJsonBody("[]", false).status().reason() == "invalid_json");
  std::string deep = std::string(100000, '[') + std::string(100000, ']');
  CHECK(ParseJsonBody(deep, false).status().message().find("nested") != std::string::npos);
  std::string at_limit = std::string(kMaxJsonDepth - 1, '[') + std::string(kMaxJsonDepth - 1, ']');
  CHECK(ParseJsonBody("{\"a\":" + at_limit + "}", false).ok());
  // Brackets inside strings, escaped quotes included, do not count.
  CHECK(ParseJsonBody(
            R"({"a": "\"[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[["})",
            false)
            .ok());
}

TEST_CASE("validation: field table") {
  struct Case {
    std::string body;
    std::string field;  // empty = valid
  };
  const std::vector<Case> cases = {
      {R"({"id": "ok-1"})", ""},
      {R"({"id": "ok", "note": null})", ""},
      {R"({})", "id"},
      {R"({"id": 3})", "id"},
      {R"({"id": "a/b"})", "id"},
      {R"({"id": ".."})", "id"},
      {R"({"id": "a..b"})", "id"},
      {R"({"id": "-lead"})", "id"},
      {R"({"id": "x\u0000"})", "id"},
      {R"({"id": "ok", "note": "123456789"})", "note"},
      {R"({"id": "ok", "count": 0})", "count"},
      {R"({"id": "ok", "count": 11})", "count"},
      {R"({"id": "ok", "count": 1.5})", "count"},
      {R"({"id": "ok", "count": 18446744073709551615})", "count"},
      {R"({"id": "ok", "meta": {"k": "01234567890123456789"}})", "meta"},
      {R"({"id": "ok", "meta": []})", "meta"},
      {R"({"id": "ok", "extra": 1})", "extra"},
  };
  for (const Case& c : cases) {
    INFO(c.body);
    Status status = ValidateFields(nlohmann::json::parse(c.body), kFields);
    if (c.field.empty()) {
      CHECK(status.ok());
      continue;
    }
    REQUIRE_FALSE(status.ok());
    CHECK(HttpStatusFor(status) == 400);
    CHECK(ErrorBody(status)["error"]["details"]["field"] == c.field);
    CHECK(status.message().rfind(c.field + ":", 0) == 0);
  }
}

TEST_CASE("validation: ids") {
  CHECK(ValidateId("session_id", std::string(64, 'a'), kSessionIdPattern).ok());
  CHECK_FALSE(ValidateId("session_id", std::string(65, 'a'), kSessionIdPattern).ok());
  CHECK_FALSE(ValidateId("session_id", std::string(10240, 'a'), kSessionIdPattern).ok());
  CHECK(ValidateId("program_id", "qa_bot", kProgramIdPattern).ok());
  CHECK_FALSE(ValidateId("policy", "../default", kPolicyNamePattern).ok());
  CHECK_FALSE(ValidateId("policy", "a.b", kPolicyNamePattern).ok());
}

TEST_CASE("routes: matching, parameters, 404 and 405") {
  std::vector<Route> routes = {
      {"GET", "/v1/sessions/{id}", nullptr},
      {"DELETE", "/v1/sessions/{id}", nullptr},
      {"POST", "/v1/sessions/{id}/programs/{program_id}/execute", nullptr},
  };
  RouteMatch get = MatchRoute(routes, "GET", "/v1/sessions/s-1");
  REQUIRE(get.route == &routes[0]);
  CHECK(get.params.at("id") == "s-1");
  RouteMatch run = MatchRoute(routes, "POST", "/v1/sessions/a/programs/p/execute");
  REQUIRE(run.route == &routes[2]);
  CHECK(run.params.at("program_id") == "p");
  CHECK(MatchRoute(routes, "HEAD", "/v1/sessions/s-1").route == &routes[0]);
  RouteMatch wrong = MatchRoute(routes, "PUT", "/v1/sessions/s-1");
  CHECK(wrong.route == nullptr);
  CHECK(HttpStatusFor(wrong.error) == 405);
  CHECK(HttpStatusFor(MatchRoute(routes, "GET", "/v1/sessions/a/b").error) == 404);
  CHECK(HttpStatusFor(MatchRoute(routes, "GET", "/v1/sessions/").error) == 404);
}

}  // namespace
}  // namespace corral

#include "manager/session_registry.h"

namespace corral {
namespace {

TEST_CASE("session ids: generated from getrandom, valid and distinct") {
  std::set<std::string> seen;
  for (int i = 0; i < 1000; ++i) {
    Result<std::string> id = GenerateSessionId();
    REQUIRE(id.ok());
    CHECK(id->size() == 26);
    CHECK(id->rfind("s-", 0) == 0);
    CHECK(id->find_first_not_of("0123456789abcdef", 2) == std::string::npos);
    CHECK(ValidateId("session_id", *id, kSessionIdPattern).ok());
    seen.insert(*id);
  }
  CHECK(seen.size() == 1000);
}

}  // namespace
}  // namespace corral
