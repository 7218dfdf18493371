// SPDX-License-Identifier: MIT
// The vocabulary in which wire.hpp describes each message once: per field its proto number, proto
// name (the JSON name is derived from it), kind, and the struct member that holds it. The JSON
// codec reads and writes every described message from these tables alone, and a binary protobuf
// codec needs nothing more: numbers and kinds give tags and wire types, the member's type says
// repeated / map / explicit presence. The tables are constexpr values (no code generation),
// checked at compile time against the members they point to.
#pragma once

#include <array>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

namespace sandbox::http::wire {

/// The proto type of a field's value (of each element of a repeated field; of each value of a
/// map, whose keys are strings). Timestamp and Duration are the well-known messages, held in the
/// form the library uses.
enum class kind : std::uint8_t {
  string,      ///< `std::string`, UTF-8 text
  bytes,       ///< `std::string`, any bytes (base64 in JSON)
  int32,       ///< `std::int32_t` (a JSON number)
  int64,       ///< `std::int64_t` (a JSON string)
  uint32,      ///< `std::uint32_t` (a JSON number)
  uint64,      ///< `std::uint64_t` (a JSON string)
  boolean,     ///< `bool`
  enumeration, ///< a described enum (by name in JSON)
  message,     ///< a described message
  timestamp,   ///< google.protobuf.Timestamp held as its RFC 3339 text, passed through as sent
  duration,    ///< google.protobuf.Duration held as `std::chrono::milliseconds`
};

/// What a binary encoding needs of a kind: the protobuf wire type of one value.
[[nodiscard]] constexpr int wire_type(kind k) noexcept {
  switch (k) {
  case kind::int32:
  case kind::int64:
  case kind::uint32:
  case kind::uint64:
  case kind::boolean:
  case kind::enumeration: return 0; // varint
  default: return 2;                // length-delimited (text, bytes, messages)
  }
}

/// protoc's rule for the JSON name of a field: each `_` is dropped and the character after it
/// upper-cased (`stdout_bytes_produced` → `stdoutBytesProduced`). `put(char)` receives the name.
/// The one spelling rule of the library: descriptors derive their JSON names with it at compile
/// time, and the server reads query parameters with it.
template <class Put>
constexpr void json_name(std::string_view proto_name, Put&& put) noexcept {
  bool upper = false;
  for (char c : proto_name) {
    if (c == '_') {
      upper = true;
      continue;
    }
    put(upper && c >= 'a' && c <= 'z' ? static_cast<char>(c - 'a' + 'A') : c);
    upper = false;
  }
}

/// The JSON name of `proto_name`, as a string.
[[nodiscard]] inline std::string json_name(std::string_view proto_name) {
  std::string out;
  json_name(proto_name, [&](char c) { out += c; });
  return out;
}

/// The primary template: a type that is not described. wire.hpp specializes it for each message
/// (`message(...)`) and enum (`enumeration(...)`).
struct not_described {};
template <class T>
inline constexpr auto descriptor = not_described{};

namespace detail {

/// Called only when a descriptor is wrong: not constexpr, so the descriptor's constant
/// initialization fails to compile there, with this call in the message.
inline void descriptor_error(const char*) noexcept {}

template <class T>
struct shape {
  using value_type = T;
  static constexpr bool optional = false, repeated = false, map = false;
};
template <class T>
struct shape<std::optional<T>> : shape<T> {
  static constexpr bool optional = true;
};
template <class T, class A>
struct shape<std::vector<T, A>> : shape<T> {
  static constexpr bool repeated = true;
};
template <class V, class C, class A>
struct shape<std::map<std::string, V, C, A>> : shape<V> {
  static constexpr bool map = true;
};

/// A JSON name kept inside its descriptor, so that it lives as long as the descriptor does.
struct name_text {
  char text[40]{};
  std::uint8_t size = 0;
};

constexpr name_text json_name_text(std::string_view proto_name) noexcept {
  name_text t;
  json_name(proto_name, [&](char c) {
    if (t.size == sizeof t.text) return descriptor_error("field name too long");
    t.text[t.size++] = c;
  });
  return t;
}

/// The fields of a message: a tuple that costs the compiler less than `std::tuple` (one base per
/// field, nothing else), since every message instantiates one.
template <std::size_t I, class Field>
struct indexed {
  Field value;
};
template <class Indexes, class... Fields>
struct field_list;
template <std::size_t... I, class... Fields>
struct field_list<std::index_sequence<I...>, Fields...> : indexed<I, Fields>... {
  constexpr explicit field_list(Fields... fields) noexcept : indexed<I, Fields>{fields}... {}
};
template <std::size_t I, class Field>
[[nodiscard]] constexpr const Field& get(const indexed<I, Field>& e) noexcept {
  return e.value;
}

} // namespace detail

template <class T>
concept described_message = std::is_class_v<T> &&
    !std::is_same_v<std::remove_cvref_t<decltype(descriptor<T>)>, not_described>;
template <class T>
concept described_enum = std::is_enum_v<T> &&
    !std::is_same_v<std::remove_cvref_t<decltype(descriptor<T>)>, not_described>;

/// Options of a field beyond its number, name and kind.
struct field_options {
  /// `google.api.field_behavior = REQUIRED` as our server enforces it: a strict decode fails when
  /// the field is absent or not set; an entry of a list of Any without it is dropped.
  bool required = false;
  /// 1-based index of the `oneof` the field belongs to (0: none). Members of a oneof are
  /// `std::optional`s. A JSON decode fails when two of them are given; on the binary wire the
  /// last one given wins, as protobuf has it.
  std::uint8_t oneof = 0;
};
inline constexpr field_options required{true, 0};
[[nodiscard]] constexpr field_options in_oneof(std::uint8_t index) noexcept {
  return {false, index};
}

/// One field of `Message`, held in `Member`. The member's type gives the cardinality:
/// `std::optional<T>` has explicit presence (set when it holds a value, 0 included),
/// `std::vector<T>` is repeated (packed on the binary wire when the kind is numeric),
/// `std::map<std::string, T>` is a map (entries `{string key = 1; <kind> value = 2}`), anything
/// else is singular.
///
/// Presence (what is written; what `required` asks for), as `is_set` tells:
/// an optional holding a value; a Duration always (it has no unset form); a message held by value
/// that differs from its default; any other value that is not its proto3 default (empty text,
/// list or map, 0, false, the enum's 0 value).
template <class Message, class Member>
struct field {
  using message_type = Message;
  using member_type = Member;
  using value_type = typename detail::shape<Member>::value_type;
  static constexpr bool explicit_presence = detail::shape<Member>::optional;
  static constexpr bool repeated = detail::shape<Member>::repeated;
  static constexpr bool map = detail::shape<Member>::map;

  std::uint32_t number;
  std::string_view name; ///< the proto name, snake_case
  kind type;
  Member Message::*member;
  field_options options;
  detail::name_text json;

  constexpr field(std::uint32_t number_, std::string_view name_, kind type_,
                  Member Message::*member_, field_options options_ = {}) noexcept
      : number(number_), name(name_), type(type_), member(member_), options(options_),
        json(detail::json_name_text(name_)) {
    if (number == 0 || number >= (1u << 29)) detail::descriptor_error("field number out of range");
    if (!fits(type)) detail::descriptor_error("the kind does not match the member's type");
    if (options.oneof && !explicit_presence)
      detail::descriptor_error("a member of a oneof must be a std::optional");
    if (explicit_presence && (repeated || map)) detail::descriptor_error("optional list");
  }

  /// The lowerCamelCase name proto3 JSON writes. The view points into this descriptor.
  [[nodiscard]] constexpr std::string_view json_name() const noexcept {
    return {json.text, json.size};
  }
  /// Repeated numeric values travel packed on the binary wire (the proto3 default).
  [[nodiscard]] constexpr bool packed() const noexcept { return repeated && wire_type(type) == 0; }

private:
  static constexpr bool fits(kind k) noexcept {
    using T = value_type;
    switch (k) {
    case kind::string:
    case kind::bytes:
    case kind::timestamp: return std::is_same_v<T, std::string>;
    case kind::int32: return std::is_same_v<T, std::int32_t>;
    case kind::int64: return std::is_same_v<T, std::int64_t>;
    case kind::uint32: return std::is_same_v<T, std::uint32_t>;
    case kind::uint64: return std::is_same_v<T, std::uint64_t>;
    case kind::boolean: return std::is_same_v<T, bool>;
    case kind::enumeration: return described_enum<T>;
    case kind::message: return described_message<T>;
    case kind::duration: return std::is_same_v<T, std::chrono::milliseconds>;
    }
    return false;
  }
};

/// A `repeated google.protobuf.Any` field whose known message types are kept in optional members,
/// the first of each type; entries of other types are skipped. In JSON an entry is the message's
/// object with `"@type": "type.googleapis.com/<full name>"` among its members; on the binary wire
/// it is `Any { type_url = 1, value = 2 }`.
template <class Message, class... Types>
struct any_field {
  using message_type = Message;

  std::uint32_t number;
  std::string_view name;
  std::tuple<std::optional<Types> Message::*...> members;
  detail::name_text json;

  constexpr any_field(std::uint32_t number_, std::string_view name_,
                      std::optional<Types> Message::*... members_) noexcept
      : number(number_), name(name_), members(members_...), json(detail::json_name_text(name_)) {
    static_assert((described_message<Types> && ...));
  }
  [[nodiscard]] constexpr std::string_view json_name() const noexcept {
    return {json.text, json.size};
  }
};

template <class T>
inline constexpr bool is_any_field = false;
template <class Message, class... Types>
inline constexpr bool is_any_field<any_field<Message, Types...>> = true;

/// The description of a message: its full proto name and its fields, in the order JSON writes them.
template <class... Fields>
struct message {
  std::string_view full_name;
  detail::field_list<std::index_sequence_for<Fields...>, Fields...> fields;
  static constexpr std::size_t size = sizeof...(Fields);

  constexpr message(std::string_view full_name_, Fields... fields_) noexcept
      : full_name(full_name_), fields(fields_...) {
    static_assert(sizeof...(Fields) <= 64, "a message of more than 64 fields");
    std::uint32_t numbers[sizeof...(Fields) + 1] = {fields_.number...};
    std::string_view names[sizeof...(Fields) + 1] = {fields_.name...};
    for (std::size_t i = 0; i < sizeof...(Fields); ++i)
      for (std::size_t j = 0; j < i; ++j)
        if (numbers[i] == numbers[j] || names[i] == names[j])
          detail::descriptor_error("two fields with one number or name");
  }
};

/// The description of an enum whose values are 0 … N-1: its full proto name and value names.
template <std::size_t N>
struct enumeration {
  std::string_view full_name;
  std::string_view names[N];

  template <class... Names>
  constexpr enumeration(std::string_view full_name_, Names... names_) noexcept
      : full_name(full_name_), names{std::string_view(names_)...} {}
};
template <class... Names>
enumeration(std::string_view, Names...) -> enumeration<sizeof...(Names)>;

/// The proto name of `e` (`"STATE_RUNNING"`), or an empty view for a number without one.
template <described_enum E>
[[nodiscard]] constexpr std::string_view to_string(E e) noexcept {
  const auto& names = descriptor<E>.names;
  const auto i = static_cast<std::int64_t>(e);
  return i >= 0 && i < static_cast<std::int64_t>(std::size(names)) ? names[i] : std::string_view{};
}

/// The value named `name`; an unknown name is the 0 value (the proto3 JSON rule).
template <described_enum E>
[[nodiscard]] constexpr E enum_from_name(std::string_view name) noexcept {
  const auto& names = descriptor<E>.names;
  for (std::size_t i = 0; i < std::size(names); ++i)
    if (names[i] == name) return static_cast<E>(i);
  return E{};
}

/// What the codecs do with a proto field the library does not model. They know its number and
/// name (so a strict decode does not call it unknown) and check that its value is well-formed.
enum class unmodelled_use : std::uint8_t {
  /// Read and dropped: an output-only field a request may echo, or one the client never needs.
  ignored,
  /// A capability our server does not offer: a strict decode of a value other than the proto3
  /// default (`null`, `""`, `0`, `false`, `[]`, `{}`, or nothing on the binary wire) fails with
  /// errc::unsupported naming the field path; a lenient decode drops it.
  unsupported,
};

/// A field of a message that has no member (see `unmodelled`).
struct unmodelled_field {
  std::uint32_t number;
  std::string_view name; ///< the proto name, snake_case
  unmodelled_use use;
  detail::name_text json;

  constexpr unmodelled_field(std::uint32_t number_, std::string_view name_,
                             unmodelled_use use_) noexcept
      : number(number_), name(name_), use(use_), json(detail::json_name_text(name_)) {}
  [[nodiscard]] constexpr std::string_view json_name() const noexcept {
    return {json.text, json.size};
  }
};
[[nodiscard]] constexpr unmodelled_field ignored(std::uint32_t number,
                                                 std::string_view name) noexcept {
  return {number, name, unmodelled_use::ignored};
}
[[nodiscard]] constexpr unmodelled_field unsupported(std::uint32_t number,
                                                     std::string_view name) noexcept {
  return {number, name, unmodelled_use::unsupported};
}

/// The fields of message `M` that the proto has and `descriptor<M>` does not (wire.hpp
/// specializes it as a `std::array` of `ignored(…)` / `unsupported(…)` entries), so that every
/// field of the published messages parses.
template <class M>
inline constexpr auto unmodelled = std::array<unmodelled_field, 0>{};

/// The entry of `unmodelled<M>` that `pred` picks, or null.
template <class M, class Pred>
[[nodiscard]] constexpr const unmodelled_field* find_unmodelled(Pred&& pred) noexcept {
  for (const auto& u : unmodelled<M>)
    if (pred(u)) return &u;
  return nullptr;
}

/// Whether field `f` of `m` is set (see `field`); what the encoders write and `required` checks.
template <class Message, class Member>
[[nodiscard]] constexpr bool is_set(const field<Message, Member>& f, const Message& m) noexcept {
  const Member& v = m.*f.member;
  using F = field<Message, Member>;
  if constexpr (F::explicit_presence)
    return v.has_value();
  else if constexpr (F::repeated || F::map || std::is_same_v<Member, std::string>)
    return !v.empty();
  else if constexpr (std::is_same_v<Member, std::chrono::milliseconds>)
    return true;
  else
    return v != Member{};
}

template <class Message, class... Types>
[[nodiscard]] constexpr bool is_set(const any_field<Message, Types...>& f,
                                    const Message& m) noexcept {
  return std::apply([&](auto... member) { return ((m.*member).has_value() || ...); }, f.members);
}

/// The number of fields of `M`, and its `I`th field (a reference usable in constant expressions,
/// so that code can branch on the field's kind with `if constexpr`).
template <described_message M>
inline constexpr std::size_t field_count = descriptor<M>.size;
template <described_message M, std::size_t I>
inline constexpr const auto& field_at = detail::get<I>(descriptor<M>.fields);

/// Calls `fn.template operator()<I>()` for each field index of `M`, in order.
template <described_message M, class Fn>
constexpr void for_each_field(Fn&& fn) {
  [&]<std::size_t... I>(std::index_sequence<I...>) { (fn.template operator()<I>(), ...); }
  (std::make_index_sequence<field_count<M>>{});
}

/// True when no entry of `unmodelled<M>` repeats the number or name of a field of `M` (the codecs
/// check it where they look fields up).
template <described_message M>
[[nodiscard]] consteval bool unmodelled_apart() noexcept {
  bool apart = true;
  for (const auto& u : unmodelled<M>)
    for_each_field<M>([&]<std::size_t I>() {
      apart = apart && u.number != field_at<M, I>.number && u.name != field_at<M, I>.name;
    });
  return apart;
}

} // namespace sandbox::http::wire
