// Error values of the boot library and a small Result type. Bad input (a kernel image that is
// not a bzImage, a command line that is too long, a guest too small for the kernel) is a value
// carrying a one-line message for the user, never an exception or an abort (DESIGN.md "Style").
// Same shape as virtio::Result (has_value / value / error, like std::expected) but the error is
// a message: these failures are reported to a person, not dispatched on.
#pragma once

#include <string>
#include <utility>
#include <variant>

namespace minivmm::boot {

struct Error {
  std::string message;
};

template <typename T>
class [[nodiscard]] Result {
 public:
  Result(T value) : data_(std::move(value)) {}      // NOLINT(google-explicit-constructor)
  Result(Error error) : data_(std::move(error)) {}  // NOLINT(google-explicit-constructor)

  bool has_value() const { return data_.index() == 0; }
  explicit operator bool() const { return has_value(); }
  T& value() & { return std::get<0>(data_); }
  const T& value() const& { return std::get<0>(data_); }
  T&& value() && { return std::get<0>(std::move(data_)); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }
  // The message; only meaningful when !has_value().
  const std::string& error() const { return std::get<1>(data_).message; }

 private:
  std::variant<T, Error> data_;
};

template <>
class [[nodiscard]] Result<void> {
 public:
  Result() = default;
  Result(Error error) : error_(std::move(error)), ok_(false) {}  // NOLINT

  bool has_value() const { return ok_; }
  explicit operator bool() const { return ok_; }
  const std::string& error() const { return error_.message; }

 private:
  Error error_{};
  bool ok_ = true;
};

}  // namespace minivmm::boot
