#pragma once
// A read-only memory mapping of a whole file; weights are used in place, never copied.
#include <cstddef>
#include <cstdint>
#include <string>

#include "engines/result.hpp"

namespace llorch::engine {

class mapped_file {
public:
  static result<mapped_file> open(const std::string& path);

  mapped_file() = default;
  mapped_file(mapped_file&& other) noexcept;
  mapped_file& operator=(mapped_file&& other) noexcept;
  mapped_file(const mapped_file&) = delete;
  mapped_file& operator=(const mapped_file&) = delete;
  ~mapped_file();

  const std::uint8_t* data() const { return data_; }
  std::size_t size() const { return size_; }
  const std::string& path() const { return path_; }

private:
  void release();
  const std::uint8_t* data_ = nullptr;
  std::size_t size_ = 0;
  std::string path_;
};

} // namespace llorch::engine
