#include "sandbox/status.h"

#include <catch2/catch.hpp>

namespace corral {
namespace {

Status FailingStep() {
  errno = ENOENT;
  return ErrnoStatus("open `{}`", "/missing");
}

Status Caller() {
  CORRAL_TRY_CTX(FailingStep(), "create session `{}`", "s-42");
  return Status::Ok();
}

Result<int> Half(int x) {
  if (x % 2 != 0) return Status::InvalidArgument(fmt::format("{} is odd", x));
  return x / 2;
}

Result<int> Quarter(int x) {
  CORRAL_ASSIGN_OR_RETURN(int half, Half(x));
  return Half(half);
}

TEST_CASE("errno status keeps errno, category and context", "[status]") {
  Status s = Caller();
  REQUIRE_FALSE(s.ok());
  CHECK(s.category() == ErrorCategory::kNotFound);
  CHECK(s.sys_errno() == ENOENT);
  CHECK(s.ToString() == "create session `s-42`: open `/missing`: No such file or directory");
}

TEST_CASE("result propagates the first failure", "[status]") {
  CHECK(Quarter(8).value() == 2);
  auto r = Quarter(6);
  REQUIRE_FALSE(r.ok());
  CHECK(r.status().message() == "3 is odd");
  CHECK(r.status().category() == ErrorCategory::kInvalidArgument);
}

TEST_CASE("reason and details ride along with the status", "[status]") {
  Status s = Status::NotFound("no session `x`").WithReason("session_not_found");
  CHECK(s.reason() == "session_not_found");
  CHECK(std::move(s).Context("get").message() == "get: no session `x`");
}

}  // namespace
}  // namespace corral
