// SPDX-License-Identifier: MIT
// Container images on the local transport: names parsed as Docker parses them; hostile layers
// confined; whiteouts stacking; OCI layouts (hand-made and umoci's), skopeo's docker and OCI
// archives; pulls from Debian's docker-registry on loopback (anonymous, htpasswd, a bearer token
// realm); tampered blobs; an interrupted pull resumed; concurrent pulls sharing one download;
// gc leaving what runs alone.
#include "../support/image_fixtures.hpp"
#include "../support/sandbox_helpers.hpp"
#include "../support/skip.hpp"

#include <sandbox/http.hpp>
#include <sandbox/image.hpp>
#include <sandbox/sandbox.hpp>

#include <catch2/catch.hpp>
#include <httplib.h>

#include <poll.h>

#include <atomic>
#include <map>
#include <mutex>
#include <set>
#include <thread>

using namespace test_support;
namespace img = sandbox::image;

namespace {

/// A local transport whose images live in `store`.
std::shared_ptr<sandbox::local_transport> transport_with(const std::string& store,
                                                         img::progress_callback progress = {}) {
  sandbox::local_transport::options o;
  o.images.store = store;
  o.images.on_progress = std::move(progress);
  return std::make_shared<sandbox::local_transport>(o);
}

/// Runs `sh -c script` in a sandbox of `image`; its stdout, or "ERROR: message".
std::string run_in(const std::string& image, const std::string& store, const std::string& script) {
  sandbox::SandboxOptions so;
  so.image = image;
  auto box = Box::try_run(so, transport_with(store));
  if (!box) return "ERROR: " + box.error().message;
  auto r = box.value().exec({"sh", "-c", script}).result();
  if (!r) return "ERROR: " + r.error().message;
  return r.value().stdout_text + r.value().stderr_text;
}

std::string busybox_layer() { return make_tar(busybox_entries(), compression::gzip); }

std::set<std::string> stored_blobs(const std::string& store) {
  auto names = img::store::list(store + "/blobs/sha256");
  return {names.begin(), names.end()};
}

} // namespace

TEST_CASE("image names are told apart as skopeo and Docker tell them", "[image]") {
  auto reg = [](const char* s) {
    auto r = img::parse_source(s);
    REQUIRE(r);
    CHECK(r.value().kind == img::source_kind::registry);
    return r.value().remote.str();
  };
  CHECK(reg("python:3.11") == "docker.io/library/python:3.11");
  CHECK(reg("python") == "docker.io/library/python:latest");
  CHECK(reg("docker.io/library/python:3.11") == "docker.io/library/python:3.11");
  CHECK(reg("docker://team/app") == "docker.io/team/app:latest");
  CHECK(reg("localhost/app:1") == "localhost/app:1");
  const std::string pinned = "registry:5000/team/img@sha256:" + std::string(64, 'a');
  CHECK(reg(pinned.c_str()) == pinned);
  CHECK(reg("127.0.0.1:5000/a/b:v1.2-x") == "127.0.0.1:5000/a/b:v1.2-x");

  auto src = img::parse_source("oci:/srv/layout:v1");
  REQUIRE(src);
  CHECK(src.value().kind == img::source_kind::oci_layout);
  CHECK(src.value().path == "/srv/layout");
  CHECK(src.value().ref == "v1");
  src = img::parse_source("docker-archive:/tmp/a.tar");
  REQUIRE(src);
  CHECK(src.value().kind == img::source_kind::docker_archive);
  CHECK(src.value().ref.empty());
  src = img::parse_source("/srv/rootfs");
  REQUIRE(src);
  CHECK(src.value().kind == img::source_kind::directory);

  for (const char* bad : {"", "Python:3", "python:", "a//b", "python@sha256:abc", "oci:relative",
                          "oci:/x:", "./rootfs", "-x", "python:.bad", "a/b/", "UPPER/x"}) {
    auto r = img::parse_source(bad);
    CHECK_FALSE(r);
    if (!r) {
      CHECK(r.error().code == sandbox::errc::validation);
      CHECK_FALSE(r.error().message.empty());
    }
  }
}

TEST_CASE("a hostile layer writes nothing outside itself and is not kept", "[image][hostile]") {
  temp_dir work, outside;
  const std::string store = work.path + "/store";
  // Each: the entries of a layer, and what the error must say.
  struct attack {
    const char* name;
    std::vector<tar_entry> entries;
    const char* says;
  };
  std::vector<attack> attacks{
      {"'..' out of the root",
       {{tar_entry::file, "../../../" + outside.path.substr(1) + "/dotdot", "x"}},
       "climbs out"},
      {"'..' after a directory",
       {{tar_entry::dir, "a"}, {tar_entry::file, "a/../../escape", "x"}},
       "climbs out"},
      {"an absolute symlink, then a file through it",
       {{tar_entry::symlink, "evil", outside.path}, {tar_entry::file, "evil/abs", "x"}},
       "symlink"},
      {"a relative symlink climbing out, then a file through it",
       {{tar_entry::symlink, "up", "../../../../../../../../"},
        {tar_entry::file, "up/" + outside.path.substr(1) + "/rel", "x"}},
       "symlink"},
      {"a hard link to a host file",
       {{tar_entry::hardlink, "passwd", "../../../../etc/passwd"}},
       "climbs out"},
      {"a hard link through a symlink",
       {{tar_entry::symlink, "etc-link", "/etc"},
        {tar_entry::hardlink, "shadow", "etc-link/passwd"}},
       "no such"},
      {"a hard link to nothing", {{tar_entry::hardlink, "dangling", "missing"}}, "no such"},
  };
  for (const auto& a : attacks) {
    INFO(a.name);
    temp_dir layout;
    make_layout(layout.path, {make_tar(a.entries)});
    auto r = img::prepare("oci:" + layout.path, {.store = store});
    REQUIRE_FALSE(r);
    CHECK(r.error().code == sandbox::errc::validation);
    CHECK(r.error().message.find(a.says) != std::string::npos);
    INFO(r.error().message);
    CHECK(img::store::list(outside.path).empty());
    CHECK(img::store::list(store + "/layers").empty()); // the half-unpacked layer is gone
    CHECK(img::store::list(store + "/refs").empty());   // and no name keeps its blobs:
    CHECK(img::gc({.store = store}));                   // gc removes them
    CHECK(stored_blobs(store).count(digest_of(make_tar(a.entries)).substr(7)) == 0);
  }
  CHECK(img::store::list(store + "/tmp").empty());
  struct stat st {};
  CHECK(::stat("/etc/passwd", &st) == 0);
  CHECK(st.st_nlink == 1); // no link to it was made
}

TEST_CASE("a docker archive's file names cannot reach the host's files", "[image][hostile]") {
  temp_dir work;
  const std::string store = work.path + "/store";
  std::string layer = make_tar(busybox_entries());
  for (const std::string config : {"x/hostname", "../../../../etc/hostname", "/etc/hostname"}) {
    INFO(config);
    std::string manifest =
        R"([{"Config":")" + config + R"(","RepoTags":["a:b"],"Layers":["l.tar"]}])";
    std::string archive = make_tar({{tar_entry::symlink, "x", "/etc"},
                                    {tar_entry::file, "l.tar", layer},
                                    {tar_entry::file, "manifest.json", manifest}});
    write_all(work.path + "/a.tar", archive);
    auto r = img::prepare("docker-archive:" + work.path + "/a.tar", {.store = store});
    REQUIRE_FALSE(r);
    CHECK(r.error().code == sandbox::errc::validation);
    CHECK(stored_blobs(store).count(digest_of(read_all("/etc/hostname")).substr(7)) == 0);
  }
  // A FIFO where manifest.json should be: an error, not a prepare blocked forever.
  write_all(work.path + "/fifo.tar", make_tar({{tar_entry::fifo, "manifest.json", "", 0644}}));
  auto r = img::prepare("docker-archive:" + work.path + "/fifo.tar", {.store = store});
  REQUIRE_FALSE(r);
  CHECK(r.error().message.find("not a regular file") != std::string::npos);
}

TEST_CASE("a hostile registry gets an error, never a hang or a crash",
          "[image][registry][hostile]") {
  temp_dir work;
  std::string layer = busybox_layer();
  const std::string config = R"({"os":"linux","config":{}})";
  const std::string manifest =
      R"({"schemaVersion":2,"config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":")" +
      digest_of(config) + R"(","size":)" + std::to_string(config.size()) +
      R"(},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":")" +
      digest_of(layer) + R"(","size":)" + std::to_string(layer.size()) + "}]}";
  httplib::Server srv;
  int port = 0;
  srv.Get("/token", [&](const httplib::Request&, httplib::Response& res) {
    // A token response without end.
    res.set_chunked_content_provider("application/json", [](std::size_t, httplib::DataSink& sink) {
      static const std::string chunk(1 << 16, 'x');
      return sink.write(chunk.data(), chunk.size());
    });
  });
  srv.Get(R"(/v2/auth/.*)", [&](const httplib::Request&, httplib::Response& res) {
    res.status = 401;
    res.set_header("WWW-Authenticate", "Bearer realm=\"http://127.0.0.1:" + std::to_string(port) +
                                           "/token\",service=\"x\"");
  });
  srv.Get(R"(/v2/badrealm/.*)", [&](const httplib::Request&, httplib::Response& res) {
    res.status = 401;
    res.set_header("WWW-Authenticate", "Bearer realm=\"http://127.0.0.1:99999999999999/token\"");
  });
  srv.Get(R"(/v2/redirect/x/manifests/.*)", [&](const httplib::Request&, httplib::Response& res) {
    res.set_content(manifest, "application/vnd.oci.image.manifest.v1+json");
  });
  srv.Get(R"(/v2/redirect/x/blobs/.*)", [&](const httplib::Request&, httplib::Response& res) {
    res.status = 307;
    res.set_header("Location", "http://127.0.0.1:99999999999/elsewhere");
  });
  srv.Get(R"(/v2/endless/x/manifests/.*)", [&](const httplib::Request&, httplib::Response& res) {
    res.set_content(manifest, "application/vnd.oci.image.manifest.v1+json");
  });
  srv.Get(R"(/v2/endless/x/blobs/.*)", [&](const httplib::Request& req, httplib::Response& res) {
    if (req.path.find(digest_of(config)) != std::string::npos) {
      res.set_content(config, "application/octet-stream");
      return;
    }
    res.status = 500; // an error whose body never ends
    res.set_chunked_content_provider("text/plain", [](std::size_t, httplib::DataSink& sink) {
      static const std::string chunk(1 << 16, 'e');
      return sink.write(chunk.data(), chunk.size());
    });
  });
  port = srv.bind_to_any_port("127.0.0.1");
  std::thread serving([&] { srv.listen_after_bind(); });
  img::image_options o{.store = work.path + "/store"};
  o.retry_for = std::chrono::milliseconds(500);
  const std::string host = "127.0.0.1:" + std::to_string(port);
  auto token = img::prepare(host + "/auth/x:v1", o);
  auto realm = img::prepare(host + "/badrealm/x:v1", o);
  auto redirect = img::prepare(host + "/redirect/x:v1", o);
  auto endless = img::prepare(host + "/endless/x:v1", o);
  srv.stop();
  serving.join();
  REQUIRE_FALSE(token);
  CHECK(token.error().message.find("larger than 64 KiB") != std::string::npos);
  REQUIRE_FALSE(realm);
  CHECK(realm.error().message.find("not an http(s) URL with a valid host and port") !=
        std::string::npos);
  REQUIRE_FALSE(redirect);
  INFO(redirect.error().message);
  INFO(endless.error().message);
  CHECK(redirect.error().message.find("redirect to") != std::string::npos);
  REQUIRE_FALSE(endless);
  CHECK(endless.error().code == sandbox::errc::unavailable);
  CHECK(endless.error().message.find("HTTP 500") != std::string::npos);
  CHECK(img::store::list(o.store + "/refs").empty());
}

TEST_CASE("devices, setuid bits and oversized layers are not unpacked as given",
          "[image][hostile]") {
  temp_dir work, layout;
  const std::string store = work.path + "/store";
  make_layout(layout.path, {make_tar({{tar_entry::dir, "dev"},
                                      {tar_entry::chardev, "dev/mem", "", 0666, 1, 1},
                                      {tar_entry::chardev, "dev/kmsg", "", 0666, 1, 11},
                                      {tar_entry::file, "suid", "#!/bin/sh\n", 04755},
                                      {tar_entry::file, "sgid", "x", 02755},
                                      {tar_entry::dir, "shared", "", 03777},
                                      {tar_entry::fifo, "pipe", "", 0600},
                                      {tar_entry::dir, "ro", "", 0555},
                                      {tar_entry::file, "ro/inside", "y", 0444}})});
  auto r = img::prepare("oci:" + layout.path, {.store = store});
  REQUIRE(r);
  REQUIRE(r.value().layers.size() == 1);
  const std::string l = r.value().layers[0];
  struct stat st {};
  CHECK(::lstat((l + "/dev/mem").c_str(), &st) != 0);
  CHECK(::lstat((l + "/dev/kmsg").c_str(), &st) != 0);
  REQUIRE(::lstat((l + "/suid").c_str(), &st) == 0);
  CHECK((st.st_mode & 07777) == 0755);
  REQUIRE(::lstat((l + "/sgid").c_str(), &st) == 0);
  CHECK((st.st_mode & 07777) == 0755);
  REQUIRE(::lstat((l + "/shared").c_str(), &st) == 0);
  CHECK((st.st_mode & 07777) == 03777); // setgid and sticky on a directory are harmless
  REQUIRE(::lstat((l + "/pipe").c_str(), &st) == 0);
  CHECK(S_ISFIFO(st.st_mode));
  REQUIRE(::lstat((l + "/ro").c_str(), &st) == 0);
  CHECK((st.st_mode & 07777) == 0555);
  CHECK(read_all(l + "/ro/inside") == "y");

  // A layer that unpacks to more than the limit is refused, whatever it compresses to.
  temp_dir bomb;
  make_layout(bomb.path, {make_tar({{tar_entry::file, "zeros", std::string(8 << 20, '\0')}},
                                   compression::zstd)});
  auto big = img::prepare("oci:" + bomb.path, {.store = store, .max_layer_bytes = 1 << 20});
  REQUIRE_FALSE(big);
  CHECK(big.error().code == sandbox::errc::validation);
  CHECK(big.error().message.find("more than 1048576 bytes") != std::string::npos);
}

namespace {

/// A busybox base under a layer that whites out /etc/gone and /keep/gone, makes /data opaque
/// (only c in it) and adds /keep/y; its config sets FOO, PATH and WorkingDir /keep.
void make_stacked_layout(const std::string& dir) {
  auto base = busybox_entries();
  base.push_back({tar_entry::dir, "data"});
  base.push_back({tar_entry::file, "data/a", "a"});
  base.push_back({tar_entry::file, "data/b", "b"});
  base.push_back({tar_entry::dir, "keep"});
  base.push_back({tar_entry::file, "keep/x", "x"});
  base.push_back({tar_entry::file, "keep/gone", "g"});
  base.push_back({tar_entry::file, "etc/gone", "g"});
  std::string top = make_tar({{tar_entry::dir, "data"},
                              {tar_entry::file, "data/.wh..wh..opq", ""},
                              {tar_entry::file, "data/c", "c"},
                              {tar_entry::file, "keep/.wh.gone", ""},
                              {tar_entry::file, "etc/.wh.gone", ""},
                              {tar_entry::file, "keep/y", "y"}},
                             compression::zstd);
  make_layout(dir, {make_tar(base, compression::gzip), top},
              R"({"Env":["FOO=from-image","PATH=/bin"],"WorkingDir":"/keep"})");
}

constexpr const char* stacked_probe =
    "ls /data; ls /keep; test -e /etc/gone || echo no-etc-gone; echo $FOO $PATH; pwd";
constexpr const char* stacked_expected = "c\nx\ny\nno-etc-gone\nfrom-image /bin\n/keep\n";

} // namespace

TEST_CASE("layers stack: whiteouts remove, opaque directories replace", "[image]") {
  temp_dir work, layout;
  const std::string store = work.path + "/store";
  make_stacked_layout(layout.path);
  CHECK(run_in("oci:" + layout.path, store, stacked_probe) == stacked_expected);
  // The same image, named as a layout directory: the store's layers are used again.
  auto before = img::store::list(store + "/layers").size();
  CHECK(run_in(layout.path, store, "cat /data/c") == "c");
  CHECK(img::store::list(store + "/layers").size() == before);
  // Options win over the image's config.
  sandbox::SandboxOptions so;
  so.image = layout.path;
  so.env = {{"FOO", "from-options"}};
  so.working_dir = "/data";
  auto box = Box::try_run(so, transport_with(store));
  REQUIRE(box);
  auto r = box.value().exec({"sh", "-c", "echo $FOO; pwd"}).result();
  REQUIRE(r);
  CHECK(r.value().stdout_text == "from-options\n/data\n");
  // What a sandbox writes stays in its own layer.
  CHECK(box.value().exec({"sh", "-c", "echo changed > /data/c"}).result().value().returncode == 0);
  CHECK(run_in(layout.path, store, "cat /data/c") == "c");
}

TEST_CASE("the image's User: names from its own /etc/passwd and /etc/group, never the host's",
          "[image]") {
  temp_dir work, layout;
  auto base = busybox_entries();
  base.push_back({tar_entry::file, "etc/passwd",
                  "root:x:0:0::/root:/bin/sh\napp:x:1000:1001:App:/home/app:/bin/sh\n"});
  base.push_back({tar_entry::file, "etc/group", "root:x:0:\nstaff:x:1001:\nwheel:x:1002:\n"});
  std::string layer = make_tar(base, compression::gzip);
  auto run_as = [&](const std::string& user) {
    temp_dir l;
    make_layout(l.path, {layer}, R"({"User":")" + user + R"("})");
    return run_in("oci:" + l.path, work.path + "/store", "echo $(id -u) $(id -g) $HOME");
  };
  if (::geteuid() == 0) {
    CHECK(run_as("app") == "1000 1001 /home/app\n");
    CHECK(run_as("app:wheel") == "1000 1002 /home/app\n");
    CHECK(run_as("1234") == "1234 0 /root\n");
    CHECK(run_as("1234:staff") == "1234 1001 /root\n");
    CHECK(run_as("root") == "0 0 /root\n");
  } else { // in a user namespace only the sandbox's root maps
    CHECK(run_as("app") == "0 0 /root\n");
  }
  CHECK(run_as("nobody-here").find("no such user in the image's /etc/passwd") != std::string::npos);
  CHECK(run_as("app:nogroup").find("no such group") != std::string::npos);
  CHECK(run_as(":1").find("no user before") != std::string::npos);
  // An image whose /etc is a link to the host's: its users are not looked up there.
  auto hostile = busybox_entries();
  hostile.erase(hostile.begin() + 2); // no etc directory
  hostile.push_back({tar_entry::symlink, "etc", "/etc"});
  temp_dir h;
  make_layout(h.path, {make_tar(hostile)}, R"({"User":"daemon"})");
  CHECK(run_in("oci:" + h.path, work.path + "/store", "id -u")
            .find("no such user in the image's /etc/passwd") != std::string::npos);
  // An upper layer whose /etc is a link hides the lower layer's /etc/passwd.
  temp_dir hidden;
  std::vector<tar_entry> top{{tar_entry::dir, "data"}};
  top.push_back({tar_entry::symlink, "etc", "/data"});
  make_layout(hidden.path, {layer, make_tar(top)}, R"({"User":"app"})");
  CHECK(run_in("oci:" + hidden.path, work.path + "/store", "id -u")
            .find("no such user in the image's /etc/passwd") != std::string::npos);
  // A manifest without layers: refused at once, not a failed mount.
  temp_dir empty;
  make_layout(empty.path, {});
  auto none = img::prepare("oci:" + empty.path, {.store = work.path + "/store"});
  REQUIRE_FALSE(none);
  CHECK(none.error().message.find("has no layers") != std::string::npos);
}

TEST_CASE("a layer listed twice (an empty one) stacks once", "[image]") {
  temp_dir work, layout;
  std::string empty = make_tar({});
  make_layout(layout.path,
              {empty, busybox_layer(), empty, make_tar({{tar_entry::file, "etc/x", "x"}}), empty});
  auto p = img::prepare("oci:" + layout.path, {.store = work.path + "/store"});
  REQUIRE(p);
  CHECK(p.value().layers.size() == 3);
  CHECK(run_in("oci:" + layout.path, work.path + "/store", "cat /etc/x") == "x");
}

TEST_CASE("without root: the caller's own store, layers stacked in a user namespace",
          "[image][rootless][userns]") {
  temp_dir work, layout;
  make_stacked_layout(layout.path);
  for (const auto* d : {&work, &layout})
    REQUIRE(std::system(("chmod -R a+rX " + d->path).c_str()) == 0);
  REQUIRE(::chown(work.path.c_str(), 65534, 65534) == 0);
  const std::string store = work.path + "/store";
  auto out = in_child([&](int fd) {
    if (!become_nobody()) return put(fd, "error", "could not drop to 65534");
    sandbox::SandboxOptions so;
    so.image = "oci:" + layout.path;
    auto box = Box::try_run(so, transport_with(store));
    if (!box)
      return put(fd, box.error().is(sandbox::errc::unsupported) ? "unsupported" : "error",
                 box.error().message);
    auto r = box.value().exec({"sh", "-c", stacked_probe}).result();
    put(fd, "out", r ? r.value().stdout_text : r.error().message);
    struct stat st {};
    put(fd, "owner", ::stat(store.c_str(), &st) == 0 ? std::to_string(st.st_uid) : "none");
  });
  auto m = parse(out);
  if (m.count("unsupported")) SANDBOX_SKIP("user namespaces: " + m["unsupported"]);
  INFO(out);
  CHECK(m.count("error") == 0);
  std::string want = stacked_expected;
  for (char& c : want)
    if (c == '\n') c = '|';
  CHECK(m["out"] == want);
  CHECK(m["owner"] == "65534");
}

TEST_CASE("images made by umoci and skopeo run: OCI layout, docker-archive, oci-archive",
          "[image][tools]") {
  temp_dir work;
  const std::string store = work.path + "/store", oci = work.path + "/oci";
  // A base of busybox from an OCI layout of ours, given a config and a layer by umoci.
  make_layout(oci, {busybox_layer()}, "{}", "base");
  std::string bundle = work.path + "/bundle";
  std::string cmd = "umoci unpack --image " + oci + ":base " + bundle +
                    " >/dev/null && "
                    "echo from-umoci > " +
                    bundle +
                    "/rootfs/etc/made-by && "
                    "umoci repack --image " +
                    oci + ":base " + bundle +
                    " >/dev/null && "
                    "umoci config --image " +
                    oci +
                    ":base --tag v1 --config.env GREETING=hello "
                    "--config.workingdir /etc >/dev/null";
  REQUIRE(std::system(cmd.c_str()) == 0);
  CHECK(run_in("oci:" + oci + ":v1", store, "cat made-by; echo $GREETING") ==
        "from-umoci\nhello\n");

  REQUIRE(std::system(("skopeo copy -q oci:" + oci + ":v1 docker-archive:" + work.path +
                       "/saved.tar:team/app:v1 >/dev/null")
                          .c_str()) == 0);
  CHECK(run_in("docker-archive:" + work.path + "/saved.tar", store, "cat /etc/made-by; pwd") ==
        "from-umoci\n/etc\n");
  CHECK(run_in("docker-archive:" + work.path + "/saved.tar:team/app:v1", store, "echo $GREETING") ==
        "hello\n");
  CHECK(run_in("docker-archive:" + work.path + "/saved.tar:docker.io/team/app:v1", store,
               "echo $GREETING") == "hello\n");
  CHECK(run_in("docker-archive:" + work.path + "/saved.tar:team/app:v2", store, "true")
            .find("no image tagged team/app:v2") != std::string::npos);

  REQUIRE(std::system(("skopeo copy -q oci:" + oci + ":v1 oci-archive:" + work.path +
                       "/oci.tar:v1 >/dev/null")
                          .c_str()) == 0);
  CHECK(run_in("oci-archive:" + work.path + "/oci.tar", store, "cat /etc/made-by") ==
        "from-umoci\n");
  CHECK(img::store::list(store + "/tmp").empty()); // the unpacked archives are gone
}

TEST_CASE("a tampered blob is refused and nothing of it is kept", "[image][hostile]") {
  temp_dir work, layout;
  const std::string store = work.path + "/store";
  std::string layer = busybox_layer();
  make_layout(layout.path, {layer});
  const std::string d = digest_of(layer);
  std::string bad = layer;
  bad[bad.size() / 2] ^= 1;
  write_all(layout.path + "/blobs/sha256/" + d.substr(7), bad);
  auto r = img::prepare("oci:" + layout.path, {.store = store});
  REQUIRE_FALSE(r);
  CHECK(r.error().code == sandbox::errc::protocol);
  CHECK(r.error().message.find("does not match its digest " + d) != std::string::npos);
  CHECK(stored_blobs(store).count(d.substr(7)) == 0);
  CHECK(img::store::list(store + "/layers").empty());
  CHECK(img::store::list(store + "/tmp").empty());
}

TEST_CASE("pulled from a registry on loopback, with and without credentials", "[image][registry]") {
  temp_dir work, layout;
  const std::string store = work.path + "/store";
  std::string layer = busybox_layer();
  make_layout(layout.path, {layer}, R"({"Env":["WHERE=registry"]})", "v1");

  SECTION("anonymous, then from the store without the registry") {
    std::optional<registry> reg(std::in_place);
    REQUIRE(reg->up());
    REQUIRE(reg->push(layout.path, "v1", "team/busybox:v1"));
    std::vector<img::pull_progress> seen;
    std::mutex m;
    auto t = transport_with(store, [&](const img::pull_progress& p) {
      std::lock_guard lk(m);
      seen.push_back(p);
    });
    const std::string name = reg->host() + "/team/busybox:v1";
    sandbox::SandboxOptions so;
    so.image = name;
    {
      auto box = Box::try_run(so, t);
      REQUIRE(box);
      CHECK(box.value().exec({"sh", "-c", "echo $WHERE"}).result().value().stdout_text ==
            "registry\n");
    }
    bool layer_done = false;
    for (const auto& p : seen)
      if (p.digest == digest_of(layer) && !p.cached && p.done == layer.size() &&
          p.total == layer.size())
        layer_done = true;
    CHECK(layer_done);
    CHECK(stored_blobs(store).count(digest_of(layer).substr(7)) == 1);
    // By the manifest's digest.
    auto p = img::prepare(name, {.store = store});
    REQUIRE(p);
    const std::string pinned = reg->host() + "/team/busybox@" + p.value().digest;
    auto by_digest = img::prepare(pinned, {.store = work.path + "/other-store"});
    REQUIRE(by_digest);
    CHECK(by_digest.value().digest == p.value().digest);
    reg.reset(); // the registry is gone: the store has the image, by name and by digest
    so.image = name;
    auto again = Box::try_run(so, t);
    REQUIRE(again);
    CHECK(again.value().exec({"echo", "cached"}).result().value().stdout_text == "cached\n");
    CHECK(img::prepare(pinned, {.store = store}));
    // A name the store does not have, with no registry: a clear transient error.
    img::image_options briefly{.store = store};
    briefly.retry_for = std::chrono::milliseconds(300);
    auto gone = img::prepare(pinned.substr(0, pinned.find('@')) + ":v2", briefly);
    REQUIRE_FALSE(gone);
    CHECK(gone.error().code == sandbox::errc::unavailable);
  }

  SECTION("htpasswd") {
    registry reg("alice", "s3cret");
    REQUIRE(reg.up());
    REQUIRE(reg.push(layout.path, "v1", "team/busybox:v1", "alice:s3cret"));
    const std::string name = reg.host() + "/team/busybox:v1";
    auto none = img::prepare(name, {.store = store});
    REQUIRE_FALSE(none);
    CHECK(none.error().code == sandbox::errc::authentication);
    CHECK(none.error().message.find("credentials") != std::string::npos);
    img::image_options wrong{.store = store};
    wrong.auth[reg.host()] = {"alice", "wrong"};
    auto refused = img::prepare(name, wrong);
    REQUIRE_FALSE(refused);
    CHECK(refused.error().code == sandbox::errc::authentication);
    CHECK(refused.error().message.find("s3cret") == std::string::npos);
    CHECK(refused.error().message.find("wrong") == std::string::npos);
    img::image_options right{.store = store};
    right.auth[reg.host()] = {"alice", "s3cret"};
    auto ok = img::prepare(name, right);
    REQUIRE(ok);
    CHECK(ok.value().env == std::vector<std::string>{"WHERE=registry"});
    // From Docker's config.json, as `docker login` leaves it.
    temp_dir home;
    ::mkdir((home.path + "/.docker").c_str(), 0700);
    write_all(home.path + "/.docker/config.json",
              "{\"auths\":{\"" + reg.host() + "\":{\"auth\":\"" +
                  sandbox::http::base64_encode("alice:s3cret") + "\"}}}");
    ::setenv("DOCKER_CONFIG", (home.path + "/.docker").c_str(), 1);
    auto from_config = img::prepare(name, {.store = work.path + "/store2"});
    ::unsetenv("DOCKER_CONFIG");
    CHECK(from_config);
  }
}

TEST_CASE("a registry behind a bearer token realm", "[image][registry]") {
  temp_dir work, layout;
  make_layout(layout.path, {busybox_layer()}, "{}", "v1");
  registry reg;
  REQUIRE(reg.up());
  REQUIRE(reg.push(layout.path, "v1", "team/busybox:v1"));
  // A front that answers as Docker Hub does: 401 with a Bearer challenge, a token from the
  // realm (given for basic credentials bob:pw, or anonymously for pull), the registry behind.
  httplib::Server front;
  std::atomic<int> tokens{0}, challenged{0};
  std::string scope_seen;
  front.Get("/token", [&](const httplib::Request& req, httplib::Response& res) {
    scope_seen = req.get_param_value("scope") + "|" + req.get_param_value("service");
    ++tokens;
    res.set_content(R"({"token":"tok-123","expires_in":300})", "application/json");
  });
  int front_port = 0;
  front.Get(R"(/v2/.*)", [&](const httplib::Request& req, httplib::Response& res) {
    if (req.get_header_value("Authorization") != "Bearer tok-123") {
      ++challenged;
      res.status = 401;
      res.set_header(
          "WWW-Authenticate",
          "Bearer realm=\"http://127.0.0.1:" + std::to_string(front_port) +
              "/token\",service=\"test-registry\",scope=\"repository:team/busybox:pull\"");
      return;
    }
    httplib::Client back("127.0.0.1", reg.port);
    httplib::Headers h{{"Accept", req.get_header_value("Accept")}};
    auto r = back.Get(req.path, h);
    if (!r) {
      res.status = 502;
      return;
    }
    res.status = r->status;
    res.set_content(r->body, r->get_header_value("Content-Type"));
  });
  front_port = front.bind_to_any_port("127.0.0.1");
  std::thread serving([&] { front.listen_after_bind(); });
  auto p = img::prepare("127.0.0.1:" + std::to_string(front_port) + "/team/busybox:v1",
                        {.store = work.path + "/store"});
  front.stop();
  serving.join();
  REQUIRE(p);
  CHECK(tokens >= 1);
  CHECK(challenged >= 1);
  CHECK(scope_seen == "repository:team/busybox:pull|test-registry");
}

TEST_CASE("a blob tampered with in the registry is refused, nothing kept",
          "[image][registry][hostile]") {
  temp_dir work, layout;
  const std::string store = work.path + "/store";
  std::string layer = busybox_layer();
  make_layout(layout.path, {layer}, "{}", "v1");
  registry reg;
  REQUIRE(reg.up());
  REQUIRE(reg.push(layout.path, "v1", "team/busybox:v1"));
  std::string f = reg.blob_file(digest_of(layer));
  std::string bad = read_all(f);
  REQUIRE(bad.size() == layer.size());
  bad[100] ^= 0x20;
  write_all(f, bad);
  auto r = img::prepare(reg.host() + "/team/busybox:v1", {.store = store});
  REQUIRE_FALSE(r);
  CHECK(r.error().code == sandbox::errc::protocol);
  CHECK(r.error().message.find("does not match its digest") != std::string::npos);
  CHECK(stored_blobs(store).count(digest_of(layer).substr(7)) == 0);
  CHECK(img::store::list(store + "/layers").empty());
  CHECK(img::store::list(store + "/tmp").empty());
}

TEST_CASE("a name pinned to a multi-platform index digest runs, and again from the store",
          "[image][registry]") {
  temp_dir work, layout;
  const std::string store = work.path + "/store";
  std::string layer = busybox_layer();
  make_layout(layout.path, {layer}, R"({"Env":["PINNED=yes"]})", "v1");
  // Wrap the layout's manifest in an index naming it for this platform and another one.
  auto index = read_all(layout.path + "/index.json");
  auto at = index.find("sha256:");
  const std::string manifest = index.substr(at, 71);
  const std::string size =
      std::to_string(read_all(layout.path + "/blobs/sha256/" + manifest.substr(7)).size());
  std::string inner =
      R"({"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[)"
      R"({"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":")" +
      manifest + R"(","size":)" + size +
      R"(,"platform":{"os":"linux","architecture":"s390x"}},)"
      R"({"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":")" +
      manifest + R"(","size":)" + size + R"(,"platform":{"os":"linux","architecture":"amd64"}}]})";
  const std::string inner_digest = digest_of(inner);
  write_all(layout.path + "/blobs/sha256/" + inner_digest.substr(7), inner);
  write_all(
      layout.path + "/index.json",
      R"({"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.index.v1+json","digest":")" +
          inner_digest + R"(","size":)" + std::to_string(inner.size()) +
          R"(,"annotations":{"org.opencontainers.image.ref.name":"v1"}}]})");
  registry reg;
  REQUIRE(reg.up());
  REQUIRE(std::system(("skopeo copy -q --all --dest-tls-verify=false oci:" + layout.path +
                       ":v1 docker://" + reg.host() + "/team/multi:v1 >/dev/null")
                          .c_str()) == 0);
  const std::string pinned = reg.host() + "/team/multi@" + inner_digest;
  for (int i = 0; i < 2; ++i) {
    INFO("run " << i);
    CHECK(run_in(pinned, store, "echo $PINNED") == "yes\n");
  }
}

TEST_CASE("a server's pull refuses local registries unless listed", "[image][registry][hostile]") {
  temp_dir work, layout;
  make_layout(layout.path, {busybox_layer()}, "{}", "v1");
  registry reg;
  REQUIRE(reg.up());
  REQUIRE(reg.push(layout.path, "v1", "team/busybox:v1"));
  img::image_options server{.store = work.path + "/store"};
  server.public_registries_only = true;
  for (const std::string& host :
       std::vector<std::string>{reg.host(), "localhost:" + std::to_string(reg.port),
                                "10.0.0.1:5000", "169.254.169.254"}) {
    auto r = img::prepare(host + "/team/busybox:v1", server);
    REQUIRE_FALSE(r);
    CHECK(r.error().code == sandbox::errc::validation);
    CHECK(r.error().message.find("local address") != std::string::npos);
  }
  // Numbers the resolver reads as loopback addresses, in forms a check could miss.
  const std::string port = std::to_string(reg.port);
  for (const std::string& host :
       std::vector<std::string>{"127.1", "2130706433", "0x7f000001", "127.0.0.01"}) {
    INFO(host);
    auto r = img::prepare(host + ":" + port + "/team/busybox:v1", server);
    REQUIRE_FALSE(r);
    CHECK(r.error().message.find("is not a valid host[:port]") != std::string::npos);
  }
  // Spellings of localhost, refused by their text (no resolver asked).
  for (const std::string& host :
       std::vector<std::string>{"LOCALHOST", "localhost.", "a.LocalHost"}) {
    INFO(host);
    auto r = img::prepare(host + ":" + port + "/team/busybox:v1", server);
    REQUIRE_FALSE(r);
    CHECK(r.error().message.find("local address") != std::string::npos);
  }
  // A name is resolved, refused when any of its addresses is local, and pinned to the address
  // checked (only /etc/hosts and literals here: nothing is asked of a DNS server).
  namespace d = sandbox::image::detail;
  CHECK(d::public_address("localhost").value().empty());
  CHECK(d::public_address("127.0.0.1").value().empty());
  CHECK(d::public_address("::1").value().empty());
  CHECK(d::public_address("::ffff:10.1.2.3").value().empty());
  CHECK(d::public_address("fd00::1").value().empty());
  CHECK(d::public_address("fe80::1").value().empty());
  CHECK(d::public_address("8.8.8.8").value() == "8.8.8.8"); // resolved as a literal, not reached
  CHECK(d::public_address("2001:4860:4860::8888").value() == "2001:4860:4860::8888");
  server.local_registries = {reg.host()};
  CHECK(img::prepare(reg.host() + "/team/busybox:v1", server));
  // A registry's error body is not repeated, only its error codes.
  auto missing = img::prepare(reg.host() + "/team/none:v1", server);
  REQUIRE_FALSE(missing);
  INFO(missing.error().message);
  CHECK(missing.error().code == sandbox::errc::not_found);
  CHECK(missing.error().message.find("HTTP 404 (MANIFEST_UNKNOWN)") != std::string::npos);
  CHECK(missing.error().message.find("manifest unknown") == std::string::npos); // its message
}

TEST_CASE("an interrupted pull resumes where it stopped", "[image][registry]") {
  temp_dir work, layout;
  const std::string store = work.path + "/store";
  std::string layer = busybox_layer();
  const std::string d = digest_of(layer);
  make_layout(layout.path, {layer}, "{}", "v1");
  registry reg;
  REQUIRE(reg.up());
  REQUIRE(reg.push(layout.path, "v1", "team/busybox:v1"));
  REQUIRE(img::store::open({.store = store}));
  for (bool garbage : {false, true}) {
    INFO((garbage ? "a partial download that is wrong: started over" : "a good partial download"));
    (void)img::store::open({.store = store}).value().forget(reg.host() + "/team/busybox:v1");
    (void)sandbox::image::detail::remove_tree(AT_FDCWD, (store + "/blobs").c_str());
    (void)sandbox::image::detail::remove_tree(AT_FDCWD, (store + "/layers").c_str());
    REQUIRE(img::store::open({.store = store}));
    // What an interrupted pull leaves: the first half of the blob.
    std::string half = layer.substr(0, layer.size() / 2);
    if (garbage) half.assign(half.size(), 'x');
    write_all(store + "/tmp/" + d.substr(7) + ".partial", half);
    std::uint64_t first_done = 0;
    img::image_options o{.store = store};
    o.on_progress = [&](const img::pull_progress& p) {
      if (p.digest == d && !p.cached && first_done == 0) first_done = p.done;
    };
    auto r = img::prepare(reg.host() + "/team/busybox:v1", o);
    REQUIRE(r);
    CHECK(read_all(store + "/blobs/sha256/" + d.substr(7)) == layer);
    if (!garbage) CHECK(first_done > half.size()); // only the rest was fetched
    CHECK(img::store::list(store + "/tmp").empty());
  }
}

TEST_CASE("concurrent runs of one uncached image share one download", "[image][registry]") {
  temp_dir work, layout;
  const std::string store = work.path + "/store";
  std::string layer = busybox_layer();
  make_layout(layout.path, {layer}, "{}", "v1");
  registry reg;
  REQUIRE(reg.up());
  REQUIRE(reg.push(layout.path, "v1", "team/busybox:v1"));
  std::atomic<int> downloads{0};
  auto t = transport_with(store, [&](const img::pull_progress& p) {
    if (p.digest == digest_of(layer) && !p.cached && p.done == p.total) ++downloads;
  });
  constexpr int n = 6;
  std::vector<std::string> out(n);
  std::vector<std::thread> threads;
  for (int i = 0; i < n; ++i)
    threads.emplace_back([&, i] {
      sandbox::SandboxOptions so;
      so.image = reg.host() + "/team/busybox:v1";
      auto box = Box::try_run(so, t);
      if (!box) {
        out[i] = box.error().message;
        return;
      }
      auto r = box.value().exec({"echo", "ran"}).result();
      out[i] = r ? r.value().stdout_text : r.error().message;
    });
  for (auto& th : threads)
    th.join();
  for (const auto& o : out)
    CHECK(o == "ran\n");
  CHECK(downloads == 1);
  CHECK(img::store::list(store + "/layers").size() == 1);
}

TEST_CASE("gc removes what no name reaches and nothing a sandbox runs on", "[image]") {
  temp_dir work, a, b;
  const std::string store = work.path + "/store";
  auto base = busybox_entries();
  make_layout(a.path, {make_tar(base, compression::gzip)});
  base.push_back({tar_entry::file, "etc/b", "b"});
  make_layout(b.path, {make_tar(base, compression::gzip)});
  auto t = transport_with(store);
  sandbox::SandboxOptions so;
  so.image = "oci:" + a.path;
  auto running = Box::try_run(so, t);
  REQUIRE(running);
  REQUIRE(img::prepare("oci:" + b.path, {.store = store}));
  CHECK(img::store::list(store + "/layers").size() == 2);
  // Nothing is unreachable yet.
  auto st = img::gc({.store = store});
  REQUIRE(st);
  CHECK(st.value().layers == 0);
  // Both forgotten: b's layer goes, a's stays while its sandbox runs.
  CHECK(img::forget("oci:" + a.path, {.store = store}).value());
  CHECK(img::forget("oci:" + b.path, {.store = store}).value());
  st = img::gc({.store = store});
  REQUIRE(st);
  CHECK(st.value().layers == 1);
  CHECK(running.value()
            .exec({"cat", "/bin/busybox"}, {.max_output_bytes = 1})
            .result()
            .value()
            .returncode == 0);
  REQUIRE(running.value().stop());
  running = Box::try_run({}, t); // drop the old one (its lease with it)
  st = img::gc({.store = store});
  REQUIRE(st);
  CHECK(st.value().layers == 1);
  CHECK(img::store::list(store + "/layers").empty());
  CHECK(img::store::list(store + "/blobs/sha256").empty());
}

TEST_CASE("sandboxd --pull runs a client's registry image; names outside the registry are refused",
          "[image][registry][sandboxd]") {
  const char* bin = std::getenv("SANDBOXD");
  REQUIRE(bin);
  temp_dir work, layout;
  make_layout(layout.path, {busybox_layer()}, R"({"Env":["FROM=pulled"]})", "v1");
  registry reg;
  REQUIRE(reg.up());
  REQUIRE(reg.push(layout.path, "v1", "team/busybox:v1"));
  const std::string token = "tok-" + sandbox::detail::random_id("", 16);
  int out[2];
  REQUIRE(::pipe2(out, O_CLOEXEC) == 0);
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_adddup2(&fa, out[1], 1);
  posix_spawn_file_actions_addopen(&fa, 2, (work.path + "/log").c_str(), O_WRONLY | O_CREAT, 0644);
  std::string store = work.path + "/store";
  const std::string listed = reg.host(); // a local registry: only when listed
  const char* argv[] = {bin,          "--listen",     "127.0.0.1:0",   "--pull",
                        "--registry", listed.c_str(), "--image-store", store.c_str(),
                        nullptr};
  ::setenv("SANDBOXD_TOKEN", token.c_str(), 1);
  pid_t pid = -1;
  REQUIRE(posix_spawn(&pid, bin, &fa, nullptr, const_cast<char**>(argv), environ) == 0);
  ::unsetenv("SANDBOXD_TOKEN");
  posix_spawn_file_actions_destroy(&fa);
  ::close(out[1]);
  std::string url;
  for (char c; url.size() < 200;) {
    pollfd p{out[0], POLLIN, 0};
    if (::poll(&p, 1, 10000) <= 0 || ::read(out[0], &c, 1) != 1 || c == '\n') break;
    url += c;
  }
  ::close(out[0]);
  auto remote = std::make_shared<sandbox::http_transport>(
      sandbox::remote_options{.base_url = url, .api_key = token});
  sandbox::SandboxOptions so;
  so.image = reg.host() + "/team/busybox:v1";
  std::string got, refused;
  {
    auto box = sandbox::NoexceptRemoteSandbox::try_run(so, remote);
    if (box) {
      auto r = box.value()
                   .exec({"sh", "-c", "echo $FROM; cat /bin/sh >/dev/null && echo busybox"})
                   .result();
      got = r ? r.value().stdout_text : r.error().message;
    } else {
      got = box.error().message;
    }
    so.image = "oci:" + layout.path; // a path of the server's host: never the client's to name
    auto bad = sandbox::NoexceptRemoteSandbox::try_run(so, remote);
    refused = bad ? "created" : bad.error().message;
  }
  ::kill(pid, SIGTERM);
  ::waitpid(pid, nullptr, 0);
  CHECK(got == "pulled\nbusybox\n");
  CHECK(refused.find("is not a registry image name") != std::string::npos);
  CHECK(read_all(work.path + "/log").find("pulled " + reg.host() + "/team/busybox:v1: sha256:") !=
        std::string::npos);
}
