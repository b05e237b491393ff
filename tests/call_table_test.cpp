// The channel's table of calls in flight, alone: no connection, no process, no clock of its own.
#include "procxy/detail/call_table.hpp"

#include <gtest/gtest.h>

#include <chrono>
#include <cstring>
#include <vector>

namespace {

using namespace std::chrono_literals;
using procxy::detail::call_table;
using procxy::detail::clock;
using procxy::detail::no_deadline;
using procxy::detail::pending_call;
using procxy::detail::state;
using procxy::detail::state_base;
using procxy::detail::state_ptr;

const clock::time_point t0 = clock::time_point{} + 1h;

pending_call call(clock::time_point deadline, const char* what = "f") {
  pending_call pc;
  pc.st = state_ptr<state_base>(new state<int>());
  pc.deadline = deadline;
  pc.what = what;
  return pc;
}

std::uint64_t frame_id(const procxy::detail::byte_buffer& frame) {
  std::uint64_t id = 0;
  std::memcpy(&id, frame.data() + offsetof(procxy::detail::frame_header, id), sizeof id);
  return id;
}

TEST(CallTable, IdsStartAtOneNeverRepeatAndTheStateLearnsItsId) {
  call_table t;
  auto a = call(no_deadline), b = call(t0);
  auto* sb = b.st.get();
  EXPECT_EQ(t.add(std::move(a)), 1u);
  EXPECT_EQ(t.add(std::move(b)), 2u);
  EXPECT_EQ(sb->call_id, 2u);
  EXPECT_EQ(sb->call_deadline, t0);
  ASSERT_TRUE(t.take(1).has_value());
  EXPECT_EQ(t.add(call(no_deadline)), 3u);  // 1 is not reused
  EXPECT_EQ(t.size(), 2u);
}

TEST(CallTable, TakeGivesACallOnceAndUnknownIdsNothing) {
  call_table t;
  auto id = t.add(call(no_deadline, "Calc::add"));
  auto pc = t.take(id);
  ASSERT_TRUE(pc.has_value());
  EXPECT_STREQ(pc->what, "Calc::add");
  EXPECT_FALSE(t.take(id).has_value());
  EXPECT_FALSE(t.take(99).has_value());
  EXPECT_FALSE(t.forget_late(99));  // never timed out: a reply to it is the peer's error
  EXPECT_TRUE(t.empty());
}

TEST(CallTable, ExpireTakesOnlyCallsPastTheirDeadlineAndTheirIdsBecomeLate) {
  call_table t;
  auto early = t.add(call(t0 + 1s));
  auto later = t.add(call(t0 + 5s));
  auto never = t.add(call(no_deadline));
  EXPECT_EQ(t.next_deadline(), t0 + 1s);
  EXPECT_TRUE(t.expire(t0, true).expired.empty());  // nothing due yet
  auto x = t.expire(t0 + 1s, true);
  ASSERT_EQ(x.expired.size(), 1u);
  EXPECT_EQ(x.expired[0].st->call_id, early);
  EXPECT_TRUE(x.resend.empty());
  EXPECT_EQ(t.next_deadline(), t0 + 5s);
  EXPECT_FALSE(t.take(early).has_value());
  EXPECT_TRUE(t.forget_late(early));   // its reply, if it comes, is dropped ...
  EXPECT_FALSE(t.forget_late(early));  // ... once
  EXPECT_TRUE(t.take(later).has_value());
  EXPECT_TRUE(t.take(never).has_value());
}

TEST(CallTable, AnIdempotentCallIsSentAgainUnderANewIdUntilItsAttemptsRunOut) {
  call_table t;
  auto pc = call(t0 + 1s);
  pc.again = std::make_shared<pending_call::retry>();
  pc.again->frame.resize(procxy::detail::header_size + 8);
  std::memset(pc.again->frame.data(), 0, pc.again->frame.size());
  pc.again->left = 2;
  pc.again->timeout = 3s;
  auto* st = pc.st.get();
  auto first = t.add(std::move(pc));

  auto x = t.expire(t0 + 1s, true);  // attempt 2
  EXPECT_TRUE(x.expired.empty());
  ASSERT_EQ(x.resend.size(), 1u);
  auto second = st->call_id;
  EXPECT_NE(second, first);
  EXPECT_EQ(frame_id(x.resend[0]->frame), second);
  EXPECT_EQ(st->call_deadline, t0 + 4s);
  EXPECT_EQ(t.next_deadline(), t0 + 4s);
  EXPECT_TRUE(t.forget_late(first));  // the first attempt's late reply is dropped

  x = t.expire(t0 + 4s, true);  // attempt 3
  ASSERT_EQ(x.resend.size(), 1u);
  EXPECT_EQ(frame_id(x.resend[0]->frame), st->call_id);

  x = t.expire(t0 + 7s, true);  // no attempt left
  ASSERT_EQ(x.expired.size(), 1u);
  EXPECT_TRUE(x.resend.empty());
  EXPECT_TRUE(t.empty());
  EXPECT_EQ(t.next_deadline(), no_deadline);
}

TEST(CallTable, NoRetryOnceTheConnectionIsBroken) {
  call_table t;
  auto pc = call(t0);
  pc.again = std::make_shared<pending_call::retry>();
  pc.again->frame.resize(procxy::detail::header_size);
  pc.again->left = 5;
  t.add(std::move(pc));
  auto x = t.expire(t0, /*retry=*/false);
  EXPECT_EQ(x.expired.size(), 1u);
  EXPECT_TRUE(x.resend.empty());
}

TEST(CallTable, TakeAllEmptiesTheTable) {
  call_table t;
  t.add(call(t0));
  t.add(call(no_deadline));
  auto all = t.take_all();
  EXPECT_EQ(all.size(), 2u);
  EXPECT_TRUE(t.empty());
  EXPECT_EQ(t.next_deadline(), no_deadline);
  EXPECT_TRUE(t.expire(t0 + 1h, true).expired.empty());
}

// More calls in flight than the ring holds: the oldest move beside it and are still found,
// expired and taken by take_all; answered out of order, each is found exactly once.
TEST(CallTable, CallsBeyondTheRingAreKeptAndFoundInAnyOrder) {
  call_table t;
  const std::size_t n = call_table::max_ring * 3 + 5;
  std::vector<std::uint64_t> ids;
  for (std::size_t i = 0; i < n; ++i) ids.push_back(t.add(call(i % 7 == 0 ? t0 : no_deadline)));
  EXPECT_EQ(t.size(), n);
  // Take every other one, newest first, then check the rest are still there.
  for (std::size_t i = n; i-- > 0;)
    if (i % 2 == 1) {
      auto pc = t.take(ids[i]);
      ASSERT_TRUE(pc.has_value()) << i;
      EXPECT_EQ(pc->st->call_id, ids[i]);
      EXPECT_FALSE(t.take(ids[i]).has_value());
    }
  EXPECT_EQ(t.size(), n - n / 2);
  // The calls with a deadline expire wherever they are kept.
  auto x = t.expire(t0, false);
  std::size_t with_deadline = 0;
  for (std::size_t i = 0; i < n; i += 2) with_deadline += i % 7 == 0;
  EXPECT_EQ(x.expired.size(), with_deadline);
  for (auto& pc : x.expired) EXPECT_TRUE(t.forget_late(pc.st->call_id));
  EXPECT_EQ(t.next_deadline(), no_deadline);
  auto rest = t.take_all();
  EXPECT_EQ(rest.size(), n - n / 2 - with_deadline);
  EXPECT_TRUE(t.empty());
  for (std::size_t i = 0; i < n; ++i) EXPECT_FALSE(t.take(ids[i]).has_value());
}

// A call that stays out while many others come and go is still there at the end.
TEST(CallTable, ALongCallOutlivesManyShortOnes) {
  call_table t;
  const auto slow = t.add(call(no_deadline, "slow"));
  for (int i = 0; i < 100'000; ++i) {
    auto id = t.add(call(no_deadline));
    ASSERT_TRUE(t.take(id).has_value());
  }
  EXPECT_EQ(t.size(), 1u);
  auto pc = t.take(slow);
  ASSERT_TRUE(pc.has_value());
  EXPECT_STREQ(pc->what, "slow");
  EXPECT_TRUE(t.empty());
}

}  // namespace
