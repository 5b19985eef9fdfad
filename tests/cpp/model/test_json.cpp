#include <gtest/gtest.h>

#include <random>
#include <string>

#include "model/json.h"

namespace taco::json {
namespace {

TEST(Json, ParsesScalars) {
  EXPECT_TRUE(parse("null").is_null());
  EXPECT_TRUE(parse(" true ").as_bool());
  EXPECT_FALSE(parse("false").as_bool());
  EXPECT_EQ(parse("-42").as_int(), -42);
  EXPECT_EQ(parse("9007199254740993").as_int(), 9007199254740993LL);  // beyond double precision
  EXPECT_DOUBLE_EQ(parse("1.5e-5").as_double(), 1.5e-5);
  EXPECT_DOUBLE_EQ(parse("9.999999747378752e-06").as_double(), 9.999999747378752e-06);
  EXPECT_FALSE(parse("2.0").is_int());
  EXPECT_FALSE(parse("1e3").is_int());
  EXPECT_FALSE(parse("123456789012345678901234").is_int());  // a double, not an int64
}

TEST(Json, ParsesStringsWithEscapes) {
  EXPECT_EQ(parse(R"("a\"b\\c\/d\n\t\r\b\f")").as_string(), "a\"b\\c/d\n\t\r\b\f");
  EXPECT_EQ(parse(R"("\u00e9")").as_string(), "\xc3\xa9");
  EXPECT_EQ(parse(R"("\u20AC")").as_string(), "\xe2\x82\xac");
  EXPECT_EQ(parse(R"("\ud83d\ude00")").as_string(), "\xf0\x9f\x98\x80");
  EXPECT_EQ(parse("\"\xc3\xa9\"").as_string(), "\xc3\xa9");  // raw UTF-8 passes through
}

TEST(Json, ParsesContainers) {
  Value v = parse(R"({"a": [1, 2, {"b": null}], "c": {}, "d": []})");
  ASSERT_TRUE(v.is_object());
  EXPECT_EQ(v.keys().size(), 3u);
  const Value* a = v.find("a");
  ASSERT_NE(a, nullptr);
  ASSERT_EQ(a->size(), 3u);
  EXPECT_EQ(a->items()[1].as_int(), 2);
  EXPECT_TRUE(a->items()[2].find("b")->is_null());
  EXPECT_EQ(v.find("missing"), nullptr);
  EXPECT_EQ(v.find("c")->size(), 0u);
}

TEST(Json, RejectsMalformedInput) {
  const char* bad[] = {"",
                       "{",
                       "[1,]",
                       "{\"a\":1,}",
                       "{a:1}",
                       "01",
                       "1.",
                       ".5",
                       "-",
                       "1e",
                       "+1",
                       "tru",
                       "nul",
                       "\"abc",
                       "\"\\x\"",
                       "\"\\u12\"",
                       "\"\\ud800\"",
                       "\"\\udc00\"",
                       "\"a\nb\"",
                       "[1 2]",
                       "{} {}",
                       "NaN",
                       "Infinity",
                       "1e999",
                       "{\"a\":1,\"a\":2}",
                       "[\"\\ud800\\u0041\"]"};
  for (const char* text : bad) {
    EXPECT_THROW(parse(text), ParseError) << text;
  }
}

TEST(Json, ErrorsCarryPosition) {
  try {
    parse("[1, 2, x]");
    FAIL();
  } catch (const ParseError& e) {
    EXPECT_EQ(e.pos(), 7u);
    EXPECT_NE(std::string(e.what()).find("byte 7"), std::string::npos);
  }
}

TEST(Json, EnforcesLimits) {
  std::string deep(100, '[');
  deep += std::string(100, ']');
  EXPECT_THROW(parse(deep), ParseError);
  Limits limits;
  limits.max_depth = 200;
  EXPECT_NO_THROW(parse(deep, limits));
  limits.max_bytes = 10;
  EXPECT_THROW(parse("[1, 2, 3, 4, 5]", limits), ParseError);
}

TEST(Json, TypeMismatchThrows) {
  Value v = parse(R"({"a": "s"})");
  EXPECT_THROW(v.find("a")->as_int(), std::invalid_argument);
  EXPECT_THROW(v.as_string(), std::invalid_argument);
  EXPECT_THROW(parse("1.5").as_int(), std::invalid_argument);
}

// Random mutations of a valid document end in a value or a ParseError, never a crash.
TEST(Json, MutationFuzz) {
  const std::string base =
      R"({"x": [1, -2.5e3, "a\u00e9\n", true, null], "y": {"z": [[], {}]}, "w": "\ud83d\ude00"})";
  std::mt19937 rng(7);
  for (int iter = 0; iter < 5000; ++iter) {
    std::string s = base;
    const int edits = 1 + static_cast<int>(rng() % 4);
    for (int e = 0; e < edits; ++e) {
      const size_t pos = rng() % s.size();
      switch (rng() % 3) {
        case 0:
          s[pos] = static_cast<char>(rng());
          break;
        case 1:
          s.erase(pos, 1 + rng() % 3);
          break;
        default:
          s.insert(pos, 1, "{}[]\",:\\u0e-"[rng() % 13]);
      }
      if (s.empty()) s = "x";
    }
    try {
      parse(s);
    } catch (const ParseError&) {
    }
  }
}

}  // namespace
}  // namespace taco::json
