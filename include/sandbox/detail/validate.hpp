// SPDX-License-Identifier: MIT
// Checks of caller input that every transport shares.
#pragma once

#include <sandbox/detail/text.hpp>
#include <sandbox/options.hpp>
#include <sandbox/result.hpp>

#include <span>
#include <string>

namespace sandbox::detail {

[[nodiscard]] inline result<void> validate_env(const env_map& env, const char* where) noexcept {
  for (const auto& [k, v] : env) {
    if (k.empty() || k.find('=') != std::string::npos || k.find('\0') != std::string::npos ||
        v.find('\0') != std::string::npos)
      return fail(errc::validation, std::string(where) + ": invalid environment variable name " +
                                        shell_quote(k) +
                                        " (must be non-empty, without '=' or NUL)");
  }
  return success();
}

/// argv non-empty with a non-empty program; cwd absolute when given; env names valid.
[[nodiscard]] inline result<void> validate_exec(std::span<const std::string> argv,
                                                const ExecOptions& o) noexcept {
  if (argv.empty()) return fail(errc::validation, "exec: command cannot be empty");
  if (argv[0].empty()) return fail(errc::validation, "exec: the program name (argv[0]) is empty");
  if (o.cwd && (o.cwd->empty() || (*o.cwd)[0] != '/'))
    return fail(errc::validation, "exec " + join_command(argv) +
                                      ": ExecOptions::cwd must be an absolute path, got " +
                                      shell_quote(*o.cwd));
  if (o.timeout && o.timeout->count() <= 0)
    return fail(errc::validation,
                "exec " + join_command(argv) + ": ExecOptions::timeout must be positive");
  return validate_env(o.env, "ExecOptions::env");
}

[[nodiscard]] inline result<void> validate_options(const SandboxOptions& o) noexcept {
  if (!o.command.empty() && o.command[0].empty())
    return fail(errc::validation, "SandboxOptions::command: the program name is empty");
  if (!o.working_dir.empty() && o.working_dir[0] != '/')
    return fail(errc::validation, "SandboxOptions::working_dir must be an absolute path, got " +
                                      shell_quote(o.working_dir));
  if (o.max_lifetime && o.max_lifetime->count() <= 0)
    return fail(errc::validation, "SandboxOptions::max_lifetime must be positive");
  for (const auto& f : o.mounted_files) {
    if (f.path.size() < 2 || f.path[0] != '/' || f.path.back() == '/' ||
        f.path.find('\0') != std::string::npos)
      return fail(errc::validation, "SandboxOptions::mounted_files: path must be an absolute file "
                                    "path, got " +
                                        shell_quote(f.path));
  }
  return validate_env(o.env, "SandboxOptions::env");
}

} // namespace sandbox::detail
