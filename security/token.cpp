#include "security/token.hpp"

// Implemented in this session.
