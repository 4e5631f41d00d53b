#include "engines/utf8.hpp"

namespace llorch::engine {

namespace {

// Length of the valid UTF-8 sequence at s[i], 0 when invalid, -1 when valid so far but cut off.
int sequence_length(std::string_view s, std::size_t i) {
  const auto c = static_cast<unsigned char>(s[i]);
  int len = 0;
  unsigned char lo = 0x80, hi = 0xBF;
  if (c < 0x80) return 1;
  if (c >= 0xC2 && c <= 0xDF) len = 2;
  else if (c == 0xE0) { len = 3; lo = 0xA0; }
  else if (c >= 0xE1 && c <= 0xEC) len = 3;
  else if (c == 0xED) { len = 3; hi = 0x9F; }
  else if (c >= 0xEE && c <= 0xEF) len = 3;
  else if (c == 0xF0) { len = 4; lo = 0x90; }
  else if (c >= 0xF1 && c <= 0xF3) len = 4;
  else if (c == 0xF4) { len = 4; hi = 0x8F; }
  else return 0;
  for (int k = 1; k < len; ++k) {
    if (i + k >= s.size()) return -1;
    const auto d = static_cast<unsigned char>(s[i + k]);
    const unsigned char l = k == 1 ? lo : 0x80, h = k == 1 ? hi : 0xBF;
    if (d < l || d > h) return 0;
  }
  return len;
}

} // namespace

bool utf8_valid(std::string_view s) {
  for (std::size_t i = 0; i < s.size();) {
    const int n = sequence_length(s, i);
    if (n <= 0) return false;
    i += static_cast<std::size_t>(n);
  }
  return true;
}

bool parse_byte_piece(std::string_view p, std::uint8_t& out) {
  if (p.size() != 6 || p[0] != '<' || p[1] != '0' || p[2] != 'x' || p[5] != '>') return false;
  int v = 0;
  for (int k = 3; k < 5; ++k) {
    const char c = p[static_cast<std::size_t>(k)];
    int d;
    if (c >= '0' && c <= '9') d = c - '0';
    else if (c >= 'A' && c <= 'F') d = c - 'A' + 10;
    else if (c >= 'a' && c <= 'f') d = c - 'a' + 10;
    else return false;
    v = v * 16 + d;
  }
  out = static_cast<std::uint8_t>(v);
  return true;
}

std::string utf8_stream::push(std::string_view bytes) {
  held_.append(bytes);
  std::string out;
  std::size_t i = 0;
  while (i < held_.size()) {
    const int n = sequence_length(held_, i);
    if (n < 0) break; // incomplete: wait for more bytes
    if (n == 0) {
      out += "\xEF\xBF\xBD";
      ++i;
      continue;
    }
    out.append(held_, i, static_cast<std::size_t>(n));
    i += static_cast<std::size_t>(n);
  }
  held_.erase(0, i);
  return out;
}

std::string utf8_stream::finish() {
  std::string out = held_.empty() ? std::string() : std::string("\xEF\xBF\xBD");
  held_.clear();
  return out;
}

} // namespace llorch::engine
