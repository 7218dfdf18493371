// SPDX-License-Identifier: MIT
// SHA-256 of blobs as they stream, by OpenSSL's libcrypto (the one TLS already links).
#pragma once

#include <cstddef>
#include <memory>
#include <string>
#include <string_view>

#include <openssl/evp.h>

namespace sandbox::image::detail {

class sha256 {
public:
  sha256() noexcept : ctx_(EVP_MD_CTX_new()) {
    if (ctx_ && EVP_DigestInit_ex(ctx_.get(), EVP_sha256(), nullptr) != 1) ctx_.reset();
  }
  /// False when libcrypto could not set up (out of memory): every digest is then "".
  [[nodiscard]] bool valid() const noexcept { return ctx_ != nullptr; }
  void update(const void* data, std::size_t n) noexcept {
    if (ctx_ && n && EVP_DigestUpdate(ctx_.get(), data, n) != 1) ctx_.reset();
  }
  void update(std::string_view s) noexcept { update(s.data(), s.size()); }
  /// `sha256:<64 lower-case hex>`; the hash cannot be fed after this.
  [[nodiscard]] std::string digest() noexcept {
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int len = 0;
    if (!ctx_ || EVP_DigestFinal_ex(ctx_.get(), md, &len) != 1 || len != 32) return {};
    ctx_.reset();
    static constexpr char hex[] = "0123456789abcdef";
    std::string out = "sha256:";
    for (unsigned i = 0; i < len; ++i) {
      out += hex[md[i] >> 4];
      out += hex[md[i] & 15];
    }
    return out;
  }

  [[nodiscard]] static std::string of(std::string_view s) noexcept {
    sha256 h;
    h.update(s);
    return h.digest();
  }

private:
  struct free_ctx {
    void operator()(EVP_MD_CTX* c) const noexcept { EVP_MD_CTX_free(c); }
  };
  std::unique_ptr<EVP_MD_CTX, free_ctx> ctx_;
};

} // namespace sandbox::image::detail
