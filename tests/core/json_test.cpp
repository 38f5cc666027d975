// The JSON reader of state and metrics files: numbers as JSON spells them, integers beyond 64 bits,
// non-finite values as Python writes them, bounded nesting.
#include <gtest/gtest.h>

#include <cmath>
#include <string>

#include "hpctrain/core/error.h"
#include "hpctrain/core/json.h"

namespace hpctrain {
namespace {

bool refused(const std::string& text) {
  try {
    Json::parse(text, "test");
  } catch (const Error&) {
    return true;
  }
  return false;
}

TEST(Json, NumbersAreReadAsJsonSpellsThem) {
  EXPECT_EQ(Json::parse("42", "t").integer(), 42);
  EXPECT_EQ(Json::parse("-9223372036854775808", "t").integer(), INT64_MIN);
  EXPECT_DOUBLE_EQ(Json::parse("2.5e-3", "t").number(), 2.5e-3);
  EXPECT_DOUBLE_EQ(Json::parse("-0.5", "t").number(), -0.5);
  // Beyond 64 bits: a number that no integer setting takes (it was silently the largest int64).
  const Json big = Json::parse("99999999999999999999", "t");
  EXPECT_FALSE(big.is_integer());
  EXPECT_DOUBLE_EQ(big.number(), 1e20);
  // Out of double range: infinity, which every finite-number check refuses.
  EXPECT_TRUE(std::isinf(Json::parse("1e400", "t").number()));
  // strtod alone took these; "inf" and "nan" were read as the integer 0.
  for (const char* bad : {"inf", "nan", "infinity", "0x10", "-", "1.", ".5", "1e", "+1", "--1"})
    EXPECT_TRUE(refused(std::string("[") + bad + "]")) << bad;
}

TEST(Json, NonFiniteValuesRoundTripAsPythonWritesThem) {
  const Json j = Json::parse("[NaN, Infinity, -Infinity]", "t");
  EXPECT_TRUE(std::isnan(j.items()[0].number()));
  EXPECT_EQ(j.items()[1].number(), HUGE_VAL);
  EXPECT_EQ(j.dump(), "[NaN, Infinity, -Infinity]");
}

TEST(Json, DeepNestingIsRefusedInsteadOfOverflowingTheStack) {
  EXPECT_TRUE(refused(std::string(100000, '[')));
  EXPECT_FALSE(refused(std::string(200, '[') + std::string(200, ']')));
}

TEST(Json, StringEscapesAreReadAsRfc8259SpellsThem) {
  auto str = [](const std::string& text) { return Json::parse(text, "t").str(); };
  EXPECT_EQ(str(R"("\u00e9")"), "\xc3\xa9");          // é as UTF-8 (it was the single byte 0xE9)
  EXPECT_EQ(str(R"("\u20AC")"), "\xe2\x82\xac");      // € (it was 0xAC)
  EXPECT_EQ(str(R"("\ud83d\ude00")"), "\xf0\x9f\x98\x80");  // a surrogate pair is one code point
  EXPECT_EQ(str(R"("\u0041\u007f")"), "A\x7f");
  EXPECT_EQ(str(R"("a\bb\fc\/d\"e\\f\ng\rh\ti")"), "a\bb\fc/d\"e\\f\ng\rh\ti");  // \b was the letter b
  EXPECT_EQ(str("\"caf\xc3\xa9\""), "caf\xc3\xa9");  // UTF-8 passes through
  for (const char* bad : {R"("\x41")", R"("\u12")", R"("\u12G4")", R"("\ud83d")", R"("\ud83d\u0041")", R"("\ude00")",
                          "\"tab\there\"", "\"new\nline\"", R"("\)"})
    EXPECT_TRUE(refused(bad)) << bad;
}

TEST(Json, EveryStringRoundTrips) {
  std::string all;
  for (int c = 1; c < 128; ++c) all += static_cast<char>(c);
  all += "\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80";
  Json o = Json::object();
  o.set(all, all);
  for (int indent : {-1, 2}) {
    const Json back = Json::parse(o.dump(indent), "t");
    ASSERT_EQ(back.fields().size(), 1u);
    EXPECT_EQ(back.fields()[0].first, all);
    EXPECT_EQ(back.fields()[0].second.str(), all);
  }
}

}  // namespace
}  // namespace hpctrain
