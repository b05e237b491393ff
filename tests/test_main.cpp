// GoogleTest main for tests that spawn children: in a child, procxy::init serves and never returns.
#include <gtest/gtest.h>

#include "procxy/init.hpp"

int main(int argc, char** argv) {
  procxy::init(argc, argv);
  testing::InitGoogleTest(&argc, argv);
  return RUN_ALL_TESTS();
}
