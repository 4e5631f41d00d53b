#pragma once
// UTF-8 helpers: validation, byte-token pieces, and holding back an incomplete character so
// every emitted chunk of text is valid UTF-8.
#include <cstdint>
#include <string>
#include <string_view>

namespace llorch::engine {

bool utf8_valid(std::string_view s);

// "<0x41>" -> 0x41; false for anything else.
bool parse_byte_piece(std::string_view piece, std::uint8_t& out);

// Accumulates bytes and releases the longest prefix that ends on a character boundary.
// Invalid sequences are released as U+FFFD so the output is always valid UTF-8.
class utf8_stream {
public:
  std::string push(std::string_view bytes);
  std::string finish(); // whatever is still held, with an incomplete tail replaced by U+FFFD

private:
  std::string held_;
};

} // namespace llorch::engine
