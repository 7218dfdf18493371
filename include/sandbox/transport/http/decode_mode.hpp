// SPDX-License-Identifier: MIT
// How a decoder treats what it does not expect: one rule for every encoding of the wire messages.
#pragma once

namespace sandbox::http {

/// How `from_json` / `from_protobuf` treat what they do not expect.
enum class decode_mode {
  /// Responses read by the client: unknown fields are skipped (forward compatibility) but still
  /// checked to be well-formed; malformed input or a field of the wrong type is errc::protocol.
  lenient,
  /// Requests read by our server: an unknown field (JSON), a field of the wrong type, a duplicate
  /// field (JSON) or a missing required field is errc::validation naming the field path
  /// (`spec.containers[0].image: ...`); a field of the API our server does not implement, when
  /// set, is errc::unsupported naming it.
  strict,
};

} // namespace sandbox::http
