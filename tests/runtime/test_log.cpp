#include "runtime/log.hpp"

#include <catch2/catch.hpp>

using llorch::log::format_fields;

TEST_CASE("log fields are key=value, quoted only when needed") {
  CHECK(format_fields({{"node_id", "gpu-node-1"}, {"online", true}, {"n", 42}})
        == "node_id=gpu-node-1 online=true n=42");
  CHECK(format_fields({{"msg", "two words"}}) == "msg=\"two words\"");
  CHECK(format_fields({{"empty", ""}}) == "empty=\"\"");
}

TEST_CASE("log values cannot break the line or forge fields") {
  CHECK(format_fields({{"path", "a\nnode_offline x=1"}}) == "path=\"a\\nnode_offline x=1\"");
  CHECK(format_fields({{"q", "say \"hi\"\\"}}) == "q=\"say \\\"hi\\\"\\\\\"");
  CHECK(format_fields({{"c", std::string("\x01", 1)}}) == "c=\"\\x01\"");
}

TEST_CASE("log levels parse from config words") {
  llorch::log::level lvl{};
  CHECK(llorch::log::parse_level("warn", lvl));
  CHECK(lvl == llorch::log::level::warn);
  CHECK_FALSE(llorch::log::parse_level("verbose", lvl));
}
