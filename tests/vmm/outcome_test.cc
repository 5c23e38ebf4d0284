// The status table (README "Exit status"): every stop reason's status and reason word, a
// status reported through minivmm.exit turning a power-off or reboot into it, and the
// parser for what a guest writes there.
#include "vmm/outcome.h"

#include <catch2/catch.hpp>

using namespace minivmm::vmm;

TEST_CASE("every way a run ends has its status and reason word") {
  auto of = [](StopReason r, int value = 0) { return outcome_of(r, value, "m", std::nullopt); };
  CHECK(of(StopReason::kPowerOff) == Outcome{0, "poweroff", "m"});
  CHECK(of(StopReason::kReboot) == Outcome{0, "reboot", "m"});
  CHECK(of(StopReason::kGuestExit, 7) == Outcome{7, "guest-exit", "m"});
  CHECK(of(StopReason::kError) == Outcome{1, "error", "m"});
  CHECK(of(StopReason::kCrash) == Outcome{3, "crash", "m"});
  CHECK(of(StopReason::kUnrunnable) == Outcome{4, "unrunnable", "m"});
  CHECK(of(StopReason::kPanic) == Outcome{5, "panic", "m"});
  CHECK(of(StopReason::kTimeout) == Outcome{124, "timeout", "m"});
  CHECK(of(StopReason::kSignal, 15) == Outcome{143, "signal", "m"});
  CHECK(of(StopReason::kNone).status == 1);
}

TEST_CASE("a status reported through minivmm.exit is the result of a power-off or reboot only") {
  const Outcome o = outcome_of(StopReason::kPowerOff, 0, "the guest powered off", 3);
  CHECK(o.status == 3);
  CHECK(o.reason == "guest-exit");
  CHECK(o.message == "the guest reported status 3 through minivmm.exit (the guest powered off)");
  CHECK(outcome_of(StopReason::kReboot, 0, "r", 255).status == 255);
  // A panic, crash or timeout after the write still wins.
  CHECK(outcome_of(StopReason::kPanic, 0, "p", 0).status == 5);
  CHECK(outcome_of(StopReason::kCrash, 0, "c", 0).status == 3);
  CHECK(outcome_of(StopReason::kTimeout, 0, "t", 0).reason == "timeout");
}

TEST_CASE("what a guest writes to minivmm.exit") {
  CHECK(parse_reported_status("0\n") == 0);
  CHECK(parse_reported_status("  42 \r\n") == 42);
  CHECK(parse_reported_status("255") == 255);
  CHECK_FALSE(parse_reported_status("256").has_value());
  CHECK_FALSE(parse_reported_status("-1").has_value());
  CHECK_FALSE(parse_reported_status("3 4").has_value());
  CHECK_FALSE(parse_reported_status("pass").has_value());
  CHECK_FALSE(parse_reported_status("").has_value());
  CHECK_FALSE(parse_reported_status(" \n").has_value());
}
