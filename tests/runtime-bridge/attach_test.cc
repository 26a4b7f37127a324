#include "runtime-bridge/attach.h"

#include <gtest/gtest.h>

#include "runtime-bridge/cri_log.h"

namespace strata::runtime {
namespace {

TEST(AttachFrames, RoundTripAcrossArbitrarySplits) {
  std::string stream = EncodeFrame(FrameType::kStdout, "hello") + EncodeExitFrame(137) +
                       EncodeResizeFrame(24, 80) + EncodeFrame(FrameType::kStdinClose, "");
  for (size_t step : {1, 2, 3, 7, 100}) {
    FrameDecoder d;
    std::vector<Frame> frames;
    for (size_t i = 0; i < stream.size(); i += step) {
      d.Append(stream.data() + i, std::min(step, stream.size() - i));
      Frame f;
      while (*d.Next(&f)) frames.push_back(f);
    }
    ASSERT_EQ(frames.size(), 4u) << "step " << step;
    EXPECT_EQ(frames[0].type, FrameType::kStdout);
    EXPECT_EQ(frames[0].payload, "hello");
    EXPECT_EQ(DecodeExitCode(frames[1].payload), 137);
    uint16_t rows = 0, cols = 0;
    ASSERT_TRUE(DecodeResize(frames[2].payload, &rows, &cols));
    EXPECT_EQ(rows, 24);
    EXPECT_EQ(cols, 80);
    EXPECT_EQ(frames[3].type, FrameType::kStdinClose);
  }
}

TEST(AttachFrames, BinaryPayloadSurvives) {
  std::string payload("\0\xff\n\x01", 4);
  FrameDecoder d;
  std::string frame = EncodeFrame(FrameType::kStdin, payload);
  d.Append(frame.data(), frame.size());
  Frame f;
  ASSERT_TRUE(*d.Next(&f));
  EXPECT_EQ(f.payload, payload);
}

TEST(AttachFrames, UnknownTypeAndOversizedFramesAreRefused) {
  FrameDecoder unknown;
  std::string bad("\x63\0\0\0\0", 5);
  unknown.Append(bad.data(), bad.size());
  Frame f;
  EXPECT_FALSE(unknown.Next(&f).ok());
  FrameDecoder huge;
  std::string big("\x04\x7f\xff\xff\xff", 5);
  huge.Append(big.data(), big.size());
  EXPECT_FALSE(huge.Next(&f).ok());
}

TEST(CriLog, ParsesFullAndPartialRecords) {
  CriLogRecord r;
  ASSERT_TRUE(ParseCriLogLine("2026-11-29T12:00:01.5Z stdout F hello world", &r));
  EXPECT_FALSE(r.is_stderr);
  EXPECT_FALSE(r.partial);
  EXPECT_EQ(r.content, "hello world\n");
  EXPECT_EQ(r.unix_nanos % 1000000000, 500000000);
  ASSERT_TRUE(ParseCriLogLine("2026-11-29T12:00:01.000000001Z stderr P no newline", &r));
  EXPECT_TRUE(r.is_stderr);
  EXPECT_TRUE(r.partial);
  EXPECT_EQ(r.content, "no newline");
  ASSERT_TRUE(ParseCriLogLine("2026-11-29T12:00:01Z stdout F ", &r));
  EXPECT_EQ(r.content, "\n");
  EXPECT_FALSE(ParseCriLogLine("garbage", &r));
  EXPECT_FALSE(ParseCriLogLine("2026-11-29T12:00:01Z stdin F x", &r));
  EXPECT_FALSE(ParseCriLogLine("2026-11-29T12:00:01Z stdout X x", &r));
  EXPECT_FALSE(ParseCriLogLine("yesterday stdout F x", &r));
}

}  // namespace
}  // namespace strata::runtime
