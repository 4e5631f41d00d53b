#pragma once
// Bounds-checked little-endian reads over a mapped file. The first failure sticks and carries
// the byte offset, so a hostile file ends in one clear error instead of an out-of-bounds read.
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>

namespace llorch::engine {

class byte_reader {
public:
  byte_reader(const std::uint8_t* data, std::size_t size) : data_(data), size_(size) {}

  bool ok() const { return error_.empty(); }
  const std::string& error() const { return error_; }
  std::size_t pos() const { return pos_; }
  std::size_t remaining() const { return size_ - pos_; }
  const std::uint8_t* here() const { return data_ + pos_; }

  void fail(const std::string& what) {
    if (error_.empty())
      error_ = what + " at byte " + std::to_string(pos_);
  }

  bool need(std::size_t n, const char* what) {
    if (!ok()) return false;
    if (n > remaining()) {
      fail(std::string("file ends inside ") + what + " (needs " + std::to_string(n) +
           " bytes, " + std::to_string(remaining()) + " left)");
      return false;
    }
    return true;
  }

  template <class T>
  T read(const char* what) {
    T v{};
    if (!need(sizeof(T), what)) return v;
    std::memcpy(&v, data_ + pos_, sizeof(T));
    pos_ += sizeof(T);
    return v;
  }

  std::string_view bytes(std::size_t n, const char* what) {
    if (!need(n, what)) return {};
    std::string_view v(reinterpret_cast<const char*>(data_ + pos_), n);
    pos_ += n;
    return v;
  }

  void skip(std::size_t n, const char* what) { bytes(n, what); }

private:
  const std::uint8_t* data_;
  std::size_t size_;
  std::size_t pos_ = 0;
  std::string error_;
};

} // namespace llorch::engine
