// SPDX-License-Identifier: MIT
// The umbrella header: the core, the local transport and the aliases of both.
#pragma once

#include <sandbox/local.hpp>
