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

/// Where to cut `s` (size > `max`) to keep at most `max` bytes without splitting a UTF-8
/// character: `max`, or up to three bytes less when s[max] continues a character.
[[nodiscard]] inline std::size_t utf8_cut(std::string_view s, std::size_t max) noexcept {
  std::size_t cut = max;
  for (int back = 0; back < 3 && cut > 0 && (static_cast<unsigned char>(s[cut]) & 0xc0) == 0x80;
       ++back)
    --cut;
  return cut;
}

/// `text` with each NUL byte written as `<NUL>`: a message is text, and a C string ends at one.
[[nodiscard]] inline std::string without_nul(std::string text) {
  constexpr std::string_view shown = "<NUL>";
  for (std::size_t at = 0; (at = text.find('\0', at)) != std::string::npos; at += shown.size())
    text.replace(at, 1, shown);
  return text;
}

/// A value a client sent, quoted for an error message: at most `max` of its bytes, and its size
/// when it is longer, so that a message never grows with what a client chose to send. The cut
/// never splits a UTF-8 character (a message must stay valid UTF-8 on the wire).
[[nodiscard]] inline std::string quoted_excerpt(std::string_view s, std::size_t max = 80) {
  if (s.size() <= max) return without_nul(shell_quote(s));
  return without_nul(shell_quote(s.substr(0, utf8_cut(s, max)))) + "... (" +
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
  if (all.size() <= max) return without_nul(std::move(all));
  return without_nul(all.substr(0, utf8_cut(all, max))) + "... (" + std::to_string(argv.size()) +
         " arguments, " + std::to_string(bytes) + " bytes)";
}

/// strerror without the thread-safety trap of the plain function.
[[nodiscard]] inline std::string errno_text(int err) {
  char buf[128];
  return std::string(strerror_r(err, buf, sizeof buf));
}

} // namespace sandbox::detail
