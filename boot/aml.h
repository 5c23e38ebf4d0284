// A small AML encoder (ACPI 6.4 §20 "ACPI Machine Language Specification") and ACPI resource
// descriptors (§6.4), enough for minivmm's DSDT. Every function returns the encoded bytes of
// one term; compose them by nesting. Names are compile-time constants in minivmm, so invalid
// names are reported by returning an empty vector (tests check every name we use).
#pragma once

#include <cstdint>
#include <initializer_list>
#include <span>
#include <string_view>
#include <vector>

namespace minivmm::boot::aml {

using Bytes = std::vector<uint8_t>;

// Opcodes, §20.3 "AML Byte Stream Byte Values".
inline constexpr uint8_t kZeroOp = 0x00;
inline constexpr uint8_t kOneOp = 0x01;
inline constexpr uint8_t kNameOp = 0x08;
inline constexpr uint8_t kBytePrefix = 0x0a;
inline constexpr uint8_t kWordPrefix = 0x0b;
inline constexpr uint8_t kDWordPrefix = 0x0c;
inline constexpr uint8_t kStringPrefix = 0x0d;
inline constexpr uint8_t kQWordPrefix = 0x0e;
inline constexpr uint8_t kScopeOp = 0x10;
inline constexpr uint8_t kBufferOp = 0x11;
inline constexpr uint8_t kPackageOp = 0x12;
inline constexpr uint8_t kDualNamePrefix = 0x2e;
inline constexpr uint8_t kMultiNamePrefix = 0x2f;
inline constexpr uint8_t kExtOpPrefix = 0x5b;
inline constexpr uint8_t kDeviceOp = 0x82;      // after kExtOpPrefix
inline constexpr uint8_t kRootChar = 0x5c;      // '\'
inline constexpr uint8_t kParentPrefix = 0x5e;  // '^'

// Largest value a PkgLength can hold: 4 bits + 3 bytes (§20.2.4).
inline constexpr uint32_t kMaxPkgLength = (1u << 28) - 1;

// §20.2.4 PkgLength encoding of `value` (which counts the PkgLength bytes themselves): one byte
// for values < 64, else a lead byte holding the byte count (bits 7:6) and the low nibble,
// followed by 1-3 bytes. Empty if value > kMaxPkgLength.
Bytes pkg_length(uint32_t value);

// PkgLength followed by `payload`, the length counting itself and the payload.
Bytes with_pkg_length(std::span<const uint8_t> payload);

// §20.2.2 NameString: an optional '\' root prefix and '^' parent prefixes, then dot-separated
// segments of 1-4 characters ([A-Z_] then [A-Z0-9_]), each padded to 4 with '_'. Uses
// DualNamePrefix / MultiNamePrefix for 2 / more segments. Empty on an invalid name.
Bytes name_string(std::string_view name);

// §20.2.3 ComputationalData: ZeroOp, OneOp, or the smallest of Byte/Word/DWord/QWordPrefix.
Bytes integer(uint64_t value);
// StringPrefix, ASCII characters (1-0x7f), NUL. Empty if a character is out of range.
Bytes string(std::string_view value);
// DefBuffer: BufferOp PkgLength BufferSize(integer) bytes (§19.6.10).
Bytes buffer(std::span<const uint8_t> bytes);
// DefPackage: PackageOp PkgLength NumElements(byte) elements. Empty if > 255 elements.
Bytes package(std::initializer_list<Bytes> elements);
Bytes package(std::span<const Bytes> elements);
// DefName: NameOp NameString DataRefObject.
Bytes name(std::string_view name, const Bytes& value);
// DefScope: ScopeOp PkgLength NameString TermList.
Bytes scope(std::string_view name, std::span<const Bytes> terms);
// DefDevice: ExtOpPrefix DeviceOp PkgLength NameString TermList.
Bytes device(std::string_view name, std::span<const Bytes> terms);

// EISAID("PNP0501") compression (§19.6.35): three letters as 5-bit values, four hex digits, in
// the byte order of the ID; the value as a DWord integer. eisa_id() is the encoded integer.
// nullopt-like: returns 0 / empty for a malformed ID.
uint32_t eisa_id_value(std::string_view id);
Bytes eisa_id(std::string_view id);

// ---- Resource descriptors (ACPI 6.4 §6.4) ---------------------------------------------------
// I/O Port Descriptor, small item 0x08 (§6.4.2.5); decode16 = true for Decode16.
Bytes io_port(bool decode16, uint16_t min, uint16_t max, uint8_t alignment, uint8_t length);
// IRQ Descriptor without flags (IRQNoFlags), small item 0x04, 2 bytes of mask (§6.4.2.1).
Bytes irq_no_flags(uint8_t irq);
// 32-bit Fixed Memory Range Descriptor, large item 0x06 (§6.4.3.4).
Bytes memory32_fixed(bool writable, uint32_t base, uint32_t length);
// Extended Interrupt Descriptor, large item 0x09 (§6.4.3.6), one interrupt:
// Interrupt(ResourceConsumer/Producer, Edge/Level, ActiveHigh/Low, Exclusive/Shared) {irq}.
struct InterruptFlags {
  bool consumer = true;
  bool edge = true;
  bool active_low = false;
  bool shared = false;
};
Bytes extended_interrupt(InterruptFlags flags, uint32_t irq);
// ResourceTemplate(): a Buffer holding the descriptors and an End Tag (§6.4.2.9) whose
// checksum byte makes the descriptor bytes sum to zero.
Bytes resource_template(std::initializer_list<Bytes> descriptors);

}  // namespace minivmm::boot::aml
