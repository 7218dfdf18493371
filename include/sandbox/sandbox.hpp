// SPDX-License-Identifier: MIT
// The umbrella header: the core, the local and HTTP transports, and the aliases of each.
// (`sandbox/local.hpp` alone needs no HTTP or JSON library.)
#pragma once

#include <sandbox/http.hpp>
#include <sandbox/local.hpp>
