#pragma once
// Bearer-token handling shared by the HTTP facade and the cluster transport: parsing the
// Authorization header, comparing secrets without leaking timing, and naming a token in logs
// by a fingerprint instead of its value.
#include <string>
#include <string_view>

namespace llorch::net {

enum class bearer_status { absent, malformed, present };

struct bearer {
  bearer_status status = bearer_status::absent;
  std::string token;  // set only when status == present
};

// Parses an Authorization header value ("" when the header is missing): "Bearer <token>", the
// scheme case-insensitive, exactly one space before exactly one token of printable ASCII.
bearer parse_bearer(std::string_view authorization_header_value_or_empty);

// Equality whose running time depends on the lengths only, never on where the inputs differ.
bool constant_time_equals(std::string_view a, std::string_view b);

// First 6 hex characters of the token's SHA-256: enough to tell tokens apart in a log line.
std::string token_fingerprint(std::string_view token);

// What a route's token requirement makes of a request's Authorization header.
enum class auth_outcome { ok, missing_token, bad_token };

// `expected` empty: tokens are not checked at all. A header that is present but malformed or
// wrong is refused even when `required` is false (open reads still refuse a wrong token).
auth_outcome authorize(std::string_view authorization_header_value_or_empty,
                       std::string_view expected, bool required);

} // namespace llorch::net
