// bench/codec_bench.cpp — procxy's value codec vs cereal vs Cap'n Proto.
//
// Timed (Google Benchmark): one round trip = encode a value into a fresh buffer, then decode it
// back into a fresh object of the same std:: type. Payloads:
//   add_args   std::tuple<double, double>            (the arguments of add(double, double))
//   strings    std::vector<std::string>, 100 strings of 12..20 chars (16 on average)
//   blob       std::vector<std::byte> of 1 MiB       (std::vector<std::uint8_t> for cereal)
// Codecs:
//   procxy           procxy::detail::encoder / decoder over byte_buffer / byte_reader
//   cereal_bin       cereal::BinaryOutputArchive / BinaryInputArchive over a minimal streambuf
//                    that appends to a procxy byte_buffer / reads a span (same buffer growth)
//   cereal_bin_reuse cereal_bin with the std::ostream/istream kept per thread (rdbuf swapped)
//   cereal_portable  the same as cereal_bin with PortableBinary{Output,Input}Archive
//   cereal_sstream   cereal_bin over std::stringstream (what most cereal code does; reference)
//   capnp            MallocMessageBuilder + messageToFlatArray, FlatArrayMessageReader, then a
//                    copy into the std:: type (the figure comparable to the others)
//   capnp_reader     the same encode, but decode only touches the fields through the reader
//                    (sizes, pointers; no copy into std:: types) — capnp's zero-copy best case
// Each benchmark reports the encoded size as the counter `bytes`, and checks once, before
// timing, that the decoded value equals the input.
//
// `procxy_codec_bench --safety [--as-limit-mib=N]` runs no benchmark: it feeds each decoder
// truncated, length-inflated and randomly mutated messages, each probe in a forked child with
// an address-space limit (default 1024 MiB above the child's size; 0 = none), and prints what
// happened: the exception, a crash (signal), and the child's peak RSS growth. Run it on a build
// without sanitizers (ASan's shadow memory does not fit under the address-space limit).
#include <benchmark/benchmark.h>
#include <capnp/message.h>
#include <capnp/serialize.h>
#include <kj/exception.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cereal/archives/binary.hpp>
#include <cereal/archives/portable_binary.hpp>
#include <cereal/types/string.hpp>
#include <cereal/types/tuple.hpp>
#include <cereal/types/vector.hpp>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <functional>
#include <istream>
#include <new>
#include <ostream>
#include <random>
#include <span>
#include <sstream>
#include <stdexcept>
#include <streambuf>
#include <string>
#include <string_view>
#include <tuple>
#include <type_traits>
#include <vector>

#include "codec_bench.capnp.h"
#include "procxy/detail/codec.hpp"

namespace {

namespace schema = procxy_bench::capnp_schema;
using procxy::detail::byte_buffer;

using add_args = std::tuple<double, double>;
using strings = std::vector<std::string>;
using blob = std::vector<std::byte>;
using blob_u8 = std::vector<std::uint8_t>;

// ---- payloads ----------------------------------------------------------------------------------

struct payloads {
  add_args args{1.25, -3.5e10};
  strings strs;
  blob bytes;
  blob_u8 bytes_u8;

  payloads() {
    std::mt19937 rng(42);
    std::uniform_int_distribution<int> len(12, 20), ch('a', 'z');
    for (int i = 0; i < 100; ++i) {
      std::string s(static_cast<std::size_t>(len(rng)), ' ');
      for (auto& c : s) c = static_cast<char>(ch(rng));
      strs.push_back(std::move(s));
    }
    bytes.resize(std::size_t{1} << 20);
    for (std::size_t i = 0; i < bytes.size(); ++i)
      bytes[i] = static_cast<std::byte>((i * 2654435761u) >> 13);
    bytes_u8.resize(bytes.size());
    std::memcpy(bytes_u8.data(), bytes.data(), bytes.size());
  }
};

const payloads& data() {
  static const payloads p;
  return p;
}

// ---- procxy ------------------------------------------------------------------------------------

struct procxy_codec {
  using blob_type = blob;
  template <class T>
  static void encode(const T& v, byte_buffer& buf) {
    procxy::detail::encoder enc(buf);
    enc(v);
  }
  template <class T>
  static void decode(std::span<const std::byte> bytes, T& out) {
    procxy::detail::byte_reader r(bytes);
    procxy::detail::decoder dec(r);
    dec(out);
  }
  template <class T>
  static std::size_t roundtrip(const T& in, T& out) {
    byte_buffer buf;
    encode(in, buf);
    decode(buf.view(), out);
    return buf.size();
  }
};

// ---- cereal ------------------------------------------------------------------------------------

// Appends to a byte_buffer: every cereal write is one sputn -> xsputn -> memcpy.
class buffer_sink final : public std::streambuf {
 public:
  explicit buffer_sink(byte_buffer& b) : b_(b) {}

 protected:
  std::streamsize xsputn(const char* s, std::streamsize n) override {
    b_.append(s, static_cast<std::size_t>(n));
    return n;
  }
  int_type overflow(int_type c) override {
    if (!traits_type::eq_int_type(c, traits_type::eof())) {
      const char ch = traits_type::to_char_type(c);
      b_.append(&ch, 1);
    }
    return traits_type::not_eof(c);
  }

 private:
  byte_buffer& b_;
};

// Reads a span in place: every cereal read is one sgetn -> xsgetn -> memcpy.
class span_source final : public std::streambuf {
 public:
  explicit span_source(std::span<const std::byte> s) {
    // The get area is never written through; std::streambuf just has no const variant.
    char* b = const_cast<char*>(reinterpret_cast<const char*>(s.data()));
    setg(b, b, b + s.size());
  }

 protected:
  std::streamsize xsgetn(char* s, std::streamsize n) override {
    const std::streamsize k = std::min<std::streamsize>(n, egptr() - gptr());
    if (k > 0) std::memcpy(s, gptr(), static_cast<std::size_t>(k));
    setg(eback(), gptr() + k, egptr());
    return k;
  }
};

template <class OArchive, class IArchive>
struct cereal_codec {
  using blob_type = blob_u8;
  template <class T>
  static void encode(const T& v, byte_buffer& buf) {
    buffer_sink sink(buf);
    std::ostream os(&sink);
    OArchive ar(os);
    ar(v);
  }
  template <class T>
  static void decode(std::span<const std::byte> bytes, T& out) {
    span_source src(bytes);
    std::istream is(&src);
    IArchive ar(is);
    ar(out);
  }
  template <class T>
  static std::size_t roundtrip(const T& in, T& out) {
    byte_buffer buf;
    encode(in, buf);
    decode(buf.view(), out);
    return buf.size();
  }
};
using cereal_bin = cereal_codec<cereal::BinaryOutputArchive, cereal::BinaryInputArchive>;

// cereal_bin, but the std::ostream / std::istream are built once per thread and only their
// streambuf is swapped per message: constructing them (locale, facet lookups) is most of
// cereal's fixed cost, and a careful user can avoid it. The archives are still per message.
struct cereal_bin_reuse {
  using blob_type = blob_u8;
  template <class T>
  static std::size_t roundtrip(const T& in, T& out) {
    thread_local std::ostream os(nullptr);
    thread_local std::istream is(nullptr);
    byte_buffer buf;
    buffer_sink sink(buf);
    os.rdbuf(&sink);
    {
      cereal::BinaryOutputArchive oa(os);
      oa(in);
    }
    span_source src(buf.view());
    is.rdbuf(&src);
    {
      cereal::BinaryInputArchive ia(is);
      ia(out);
    }
    os.rdbuf(nullptr);
    is.rdbuf(nullptr);
    return buf.size();
  }
};
using cereal_portable =
    cereal_codec<cereal::PortableBinaryOutputArchive, cereal::PortableBinaryInputArchive>;

struct cereal_sstream {
  using blob_type = blob_u8;
  template <class T>
  static std::size_t roundtrip(const T& in, T& out) {
    std::stringstream ss(std::ios::in | std::ios::out | std::ios::binary);
    {
      cereal::BinaryOutputArchive oa(ss);
      oa(in);
    }
    const auto size = static_cast<std::size_t>(ss.tellp());
    cereal::BinaryInputArchive ia(ss);
    ia(out);
    return size;
  }
};

// ---- Cap'n Proto -------------------------------------------------------------------------------

capnp::Text::Reader text(const std::string& s) { return {s.data(), s.size()}; }

void capnp_build(capnp::MessageBuilder& mb, const add_args& v) {
  auto r = mb.initRoot<schema::AddArgs>();
  r.setA(std::get<0>(v));
  r.setB(std::get<1>(v));
}
void capnp_build(capnp::MessageBuilder& mb, const strings& v) {
  auto items = mb.initRoot<schema::StringList>().initItems(static_cast<unsigned>(v.size()));
  for (unsigned i = 0; i < v.size(); ++i) items.set(i, text(v[i]));
}
void capnp_build(capnp::MessageBuilder& mb, const blob& v) {
  auto d = mb.initRoot<schema::Blob>().initData(static_cast<unsigned>(v.size()));
  if (!v.empty()) std::memcpy(d.begin(), v.data(), v.size());
}

void capnp_read(capnp::MessageReader& mr, add_args& out) {
  auto r = mr.getRoot<schema::AddArgs>();
  out = {r.getA(), r.getB()};
}
void capnp_read(capnp::MessageReader& mr, strings& out) {
  auto items = mr.getRoot<schema::StringList>().getItems();
  out.clear();
  out.reserve(items.size());
  for (auto t : items) out.emplace_back(t.cStr(), t.size());
}
void capnp_read(capnp::MessageReader& mr, blob& out) {
  auto d = mr.getRoot<schema::Blob>().getData();
  const auto* p = reinterpret_cast<const std::byte*>(d.begin());
  out.assign(p, p + d.size());
}

// Reader-only access: what a capnp user pays when the reader itself is the value.
double access(capnp::MessageReader& mr, const add_args*) {
  auto r = mr.getRoot<schema::AddArgs>();
  return r.getA() + r.getB();
}
double access(capnp::MessageReader& mr, const strings*) {
  std::size_t n = 0;
  for (auto t : mr.getRoot<schema::StringList>().getItems()) {
    benchmark::DoNotOptimize(t.cStr());
    n += t.size();
  }
  return static_cast<double>(n);
}
double access(capnp::MessageReader& mr, const blob*) {
  auto d = mr.getRoot<schema::Blob>().getData();
  benchmark::DoNotOptimize(d.begin());
  return static_cast<double>(d.size());
}

struct capnp_codec {
  using blob_type = blob;
  template <class T>
  static kj::Array<capnp::word> encode(const T& v) {
    capnp::MallocMessageBuilder mb;
    capnp_build(mb, v);
    return capnp::messageToFlatArray(mb);
  }
  template <class T>
  static std::size_t roundtrip(const T& in, T& out) {
    auto flat = encode(in);
    capnp::FlatArrayMessageReader mr(flat);
    capnp_read(mr, out);
    return flat.asBytes().size();
  }
};

// ---- benchmarks --------------------------------------------------------------------------------

template <class Codec, class T>
void bm_roundtrip(benchmark::State& st, const T* in) {
  std::size_t bytes = 0;
  {
    T out{};
    bytes = Codec::roundtrip(*in, out);
    if (!(out == *in)) {
      st.SkipWithError("decoded value differs from the input");
      return;
    }
  }
  for (auto _ : st) {
    T out{};
    bytes = Codec::roundtrip(*in, out);
    benchmark::DoNotOptimize(out);
    benchmark::ClobberMemory();
  }
  st.counters["bytes"] = static_cast<double>(bytes);
}

template <class T>
void bm_capnp_reader(benchmark::State& st, const T* in) {
  std::size_t bytes = 0;
  for (auto _ : st) {
    auto flat = capnp_codec::encode(*in);
    capnp::FlatArrayMessageReader mr(flat);
    benchmark::DoNotOptimize(access(mr, in));
    bytes = flat.asBytes().size();
  }
  st.counters["bytes"] = static_cast<double>(bytes);
}

// Adds a `_min` aggregate next to mean/median/stddev/cv: on a shared, noisy machine the fastest
// repetition is the most repeatable estimate of the code's own cost.
void with_min(benchmark::internal::Benchmark* b) {
  b->ComputeStatistics("min", [](const std::vector<double>& v) {
    return v.empty() ? 0.0 : *std::min_element(v.begin(), v.end());
  });
}

template <class Codec>
void register_codec(const std::string& name) {
  const payloads& p = data();
  const typename Codec::blob_type* b;
  if constexpr (std::is_same_v<typename Codec::blob_type, blob>)
    b = &p.bytes;
  else
    b = &p.bytes_u8;
  with_min(benchmark::RegisterBenchmark(("roundtrip/add_args/" + name).c_str(),
                                        bm_roundtrip<Codec, add_args>, &p.args));
  with_min(benchmark::RegisterBenchmark(("roundtrip/strings/" + name).c_str(),
                                        bm_roundtrip<Codec, strings>, &p.strs));
  with_min(benchmark::RegisterBenchmark(("roundtrip/blob/" + name).c_str(),
                                        bm_roundtrip<Codec, typename Codec::blob_type>, b));
}

void register_all() {
  const payloads& p = data();
  register_codec<procxy_codec>("procxy");
  register_codec<cereal_bin>("cereal_bin");
  register_codec<cereal_bin_reuse>("cereal_bin_reuse");
  register_codec<cereal_portable>("cereal_portable");
  register_codec<cereal_sstream>("cereal_sstream");
  register_codec<capnp_codec>("capnp");
  with_min(benchmark::RegisterBenchmark("roundtrip/add_args/capnp_reader",
                                        bm_capnp_reader<add_args>, &p.args));
  with_min(benchmark::RegisterBenchmark("roundtrip/strings/capnp_reader", bm_capnp_reader<strings>,
                                        &p.strs));
  with_min(
      benchmark::RegisterBenchmark("roundtrip/blob/capnp_reader", bm_capnp_reader<blob>, &p.bytes));
}

// ---- safety probes (--safety) ------------------------------------------------------------------

using bytes_t = std::vector<std::byte>;

bytes_t to_bytes(std::span<const std::byte> s) { return {s.begin(), s.end()}; }

// Per codec: encode the two variable-length payloads, decode them from untrusted bytes, and
// overwrite the outer length field (the vector's element count / the blob's byte count).
struct probe_codec {
  std::string name;
  std::function<bytes_t(const strings&)> enc_strings;
  std::function<bytes_t(const blob&)> enc_blob;
  std::function<void(std::span<const std::byte>)> dec_strings;
  std::function<void(std::span<const std::byte>)> dec_blob;
  std::function<void(bytes_t&, std::uint64_t)> set_len;  // same position for both payloads
  std::uint64_t max_len;                                 // the largest count the format holds
};

template <class Codec>
probe_codec make_plain_probe(std::string name, std::size_t len_offset, std::size_t len_width) {
  probe_codec c;
  c.name = std::move(name);
  c.enc_strings = [](const strings& v) {
    byte_buffer b;
    Codec::encode(v, b);
    return to_bytes(b.view());
  };
  c.enc_blob = [](const blob& v) {
    byte_buffer b;
    if constexpr (std::is_same_v<typename Codec::blob_type, blob>) {
      Codec::encode(v, b);
    } else {
      typename Codec::blob_type u(v.size());
      std::memcpy(u.data(), v.data(), v.size());
      Codec::encode(u, b);
    }
    return to_bytes(b.view());
  };
  c.dec_strings = [](std::span<const std::byte> s) {
    strings out;
    Codec::decode(s, out);
  };
  c.dec_blob = [](std::span<const std::byte> s) {
    typename Codec::blob_type out;
    Codec::decode(s, out);
  };
  c.set_len = [len_offset, len_width](bytes_t& b, std::uint64_t n) {
    std::memcpy(b.data() + len_offset, &n, len_width);  // little-endian
  };
  c.max_len = len_width == 4 ? 0xFFFF'FFFFull : ~0ull;
  return c;
}

// capnp needs 8-byte aligned words; a message whose size is not a multiple of 8 is cut down.
template <class T>
void capnp_decode(std::span<const std::byte> s) {
  std::vector<capnp::word> words(s.size() / sizeof(capnp::word));
  if (!words.empty()) std::memcpy(words.data(), s.data(), words.size() * sizeof(capnp::word));
  capnp::FlatArrayMessageReader mr(kj::arrayPtr(words.data(), words.size()));
  T out;
  capnp_read(mr, out);
}

template <class T>
bytes_t capnp_encode_one_segment(const T& v, unsigned first_segment_words) {
  capnp::MallocMessageBuilder mb(first_segment_words);
  capnp_build(mb, v);
  auto flat = capnp::messageToFlatArray(mb);
  const auto b = flat.asBytes();
  return to_bytes(std::as_bytes(std::span(b.begin(), b.size())));
}

probe_codec make_capnp_probe() {
  probe_codec c;
  c.name = "capnp";
  // One segment so the layout is fixed: word 0 segment table, word 1 root struct pointer,
  // word 2 the struct's only pointer = the list pointer; its upper 29 bits are the count.
  c.enc_strings = [](const strings& v) { return capnp_encode_one_segment(v, 1024); };
  c.enc_blob = [](const blob& v) {
    return capnp_encode_one_segment(v, static_cast<unsigned>(v.size() / 8 + 64));
  };
  c.dec_strings = capnp_decode<strings>;
  c.dec_blob = capnp_decode<blob>;
  c.set_len = [](bytes_t& b, std::uint64_t n) {
    std::uint32_t hi;
    std::memcpy(&hi, b.data() + 20, 4);
    hi = (hi & 7u) | static_cast<std::uint32_t>(n << 3);
    std::memcpy(b.data() + 20, &hi, 4);
  };
  c.max_len = (1u << 29) - 1;
  return c;
}

std::size_t statm_field(int i) {  // in bytes
  std::FILE* f = std::fopen("/proc/self/statm", "r");
  unsigned long v[2] = {0, 0};
  if (f != nullptr) {
    if (std::fscanf(f, "%lu %lu", &v[0], &v[1]) != 2) v[0] = v[1] = 0;
    std::fclose(f);
  }
  return v[i] * static_cast<std::size_t>(sysconf(_SC_PAGESIZE));
}

std::string describe_current_exception() {
  try {
    throw;
  } catch (const procxy::error& e) {
    return std::string("procxy::") +
           (e.kind() == procxy::error_kind::protocol ? "protocol_error" : "error") + ": " +
           e.what();
  } catch (const cereal::Exception& e) {
    return std::string("cereal::Exception: ") + e.what();
  } catch (const kj::Exception& e) {
    return std::string("kj::Exception: ") + e.getDescription().cStr();
  } catch (const std::bad_alloc&) {
    return "std::bad_alloc";
  } catch (const std::length_error& e) {
    return std::string("std::length_error: ") + e.what();
  } catch (const std::exception& e) {
    return std::string("std::exception: ") + e.what();
  } catch (...) {
    return "unknown exception";
  }
}

std::size_t g_as_limit_mib = 1024;

// Runs fn in a forked child under an address-space limit; returns its one-line report
// (fn's own text, or the exception) plus the child's peak RSS growth, or how it died.
std::string in_child(const std::function<std::string()>& fn) {
  int fds[2];
  if (pipe(fds) != 0) return "pipe failed";
  std::fflush(nullptr);
  const pid_t pid = fork();
  if (pid < 0) return "fork failed";
  if (pid == 0) {
    close(fds[0]);
    if (g_as_limit_mib != 0) {
      const rlim_t lim = statm_field(0) + (rlim_t{g_as_limit_mib} << 20);
      const rlimit rl{lim, lim};
      setrlimit(RLIMIT_AS, &rl);
    }
    const std::size_t rss0 = statm_field(1);
    std::string out;
    try {
      out = fn();
    } catch (...) {
      out = describe_current_exception();
    }
    rusage ru{};
    getrusage(RUSAGE_SELF, &ru);
    const long peak = ru.ru_maxrss * 1024L - static_cast<long>(rss0);
    out += "  [peak RSS +" + std::to_string(std::max(0L, peak) >> 20) + " MiB]\n";
    const char* p = out.data();
    std::size_t left = out.size();
    while (left > 0) {
      const ssize_t w = ::write(fds[1], p, left);
      if (w <= 0) break;
      p += w;
      left -= static_cast<std::size_t>(w);
    }
    _exit(0);
  }
  close(fds[1]);
  std::string got;
  char buf[4096];
  ssize_t n;
  while ((n = ::read(fds[0], buf, sizeof buf)) > 0) got.append(buf, static_cast<std::size_t>(n));
  close(fds[0]);
  int status = 0;
  waitpid(pid, &status, 0);
  if (WIFSIGNALED(status))
    return "CRASH: killed by signal " + std::to_string(WTERMSIG(status)) + " (" +
           strsignal(WTERMSIG(status)) + ")\n";
  if (got.empty()) return "child exited with status " + std::to_string(WEXITSTATUS(status)) + "\n";
  return got;
}

std::string decode_report(const std::function<void(std::span<const std::byte>)>& dec,
                          const bytes_t& msg) {
  return in_child([&] {
    dec(msg);
    return std::string("ACCEPTED (no error)");
  });
}

// Random corruption: 1-4 bytes overwritten, and in a quarter of the cases a random truncation.
std::string fuzz_report(const probe_codec& c, const bytes_t& good, int iterations) {
  return in_child([&] {
    std::mt19937_64 rng(7);
    long ok = 0, codec_err = 0, bad_alloc = 0, length_err = 0, other = 0;
    std::string first_other;
    for (int i = 0; i < iterations; ++i) {
      bytes_t m = good;
      const int flips = 1 + static_cast<int>(rng() % 4);
      for (int f = 0; f < flips; ++f) m[rng() % m.size()] = static_cast<std::byte>(rng());
      if (rng() % 4 == 0) m.resize(rng() % m.size());
      try {
        c.dec_strings(m);
        ++ok;
      } catch (const std::bad_alloc&) {
        ++bad_alloc;
      } catch (const std::length_error&) {
        ++length_err;
      } catch (...) {
        const std::string d = describe_current_exception();
        if (d.starts_with("procxy::protocol_error") || d.starts_with("cereal::Exception") ||
            d.starts_with("kj::Exception")) {
          ++codec_err;
        } else {
          if (other++ == 0) first_other = d;
        }
      }
    }
    std::string r = std::to_string(iterations) + " mutated: " + std::to_string(ok) + " accepted, " +
                    std::to_string(codec_err) + " codec exception, " + std::to_string(bad_alloc) +
                    " bad_alloc, " + std::to_string(length_err) + " length_error, " +
                    std::to_string(other) + " other";
    if (other != 0) r += " (first: " + first_other + ")";
    return r;
  });
}

int run_safety() {
  const payloads& p = data();
  std::vector<probe_codec> codecs;
  codecs.push_back(make_plain_probe<procxy_codec>("procxy", 0, 4));
  codecs.push_back(make_plain_probe<cereal_bin>("cereal_bin", 0, 8));
  codecs.push_back(make_plain_probe<cereal_portable>("cereal_portable", 1, 8));
  codecs.push_back(make_capnp_probe());

  std::printf("address-space limit per probe: %s\n",
              g_as_limit_mib == 0 ? "none"
                                  : (std::to_string(g_as_limit_mib) + " MiB above the child's "
                                                                      "size")
                                        .c_str());
  for (const auto& c : codecs) {
    const bytes_t s = c.enc_strings(p.strs);
    const bytes_t b = c.enc_blob(p.bytes);
    std::printf("\n== %s (strings message %zu bytes, blob message %zu bytes)\n", c.name.c_str(),
                s.size(), b.size());
    // Sanity: the untouched messages decode.
    std::printf("  intact strings                       : %s",
                decode_report(c.dec_strings, s).c_str());
    std::printf("  intact blob                          : %s",
                decode_report(c.dec_blob, b).c_str());

    bytes_t m(s.begin(), s.begin() + static_cast<std::ptrdiff_t>(s.size() / 2));
    std::printf("  strings cut to half                  : %s",
                decode_report(c.dec_strings, m).c_str());
    m.assign(b.begin(), b.begin() + static_cast<std::ptrdiff_t>(b.size() / 2));
    std::printf("  blob cut to half                     : %s",
                decode_report(c.dec_blob, m).c_str());

    m = s;
    c.set_len(m, std::uint64_t{1} << 24);
    std::printf("  strings count := 2^24                : %s",
                decode_report(c.dec_strings, m).c_str());
    m = s;
    c.set_len(m, c.max_len);
    std::printf("  strings count := max of the format   : %s",
                decode_report(c.dec_strings, m).c_str());
    m = b;
    c.set_len(m, std::uint64_t{1} << 28);
    std::printf("  blob length := 256 MiB               : %s",
                decode_report(c.dec_blob, m).c_str());
    m.resize(64);
    std::printf("  blob length := 256 MiB, 64 bytes sent: %s",
                decode_report(c.dec_blob, m).c_str());
    m = b;
    c.set_len(m, std::min<std::uint64_t>(0xFFFF'FFFFull, c.max_len));
    std::printf("  blob length := 4 GiB-1 (capnp 2^29-1): %s",
                decode_report(c.dec_blob, m).c_str());
    m = b;
    c.set_len(m, c.max_len);
    std::printf("  blob length := max of the format     : %s",
                decode_report(c.dec_blob, m).c_str());
    // Unlimited, a mutated length could make cereal zero-fill most of the machine's memory.
    if (g_as_limit_mib != 0)
      std::printf("  fuzz strings (seed 7)                : %s", fuzz_report(c, s, 2000).c_str());
    else
      std::printf("  fuzz strings (seed 7)                : skipped (needs --as-limit-mib > 0)\n");
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  bool safety = false;
  std::vector<char*> args;
  for (int i = 0; i < argc; ++i) {
    const std::string_view a = argv[i];
    if (a == "--safety") {
      safety = true;
    } else if (a.starts_with("--as-limit-mib=")) {
      g_as_limit_mib = std::strtoull(argv[i] + a.find('=') + 1, nullptr, 10);
    } else {
      args.push_back(argv[i]);
    }
  }
  if (safety) return run_safety();

  int n = static_cast<int>(args.size());
  register_all();
  benchmark::Initialize(&n, args.data());
  if (benchmark::ReportUnrecognizedArguments(n, args.data())) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
