// SPDX-License-Identifier: MIT
// Small text helpers for error messages.
#pragma once

#include <cstring>
#include <span>
#include <string>
#include <string_view>

namespace sandbox::detail {

/// Quotes a word for a POSIX shell: safe words as they are, others in single quotes.
[[nodiscard]] inline std::string shell_quote(std::string_view s) {
  if (!s.empty() && s.find_first_not_of("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                                        "0123456789@%+=:,./-_") == std::string_view::npos)
    return std::string(s);
  std::string out = "'";
  for (char c : s) {
    if (c == '\'')
      out += "'\\''";
    else
      out += c;
  }
  out += '\'';
  return out;
}

/// A value a client sent, quoted for an error message: at most `max` of its bytes, and its size
/// when it is longer, so that a message never grows with what a client chose to send.
[[nodiscard]] inline std::string quoted_excerpt(std::string_view s, std::size_t max = 80) {
  if (s.size() <= max) return shell_quote(s);
  return shell_quote(s.substr(0, max)) + "... (" + std::to_string(s.size()) + " bytes)";
}

/// `argv` joined as a shell would read it, for messages.
[[nodiscard]] inline std::string join_command(std::span<const std::string> argv) {
  std::string out;
  for (const auto& a : argv) {
    if (!out.empty()) out += ' ';
    out += shell_quote(a);
  }
  return out;
}

/// strerror without the thread-safety trap of the plain function.
[[nodiscard]] inline std::string errno_text(int err) {
  char buf[128];
  return std::string(strerror_r(err, buf, sizeof buf));
}

} // namespace sandbox::detail
