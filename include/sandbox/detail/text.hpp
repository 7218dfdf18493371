// SPDX-License-Identifier: MIT
// Small text helpers for error messages.
#pragma once

#include <sandbox/detail/utf8.hpp>

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

/// Where to cut `s` (size > `max`) to keep at most `max` bytes without splitting a UTF-8
/// character: `max`, or up to three bytes less when s[max] continues a character.
[[nodiscard]] inline std::size_t utf8_cut(std::string_view s, std::size_t max) noexcept {
  std::size_t cut = max;
  for (int back = 0; back < 3 && cut > 0 && (static_cast<unsigned char>(s[cut]) & 0xc0) == 0x80;
       ++back)
    --cut;
  return cut;
}

/// `text` as message text: each NUL byte written as `<NUL>` (a C string ends at one) and each
/// byte that is not part of valid UTF-8 as `\xNN` (a message must stay valid UTF-8, and the
/// reader sees which byte it was).
[[nodiscard]] inline std::string message_text(std::string text) {
  if (text.find('\0') == std::string::npos && invalid_utf8_at(text) == std::string::npos)
    return text;
  const auto* p = reinterpret_cast<const unsigned char*>(text.data());
  std::string out;
  out.reserve(text.size() + 16);
  for (std::size_t i = 0; i < text.size();) {
    std::size_t len = p[i] < 0x80 ? 1 : utf8_sequence(p + i, text.size() - i);
    if (p[i] == 0) {
      out += "<NUL>";
      len = 1;
    } else if (len) {
      out.append(text, i, len);
    } else {
      constexpr char hex[] = "0123456789abcdef";
      ((out += "\\x") += hex[p[i] >> 4]) += hex[p[i] & 15];
      len = 1;
    }
    i += len;
  }
  return out;
}

/// A value a client sent, quoted for an error message: at most `max` of its bytes, and its size
/// when it is longer, so that a message never grows with what a client chose to send. The cut
/// never splits a UTF-8 character (a message must stay valid UTF-8 on the wire).
[[nodiscard]] inline std::string quoted_excerpt(std::string_view s, std::size_t max = 80) {
  if (s.size() <= max) return message_text(shell_quote(s));
  return message_text(shell_quote(s.substr(0, utf8_cut(s, max)))) + "... (" +
         std::to_string(s.size()) + " bytes)";
}

/// `argv` joined as a shell would read it (a command line to run, or a message).
[[nodiscard]] inline std::string join_command(std::span<const std::string> argv) {
  std::string out;
  for (const auto& a : argv) {
    if (!out.empty()) out += ' ';
    out += shell_quote(a);
  }
  return out;
}

/// `argv` for an error message: joined as a shell would read it, then cut as `quoted_excerpt`
/// cuts (at most `max` bytes, then the command's size), so that a message never grows with the
/// size of the command a caller sent (up to 128 KiB).
[[nodiscard]] inline std::string command_excerpt(std::span<const std::string> argv,
                                                 std::size_t max = 256) {
  std::string all;
  std::size_t bytes = 0;
  for (const auto& a : argv) {
    bytes += a.size();
    if (all.size() <= max) { // enough is joined to cut from
      if (!all.empty()) all += ' ';
      all += shell_quote(a);
    }
  }
  if (all.size() <= max) return message_text(std::move(all));
  return message_text(all.substr(0, utf8_cut(all, max))) + "... (" + std::to_string(argv.size()) +
         " arguments, " + std::to_string(bytes) + " bytes)";
}

/// strerror without the thread-safety trap of the plain function.
[[nodiscard]] inline std::string errno_text(int err) {
  char buf[128];
  return std::string(strerror_r(err, buf, sizeof buf));
}

} // namespace sandbox::detail
