// SPDX-License-Identifier: MIT
// A small streaming JSON writer: objects, arrays, escaped strings, numbers, booleans, and base64
// strings written straight from bytes. It produces compact, always-valid UTF-8 JSON text.
#pragma once

#include <sandbox/detail/output_buffer.hpp>
#include <sandbox/detail/utf8.hpp>
#include <sandbox/transport/http/base64.hpp>

#include <charconv>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace sandbox::http {

/// Writes compact JSON into a `std::string`. Commas are placed automatically: call `key` before
/// each member value of an object, nothing before array elements. The writer does not check that
/// calls are balanced; the codec's encoders are its only users.
///
/// Strings: `"` and `\` are escaped, control characters U+0000–U+001F become `\b \f \n \r \t` or
/// `\u00XX`, valid UTF-8 is copied as is (no `\u` escapes for non-ASCII), and each byte that is not
/// part of a valid UTF-8 sequence (stray continuation bytes, overlong forms, surrogates, code
/// points above U+10FFFF, truncated sequences) is replaced by U+FFFD. So the output is always
/// valid JSON that any strict parser accepts; bytes that must survive exactly belong in a bytes
/// field (`base64`).
///
/// ```cpp
/// json_writer w;
/// w.begin_object().key("command").begin_array().string("ls").end_array().end_object();
/// std::string body = std::move(w).take();   // {"command":["ls"]}
/// ```
class json_writer {
public:
  json_writer() noexcept = default;

  json_writer& begin_object() noexcept { return open('{'); }
  json_writer& end_object() noexcept { return close('}'); }
  json_writer& begin_array() noexcept { return open('['); }
  json_writer& end_array() noexcept { return close(']'); }

  /// The name of the next object member; `name` is escaped like any string.
  json_writer& key(std::string_view name) noexcept {
    separate();
    quoted(name);
    out_ += ':';
    need_comma_ = false;
    return *this;
  }

  json_writer& string(std::string_view s) noexcept {
    separate();
    quoted(s);
    need_comma_ = true;
    return *this;
  }

  /// A JSON string holding the padded standard base64 encoding of `bytes`. From
  /// `defer_base64_from` bytes on, the string is written empty and its place recorded instead
  /// (`deferred()`), for a sender that encodes it as it sends it.
  json_writer& base64(std::string_view bytes) noexcept {
    separate();
    if (bytes.size() >= defer_from_) {
      out_ += "\"\"";
      deferred_.push_back({out_.size() - 1, bytes});
      need_comma_ = true;
      return *this;
    }
    sandbox::detail::reserve_output(out_, out_.size() + base64_encoded_size(bytes.size()) + 2,
                                    SIZE_MAX);
    out_ += '"';
    base64_encode_into(out_, bytes);
    out_ += '"';
    need_comma_ = true;
    return *this;
  }

  /// A bytes value left out of the text: its base64 belongs at offset `at` (between the quotes).
  struct deferred_bytes {
    std::size_t at;
    std::string_view bytes; ///< the caller's, which must outlive the use of `deferred()`
  };

  /// Bytes values of at least `n` bytes are deferred (see `base64`).
  void defer_base64_from(std::size_t n) noexcept { defer_from_ = n; }
  [[nodiscard]] const std::vector<deferred_bytes>& deferred() const noexcept { return deferred_; }

  json_writer& number(std::int64_t v) noexcept { return integer(v); }
  json_writer& number(std::uint64_t v) noexcept { return integer(v); }
  json_writer& number(std::int32_t v) noexcept { return integer(v); }
  json_writer& number(std::uint32_t v) noexcept { return integer(v); }

  /// An integer as a JSON string, the proto3 JSON form of int64/uint64.
  template <class Int>
  requires std::is_same_v<Int, std::int64_t> || std::is_same_v<Int, std::uint64_t> json_writer&
  quoted_number(Int v) noexcept {
    separate();
    char buf[24];
    auto r = std::to_chars(buf, buf + sizeof buf, v);
    out_ += '"';
    out_.append(buf, r.ptr);
    out_ += '"';
    need_comma_ = true;
    return *this;
  }

  json_writer& boolean(bool v) noexcept { return literal(v ? "true" : "false"); }
  json_writer& null() noexcept { return literal("null"); }

  /// Pre-allocates for a document of about `n` bytes.
  void reserve(std::size_t n) noexcept { sandbox::detail::reserve_output(out_, n, n); }

  [[nodiscard]] const std::string& str() const& noexcept { return out_; }
  [[nodiscard]] std::string take() && noexcept { return std::move(out_); }

private:
  json_writer& open(char c) noexcept {
    separate();
    out_ += c;
    need_comma_ = false;
    return *this;
  }
  json_writer& close(char c) noexcept {
    out_ += c;
    need_comma_ = true;
    return *this;
  }
  json_writer& literal(std::string_view s) noexcept {
    separate();
    out_ += s;
    need_comma_ = true;
    return *this;
  }
  template <class Int>
  json_writer& integer(Int v) noexcept {
    separate();
    char buf[24];
    auto r = std::to_chars(buf, buf + sizeof buf, v);
    out_.append(buf, r.ptr);
    need_comma_ = true;
    return *this;
  }
  void separate() noexcept {
    if (need_comma_) out_ += ',';
  }

  void quoted(std::string_view s) noexcept {
    static constexpr char hex[] = "0123456789abcdef";
    const auto* p = reinterpret_cast<const unsigned char*>(s.data());
    const std::size_t n = s.size();
    out_.reserve(out_.size() + n + 2);
    out_ += '"';
    std::size_t run = 0; // start of the pending run of bytes copied verbatim
    std::size_t i = 0;
    auto flush = [&] { out_.append(s.data() + run, i - run); };
    while (i < n) {
      const unsigned char c = p[i];
      if (c >= 0x20 && c < 0x80 && c != '"' && c != '\\') {
        ++i;
        continue;
      }
      if (c >= 0x80) {
        if (std::size_t len = sandbox::detail::utf8_sequence(p + i, n - i)) {
          i += len;
          continue;
        }
        flush();
        out_ += "\xEF\xBF\xBD"; // U+FFFD REPLACEMENT CHARACTER
        run = ++i;
        continue;
      }
      flush();
      switch (c) {
      case '"': out_ += "\\\""; break;
      case '\\': out_ += "\\\\"; break;
      case '\b': out_ += "\\b"; break;
      case '\f': out_ += "\\f"; break;
      case '\n': out_ += "\\n"; break;
      case '\r': out_ += "\\r"; break;
      case '\t': out_ += "\\t"; break;
      default:
        out_ += "\\u00";
        out_ += hex[c >> 4];
        out_ += hex[c & 15];
      }
      run = ++i;
    }
    flush();
    out_ += '"';
  }

  std::string out_;
  std::vector<deferred_bytes> deferred_;
  std::size_t defer_from_ = SIZE_MAX;
  bool need_comma_ = false;
};

} // namespace sandbox::http
