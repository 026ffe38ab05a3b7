#include "security/certs.hpp"

// Implemented in this session.
