#include "net/auth.hpp"

#include <openssl/sha.h>

#include <cstddef>
#include <cstdint>

namespace llorch::net {

namespace {

char lower(char c) { return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c; }

bool printable_token_char(char c) { return c > 0x20 && c < 0x7f; }

} // namespace

bearer parse_bearer(std::string_view value) {
  if (value.empty())
    return {bearer_status::absent, {}};
  constexpr std::string_view scheme = "bearer";
  if (value.size() < scheme.size() + 2 || value[scheme.size()] != ' ')
    return {bearer_status::malformed, {}};
  for (std::size_t i = 0; i < scheme.size(); ++i)
    if (lower(value[i]) != scheme[i])
      return {bearer_status::malformed, {}};
  auto token = value.substr(scheme.size() + 1);
  for (char c : token)
    if (!printable_token_char(c))
      return {bearer_status::malformed, {}};
  return {bearer_status::present, std::string(token)};
}

bool constant_time_equals(std::string_view a, std::string_view b) {
  // Walk the longer input completely so the loop length does not depend on where they differ;
  // the shorter one is read modulo its length (or as zero when empty).
  const std::size_t n = a.size() > b.size() ? a.size() : b.size();
  volatile std::uint8_t diff = a.size() == b.size() ? 0 : 1;
  for (std::size_t i = 0; i < n; ++i) {
    const auto x = a.empty() ? std::uint8_t{0} : static_cast<std::uint8_t>(a[i % a.size()]);
    const auto y = b.empty() ? std::uint8_t{0} : static_cast<std::uint8_t>(b[i % b.size()]);
    diff = static_cast<std::uint8_t>(diff | (x ^ y));
  }
  return diff == 0;
}

std::string token_fingerprint(std::string_view token) {
  unsigned char digest[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const unsigned char*>(token.data()), token.size(), digest);
  static constexpr char hex[] = "0123456789abcdef";
  std::string out;
  for (int i = 0; i < 3; ++i) {
    out.push_back(hex[digest[i] >> 4]);
    out.push_back(hex[digest[i] & 0x0f]);
  }
  return out;
}

auth_outcome authorize(std::string_view header, std::string_view expected, bool required) {
  if (expected.empty())
    return auth_outcome::ok;
  const auto b = parse_bearer(header);
  switch (b.status) {
    case bearer_status::absent:
      return required ? auth_outcome::missing_token : auth_outcome::ok;
    case bearer_status::malformed:
      return auth_outcome::bad_token;
    case bearer_status::present:
      break;
  }
  return constant_time_equals(b.token, expected) ? auth_outcome::ok : auth_outcome::bad_token;
}

} // namespace llorch::net
