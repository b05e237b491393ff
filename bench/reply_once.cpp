// procxy_reply_once — the child of the BM_PosixSpawnReplyOnce baseline (bench/call_bench.cpp).
//
// Started with posix_spawn and a connected AF_UNIX socket as fd 3 (like a procxy child's
// channel): reads one 16-byte request, writes one 16-byte reply, exits. It is what the cheapest
// possible "start a process and get one answer back" costs on this machine, so
// BM_SpawnToFirstResult can be quoted as a ratio against it.
//
// Kept deliberately tiny: no iostreams, no static initialisers of its own, libc calls only.
#include <unistd.h>

#include <cstddef>

int main() {
  constexpr int fd = 3;
  unsigned char buf[16];
  std::size_t got = 0;
  while (got < sizeof buf) {
    ssize_t n = ::read(fd, buf + got, sizeof buf - got);
    if (n <= 0) return 1;
    got += static_cast<std::size_t>(n);
  }
  buf[0] ^= 0xff;  // "compute" the reply
  std::size_t put = 0;
  while (put < sizeof buf) {
    ssize_t n = ::write(fd, buf + put, sizeof buf - put);
    if (n <= 0) return 2;
    put += static_cast<std::size_t>(n);
  }
  return 0;
}
