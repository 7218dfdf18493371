// SPDX-License-Identifier: MIT
// The setup a client hands its launcher: flattened, then pointed into wherever it lands.
#include <sandbox/transport/local/detail/launcher.hpp>

#include <catch2/catch.hpp>

#include <algorithm>
#include <cstring>
#include <string>
#include <vector>

namespace {

using sandbox::local::detail::mounted_file_spec;
using sandbox::local::detail::pack_setup;
using sandbox::local::detail::supervisor_setup;
namespace sv = sandbox::local::detail::sv;

/// What the client writes to the memfd: the head, then each file's bytes.
std::string flatten(const supervisor_setup& s) {
  auto p = pack_setup(s);
  std::string all = p.head;
  for (std::size_t i = 0; i < s.nfiles; ++i)
    if (s.files[i].data && s.files[i].size) all.append(s.files[i].data, s.files[i].size);
  CHECK(all.size() == p.size);
  return all;
}

} // namespace

TEST_CASE("a packed setup unpacks to the same strings and files", "[unit][launcher]") {
  const std::string binary("a\0b\xff", 4), big(70000, 'x');
  const std::vector<mounted_file_spec> files = {{"/etc/one", "1\n", 2, false},
                                                {"/empty", "", 0, false},
                                                {"/bin/data", binary.data(), binary.size(), true},
                                                {"/big", big.data(), big.size(), false},
                                                {"/last-empty", nullptr, 0, false}};
  supervisor_setup s;
  s.hostname = "sbx-1";
  s.staging = "/tmp";
  s.overlay_opts = "lowerdir=/,upperdir=/tmp/u,workdir=/tmp/w";
  s.workdir = "/work dir";
  s.lower = nullptr;
  s.uid = 7;
  s.lifetime_ms = 1234;
  s.files = files.data();
  s.nfiles = files.size();
  std::string all = flatten(s);
  // Anywhere, as a mapping would be: a copy with its own address.
  std::vector<char> at(all.begin(), all.end());
  REQUIRE(sv::unpack_setup(at.data(), at.size()));
  const auto& u = *reinterpret_cast<const supervisor_setup*>(at.data());
  CHECK(std::string(u.hostname) == "sbx-1");
  CHECK(std::string(u.staging) == "/tmp");
  CHECK(std::string(u.overlay_opts) == s.overlay_opts);
  CHECK(std::string(u.workdir) == "/work dir");
  CHECK(u.lower == nullptr);
  CHECK(u.root == nullptr);
  CHECK(u.uid == 7);
  CHECK(u.lifetime_ms == 1234);
  REQUIRE(u.nfiles == files.size());
  for (std::size_t i = 0; i < files.size(); ++i) {
    INFO(files[i].path);
    CHECK(std::string(u.files[i].path) == files[i].path);
    CHECK(u.files[i].size == files[i].size);
    CHECK(u.files[i].replace_link == files[i].replace_link);
    CHECK(std::string(u.files[i].data ? u.files[i].data : "", u.files[i].size) ==
          std::string(files[i].data ? files[i].data : "", files[i].size));
    if (u.files[i].size) {
      CHECK(u.files[i].data >= at.data());
      CHECK(u.files[i].data + u.files[i].size <= at.data() + at.size());
    }
  }
}

TEST_CASE("a packed setup cut short or pointing outside is refused", "[unit][launcher]") {
  const std::string content(100, 'c');
  const mounted_file_spec file{"/f", content.data(), content.size(), false};
  supervisor_setup s;
  s.hostname = "h";
  s.files = &file;
  s.nfiles = 1;
  const std::string all = flatten(s);
  for (std::size_t cut : {std::size_t{0}, sizeof(supervisor_setup) - 1, all.size() - 1}) {
    INFO(cut);
    std::vector<char> part(all.begin(), all.begin() + static_cast<std::ptrdiff_t>(cut));
    part.resize(std::max<std::size_t>(cut, 1));
    CHECK_FALSE(sv::unpack_setup(part.data(), cut));
  }
  auto refused = [&](auto&& change) {
    std::vector<char> whole(all.begin(), all.end());
    change(*reinterpret_cast<supervisor_setup*>(whole.data()));
    return !sv::unpack_setup(whole.data(), whole.size());
  };
  CHECK(refused([](supervisor_setup& u) { u.nfiles = 1u << 20; })); // more specs than there are
  // A string whose end is not in the buffer: its last byte is the file's 'c'.
  CHECK(refused(
      [&](supervisor_setup& u) { u.hostname = reinterpret_cast<const char*>(all.size()); }));
  CHECK(refused(
      [](supervisor_setup& u) { u.files = reinterpret_cast<const mounted_file_spec*>(9); }));
  std::vector<char> whole(all.begin(), all.end());
  CHECK(sv::unpack_setup(whole.data(), whole.size())); // unchanged, it is taken
}
