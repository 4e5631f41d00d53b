#pragma once
// Expected failures of the engine (bad files, bad arguments) are values, not exceptions: a
// result holds either the value or one message a user can act on.
#include <string>
#include <utility>
#include <variant>

namespace llorch::engine {

struct error {
  std::string message;
};

template <class T>
class result {
public:
  result(T value) : v_(std::move(value)) {}
  result(error e) : v_(std::move(e)) {}

  bool ok() const { return v_.index() == 0; }
  explicit operator bool() const { return ok(); }
  T& value() { return std::get<0>(v_); }
  const T& value() const { return std::get<0>(v_); }
  T& operator*() { return value(); }
  const T& operator*() const { return value(); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }
  const std::string& message() const { return std::get<1>(v_).message; }

private:
  std::variant<T, error> v_;
};

// For operations with nothing to return.
struct done {};
using status = result<done>;

inline error fail(std::string message) { return error{std::move(message)}; }

} // namespace llorch::engine
