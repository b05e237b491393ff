// The channel layer alone: two connections over a socketpair or over shared-memory rings in one
// process (no fork), a raw socket end playing a hostile peer, and the shared-memory transport
// alone with the test writing its rings' indices.
#include "procxy/detail/connection.hpp"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <linux/futex.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>
#include <cstring>
#include <span>
#include <string>
#include <thread>
#include <vector>

#include "procxy/detail/method.hpp"
#include "procxy/detail/shm_transport.hpp"

using namespace std::chrono_literals;
using namespace procxy::detail;

namespace {

// Echoes every call's body back as the reply value.
class echo_handler : public endpoint {
 public:
  void handle(frame&& f, connection& c) override {
    byte_buffer out;
    build_frame(out, message_kind::reply_value, f.header.id,
                [&](encoder& e) { e.buffer().append(f.body.view().data(), f.body.size()); });
    c.send(out.view());
  }
};

// Accepts no request: any is a protocol error.
class no_requests : public endpoint {
 public:
  void handle(frame&& f, connection&) override {
    throw procxy::protocol_error(std::string("procxy: unexpected ") + to_string(f.header.kind) +
                                 " message");
  }
};

// A connection with its dispatch thread running, joined on destruction.
struct running_end {
  std::shared_ptr<connection> conn;
  std::thread thread;
  running_end(int fd, connection::side s, endpoint* h = nullptr,
              std::size_t max = std::size_t{64} << 20)
      : running_end(make_socket_transport(fd), s, h, max) {}
  running_end(std::unique_ptr<transport> t, connection::side s, endpoint* h = nullptr,
              std::size_t max = std::size_t{64} << 20)
      : conn(connection::create(
            std::move(t),
            h ? std::shared_ptr<endpoint>(std::shared_ptr<void>(), h)  // not owned
              : std::make_shared<no_requests>(),
            connection::options{s, max})) {
    thread = std::thread([c = conn] { c->run_dispatch_loop(); });
  }
  ~running_end() {
    conn->close();
    thread.join();
  }
};

std::pair<int, int> socket_pair() {
  int sv[2];
  EXPECT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
  return {sv[0], sv[1]};
}

procxy::future<std::string> call_string(connection& c, const std::string& payload) {
  state_ptr<state<std::string>> st(new state<std::string>());
  auto f = make_future(st);
  byte_buffer buf;
  build_frame(buf, message_kind::call, 0, [&](encoder& e) { e(payload); });
  c.call(buf, state_ptr<state_base>(st), &decode_reply<std::string>, no_deadline, "echo");
  return f;
}

void write_raw(int fd, const frame_header& h, const std::string& body = {}) {
  std::string bytes(sizeof h, '\0');
  std::memcpy(bytes.data(), &h, sizeof h);
  bytes += body;
  ASSERT_EQ(::write(fd, bytes.data(), bytes.size()), static_cast<ssize_t>(bytes.size()));
}

// Both ends of a transport of the kind asked for ("socket" or "shm"), in this process.
std::pair<std::unique_ptr<transport>, std::unique_ptr<transport>> transport_pair(
    const std::string& kind, std::size_t ring = shm::default_ring) {
  auto [a, b] = socket_pair();
  if (kind == "socket") return {make_socket_transport(a), make_socket_transport(b)};
  const int memfd = shm::create(ring);
  const int memfd2 = ::fcntl(memfd, F_DUPFD_CLOEXEC, 0);
  return {make_shm_transport(a, memfd, ring, 0, shm::may_spin()),
          make_shm_transport(b, memfd2, ring, 1, shm::may_spin())};
}

class Connection : public ::testing::TestWithParam<const char*> {};

TEST_P(Connection, RoundTripBetweenTwoThreadsWithoutFork) {
  auto [a, b] = transport_pair(GetParam());
  echo_handler echo;
  running_end server(std::move(b), connection::side::child, &echo);
  running_end client(std::move(a), connection::side::parent);
  EXPECT_EQ(call_string(*client.conn, "hello").get(), "hello");
  auto st = client.conn->stats();
  EXPECT_EQ(st.frames_sent, 2u);      // the hello, the call
  EXPECT_EQ(st.frames_received, 2u);  // the hello, the reply
  EXPECT_EQ(st.pending_calls, 0u);
}

TEST_P(Connection, ConcurrentCallersEachGetTheirOwnReply) {
  auto [a, b] = transport_pair(GetParam());
  echo_handler echo;
  running_end server(std::move(b), connection::side::child, &echo);
  running_end client(std::move(a), connection::side::parent);
  std::atomic<int> wrong{0};
  std::vector<std::thread> ts;
  for (int t = 0; t < 8; ++t)
    ts.emplace_back([&, t] {
      for (int i = 0; i < 500; ++i) {
        auto s = std::to_string(t) + ":" + std::to_string(i);
        if (call_string(*client.conn, s).get() != s) ++wrong;
      }
    });
  for (auto& t : ts) t.join();
  EXPECT_EQ(wrong.load(), 0);
}

// Messages far larger than the transport's buffer (a socket's, or a 4 KiB ring), in flight both
// ways at once: each side's writes stream through while its reader keeps draining.
TEST_P(Connection, LargeMessagesCrossInBothDirections) {
  auto [a, b] = transport_pair(GetParam(), shm::min_ring);
  echo_handler echo;
  running_end server(std::move(b), connection::side::child, &echo);
  running_end client(std::move(a), connection::side::parent);
  std::string big(8 << 20, 'x');
  big[12345] = 'y';
  std::vector<procxy::future<std::string>> fs;
  for (int i = 0; i < 4; ++i) fs.push_back(call_string(*client.conn, big));  // both sides block
  for (auto& f : fs) EXPECT_EQ(f.get(), big);
}

// The peer's end destroyed (its process gone, as far as this side can tell): the pending call
// fails, nothing hangs. Over shared memory this is the hang-up of the socket beside the rings.
TEST_P(Connection, PeerGoneFailsPendingCalls) {
  auto [a, b] = transport_pair(GetParam());
  running_end client(std::move(a), connection::side::parent);
  auto f = call_string(*client.conn, "never answered");
  b.reset();
  ASSERT_EQ(f.wait_for(5s), std::future_status::ready);
  EXPECT_THROW(f.get(), procxy::terminated);
}

// A reply sent after the peer is gone is dropped, not thrown: a method's reply path runs where an
// exception cannot go anywhere (the child aborted with SIGABRT when its parent had gone mid-call).
TEST(ConnectionReply, AReplyToAPeerThatIsGoneIsDropped) {
  auto [a, b] = socket_pair();
  running_end child(b, connection::side::child);
  ::close(a);
  reply_sink sink{child.conn, 7, "m"};
  EXPECT_NO_THROW(sink.value());
  EXPECT_NO_THROW(sink.value());
  EXPECT_NO_THROW(sink.value(42));
}

INSTANTIATE_TEST_SUITE_P(Transport, Connection, testing::Values("socket", "shm"),
                         [](const testing::TestParamInfo<const char*>& i) {
                           return std::string(i.param);
                         });

void write_bytes(int fd, const byte_buffer& b) {
  ASSERT_EQ(::write(fd, b.data(), b.size()), static_cast<ssize_t>(b.size()));
}

bool read_raw(int fd, frame_header& h, std::string& body) {
  std::size_t got = 0;
  char hb[sizeof h];
  while (got < sizeof h) {
    auto n = ::read(fd, hb + got, sizeof h - got);
    if (n <= 0) return false;
    got += static_cast<std::size_t>(n);
  }
  std::memcpy(&h, hb, sizeof h);
  body.assign(h.size, '\0');
  for (got = 0; got < h.size;) {
    auto n = ::read(fd, body.data() + got, h.size - got);
    if (n <= 0) return false;
    got += static_cast<std::size_t>(n);
  }
  return true;
}

// A hostile peer: the test writes raw bytes to the other end of the socket, after a valid hello
// (the hello exchange has its own tests below).
struct hostile_fixture : ::testing::Test {
  int raw = -1;
  std::unique_ptr<running_end> client;
  void SetUp() override { start(true); }
  void start(bool greet) {
    auto [a, b] = socket_pair();
    raw = b;
    if (greet) {
      byte_buffer hello;
      encode_hello(hello);
      write_bytes(raw, hello);
    }
    client = std::make_unique<running_end>(a, connection::side::parent, nullptr, 1024);
    if (greet) {  // the connection's own hello, read off the wire so tests see what follows it
      frame_header h{};
      std::string body;
      ASSERT_TRUE(read_raw(raw, h, body));
      ASSERT_EQ(h.kind, message_kind::hello);
    }
  }
  void TearDown() override {
    client.reset();
    ::close(raw);
  }
  // Sends one call and returns its future; the peer's garbage must fail it with protocol_error.
  procxy::future<std::string> pending() { return call_string(*client->conn, "q"); }
  void expect_protocol_error(procxy::future<std::string> f) {
    ASSERT_EQ(f.wait_for(5s), std::future_status::ready);
    EXPECT_THROW(f.get(), procxy::protocol_error);
    EXPECT_TRUE(client->conn->broken());
    EXPECT_THROW(call_string(*client->conn, "later").get(), procxy::protocol_error);
  }
};
using ConnectionHostilePeer = hostile_fixture;

TEST_F(ConnectionHostilePeer, OversizedLengthIsAProtocolError) {
  auto f = pending();
  frame_header h{};
  h.size = 1u << 30;
  h.kind = message_kind::reply_value;
  h.id = 1;
  write_raw(raw, h);
  expect_protocol_error(std::move(f));
}

TEST_F(ConnectionHostilePeer, UnknownMessageKindIsAProtocolError) {
  auto f = pending();
  frame_header h{};
  h.kind = static_cast<message_kind>(200);
  write_raw(raw, h);
  expect_protocol_error(std::move(f));
}

TEST_F(ConnectionHostilePeer, ReservedBitsSetIsAProtocolError) {
  auto f = pending();
  frame_header h{};
  h.kind = message_kind::reply_value;
  h.flags = 1;
  h.id = 1;
  write_raw(raw, h);
  expect_protocol_error(std::move(f));
}

TEST_F(ConnectionHostilePeer, ReplyToAnIdNeverSentIsAProtocolError) {
  auto f = pending();
  frame_header h{};
  h.kind = message_kind::reply_value;
  h.id = 999;
  write_raw(raw, h);
  expect_protocol_error(std::move(f));
}

TEST_F(ConnectionHostilePeer, DuplicateReplyIsAProtocolError) {
  auto f = pending();
  auto g = call_string(*client->conn, "second");
  frame_header h{};
  h.kind = message_kind::reply_value;
  h.id = 1;
  std::string body(4, '\0');  // an empty string: u32 count 0
  h.size = 4;
  write_raw(raw, h, body);
  write_raw(raw, h, body);
  ASSERT_EQ(f.wait_for(5s), std::future_status::ready);
  EXPECT_EQ(f.get(), "");
  expect_protocol_error(std::move(g));
}

TEST_F(ConnectionHostilePeer, MalformedReplyBodyIsAProtocolError) {
  auto f = pending();
  frame_header h{};
  h.kind = message_kind::reply_value;
  h.id = 1;
  std::string body = "\xff\xff\xff\x7f";  // a string claiming 2 GiB in a 4-byte body
  h.size = static_cast<std::uint32_t>(body.size());
  write_raw(raw, h, body);
  expect_protocol_error(std::move(f));
}

TEST_F(ConnectionHostilePeer, RequestsToASideWithoutHandlerAreAProtocolError) {
  auto f = pending();
  frame_header h{};
  h.kind = message_kind::call;
  h.id = 5;
  write_raw(raw, h);
  expect_protocol_error(std::move(f));
}

TEST_F(ConnectionHostilePeer, TruncatedFrameThenEofFailsPendingCalls) {
  auto f = pending();
  frame_header h{};
  h.kind = message_kind::reply_value;
  h.id = 1;
  h.size = 100;
  write_raw(raw, h, "short");
  ::shutdown(raw, SHUT_RDWR);
  ASSERT_EQ(f.wait_for(5s), std::future_status::ready);
  // A frame cut short by EOF is the peer's fault, not a clean close.
  EXPECT_THROW(f.get(), procxy::protocol_error);
}

TEST_F(ConnectionHostilePeer, CleanEofBetweenFramesIsNotAProtocolError) {
  auto f = pending();
  ::shutdown(raw, SHUT_RDWR);
  ASSERT_EQ(f.wait_for(5s), std::future_status::ready);
  EXPECT_THROW(f.get(), procxy::terminated);
}

}  // namespace

namespace {

// Reads one whole frame from a raw fd (test helper; blocks).

std::string u64_bytes(std::uint64_t v) {
  std::string s(sizeof v, '\0');
  std::memcpy(s.data(), &v, sizeof v);
  return s;
}

}  // namespace

// Security of callbacks: a peer can only invoke what this side lent it on this connection.
TEST_F(ConnectionHostilePeer, InvokeOfAnUnknownCallbackIdGetsAnErrorNotACall) {
  frame_header h{};
  h.kind = message_kind::invoke;
  h.id = 77;
  std::string body = u64_bytes(424242);
  h.size = static_cast<std::uint32_t>(body.size());
  write_raw(raw, h, body);
  frame_header r{};
  std::string rbody;
  ASSERT_TRUE(read_raw(raw, r, rbody));
  EXPECT_EQ(r.kind, message_kind::reply_error);
  EXPECT_EQ(r.id, 77u);
  byte_reader rr(std::as_bytes(std::span(rbody.data(), rbody.size())));
  decoder d(rr);
  auto e = procxy::detail::decode_remote_error(d, "callback");
  try {
    std::rethrow_exception(e);
  } catch (const std::logic_error& ex) {
    EXPECT_NE(std::string(ex.what()).find("no callback #424242"), std::string::npos) << ex.what();
  }
  EXPECT_FALSE(client->conn->broken());
  EXPECT_EQ(client->conn->callbacks().unknown_invocations.load(), 1u);
}

TEST_F(ConnectionHostilePeer, NotifyAndReleaseOfUnknownIdsAreHarmless) {
  frame_header h{};
  h.kind = message_kind::notify;
  std::string body = u64_bytes(5);
  h.size = static_cast<std::uint32_t>(body.size());
  write_raw(raw, h, body);
  h.kind = message_kind::release;
  body = std::string("\x01\x00\x00\x00", 4) + u64_bytes(6);
  h.size = static_cast<std::uint32_t>(body.size());
  write_raw(raw, h, body);
  // A call afterwards still works: nothing broke.
  auto f = pending();
  frame_header q{};
  std::string qbody;
  ASSERT_TRUE(read_raw(raw, q, qbody));
  EXPECT_EQ(q.kind, message_kind::call);
  frame_header reply{};
  reply.kind = message_kind::reply_value;
  reply.id = q.id;
  std::string rb(4, '\0');
  reply.size = 4;
  write_raw(raw, reply, rb);
  ASSERT_EQ(f.wait_for(5s), std::future_status::ready);
  EXPECT_EQ(f.get(), "");
  EXPECT_EQ(client->conn->callbacks().unknown_invocations.load(), 1u);
  EXPECT_FALSE(client->conn->broken());
}

TEST_F(ConnectionHostilePeer, MalformedReleaseIsAProtocolError) {
  auto f = pending();
  frame_header h{};
  h.kind = message_kind::release;
  std::string body("\x05\x00\x00\x00", 4);  // claims 5 ids, carries none
  h.size = static_cast<std::uint32_t>(body.size());
  write_raw(raw, h, body);
  expect_protocol_error(std::move(f));
}

// ---- the hello exchange (protocol.hpp) ----------------------------------------------------------

struct ConnectionHello : hostile_fixture {
  void SetUp() override { start(false); }
};

TEST_F(ConnectionHello, EachSideSendsHelloFirst) {
  char buf[256];
  ssize_t n = ::read(raw, buf, sizeof buf);
  ASSERT_GE(n, static_cast<ssize_t>(header_size));
  frame_header h;
  std::memcpy(&h, buf, header_size);
  EXPECT_EQ(h.kind, message_kind::hello);
  EXPECT_EQ(h.id, 0u);
  ASSERT_EQ(static_cast<std::size_t>(n), header_size + h.size);
  auto hello = decode_hello(
      std::span<const std::byte>(reinterpret_cast<const std::byte*>(buf) + header_size, h.size));
  EXPECT_EQ(hello.version, protocol_version);
  EXPECT_EQ(hello.build, build_id());
}

TEST_F(ConnectionHello, AFirstFrameOtherThanHelloFailsTheParentWithSpawnError) {
  auto f = pending();
  frame_header h{};
  h.kind = message_kind::reply_value;
  h.id = 1;
  write_raw(raw, h);
  ASSERT_EQ(f.wait_for(5s), std::future_status::ready);
  try {
    f.get();
    ADD_FAILURE() << "succeeded";
  } catch (const procxy::spawn_error& e) {
    EXPECT_NE(std::string(e.what()).find("older protocol"), std::string::npos) << e.what();
  }
}

TEST_F(ConnectionHello, AnotherVersionOrBuildFailsWithSpawnErrorNamingBoth) {
  auto f = pending();
  byte_buffer hello;
  encode_hello(hello, {protocol_version, "procxy 0.0.1 elsewhere"});
  write_bytes(raw, hello);
  ASSERT_EQ(f.wait_for(5s), std::future_status::ready);
  try {
    f.get();
    ADD_FAILURE() << "succeeded";
  } catch (const procxy::spawn_error& e) {
    const std::string w = e.what();
    EXPECT_NE(w.find("procxy 0.0.1 elsewhere"), std::string::npos) << w;
    EXPECT_NE(w.find(build_id()), std::string::npos) << w;
  }
  EXPECT_TRUE(client->conn->broken());
}

TEST_F(ConnectionHello, ASecondHelloIsAProtocolError) {
  auto f = pending();
  byte_buffer hello;
  encode_hello(hello);
  write_bytes(raw, hello);
  write_bytes(raw, hello);
  expect_protocol_error(std::move(f));
}

namespace {

// ---- the shared-memory transport alone; the test plays the child by writing its words
// -------------

struct shm_peer : ::testing::Test {
  static constexpr std::size_t ring = shm::min_ring;
  std::unique_ptr<transport> t;  // the parent's end
  int sock = -1;                 // the child's socket end
  std::byte* m = nullptr;        // the test's own mapping: the child's view
  void SetUp() override {
    auto [a, b] = socket_pair();
    sock = b;
    const int memfd = shm::create(ring);
    m = static_cast<std::byte*>(
        ::mmap(nullptr, shm::mapping_size(ring), PROT_READ | PROT_WRITE, MAP_SHARED, memfd, 0));
    ASSERT_NE(m, MAP_FAILED);
    t = make_shm_transport(a, memfd, ring, 0, false);
  }
  void TearDown() override {
    t.reset();
    ::munmap(m, shm::mapping_size(ring));
    if (sock >= 0) ::close(sock);
  }
  std::atomic_ref<std::uint64_t> word(std::size_t off) {
    return std::atomic_ref<std::uint64_t>(*reinterpret_cast<std::uint64_t*>(m + off));
  }
  void child_writes(const std::string& bytes) {  // into ring 1 at its head, then rings
    auto h = word(shm::off_head(1)).load();
    for (std::size_t i = 0; i < bytes.size(); ++i)
      m[shm::off_data(1, ring) + ((h + i) & (ring - 1))] = static_cast<std::byte>(bytes[i]);
    word(shm::off_head(1)).store(h + bytes.size());
    auto* bell = reinterpret_cast<std::uint32_t*>(m + shm::off_bell(0));
    std::atomic_ref<std::uint32_t>(*bell).fetch_add(1);
    ::syscall(SYS_futex, bell, FUTEX_WAKE, 1 << 30, nullptr, nullptr, 0);
  }
  std::string read_some() {
    std::string out(64, '\0');
    bool reset = false;
    auto n = t->read(reinterpret_cast<std::byte*>(out.data()), out.size(), reset);
    out.resize(n);
    return out;
  }
  void expect_broken(const std::string& words) {
    auto r =
        t->wait(true, false, transport::wake_slot::reader, std::chrono::steady_clock::now() + 5s);
    EXPECT_TRUE(r.readable);
    try {
      read_some();
      ADD_FAILURE() << "read succeeded";
    } catch (const procxy::protocol_error& e) {
      EXPECT_NE(std::string(e.what()).find(words), std::string::npos) << e.what();
    }
    EXPECT_THROW(t->write_some(reinterpret_cast<const std::byte*>("x"), 1), procxy::terminated);
  }
};
using ShmTransport = shm_peer;

TEST_F(ShmTransport, BytesCrossAndWrapAroundTheRing) {
  std::string got;
  for (int round = 0; round < 3 * static_cast<int>(ring) / 50; ++round) {  // wraps three times
    const std::string msg =
        "message " + std::to_string(round) + std::string(40 - std::to_string(round).size(), '.');
    child_writes(msg);
    std::string r;
    while (r.size() < msg.size()) r += read_some();
    ASSERT_EQ(r, msg);
  }
}

TEST_F(ShmTransport, ASleepingReaderIsWokenByTheWrite) {
  std::thread writer([&] {
    std::this_thread::sleep_for(50ms);
    child_writes("late");
  });
  auto t0 = std::chrono::steady_clock::now();
  EXPECT_EQ(read_some(), "late");  // blocks in the futex until the write rings it
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 5s);
  writer.join();
}

TEST_F(ShmTransport, AWakeSlotInterruptsAWait) {
  std::thread waker([&] {
    std::this_thread::sleep_for(20ms);
    t->wake(transport::wake_slot::io);
  });
  auto r = t->wait(true, false, transport::wake_slot::io, std::chrono::steady_clock::now() + 10s);
  EXPECT_TRUE(r.woken);
  EXPECT_FALSE(r.readable);
  waker.join();
}

TEST_F(ShmTransport, ClosedRingReadsWhatWasWrittenThenEof) {
  child_writes("last words");
  std::atomic_ref<std::uint32_t>(*reinterpret_cast<std::uint32_t*>(m + shm::off_closed(1)))
      .store(1);
  EXPECT_EQ(read_some(), "last words");
  EXPECT_EQ(read_some(), "");
}

TEST_F(ShmTransport, SocketHangUpIsEofForASleepingReader) {
  std::thread closer([&] {
    std::this_thread::sleep_for(30ms);
    ::close(std::exchange(sock, -1));
  });
  EXPECT_EQ(read_some(), "");  // woken by the hang-up watcher, not by the ring
  closer.join();
  EXPECT_THROW(t->write_some(reinterpret_cast<const std::byte*>("x"), 1), procxy::terminated);
}

TEST_F(ShmTransport, WriteIndexPastTheRingIsAProtocolError) {
  word(shm::off_head(1)).store(ring + 1);
  expect_broken("past our read index");
}

TEST_F(ShmTransport, WriteIndexMovingBackwardsIsAProtocolError) {
  child_writes("0123456789");
  EXPECT_EQ(read_some(), "0123456789");
  word(shm::off_head(1)).store(4);
  expect_broken("moved backwards");
}

TEST_F(ShmTransport, ReadIndexPastWhatWasWrittenIsAProtocolError) {
  ASSERT_EQ(t->write_some(reinterpret_cast<const std::byte*>("abc"), 3), 3u);
  word(shm::off_tail(0)).store(4);
  expect_broken("past what we wrote");
}

TEST_F(ShmTransport, AFullRingTakesNothingMoreUntilThePeerReads) {
  std::string big(ring + 100, 'z');
  auto n = t->write_some(reinterpret_cast<const std::byte*>(big.data()), big.size());
  EXPECT_EQ(n, ring);
  EXPECT_EQ(t->write_some(reinterpret_cast<const std::byte*>(big.data()), big.size()), 0u);
  auto r = t->wait(false, true, transport::wake_slot::io, std::chrono::steady_clock::now() + 20ms);
  EXPECT_FALSE(r.writable);
  word(shm::off_tail(0)).store(100);  // the child read 100 bytes
  r = t->wait(false, true, transport::wake_slot::io, std::chrono::steady_clock::now() + 5s);
  EXPECT_TRUE(r.writable);
  EXPECT_EQ(t->write_some(reinterpret_cast<const std::byte*>(big.data()), big.size()), 100u);
}

}  // namespace
