// Honest skips: a test that cannot run on this host says why. With CORRAL_MUST_WORK=1 (CI) a
// skip is a failure, so "sandboxing unavailable" can never turn a red run green.
#pragma once

#include <cstdlib>
#include <string>

#include <catch2/catch.hpp>

namespace corral::testing {

inline bool MustWork() {
  const char* value = std::getenv("CORRAL_MUST_WORK");
  return value != nullptr && std::string(value) == "1";
}

}  // namespace corral::testing

// Use at the top of a TEST_CASE: `CORRAL_SKIP_IF(!HaveUserNs(), "user namespaces disabled");`
#define CORRAL_SKIP_IF(condition, reason)                                            \
  do {                                                                               \
    if (condition) {                                                                 \
      if (::corral::testing::MustWork()) FAIL("required but unavailable: " reason);  \
      WARN("skipped: " reason);                                                      \
      return;                                                                        \
    }                                                                                \
  } while (0)
