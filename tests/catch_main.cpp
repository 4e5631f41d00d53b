// Catch2's main, alone in this translation unit so that test files compile fast.
#define CATCH_CONFIG_MAIN
#include <catch2/catch.hpp>
