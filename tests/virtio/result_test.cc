// The one Result<T, E> template (virtio/result.h) and its two aliases, virtio::Result (error
// = virtio::Error) and boot::Result (error = a message).
#include <catch2/catch.hpp>

#include <memory>
#include <string>
#include <utility>

#include "boot/result.h"
#include "virtio/error.h"

using minivmm::Result;

namespace {

struct Pair {
  Pair(int a, int b) : sum(a + b) {}
  Pair(const Pair&) = delete;  // only constructible in place
  Pair& operator=(const Pair&) = delete;
  int sum;
};

minivmm::virtio::Result<int> half(int n) {
  if (n % 2 != 0) return minivmm::virtio::Error::kShortBuffer;
  return n / 2;
}

minivmm::boot::Result<void> check(bool ok) {
  if (!ok) return minivmm::boot::Error{"not ok"};
  return {};
}

}  // namespace

TEST_CASE("Result holds a value or an error") {
  auto good = half(8);
  REQUIRE(good.has_value());
  CHECK(static_cast<bool>(good));
  CHECK(*good == 4);
  CHECK(good.value() == 4);

  auto bad = half(3);
  CHECK_FALSE(bad.has_value());
  CHECK_FALSE(static_cast<bool>(bad));
  CHECK(bad.error() == minivmm::virtio::Error::kShortBuffer);
}

TEST_CASE("Result<void> is success or an error") {
  CHECK(check(true).has_value());
  const auto r = check(false);
  REQUIRE_FALSE(r);
  CHECK(r.error() == "not ok");
}

TEST_CASE("Result constructs in place and moves out move-only values") {
  const Result<Pair, std::string> p(std::in_place, 2, 3);
  REQUIRE(p);
  CHECK(p->sum == 5);

  Result<std::unique_ptr<int>, std::string> owned(std::make_unique<int>(7));
  REQUIRE(owned);
  std::unique_ptr<int> taken = std::move(owned).value();
  CHECK(*taken == 7);

  Result<int, std::string> message(std::string("a long error message, longer than SSO"));
  CHECK(std::move(message).error() == "a long error message, longer than SSO");
}
