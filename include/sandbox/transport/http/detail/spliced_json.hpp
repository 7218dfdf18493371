// SPDX-License-Identifier: MIT
// Large base64 values (command output, file contents) kept out of a JSON body's text, both ways:
// a sender encodes them piece by piece as the body is written, a receiver decodes them as the
// body arrives. A 256 MiB output then costs a 1 MiB buffer, not a 341 MiB string of fresh
// memory and a pass over it, at either end. A large decoded value's room is faulted in ahead of
// the decoding by a thread of its own (prefault.hpp), as a kept output's is, and a piece is
// encoded into room already there: with both (and a prefaulter that decides most appends without
// a lock or a system call), REST's 256 MiB output came at 742-958 MB/s against 586-772 before,
// and at 614-779 without the faulting ahead.
#pragma once

#include <sandbox/detail/output_buffer.hpp>
#include <sandbox/detail/prefault.hpp>
#include <sandbox/result.hpp>
#include <sandbox/transport/http/base64.hpp>
#include <sandbox/transport/http/detail/proto_json.hpp>
#include <sandbox/transport/http/json_writer.hpp>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace sandbox::http::detail::json {

/// The JSON text of a message whose bytes values of `from` bytes or more are left out of the
/// text and encoded on demand by `piece`. It refers to the message's bytes: the message must
/// outlive it and stay unchanged.
class spliced_json {
public:
  /// Bytes values from this size on are encoded as they are sent.
  static constexpr std::size_t default_from = std::size_t{64} << 10;

  template <wire::described_message M>
  [[nodiscard]] static spliced_json of(const M& m, std::size_t from = default_from) noexcept {
    json_writer w;
    w.defer_base64_from(from);
    spliced_json s;
    write(w, m);
    s.holes_ = w.deferred();
    s.text_ = std::move(w).take();
    s.size_ = s.text_.size();
    for (const auto& h : s.holes_)
      s.size_ += base64_encoded_size(h.bytes.size());
    return s;
  }

  /// Length of the whole document.
  [[nodiscard]] std::size_t size() const noexcept { return size_; }

  /// True when nothing was left out: `take_text()` is the whole document.
  [[nodiscard]] bool whole() const noexcept { return holes_.empty(); }
  [[nodiscard]] std::string take_text() && noexcept { return std::move(text_); }

  /// The document's text from `offset` on: at least one byte (none past the end), at most about
  /// 1 MiB, and not much more than `most` (what a range asks for: no more is encoded). Valid until
  /// the next call. Any offset may be asked for (a range, a restart).
  [[nodiscard]] std::string_view piece(std::size_t offset, std::size_t most = SIZE_MAX) noexcept {
    if (offset >= size_) return {};
    std::size_t text_at = 0; // where in text_ the current segment starts
    for (const auto& h : holes_) {
      // The text before this hole.
      if (offset < h.at - text_at)
        return std::string_view(text_).substr(text_at + offset, h.at - text_at - offset);
      offset -= h.at - text_at;
      text_at = h.at;
      // The hole: whole groups of 3 bytes encode to 4 characters, so any offset maps to a group.
      const std::size_t encoded = base64_encoded_size(h.bytes.size());
      if (offset < encoded) {
        const std::size_t group = offset / 4;
        const std::size_t from = group * 3;
        const std::size_t groups = std::min(most, chunk_bytes) / 3 + 1; // covers offset % 4 + most
        const std::size_t n = std::min(h.bytes.size() - from, std::min(groups * 3, chunk_bytes));
        // Grown, never shrunk: resizing it for each piece would first fill it with zeros.
        const std::size_t chars = base64_encoded_size(n);
        if (scratch_.size() < chars) scratch_.resize(chars);
        base64_encode_to(scratch_.data(), h.bytes.substr(from, n));
        return std::string_view(scratch_.data(), chars).substr(offset % 4);
      }
      offset -= encoded;
    }
    return std::string_view(text_).substr(text_at + offset);
  }

private:
  static constexpr std::size_t chunk_bytes = std::size_t{768} << 10; // 1 MiB of base64

  std::string text_;
  std::vector<json_writer::deferred_bytes> holes_;
  std::size_t size_ = 0;
  std::string scratch_;
};

/// Whether field `I` of `M` is one a `json_splicer` can take: a singular bytes field.
template <wire::described_message M, std::size_t I>
[[nodiscard]] consteval bool spliceable() {
  constexpr auto& f = wire::field_at<M, I>;
  using F = std::remove_cvref_t<decltype(f)>;
  if constexpr (wire::is_any_field<F>)
    return false;
  else
    return f.type == wire::kind::bytes && !F::repeated && !F::map && !F::explicit_presence;
}

/// The JSON names of the fields of `M` a `json_splicer` can take out of its body.
template <wire::described_message M>
[[nodiscard]] std::vector<std::string_view> spliceable_fields() {
  std::vector<std::string_view> names;
  wire::for_each_field<M>([&]<std::size_t I>() {
    if constexpr (spliceable<M, I>()) names.push_back(wire::field_at<M, I>.json_name());
  });
  return names;
}

/// Puts into `m` the values a `json_splicer` for `spliceable_fields<M>()` took. A value it did
/// not take, or that decoded to nothing, leaves what the codec read.
template <wire::described_message M>
void put_spliced(M& m, std::vector<std::string>& values) noexcept {
  std::size_t i = 0;
  wire::for_each_field<M>([&]<std::size_t I>() {
    if constexpr (spliceable<M, I>()) {
      if (i < values.size() && !values[i].empty())
        m.*wire::field_at<M, I>.member = std::move(values[i]);
      ++i;
    }
  });
}

/// Takes the values of named members of a JSON object out of its text as the text arrives: each
/// such value that is a string is decoded from base64 into its own buffer and left in the text
/// as `""`, which is what a codec then reads. Only members of the top-level object are taken;
/// everything else (nested objects, a value that is not a string, a key written with escapes)
/// stays in the text as it came, so the codec sees and judges it. A member that appears again
/// starts its value afresh (the last one counts, as in the codec).
class json_splicer {
public:
  /// `names[i]`'s value goes to `values()[i]`.
  explicit json_splicer(std::vector<std::string_view> names)
      : names_(std::move(names)), values_(names_.size()) {}
  // Neither moved nor copied: a thread may be faulting in one of its values' buffers.
  json_splicer(json_splicer&&) = delete;
  json_splicer& operator=(json_splicer&&) = delete;

  /// The whole body's length, when known: a decoded value then reserves its room at once.
  void expect(std::uint64_t total) noexcept { total_ = total; }

  /// The next part of the body.
  /// **Errors:** errc::protocol: a taken value that is not base64 (named, with its offset).
  [[nodiscard]] result<void> feed(std::string_view chunk) noexcept {
    const char* p = chunk.data();
    const char* end = p + chunk.size();
    while (p < end) {
      if (taking_ >= 0) {
        SANDBOX_TRY(n, take(p, end));
        p += n;
        continue;
      }
      lex(*p++);
    }
    fed_ += chunk.size();
    return success();
  }

  /// The text, with the taken values left as `""`.
  [[nodiscard]] std::string& text() noexcept { return text_; }
  /// The decoded values, by name (empty where the name did not appear). The room of a value
  /// still being taken (a body cut short or refused) may be faulted in until this splicer goes:
  /// it must not outlive that value's buffer.
  [[nodiscard]] std::vector<std::string>& values() noexcept { return values_; }

private:
  // ---- the text outside taken values: just enough JSON to know where a top-level member's
  // string value starts ----
  void lex(char c) {
    text_ += c;
    if (in_string_) {
      if (escaped_)
        escaped_ = false;
      else if (c == '\\')
        escaped_ = true;
      else if (c == '"') {
        in_string_ = false;
        if (in_key_) in_key_ = false, after_key_ = true;
        return;
      }
      if (in_key_ && key_.size() < 400) key_ += c; // as written: escapes are undone by slot_of
      return;
    }
    if (c == ' ' || c == '\t' || c == '\n' || c == '\r') return;
    // The first character of a top-level member's value.
    if (value_slot_ != none) {
      const int slot = value_slot_;
      value_slot_ = none;
      values_[static_cast<std::size_t>(slot)].clear(); // the last one counts
      if (c == '"') return start_taking(slot);
    }
    switch (c) {
    case '"':
      in_string_ = true;
      in_key_ = depth_ == 1 && expect_key_;
      if (in_key_) key_.clear(), expect_key_ = false;
      break;
    case '{':
    case '[':
      if (++depth_ == 1) expect_key_ = c == '{';
      break;
    case '}':
    case ']': --depth_; break;
    case ',':
      if (depth_ == 1) expect_key_ = true;
      break;
    case ':':
      if (depth_ == 1 && after_key_) value_slot_ = slot_of(key_);
      break;
    default: break;
    }
    if (c != '"') after_key_ = false;
  }

  /// The slot of the member named by `raw` (a key as written, escapes and all), or none. The
  /// codec undoes escapes in keys, so a name written with them is the same name.
  [[nodiscard]] int slot_of(std::string_view raw) const noexcept {
    char key[64];
    std::size_t n = 0;
    for (std::size_t i = 0; i < raw.size(); ++i) {
      if (n == sizeof key) return none; // longer than any name
      if (raw[i] != '\\') {
        key[n++] = raw[i];
        continue;
      }
      const std::size_t len = i + 1 < raw.size() && raw[i + 1] == 'u' ? 6 : 2;
      const int c = escaped(raw.substr(i, len));
      if (c < 0 || c >= 0x80) return none; // names are ASCII
      key[n++] = static_cast<char>(c);
      i += len - 1;
    }
    for (std::size_t i = 0; i < names_.size(); ++i)
      if (names_[i] == std::string_view(key, n)) return static_cast<int>(i);
    return none;
  }

  /// The character a JSON escape (`\n`, `\u0041`, ...) stands for: 0x80 for one beyond ASCII
  /// (no base64 character or member name is), -1 for an escape JSON does not have.
  [[nodiscard]] static int escaped(std::string_view e) noexcept {
    if (e.size() < 2) return -1;
    switch (e[1]) {
    case '"':
    case '\\':
    case '/': return e[1];
    case 'b': return '\b';
    case 'f': return '\f';
    case 'n': return '\n';
    case 'r': return '\r';
    case 't': return '\t';
    case 'u': {
      if (e.size() != 6) return -1;
      unsigned code = 0;
      for (std::size_t i = 2; i < 6; ++i) {
        const char h = e[i];
        const int d = h >= '0' && h <= '9'   ? h - '0'
                      : h >= 'a' && h <= 'f' ? h - 'a' + 10
                      : h >= 'A' && h <= 'F' ? h - 'A' + 10
                                             : -1;
        if (d < 0) return -1;
        code = code * 16 + static_cast<unsigned>(d);
      }
      return code < 0x80 ? static_cast<int>(code) : 0x80;
    }
    default: return -1;
    }
  }

  // ---- a taken value ----
  void start_taking(int slot) {
    taking_ = slot;
    pending_.clear();
    escape_.clear();
    decoded_ = 0;
    auto& out = values_[static_cast<std::size_t>(slot)];
    // At most 3/4 of the rest of the body; untouched room costs no memory.
    if (total_ > fed_) {
      // Bounded: a body may claim more than it sends; beyond this the buffer grows as it fills.
      const std::uint64_t most = sandbox::detail::room_for_claimed((total_ - fed_) / 4 * 3 + 3);
      sandbox::detail::reserve_output(out, static_cast<std::size_t>(most), most);
    }
  }

  /// Decodes what of [p, end) belongs to the value being taken; returns how much it used.
  [[nodiscard]] result<std::size_t> take(const char* p, const char* end) noexcept {
    const char* begin = p;
    if (!escape_.empty()) { // an escape split between chunks
      while (p < end && !escape_done())
        escape_ += *p++;
      if (!escape_done()) return static_cast<std::size_t>(p - begin);
      SANDBOX_TRYV(unescape());
    }
    const auto n = static_cast<std::size_t>(end - p);
    const char* quote = static_cast<const char*>(std::memchr(p, '"', n));
    const char* stop = quote ? quote : end;
    const char* slash =
        static_cast<const char*>(std::memchr(p, '\\', static_cast<std::size_t>(stop - p)));
    if (slash) {
      SANDBOX_TRYV(add({p, static_cast<std::size_t>(slash - p)}));
      escape_ = "\\";
      return static_cast<std::size_t>(slash + 1 - begin);
    }
    SANDBOX_TRYV(add({p, static_cast<std::size_t>(stop - p)}));
    if (!quote) return static_cast<std::size_t>(end - begin);
    SANDBOX_TRYV(finish_value());
    text_ += '"';
    return static_cast<std::size_t>(quote + 1 - begin);
  }

  [[nodiscard]] bool escape_done() const noexcept {
    return escape_.size() >= 2 && (escape_[1] != 'u' || escape_.size() == 6);
  }

  /// A complete JSON escape in a taken value: its character, decoded like any other.
  [[nodiscard]] result<void> unescape() noexcept {
    const int c = escaped(escape_);
    if (c < 0) {
      ahead_.finish(values_[static_cast<std::size_t>(taking_)]); // as a refused decode does
      return fail(bad("invalid escape in the JSON string"));
    }
    escape_.clear();
    const char ch = static_cast<char>(c); // 0x80 (not ASCII) is not base64: the decoder says so
    return add({&ch, 1});
  }

  /// Decodes all but the last group of four (it may be the padded end) of what is pending.
  [[nodiscard]] result<void> add(std::string_view run) noexcept {
    if (run.empty()) return success();
    if (pending_.size() + run.size() <= 4) {
      pending_.append(run);
      return success();
    }
    if (!pending_.empty()) { // complete its group of four, which is then not the last
      const std::size_t need = 4 - pending_.size();
      pending_.append(run.substr(0, need));
      run.remove_prefix(need);
      SANDBOX_TRYV(decode(pending_, false));
      pending_.clear();
      if (run.size() <= 4) {
        pending_.append(run);
        return success();
      }
    }
    const std::size_t keep = run.size() % 4 == 0 ? 4 : run.size() % 4;
    SANDBOX_TRYV(decode(run.substr(0, run.size() - keep), false));
    pending_.append(run.substr(run.size() - keep));
    return success();
  }

  [[nodiscard]] result<void> finish_value() noexcept {
    SANDBOX_TRYV(decode(pending_, true));
    taking_ = none;
    return success();
  }

  [[nodiscard]] result<void> decode(std::string_view text, bool last) noexcept {
    auto& out = values_[static_cast<std::size_t>(taking_)];
    ahead_.before_append(out, base64_decoded_size_at_most(text.size()));
    // Not the last part: padding there is a misplaced '=', reported in order with other bytes.
    auto r = base64_decode_into(out, text, decoded_, last);
    if (last || !r)
      ahead_.finish(out);
    else
      ahead_.ahead_of(out);
    if (!r) return fail(bad(r.error().message));
    decoded_ += text.size();
    return success();
  }

  [[nodiscard]] error bad(std::string what) const {
    return error(errc::protocol,
                 std::string(names_[static_cast<std::size_t>(taking_)]) + ": " + std::move(what));
  }

  static constexpr int none = -1;
  std::vector<std::string_view> names_;
  std::vector<std::string> values_;
  std::string text_;
  std::uint64_t total_ = 0, fed_ = 0;
  // The lexer.
  std::int64_t depth_ = 0; // a body may hold more brackets than an int counts
  bool in_string_ = false, escaped_ = false;
  bool expect_key_ = false, in_key_ = false, after_key_ = false;
  std::string key_;
  int value_slot_ = none;
  // The value being taken.
  int taking_ = none;
  std::string pending_; // base64 not yet decoded: at most the last group of four
  std::string escape_;  // an escape not yet complete
  std::size_t decoded_ = 0;
  /// Faults in the room of the value being taken ahead of its decoding (it follows values_).
  sandbox::detail::prefaulter ahead_;
};

} // namespace sandbox::http::detail::json
