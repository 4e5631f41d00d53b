#pragma once
// GGUF v3 constants shared by the reader and the test-model writer.
#include <cstdint>

namespace llorch::engine::gguf {

inline constexpr std::uint32_t version = 3;
inline constexpr std::uint64_t default_alignment = 32;

enum value_type : std::uint32_t {
  t_u8 = 0, t_i8 = 1, t_u16 = 2, t_i16 = 3, t_u32 = 4, t_i32 = 5, t_f32 = 6, t_bool = 7,
  t_string = 8, t_array = 9, t_u64 = 10, t_i64 = 11, t_f64 = 12,
};

// ggml tensor types this engine reads.
inline constexpr std::uint32_t ggml_f32 = 0;
inline constexpr std::uint32_t ggml_f16 = 1;
inline constexpr std::uint32_t ggml_q8_0 = 8;

} // namespace llorch::engine::gguf
