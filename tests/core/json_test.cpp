// JSON through hpctrain's adapter (nlohmann's ordered_json underneath): numbers as JSON spells
// them, Python's non-finite words on read and null on write, string escapes, bounded nesting,
// errors that name the file, and key order kept.
#include <gtest/gtest.h>

#include <cmath>
#include <fstream>
#include <string>

#include "hpctrain/core/error.h"
#include "hpctrain/core/json.h"

namespace hpctrain {
namespace {

std::string refusal(const std::string& text) {
  try {
    (void)json::parse(text, "test.json");
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}
bool refused(const std::string& text) { return !refusal(text).empty(); }

TEST(Json, NumbersAreReadAsJsonSpellsThem) {
  EXPECT_EQ(json::parse("42", "t").get<std::int64_t>(), 42);
  EXPECT_EQ(json::parse("-9223372036854775808", "t").get<std::int64_t>(), INT64_MIN);
  EXPECT_TRUE(json::is_int64(json::parse("9223372036854775807", "t")));
  EXPECT_DOUBLE_EQ(json::number(json::parse("2.5e-3", "t")), 2.5e-3);
  EXPECT_DOUBLE_EQ(json::number(json::parse("-0.5", "t")), -0.5);
  // Beyond int64: not an integer any setting takes (our own parser clamped it to INT64_MAX).
  EXPECT_FALSE(json::is_int64(json::parse("12345678901234567890", "t")));
  EXPECT_FALSE(json::is_int64(json::parse("99999999999999999999999", "t")));
  EXPECT_FALSE(json::is_int64(json::parse("2.0", "t")));
  for (const char* bad : {"inf", "nan", "infinity", "0x10", "-", "1.", ".5", "1e", "+1", "--1", "1e400"})
    EXPECT_TRUE(refused(std::string("[") + bad + "]")) << bad;
}

TEST(Json, PythonsNonFiniteWordsAreReadAndWrittenAsNull) {
  const Json j = json::parse(R"([NaN, Infinity, -Infinity, "NaN", {"Infinity": NaN}])", "t");
  ASSERT_EQ(j.size(), 5u);
  EXPECT_TRUE(std::isnan(json::number(j[0])));
  EXPECT_EQ(json::number(j[1]), HUGE_VAL);
  EXPECT_EQ(json::number(j[2]), -HUGE_VAL);
  EXPECT_EQ(j[3].get<std::string>(), "NaN");  // inside a string it stays text
  EXPECT_TRUE(std::isnan(json::number(j[4].at("Infinity"))));
  // Written as strict JSON: null, which reads back as NaN where a number is expected.
  EXPECT_EQ(json::dump(j), R"([null,null,null,"NaN",{"Infinity":null}])");
  EXPECT_TRUE(std::isnan(json::number(json::parse(json::dump(j), "t")[1])));
  EXPECT_TRUE(refused("[NaNa]"));
  EXPECT_TRUE(refused("[Inf]"));
}

TEST(Json, DeepNestingIsRefusedInsteadOfOverflowingTheStack) {
  EXPECT_NE(refusal(std::string(100000, '[')).find("nested deeper than 256 levels"), std::string::npos);
  EXPECT_TRUE(refused(std::string(300, '[') + std::string(300, ']')));
  EXPECT_FALSE(refused(std::string(200, '[') + std::string(200, ']')));
}

TEST(Json, StringEscapesAreReadAsRfc8259SpellsThem) {
  auto str = [](const std::string& text) { return json::parse(text, "t").get<std::string>(); };
  EXPECT_EQ(str(R"("\u00e9")"), "\xc3\xa9");          // é as UTF-8 (our own parser gave the byte 0xE9)
  EXPECT_EQ(str(R"("\u20AC")"), "\xe2\x82\xac");      // € (it gave 0xAC)
  EXPECT_EQ(str(R"("\ud83d\ude00")"), "\xf0\x9f\x98\x80");  // a surrogate pair is one code point
  EXPECT_EQ(str(R"("\u0041\u007f")"), "A\x7f");
  EXPECT_EQ(str(R"("a\bb\fc\/d\"e\\f\ng\rh\ti")"), "a\bb\fc/d\"e\\f\ng\rh\ti");  // \b was the letter b
  EXPECT_EQ(str("\"caf\xc3\xa9\""), "caf\xc3\xa9");  // UTF-8 passes through
  for (const char* bad : {R"("\x41")", R"("\u12")", R"("\u12G4")", R"("\ud83d")", R"("\ud83d\u0041")", R"("\ude00")",
                          "\"tab\there\"", "\"new\nline\"", R"("\)", "\"\xff\""})
    EXPECT_TRUE(refused(bad)) << bad;
}

TEST(Json, EveryStringRoundTripsAndBytesThatAreNotUtf8AreReplacedOnWrite) {
  std::string all;
  for (int c = 1; c < 128; ++c) all += static_cast<char>(c);
  all += "\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80";
  Json o = Json::object();
  o[all] = all;
  for (int indent : {-1, 2}) {
    const Json back = json::parse(json::dump(o, indent), "t");
    ASSERT_EQ(back.size(), 1u);
    EXPECT_EQ(back.begin().key(), all);
    EXPECT_EQ(back.begin().value().get<std::string>(), all);
  }
  // A message quoting a damaged file name: written, not an exception in the middle of a failure.
  Json bad = Json::object();
  bad["detail"] = std::string("file '\xff\xfe.h5' is damaged");
  EXPECT_EQ(json::parse(json::dump(bad), "t").at("detail").get<std::string>(), "file '\xef\xbf\xbd\xef\xbf\xbd.h5' is damaged");
}

TEST(Json, KeysKeepTheOrderTheyWereSetIn) {
  Json o = Json::object();
  o["step"] = 1;
  o["loss"] = 0.5;
  o["epoch"] = 0.25;
  o["step"] = 2;  // replaced in place
  EXPECT_EQ(json::dump(o), R"({"step":2,"loss":0.5,"epoch":0.25})");
  EXPECT_EQ(json::dump(json::parse(R"({"z": 1, "a": 2})", "t")), R"({"z":1,"a":2})");
  // A double stays a double when read back.
  EXPECT_EQ(json::dump(Json(3.0)), "3.0");
  EXPECT_FALSE(json::is_int64(json::parse(json::dump(Json(3.0)), "t")));
}

TEST(Json, LookupsAreCheckedAndErrorsNameTheFile) {
  const Json o = json::parse(R"({"a": 1, "b": null})", "t");
  EXPECT_NE(json::find(o, "a"), nullptr);
  EXPECT_EQ(json::find(o, "missing"), nullptr);
  EXPECT_EQ(json::find(Json(5), "a"), nullptr);  // not an object: absent, not a crash
  EXPECT_TRUE(std::isnan(json::number(o.at("b"))));
  EXPECT_THROW((void)o.at("missing"), Json::out_of_range);
  EXPECT_NE(refusal(R"({"a": 1,})").find("test.json: invalid JSON"), std::string::npos) << refusal(R"({"a": 1,})");
  const std::string path = ::testing::TempDir() + "/hpct-json-test.json";
  { std::ofstream(path) << "{\"x\": [1, 2,"; }
  try {
    (void)json::parse_file(path);
    ADD_FAILURE() << "a truncated file was read";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("'" + path + "': invalid JSON"), std::string::npos) << e.what();
  }
  try {
    (void)json::parse_file(path + ".absent");
    ADD_FAILURE() << "a missing file was read";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("is missing or cannot be read"), std::string::npos) << e.what();
  }
  std::remove(path.c_str());
}

}  // namespace
}  // namespace hpctrain
