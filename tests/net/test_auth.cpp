#include "net/auth.hpp"

#include "raw_client.hpp"

#include <catch2/catch.hpp>

using namespace llorch::net;

TEST_CASE("parse_bearer: the table of header values") {
  struct row {
    const char* value;
    bearer_status status;
    const char* token;
  };
  const row rows[] = {
    {"", bearer_status::absent, ""},
    {"Bearer abc123", bearer_status::present, "abc123"},
    {"bearer abc123", bearer_status::present, "abc123"},
    {"BEARER abc123", bearer_status::present, "abc123"},
    {"BeArEr a.b-c_d~e+f/g=", bearer_status::present, "a.b-c_d~e+f/g="},
    {"Bearer", bearer_status::malformed, ""},
    {"Bearer ", bearer_status::malformed, ""},
    {"Bearer  abc", bearer_status::malformed, ""},   // two spaces
    {"Bearer abc def", bearer_status::malformed, ""},  // two tokens
    {"Bearer abc ", bearer_status::malformed, ""},   // trailing space
    {"Bearer\tabc", bearer_status::malformed, ""},
    {"Basic dXNlcjpwYXNz", bearer_status::malformed, ""},
    {"Bearerabc", bearer_status::malformed, ""},
    {"Token abc", bearer_status::malformed, ""},
    {"abc", bearer_status::malformed, ""},
    {" Bearer abc", bearer_status::malformed, ""},
    {"Bearer ab\x01" "c", bearer_status::malformed, ""},
    {"Bearer ab\x7f", bearer_status::malformed, ""},
    {"Bearer \xc3\xa9t\xc3\xa9", bearer_status::malformed, ""},  // non-ASCII
  };
  for (const auto& r : rows) {
    INFO("value: '" << r.value << "'");
    auto b = parse_bearer(r.value);
    CHECK(b.status == r.status);
    CHECK(b.token == r.token);
  }
}

TEST_CASE("constant_time_equals agrees with ==") {
  const std::string values[] = {"", "a", "b", "ab", "abc", "abd", "xbc", "abcd", "abc\0"};
  for (const auto& a : values)
    for (const auto& b : values) {
      INFO("'" << a << "' vs '" << b << "'");
      CHECK(constant_time_equals(a, b) == (a == b));
    }
  // A prefix, a repetition and the empty string never compare equal to the longer value.
  CHECK_FALSE(constant_time_equals("token", "tokentoken"));
  CHECK_FALSE(constant_time_equals("", "token"));
  CHECK_FALSE(constant_time_equals("abab", "ab"));
  CHECK(constant_time_equals(std::string(1000, 'x'), std::string(1000, 'x')));
  std::string last_differs(1000, 'x');
  last_differs.back() = 'y';
  CHECK_FALSE(constant_time_equals(std::string(1000, 'x'), last_differs));
  CHECK_FALSE(constant_time_equals(std::string("a\0b", 3), std::string("a\0c", 3)));
}

TEST_CASE("token_fingerprint is the first 6 hex digits of SHA-256") {
  // Expected values from: printf %s s3cret-token | sha256sum ; printf %s '' | sha256sum
  CHECK(token_fingerprint("s3cret-token") == "a81e61");
  CHECK(token_fingerprint("") == "e3b0c4");
  const std::string tok = "another-Token_42";
  const auto tool = llorch::test::run_command("printf %s '" + tok + "' | sha256sum 2>/dev/null");
  if (tool.size() >= 6)
    CHECK(token_fingerprint(tok) == tool.substr(0, 6));
  CHECK(token_fingerprint("a") != token_fingerprint("b"));
}

TEST_CASE("authorize: required, optional, wrong, malformed, unchecked") {
  CHECK(authorize("", "tok", true) == auth_outcome::missing_token);
  CHECK(authorize("", "tok", false) == auth_outcome::ok);
  CHECK(authorize("Bearer tok", "tok", true) == auth_outcome::ok);
  CHECK(authorize("bearer tok", "tok", false) == auth_outcome::ok);
  CHECK(authorize("Bearer nope", "tok", true) == auth_outcome::bad_token);
  CHECK(authorize("Bearer nope", "tok", false) == auth_outcome::bad_token);  // open route, carried
  CHECK(authorize("Bearer tok2", "tok", true) == auth_outcome::bad_token);
  CHECK(authorize("Bearer to", "tok", true) == auth_outcome::bad_token);
  CHECK(authorize("Basic abc", "tok", false) == auth_outcome::bad_token);
  CHECK(authorize("Bearer", "tok", true) == auth_outcome::bad_token);
  // No token configured: nothing is checked.
  CHECK(authorize("", "", true) == auth_outcome::ok);
  CHECK(authorize("Bearer whatever", "", true) == auth_outcome::ok);
}
