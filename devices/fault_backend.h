// Disk fault injection, for tests only: a DiskBackend that wraps a real one and makes chosen
// operations fail (EIO, ENOSPC, EFBIG), end short, or wait, by kind of operation, sector
// range and count. The device must turn each into the right answer to the guest: IOERR for
// an error or a short transfer (never a success with part of the buffer untouched), and a
// flush that failed once fails until minivmm restarts.
//
// Reachable from unit tests through BlockConfig::faults, and from the command line
// (`--disk ...,fault=SPEC`) only in a build configured with -DMINIVMM_FAULT_INJECTION=ON,
// which the project's test build is and a release build is not.
//
// SPEC: one or more faults joined by '+', each  WHAT:OP[:FIRST-LAST][:COUNT]
//   WHAT   eio | enospc | efbig | short | delayMS (e.g. delay50: wait 50 ms, then do it)
//   OP     read | write | flush | discard (also write-zeroes) | any
//   FIRST-LAST  the sectors (inclusive) an operation must touch to be hit (flush: ignored)
//   COUNT  how many operations it hits, then it is spent (default: every one)
// The first fault that matches an operation applies.
//
// Threads: as DiskBackend; parse_disk_faults anywhere.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "devices/disk_backend.h"
#include "virtio/result.h"

namespace minivmm::devices {

struct DiskFault {
  enum class Kind : uint8_t { kError, kShort, kDelay };
  static constexpr uint8_t kRead = 1, kWrite = 2, kFlush = 4, kDiscard = 8;
  Kind kind = Kind::kError;
  int error = 0;          // kError: EIO, ENOSPC or EFBIG
  uint32_t delay_ms = 0;  // kDelay
  uint8_t ops = 0;        // kRead | kWrite | kFlush | kDiscard
  uint64_t first_sector = 0;
  uint64_t last_sector = UINT64_MAX;
  uint64_t count = UINT64_MAX;
  bool operator==(const DiskFault&) const = default;
};

// The SPEC above; an error is one line naming the part that is wrong.
Result<std::vector<DiskFault>, std::string> parse_disk_faults(std::string_view spec);

std::unique_ptr<DiskBackend> make_fault_backend(std::unique_ptr<DiskBackend> inner,
                                                std::vector<DiskFault> faults);

}  // namespace minivmm::devices
