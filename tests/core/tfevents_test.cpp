// TensorBoard event records: the CRC-32C and its mask, the record frame, and the tags under which
// logged events are written. (tests/common/read_tfevents.py reads whole files independently.)
#include <gtest/gtest.h>

#include <cstring>

#include "hpctrain/core/json.h"
#include "hpctrain/core/tfevents.h"
#include "hpctrain/train/tensorboard.h"

namespace hpctrain {
namespace {

TEST(Crc32c, MatchesTheStandardCheckValues) {
  EXPECT_EQ(tfevents::crc32c("123456789", 9), 0xe3069283u);  // the CRC catalogue's check value
  const std::string zeros(32, '\0');
  EXPECT_EQ(tfevents::crc32c(zeros.data(), zeros.size()), 0x8a9136aau);  // RFC 3720, B.4
  // Continued over pieces, as over the whole.
  EXPECT_EQ(tfevents::crc32c("6789", 4, tfevents::crc32c("12345", 5)), 0xe3069283u);
}

TEST(Crc32c, IsMaskedAsTensorFlowMasksIt) {
  const std::uint32_t c = tfevents::crc32c("123456789", 9);
  EXPECT_EQ(tfevents::masked_crc32c("123456789", 9), ((c >> 15) | (c << 17)) + 0xa282ead8u);
}

TEST(EventRecord, FramesThePayloadWithItsLengthAndTwoMaskedCrcs) {
  const std::string payload = "an event";
  const std::string r = tfevents::record(payload);
  ASSERT_EQ(r.size(), 8 + 4 + payload.size() + 4);
  std::uint64_t length = 0;
  std::uint32_t length_crc = 0, data_crc = 0;
  std::memcpy(&length, r.data(), 8);
  std::memcpy(&length_crc, r.data() + 8, 4);
  std::memcpy(&data_crc, r.data() + 12 + payload.size(), 4);
  EXPECT_EQ(length, payload.size());
  EXPECT_EQ(length_crc, tfevents::masked_crc32c(r.data(), 8));
  EXPECT_EQ(r.substr(12, payload.size()), payload);
  EXPECT_EQ(data_crc, tfevents::masked_crc32c(payload.data(), payload.size()));
}

TEST(EventRecord, TheFileVersionEventNamesBrainEvent2) {
  const std::string e = tfevents::file_version_event(1.5);
  EXPECT_NE(e.find("brain.Event:2"), std::string::npos);
  EXPECT_EQ(static_cast<unsigned char>(e[0]), (1u << 3) | 1u);  // wall_time: field 1, fixed64
}

TEST(TensorBoardTags, AreHuggingFacesNamesAndLeaveOutTheStepAndWhatIsNoNumber) {
  const Json logs = Json::parse(R"({"loss": 0.5, "eval_accuracy": 0.25, "test_loss": 2, "step": 30,
                                    "learning_rate": 0.001, "stopped": true, "note": "x"})");
  const auto v = train::TensorBoardCallback::scalars(logs);
  std::map<std::string, float> got(v.begin(), v.end());
  const std::map<std::string, float> want = {
      {"train/loss", 0.5f}, {"eval/accuracy", 0.25f}, {"test/loss", 2.0f}, {"train/learning_rate", 0.001f}};
  EXPECT_EQ(got, want);
}

}  // namespace
}  // namespace hpctrain
