// SPDX-License-Identifier: MIT
// Error messages quote what a caller sent: bounded, valid UTF-8, without NUL bytes.
#include <sandbox/detail/text.hpp>
#include <sandbox/detail/utf8.hpp>
#include <sandbox/detail/validate.hpp>
#include <sandbox/transport/local/detail/files.hpp>

#include <catch2/catch.hpp>

#include <cerrno>
#include <string>
#include <vector>

using sandbox::detail::command_excerpt;
using sandbox::detail::quoted_excerpt;

namespace {

bool valid_text(const std::string& s) {
  return sandbox::detail::invalid_utf8_at(s) == std::string::npos &&
         s.find('\0') == std::string::npos;
}

} // namespace

TEST_CASE("an excerpt is cut between characters, never inside one", "[text]") {
  // "é" is two bytes, "€" three, "𝄞" four: every cut position lands inside some of them.
  for (std::string ch : {"\xc3\xa9", "\xe2\x82\xac", "\xf0\x9d\x84\x9e"})
    for (std::size_t max = 1; max < 12; ++max) {
      std::string s;
      for (int i = 0; i < 10; ++i)
        s += ch;
      auto q = quoted_excerpt(s, max);
      INFO(ch.size() << "-byte characters, max " << max << ": " << q);
      CHECK(valid_text(q));
      CHECK(q.find(std::to_string(s.size()) + " bytes") != std::string::npos);
    }
}

TEST_CASE("a command in a message is bounded, whatever its size", "[text]") {
  std::vector<std::string> argv{"echo"};
  for (int i = 0; i < 2000; ++i)
    argv.push_back("argument-" + std::to_string(i) + "-\xc3\xa9\xc3\xa9");
  auto m = command_excerpt(argv);
  CHECK(m.size() < 400);
  CHECK(valid_text(m));
  CHECK(m.find("2001 arguments") != std::string::npos);
  std::size_t bytes = 0;
  for (const auto& a : argv)
    bytes += a.size();
  CHECK(m.find("2001 arguments, " + std::to_string(bytes) + " bytes") != std::string::npos);
  CHECK(command_excerpt({{"ls", "-l"}}) == "ls -l");
  std::vector<std::string> nul{"printf", std::string("a\0b", 3)};
  CHECK(command_excerpt(nul) == "printf 'a<NUL>b'");
}

TEST_CASE("bad exec input is refused with a bounded message that names what was wrong", "[text]") {
  const std::vector<std::string> huge(1000, std::string(100, 'x'));
  sandbox::ExecOptions o;
  o.cwd = std::string("/tmp\0/etc", 9);
  auto r = sandbox::detail::validate_exec(huge, o);
  REQUIRE(!r);
  CHECK(r.error().is(sandbox::errc::validation));
  CHECK(r.error().message.find("cwd") != std::string::npos);
  CHECK(r.error().message.find("NUL") != std::string::npos);
  CHECK(r.error().message.size() < 600);
  CHECK(valid_text(r.error().message));

  sandbox::ExecOptions e;
  e.env.emplace("GOOD", std::string("x\0LD_PRELOAD=/evil.so", 21));
  auto v = sandbox::detail::validate_exec(std::vector<std::string>{"true"}, e);
  REQUIRE(!v);
  CHECK(v.error().message.find("value of environment variable GOOD") != std::string::npos);
  CHECK(valid_text(v.error().message));

  sandbox::ExecOptions k;
  k.env.emplace(std::string(100000, 'K') + "\xc3\xa9", "v");
  auto w = sandbox::detail::validate_exec(std::vector<std::string>{"true"}, k);
  CHECK(w); // a long name is a name
  sandbox::ExecOptions n;
  n.env.emplace(std::string(100000, 'K') + "=", "v");
  auto x = sandbox::detail::validate_exec(std::vector<std::string>{"true"}, n);
  REQUIRE(!x);
  CHECK(x.error().message.size() < 400);
}

TEST_CASE("a file path refused for its form is quoted bounded, as valid UTF-8", "[text]") {
  namespace files = sandbox::local::detail::files;
  std::string name;
  for (int i = 0; i < 200; ++i)
    name += "\xc3\xa9"; // 400 bytes: over NAME_MAX
  auto r = files::validate_path("/" + name);
  REQUIRE(!r);
  CHECK(r.error().message.find("NAME_MAX") != std::string::npos);
  CHECK(valid_text(r.error().message));
  CHECK(r.error().message.size() < 400);
  auto n = files::validate_path(std::string("/etc\0/passwd", 12));
  REQUIRE(!n);
  CHECK(valid_text(n.error().message));
  auto rel = files::validate_path(name);
  REQUIRE(!rel);
  CHECK(valid_text(rel.error().message));
}

TEST_CASE("bad sandbox options are refused with bounded messages, a NUL byte included", "[text]") {
  sandbox::SandboxOptions wd;
  wd.working_dir = std::string("/tmp\0/does/not/exist", 21); // was cut short at the NUL
  auto r = sandbox::detail::validate_options(wd);
  REQUIRE(!r);
  CHECK(r.error().is(sandbox::errc::validation));
  CHECK(r.error().message.find("working_dir") != std::string::npos);
  CHECK(valid_text(r.error().message));

  sandbox::SandboxOptions rel;
  rel.working_dir = std::string(1 << 20, 'r'); // relative, 1 MiB
  auto q = sandbox::detail::validate_options(rel);
  REQUIRE(!q);
  CHECK(q.error().message.size() < 600);

  sandbox::SandboxOptions mf;
  mf.mounted_files.push_back({std::string("/a\0b", 4), "x"});
  auto m = sandbox::detail::validate_options(mf);
  REQUIRE(!m);
  CHECK(valid_text(m.error().message));
  sandbox::SandboxOptions big;
  big.mounted_files.push_back({std::string(1 << 20, 'p'), "x"});
  auto b = sandbox::detail::validate_options(big);
  REQUIRE(!b);
  CHECK(b.error().message.size() < 600);
}

TEST_CASE("an image path with a NUL byte is refused by name, bounded", "[text]") {
  sandbox::SandboxOptions o;
  o.image = std::string("/images/ok\0../../etc", 20) + std::string(1 << 16, 'x');
  auto r = sandbox::detail::validate_options(o);
  REQUIRE(!r);
  CHECK(r.error().is(sandbox::errc::validation));
  CHECK(r.error().message.find("image") != std::string::npos);
  CHECK(r.error().message.find("<NUL>") != std::string::npos);
  CHECK(r.error().message.size() < 600);
  CHECK(valid_text(r.error().message));
}

TEST_CASE("paths are normalised as the kernel resolves them without symlinks", "[text]") {
  using sandbox::detail::normal_path;
  CHECK(normal_path("/etc/x") == "/etc/x");
  CHECK(normal_path("//etc///x") == "/etc/x");
  CHECK(normal_path("/etc/./x/.") == "/etc/x");
  CHECK(normal_path("/tmp/../etc/x") == "/etc/x");
  CHECK(normal_path("/../../etc/x") == "/etc/x");
  CHECK(normal_path("/a/b/../../..") == "/");
  CHECK(normal_path("/") == "/");
  CHECK(normal_path("/..a/.b") == "/..a/.b");
}

TEST_CASE("mounted files: one entry per file, and paths the kernel can take", "[text]") {
  auto refused = [](std::vector<sandbox::MountedFile> files) {
    sandbox::SandboxOptions o;
    o.mounted_files = std::move(files);
    auto r = sandbox::detail::validate_options(o);
    return r ? std::string() : r.error().message;
  };
  CHECK(refused({{"/etc/a", "1"}, {"/etc/b", "2"}}).empty());
  for (const char* twin : {"/etc/a", "/etc//a", "/etc/./a", "//etc/a"}) {
    INFO(twin);
    auto m = refused({{"/etc/a", "1"}, {twin, "2"}});
    CHECK(m.find("already places") != std::string::npos);
  }
  // ".." is refused: where it leads depends on symlinks (/bin/../etc is /usr/etc on a merged
  // /usr), so neither duplicates nor the library's own files could be told apart.
  for (const char* up : {"/bin/../etc/x", "/a/../../b", "/a/b/.."}) {
    INFO(up);
    CHECK(refused({{up, "1"}}).find("'..'") != std::string::npos);
  }
  CHECK(refused({{"/a/..", "1"}}).find("absolute file path") != std::string::npos); // the root
  CHECK(refused({{"/a/..b", "1"}, {"/a/b..", "2"}, {"/x", "3"}}).empty()); // short ones too
  // The longest path and name the kernel takes are accepted; one byte more is refused.
  std::string name(255, 'n');
  CHECK(refused({{"/d/" + name, "x"}}).empty());
  CHECK(refused({{"/d/" + name + "n", "x"}}).find("longer than 255") != std::string::npos);
  std::string path;
  while (path.size() < 4095 - 100)
    path += "/" + std::string(99, 'p');
  path += "/" + std::string(4095 - path.size() - 1, 'q');
  REQUIRE(path.size() == 4095);
  CHECK(refused({{path, "x"}}).empty());
  auto too_long = refused({{path + "q", "x"}});
  CHECK(too_long.find("longer than 4095") != std::string::npos);
  CHECK(too_long.size() < 600);

  sandbox::SandboxOptions wd;
  wd.working_dir = "/w/" + std::string(256, 'w');
  auto w = sandbox::detail::validate_options(wd);
  REQUIRE(!w);
  CHECK(w.error().message.find("working_dir") != std::string::npos);
}

TEST_CASE("bytes that are not UTF-8 are shown as escapes in a message", "[text]") {
  CHECK(quoted_excerpt("/images/\xff\xc3x") == "'/images/\\xff\\xc3x'");
  CHECK(quoted_excerpt("caf\xc3\xa9") == "'caf\xc3\xa9'"); // valid UTF-8 stays as it is
  std::string nasty = std::string("a\0b\xfe", 4) + std::string(300, '\x80');
  auto q = quoted_excerpt(nasty, 256);
  CHECK(valid_text(q));
  CHECK(q.find("<NUL>") != std::string::npos);
  CHECK(q.find("\\xfe") != std::string::npos);
  CHECK(valid_text(command_excerpt(std::vector<std::string>{"\xff", std::string(1000, '\xc3')})));
}

TEST_CASE("a file error names the path as valid UTF-8, bounded", "[text]") {
  namespace files = sandbox::local::detail::files;
  std::string path = "/tmp/\xff" + std::string(3000, 'a');
  auto e = files::from_errno({"sbx-1", path, {}}, ENOENT);
  CHECK(valid_text(e.message));
  CHECK(e.message.find("/tmp/\\xff") != std::string::npos);
  CHECK(e.message.size() < 600);
  CHECK(e.message.find("sbx-1") != std::string::npos);
}
