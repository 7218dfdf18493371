// SPDX-License-Identifier: MIT
// Codec throughput: encode and decode of an ExecResponse whose stdout is 10 MiB and 256 MiB of
// random bytes (so the JSON carries ~13 MiB / ~341 MiB of base64), against a plain memcpy of the
// same JSON bytes in the same run. from_json of a std::string with spare capacity parses in place;
// from a string_view it first makes the padded copy simdjson needs. Also the pieces: base64 alone
// and that copy. Then many small messages (a page of 100 full sandboxes, an exec request), where
// the per-field work shows rather than base64.
//
//   build/tests/bench/codec_bench            # 10 MiB and 256 MiB
//   build/tests/bench/codec_bench 64         # one size, in MiB
//   build/tests/bench/codec_bench 0          # the small messages only
#include <sandbox/transport/http/codec.hpp>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

using namespace sandbox::http;
using clock_type = std::chrono::steady_clock;

namespace {

volatile std::size_t sink;

/// Best of `reps` runs of `f`, in seconds (best, not mean: the machine is shared).
template <class F>
double best_of(int reps, F&& f) {
  double best = 1e30;
  for (int i = 0; i < reps; ++i) {
    auto t0 = clock_type::now();
    f();
    best = std::min(best, std::chrono::duration<double>(clock_type::now() - t0).count());
  }
  return best;
}

std::string random_bytes(std::size_t n) {
  std::string s(n, '\0');
  std::uint64_t x = 0x9E3779B97F4A7C15ull;
  for (std::size_t i = 0; i + 8 <= n; i += 8) {
    x ^= x << 13, x ^= x >> 7, x ^= x << 17; // xorshift64
    std::memcpy(s.data() + i, &x, 8);
  }
  return s;
}

void row(const char* what, std::size_t bytes, double secs, double baseline) {
  const double mbps = static_cast<double>(bytes) / 1e6 / secs;
  std::printf("  %-38s %9.2f ms %9.0f MB/s  %5.2fx memcpy time\n", what, secs * 1e3, mbps,
              secs / baseline);
}

void run(std::size_t mib) {
  const std::size_t n = mib << 20;
  const int reps = mib >= 128 ? 3 : 10;
  wire::ExecResponse msg;
  msg.stdout_bytes = random_bytes(n);
  msg.stderr_bytes = "warning: something\n";
  msg.exit_code = 0;
  msg.stdout_bytes_produced = static_cast<std::int64_t>(n);
  msg.stderr_bytes_produced = 19;

  const std::string body = to_json(msg);
  std::string copy(body.size(), '\0');
  std::printf("ExecResponse, stdout %zu MiB -> JSON body %.1f MiB (best of %d)\n", mib,
              static_cast<double>(body.size()) / (1 << 20), reps);

  const double memcpy_s = best_of(reps, [&] {
    std::memcpy(copy.data(), body.data(), body.size());
    sink = static_cast<unsigned char>(copy[copy.size() / 2]);
  });
  row("baseline: memcpy of the JSON body", body.size(), memcpy_s, memcpy_s);

  bool ok = true;
  const double decode_s = best_of(reps, [&] {
    auto r = from_json<wire::ExecResponse>(body, decode_mode::lenient);
    ok = ok && r && r.value() == msg;
    sink = r ? r.value().stdout_bytes.size() : 0;
  });
  row("from_json<ExecResponse>(string)", body.size(), decode_s, memcpy_s);
  const double decode_view_s = best_of(reps, [&] {
    auto r = from_json<wire::ExecResponse>(std::string_view(body), decode_mode::lenient);
    ok = ok && r && r.value().stdout_bytes.size() == n;
    sink = r ? r.value().stdout_bytes.size() : 0;
  });
  row("from_json<ExecResponse>(string_view)", body.size(), decode_view_s, memcpy_s);

  std::string out;
  const double encode_s = best_of(reps, [&] {
    out = to_json(msg);
    sink = out.size();
  });
  ok = ok && out == body;
  row("to_json(ExecResponse)", body.size(), encode_s, memcpy_s);

  // Where the time goes.
  const std::string_view b64(body.data() + body.find(':') + 2, base64_encoded_size(n));
  std::string raw;
  raw.reserve(n);
  const double b64d_s = best_of(reps, [&] {
    raw.clear();
    ok = ok && base64_decode_into(raw, b64);
    sink = raw.size();
  });
  row("  part: base64 decode alone", b64.size(), b64d_s, memcpy_s);
  std::string enc;
  enc.reserve(b64.size());
  const double b64e_s = best_of(reps, [&] {
    enc.clear();
    base64_encode_into(enc, msg.stdout_bytes);
    sink = enc.size();
  });
  row("  part: base64 encode alone", enc.size(), b64e_s, memcpy_s);
  const double pad_s = best_of(reps, [&] {
    simdjson::padded_string p(body.data(), body.size());
    sink = p.size();
  });
  row("  part: padded copy for simdjson", body.size(), pad_s, memcpy_s);
  std::printf("  payload rate: decode %.0f MB/s, encode %.0f MB/s of stdout bytes\n",
              static_cast<double>(n) / 1e6 / decode_s, static_cast<double>(n) / 1e6 / encode_s);
  if (!ok) {
    std::printf("  ERROR: a round trip did not give back the message\n");
    std::exit(1);
  }
}

/// A sandbox as a page of ListSandboxes carries it: spec and status, most fields set.
wire::Sandbox listed_sandbox(int i) {
  wire::Container c{.name = "main",
                    .image = "python:3.11",
                    .command = "/bin/sh",
                    .args = {"-c", "trap 'exit 0' TERM; sleep infinity & wait"},
                    .environment_variables = {{"A", "1"}, {"PATH", "/usr/bin:/bin"}},
                    .working_dir = "/work",
                    .files = {{"/etc/motd", "hello"}},
                    .resource_requirements =
                        wire::ResourceRequirements{{"500m", "512Mi"}, {"500m", "512Mi"}}};
  wire::SandboxSpec spec{.containers = {c},
                         .primary_container = "main",
                         .tags = {"team-a", "eval"},
                         .annotations = {{"owner", "someone"}},
                         .max_lifetime_seconds = 3600};
  wire::SandboxStatus st{.state = wire::State::STATE_RUNNING,
                         .create_time = "2026-11-26T10:00:00.123Z",
                         .start_time = "2026-11-26T10:00:01Z",
                         .exit_code = 0,
                         .runner_id = "runner-7"};
  return {"sb-" + std::to_string(100000 + i), spec, st};
}

/// Per-message cost of small messages, in microseconds per call.
void run_small() {
  const int reps = 200;
  wire::ListSandboxesResponse page;
  for (int i = 0; i < 100; ++i)
    page.sandboxes.push_back(listed_sandbox(i));
  page.next_page_token = "sb-100099";
  const std::string page_body = to_json(page);
  const std::string sandbox_body = to_json(page.sandboxes[0]);
  const std::string exec_body =
      to_json(wire::ExecRequest{{}, {"python3", "-c", "print(1)"}, {{"A", "1"}}, 1 << 20, ""});
  std::printf("Small messages (best of %d): page of 100 sandboxes %zu bytes, sandbox %zu, exec "
              "request %zu\n",
              reps, page_body.size(), sandbox_body.size(), exec_body.size());
  bool ok = true;
  auto per_call = [&](const char* what, std::size_t bytes, int calls, auto&& f) {
    const double s = best_of(reps, [&] {
      for (int i = 0; i < calls; ++i)
        f();
    });
    std::printf("  %-38s %9.2f us %9.0f MB/s\n", what, s / calls * 1e6,
                static_cast<double>(bytes) * calls / 1e6 / s);
  };
  per_call("from_json<ListSandboxesResponse>", page_body.size(), 1, [&] {
    auto r = from_json<wire::ListSandboxesResponse>(page_body, decode_mode::lenient);
    ok = ok && r && r.value().sandboxes.size() == 100;
  });
  per_call("to_json(ListSandboxesResponse)", page_body.size(), 1, [&] {
    auto s = to_json(page);
    ok = ok && s.size() == page_body.size();
  });
  per_call("from_json<Sandbox>, strict", sandbox_body.size(), 50, [&] {
    auto r = from_json<wire::Sandbox>(sandbox_body, decode_mode::strict);
    ok = ok && r;
  });
  per_call("from_json<ExecRequest>, strict", exec_body.size(), 100, [&] {
    auto r = from_json<wire::ExecRequest>(exec_body, decode_mode::strict);
    ok = ok && r;
  });
  per_call("to_json(ExecRequest)", exec_body.size(), 100, [&] {
    auto s =
        to_json(wire::ExecRequest{{}, {"python3", "-c", "print(1)"}, {{"A", "1"}}, 1 << 20, ""});
    ok = ok && s.size() == exec_body.size();
  });
  if (!ok) {
    std::printf("  ERROR: a small message did not round-trip\n");
    std::exit(1);
  }
}

} // namespace

int main(int argc, char** argv) {
  std::vector<std::size_t> sizes = {10, 256};
  if (argc > 1) sizes = {static_cast<std::size_t>(std::strtoul(argv[1], nullptr, 10))};
  if (argc == 1 || sizes[0] == 0) run_small();
  for (auto mib : sizes)
    if (mib > 0) run(mib);
}
