#include "cellcube/status.h"

#include <gtest/gtest.h>

namespace cellcube {
namespace {

Result<int> Half(int x) {
  if (x % 2) return Status::InvalidArgument(std::to_string(x) + " is odd");
  return x / 2;
}

Result<int> Quarter(int x) {
  CC_ASSIGN_OR_RETURN(int h, Half(x));
  CC_ASSIGN_OR_RETURN(int q, Half(h));
  return q;
}

TEST(Result, PropagatesFirstError) {
  EXPECT_EQ(Quarter(8).value(), 2);
  auto r = Quarter(6);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(r.status().message(), "3 is odd");
}

TEST(Status, WithContextPrefixesErrorsOnly) {
  EXPECT_TRUE(Status::Ok().WithContext("x").ok());
  EXPECT_EQ(Status::Corrupt("bad").WithContext("file 'a'").message(), "file 'a': bad");
}

}  // namespace
}  // namespace cellcube
