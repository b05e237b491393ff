// procxy/detail/buffer.hpp — growable byte buffer and a bounds-checked reader.
//
// `byte_buffer` grows without zero-filling (unlike std::vector<std::byte>::resize), which matters
// for the 1 MiB payloads the codec copies. `byte_reader` is the only way the decoder touches wire
// bytes: every read is checked against what is left and fails with protocol_error, never UB.
// A frame being built also owns the descriptors its values carry (`descriptors()`,
// docs/design.md "Descriptors"): they leave with it, or are closed with the buffer.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <new>
#include <span>
#include <string_view>
#include <utility>
#include <vector>

#include "procxy/error.hpp"
#include "procxy/unique_fd.hpp"

namespace procxy::detail {

class byte_buffer {
 public:
  byte_buffer() = default;
  byte_buffer(const byte_buffer&) = delete;
  byte_buffer& operator=(const byte_buffer&) = delete;
  byte_buffer(byte_buffer&& o) noexcept
      : data_(std::exchange(o.data_, nullptr)),
        size_(std::exchange(o.size_, 0)),
        cap_(std::exchange(o.cap_, 0)),
        fds_(std::move(o.fds_)) {}
  byte_buffer& operator=(byte_buffer&& o) noexcept {
    if (this != &o) {
      std::free(data_);
      data_ = std::exchange(o.data_, nullptr);
      size_ = std::exchange(o.size_, 0);
      cap_ = std::exchange(o.cap_, 0);
      fds_ = std::move(o.fds_);
    }
    return *this;
  }
  ~byte_buffer() { std::free(data_); }

  std::byte* data() noexcept { return data_; }
  const std::byte* data() const noexcept { return data_; }
  std::size_t size() const noexcept { return size_; }
  bool empty() const noexcept { return size_ == 0; }
  std::span<const std::byte> view() const noexcept { return {data_, size_}; }

  void clear() noexcept { size_ = 0; }
  void reserve(std::size_t n) {
    if (n > cap_) grow_to(n);
  }
  // Room for exactly n bytes, not rounded up (a frame of known size: no unused address space).
  void reserve_exact(std::size_t n) {
    if (n > cap_) realloc_to(n);
  }
  // Appends n uninitialized bytes and returns a pointer to them.
  std::byte* extend(std::size_t n) {
    if (cap_ - size_ < n) grow_to(size_ + n);
    std::byte* p = data_ + size_;
    size_ += n;
    return p;
  }
  void append(const void* p, std::size_t n) {
    if (n != 0) std::memcpy(extend(n), p, n);
  }
  void resize(std::size_t n) {
    reserve(n);
    size_ = n;
  }
  // Drops the first n bytes, keeping the rest (used by the reader for partial frames).
  void consume_front(std::size_t n) noexcept {
    if (n >= size_) {
      size_ = 0;
      return;
    }
    std::memmove(data_, data_ + n, size_ - n);
    size_ -= n;
  }
  std::size_t capacity() const noexcept { return cap_; }

  // The descriptors of the frame in this buffer, in the order its values refer to them (the
  // encoder appends; clear() keeps them: whoever sends the frame takes them).
  std::vector<unique_fd>& descriptors() noexcept { return fds_; }
  const std::vector<unique_fd>& descriptors() const noexcept { return fds_; }

 private:
  void grow_to(std::size_t n) {
    std::size_t c = cap_ ? cap_ : 256;
    while (c < n) c = c * 2;
    realloc_to(c);
  }
  void realloc_to(std::size_t c) {
    void* p = std::realloc(data_, c);
    if (p == nullptr) throw std::bad_alloc();
    data_ = static_cast<std::byte*>(p);
    cap_ = c;
  }
  std::byte* data_ = nullptr;
  std::size_t size_ = 0;
  std::size_t cap_ = 0;
  std::vector<unique_fd> fds_;
};

class byte_reader {
 public:
  byte_reader() = default;
  explicit byte_reader(std::span<const std::byte> s) : p_(s.data()), end_(s.data() + s.size()) {}

  std::size_t remaining() const noexcept { return static_cast<std::size_t>(end_ - p_); }
  bool at_end() const noexcept { return p_ == end_; }
  const std::byte* take(std::size_t n) {
    if (remaining() < n)
      throw protocol_error("truncated value: need " + std::to_string(n) + " bytes, " +
                           std::to_string(remaining()) + " left");
    const std::byte* p = p_;
    p_ += n;
    return p;
  }
  void read(void* out, std::size_t n) {
    const std::byte* p = take(n);
    if (n != 0) std::memcpy(out, p, n);  // out may be null for an empty container
  }

 private:
  const std::byte* p_ = nullptr;
  const std::byte* end_ = nullptr;
};

}  // namespace procxy::detail
