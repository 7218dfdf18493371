// SPDX-License-Identifier: MIT
// The sandbox server: the v1 SandboxService over any transport (server/service.hpp) and its REST
// front end (server/rest_server.hpp, cpp-httplib and simdjson). What `sandboxd` is built from.
#pragma once

#include <sandbox/server/rest_server.hpp>
