#include <chrono>
#include <string>

#include <catch2/catch.hpp>

#include "sandbox/policy.h"

namespace corral {
namespace {

struct SizeCase {
  const char* text;
  bool ok;
  uint64_t bytes;
};

const SizeCase kSizes[] = {
    {"0", true, 0},
    {"4096", true, 4096},
    {"1K", true, 1000},
    {"1Ki", true, 1024},
    {"256Mi", true, 256ull << 20},
    {"2G", true, 2'000'000'000},
    {"2Gi", true, 2ull << 30},
    {"3T", true, 3'000'000'000'000},
    {"1Ti", true, 1ull << 40},
    {"16777215Ti", true, 16777215ull << 40},
    {"16777216Ti", false, 0},  // 2^64: overflows
    {"99999999999999999999", false, 0},
    {"", false, 0},
    {"Mi", false, 0},
    {"12Zb", false, 0},
    {"1.5Gi", false, 0},
    {"-1", false, 0},
    {"1 Mi", false, 0},
    {"1mi", false, 0},
    {"1MiB", false, 0},
};

TEST_CASE("sizes take decimal and binary suffixes", "[values]") {
  for (const SizeCase& c : kSizes) {
    INFO(c.text);
    auto parsed = ParseSize(c.text);
    REQUIRE(parsed.ok() == c.ok);
    if (c.ok) CHECK(*parsed == c.bytes);
  }
  CHECK_THAT(ParseSize("12Zb").status().message(), Catch::Contains("bad size `12Zb`"));
}

struct DurationCase {
  const char* text;
  bool ok;
  int64_t ms;
};

const DurationCase kDurations[] = {
    {"0", true, 0},        {"30", true, 30'000},    {"1.5", true, 1'500},
    {"250ms", true, 250},  {"30s", true, 30'000},   {"0.5s", true, 500},
    {"5m", true, 300'000}, {"2h", true, 7'200'000}, {"", false, 0},
    {"s", false, 0},       {"5x", false, 0},        {"-1s", false, 0},
    {"1.s", false, 0},     {".5s", false, 0},       {"1d", false, 0},
    {"100000h", false, 0},  // over ten years
};

TEST_CASE("durations take ms, s, m and h; a plain number is seconds", "[values]") {
  for (const DurationCase& c : kDurations) {
    INFO(c.text);
    auto parsed = ParseDuration(c.text);
    REQUIRE(parsed.ok() == c.ok);
    if (c.ok) CHECK(parsed->count() == c.ms);
  }
  CHECK_THAT(ParseDuration("5x").status().message(), Catch::Contains("bad duration `5x`"));
}

}  // namespace
}  // namespace corral
