// Definitions of CAF's unit-test engine, which caf/test/dsl.hpp's fixture
// calls into (argc/argv); doctest provides main().
#define CAF_TEST_NO_MAIN
#include <caf/test/unit_test_impl.hpp>
