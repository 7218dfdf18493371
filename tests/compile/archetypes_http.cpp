// SPDX-License-Identifier: MIT
// The HTTP templates instantiated with archetypes (tests/compile/archetypes.hpp): the server over
// any transport, and the HTTP transport under any retry policy.
#include <sandbox/server.hpp>
#include <sandbox/transport/http/http_transport.hpp>

#include "archetypes.hpp"

namespace arch = sandbox::archetypes;

template class sandbox::server<arch::transport<arch::process_handle>>;
template class sandbox::server<arch::transport<arch::stdin_process_handle>>;
template class sandbox::basic_remote_transport<sandbox::http::detail::rest_channel, arch::retry>;
static_assert(sandbox::transport<sandbox::basic_http_transport<arch::retry>>);

int main() { return 0; }
