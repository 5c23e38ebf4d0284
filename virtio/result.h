// Result<T, E>: a value of type T or an error of type E, the one result type of the project's
// libraries (boot::Result<T> and virtio::Result<T> are aliases of it). Deliberately small:
// has_value / value / error, like std::expected; a failure that a guest or a user can cause is
// returned as one of these, never thrown (DESIGN.md "Style").
//
// Generic and dependency-free on purpose: it lives in virtio/, the bottom layer, only because
// the top-level folders are fixed; boot/ includes this header and nothing else from virtio/
// (CMake target minivmm_result). Nothing virtio-specific belongs here: virtio's error enum is
// in virtio/error.h.
//
// Threads: a plain value; no synchronisation.
#pragma once

#include <optional>
#include <type_traits>
#include <utility>
#include <variant>

namespace minivmm {

template <typename T, typename E>
class [[nodiscard]] Result {
  static_assert(!std::is_same_v<std::remove_cv_t<T>, std::remove_cv_t<E>>,
                "a Result whose value and error types are the same is ambiguous");

 public:
  Result(T&& value) : data_(std::in_place_index<0>, std::move(value)) {}  // NOLINT
  Result(const T& value) : data_(std::in_place_index<0>, value) {}        // NOLINT
  Result(E&& error) : data_(std::in_place_index<1>, std::move(error)) {}  // NOLINT
  Result(const E& error) : data_(std::in_place_index<1>, error) {}        // NOLINT
  // Constructs the value in place (no move): Result<T, E>(std::in_place, args...).
  template <typename... Args>
  explicit Result(std::in_place_t, Args&&... args)
      : data_(std::in_place_index<0>, std::forward<Args>(args)...) {}

  bool has_value() const { return data_.index() == 0; }
  explicit operator bool() const { return has_value(); }
  T& value() & { return std::get<0>(data_); }
  const T& value() const& { return std::get<0>(data_); }
  T&& value() && { return std::get<0>(std::move(data_)); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }
  T&& operator*() && { return std::move(*this).value(); }
  // Only when !has_value() (std::bad_variant_access otherwise).
  const E& error() const& { return std::get<1>(data_); }
  E&& error() && { return std::get<1>(std::move(data_)); }

 private:
  std::variant<T, E> data_;
};

// Success without a value, or an error.
template <typename E>
class [[nodiscard]] Result<void, E> {
 public:
  Result() = default;
  Result(E&& error) : error_(std::move(error)) {}  // NOLINT(google-explicit-constructor)
  Result(const E& error) : error_(error) {}        // NOLINT(google-explicit-constructor)

  bool has_value() const { return !error_.has_value(); }
  explicit operator bool() const { return has_value(); }
  // Only when !has_value() (std::bad_optional_access otherwise).
  const E& error() const& { return error_.value(); }
  E&& error() && { return std::move(error_).value(); }

 private:
  std::optional<E> error_;
};

}  // namespace minivmm
