#include "manager/frame.h"

#include <string>
#include <vector>

#include <catch2/catch.hpp>

namespace corral {
namespace {

std::string Prefix(uint32_t length) {
  std::string header(4, '\0');
  header[0] = static_cast<char>(length >> 24);
  header[1] = static_cast<char>(length >> 16);
  header[2] = static_cast<char>(length >> 8);
  header[3] = static_cast<char>(length);
  return header;
}

std::string Frame(const std::string& body) {
  return Prefix(body.size()) + body;
}

// Feeds every byte separately and collects what comes out.
std::vector<Result<nlohmann::json>> FeedByteByByte(FrameReader& reader, const std::string& bytes) {
  std::vector<Result<nlohmann::json>> out;
  for (char c : bytes) {
    reader.Feed(std::string_view(&c, 1));
    while (auto frame = reader.Next()) {
      out.push_back(std::move(*frame));
      if (!out.back().ok()) return out;
    }
  }
  return out;
}

TEST_CASE("frame reader reassembles frames fed byte by byte", "[frame]") {
  Result<std::string> first = EncodeFrame({{"id", 1}, {"result", {{"x", "é"}}}});
  Result<std::string> second = EncodeFrame({{"id", 2}, {"error", {{"type", "t"}}}});
  REQUIRE(first.ok());
  REQUIRE(second.ok());

  FrameReader reader;
  auto frames = FeedByteByByte(reader, *first + *second);
  REQUIRE(frames.size() == 2);
  REQUIRE(frames[0].ok());
  CHECK((*frames[0])["id"] == 1);
  CHECK((*frames[0])["result"]["x"] == "é");
  CHECK((*frames[1])["id"] == 2);
  CHECK(reader.buffered_bytes() == 0);
  CHECK_FALSE(reader.Next().has_value());
}

TEST_CASE("frame reader yields several frames from one feed, in order", "[frame]") {
  std::string bytes;
  for (int i = 0; i < 5; ++i) bytes += *EncodeFrame({{"id", i}});
  bytes += Prefix(20).substr(0, 3);  // the start of a sixth frame stays buffered

  FrameReader reader;
  reader.Feed(bytes);
  for (int i = 0; i < 5; ++i) {
    auto frame = reader.Next();
    REQUIRE(frame.has_value());
    REQUIRE(frame->ok());
    CHECK((**frame)["id"] == i);
  }
  CHECK_FALSE(reader.Next().has_value());
  CHECK(reader.buffered_bytes() == 3);
}

TEST_CASE("frame reader accepts a frame of exactly the maximum size", "[frame]") {
  constexpr size_t kMax = 64;
  std::string body = R"({"pad":")";
  body += std::string(kMax - body.size() - 2, 'a') + "\"}";
  REQUIRE(body.size() == kMax);
  FrameReader reader(kMax);
  reader.Feed(Frame(body));
  auto frame = reader.Next();
  REQUIRE(frame.has_value());
  CHECK(frame->ok());
}

TEST_CASE("frame reader refuses an oversized length prefix before reading the body", "[frame]") {
  constexpr size_t kMax = 1024;
  struct Case {
    const char* name;
    uint32_t length;
    size_t max_frame;
  };
  const Case cases[] = {
      {"0xFFFFFFFF", 0xFFFFFFFFu, kDefaultMaxFrame},
      {"0x80000000", 0x80000000u, kDefaultMaxFrame},
      {"default max + 1", static_cast<uint32_t>(kDefaultMaxFrame + 1), kDefaultMaxFrame},
      {"small max + 1", kMax + 1, kMax},
  };
  for (const Case& c : cases) {
    DYNAMIC_SECTION(c.name) {
      FrameReader reader(c.max_frame);
      // Only the prefix arrives: the refusal must not wait for (or keep) any body byte.
      reader.Feed(Prefix(c.length));
      auto frame = reader.Next();
      REQUIRE(frame.has_value());
      REQUIRE_FALSE(frame->ok());
      CHECK(frame->status().reason() == kFrameTooLarge);
      CHECK(reader.buffered_bytes() == 0);

      // The failure is sticky and later bytes are dropped, never buffered.
      reader.Feed(std::string(4096, 'x'));
      CHECK(reader.buffered_bytes() == 0);
      auto again = reader.Next();
      REQUIRE(again.has_value());
      CHECK(again->status().reason() == kFrameTooLarge);
    }
  }
}

TEST_CASE("frame reader refuses malformed bodies", "[frame]") {
  struct Case {
    const char* name;
    std::string body;
  };
  const std::vector<Case> cases = {
      {"truncated JSON", R"({"id": 1, "resu)"},
      {"not JSON", "hello"},
      {"array", "[1, 2]"},
      {"string", R"("id")"},
      {"number", "42"},
      {"null", "null"},
      {"invalid UTF-8 byte", "{\"a\": \"\xff\"}"},
      {"overlong UTF-8", "{\"a\": \"\xc0\xaf\"}"},
      {"UTF-8 surrogate", "{\"a\": \"\xed\xa0\x80\"}"},
      {"lone surrogate escape", R"({"a": "\udc80"})"},
      {"trailing garbage", R"({"a": 1} x)"},
      {"two objects", R"({"a": 1}{"b": 2})"},
      {"too deep", std::string(300, '[') + std::string(300, ']')},
      {"too deep inside an object",
       "{\"a\":" + std::string(300, '[') + std::string(300, ']') + "}"},
      {"NaN", R"({"a": NaN})"},
  };
  for (const Case& c : cases) {
    DYNAMIC_SECTION(c.name) {
      FrameReader reader;
      auto frames = FeedByteByByte(reader, Frame(c.body));
      REQUIRE(frames.size() == 1);
      REQUIRE_FALSE(frames[0].ok());
      CHECK(frames[0].status().reason() == kMalformedFrame);
    }
  }
}

TEST_CASE("frame reader refuses an empty frame", "[frame]") {
  FrameReader reader;
  reader.Feed(Prefix(0));
  auto frame = reader.Next();
  REQUIRE(frame.has_value());
  CHECK(frame->status().reason() == kMalformedFrame);
}

TEST_CASE("frame reader delivers good frames that precede a bad one", "[frame]") {
  FrameReader reader;
  reader.Feed(*EncodeFrame({{"id", 7}}) + Frame("[]") + *EncodeFrame({{"id", 8}}));
  auto good = reader.Next();
  REQUIRE(good.has_value());
  REQUIRE(good->ok());
  CHECK((**good)["id"] == 7);
  auto bad = reader.Next();
  REQUIRE(bad.has_value());
  CHECK_FALSE(bad->ok());
  auto after = reader.Next();  // the frame after the bad one is never trusted
  REQUIRE(after.has_value());
  CHECK_FALSE(after->ok());
}

TEST_CASE("depth check skips brackets inside strings", "[frame]") {
  std::string in_string = "{\"a\":\"" + std::string(1000, '[') + "\\\"" + "\"}";
  CHECK(JsonDepthWithin(in_string, 2));
  CHECK(JsonDepthWithin("[[[]]]", 3));
  CHECK_FALSE(JsonDepthWithin("[[[]]]", 2));
}

TEST_CASE("encode frame refuses what the daemon must never send", "[frame]") {
  CHECK(EncodeFrame(nlohmann::json::array()).status().reason() == kMalformedFrame);
  CHECK(EncodeFrame({{"a", std::string("\xff")}}).status().reason() == kMalformedFrame);
  CHECK(EncodeFrame({{"a", std::string(100, 'x')}}, 50).status().reason() == kFrameTooLarge);

  nlohmann::json deep = nlohmann::json::array();
  for (int i = 0; i < 300; ++i) deep = nlohmann::json::array({deep});
  CHECK(EncodeFrame({{"a", deep}}).status().reason() == kMalformedFrame);

  Result<std::string> ok = EncodeFrame({{"id", 1}});
  REQUIRE(ok.ok());
  CHECK(*ok == Prefix(8) + R"({"id":1})");
}

}  // namespace
}  // namespace corral
