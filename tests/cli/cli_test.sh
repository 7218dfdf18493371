#!/usr/bin/env bash
# The `sandbox` command-line tool end to end: `run` on this host, the remote commands against a
# sandboxd this script starts on ephemeral loopback ports, exit statuses and one-line errors, and
# (under tmux, when installed) what a person sees on a terminal: output as it comes, progress
# while a stop waits. Usage: cli_test.sh SANDBOX SANDBOXD
set -uo pipefail
cli=${1:?usage: cli_test.sh SANDBOX SANDBOXD}
sandboxd=${2:?usage: cli_test.sh SANDBOX SANDBOXD}
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=.ci/peers-lib.sh
. "$here/../../.ci/peers-lib.sh" # start_sandboxd
work=$(mktemp -d)
pid=""
session="sandbox-cli-test-$$"
failures=0
cleanup() {
  command -v tmux >/dev/null && tmux kill-session -t "$session" 2>/dev/null
  if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid"
    for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null
  fi
  rm -rf "$work"
}
trap cleanup EXIT
fail() { echo "FAIL: $*"; failures=$((failures + 1)); }
# expect_eq WHAT GOT WANT
expect_eq() { [ "$2" = "$3" ] || fail "$1: got [$2], want [$3]"; }

# ---- local: run -------------------------------------------------------------------------------
out=$("$cli" run -- sh -c 'echo out; echo err >&2; exit 7' 2>"$work/err")
expect_eq "run: exit status" "$?" 7
expect_eq "run: stdout" "$out" out
expect_eq "run: stderr" "$(cat "$work/err")" err
expect_eq "run: stdin" "$(printf 'b\na\n' | "$cli" run -- sort | tr '\n' ' ')" "a b "
expect_eq "run: options" "$("$cli" run --env A=1 --workdir /tmp --memory 64Mi --pids 50 --cpus 0.5 \
  -- sh -c 'echo $A $(pwd)')" "1 /tmp"
echo "secret" >"$work/file"
expect_eq "run: --mount-file" "$("$cli" run --mount-file "$work/file:/etc/app.conf" -- cat /etc/app.conf)" secret
"$cli" run --timeout 1 -- sleep 30 2>"$work/err"
expect_eq "run: --timeout" "$?" 124
grep -q '^sandbox: command_timeout: ' "$work/err" || fail "run: --timeout message: $(cat "$work/err")"
expect_eq "run: --network egress" "$("$cli" run --network egress -- cat /etc/resolv.conf)" \
  "nameserver 10.0.2.3"
"$cli" run --allow 10.0.0.0/8 -- true 2>"$work/err"
expect_eq "run: --allow without egress" "$?" 65
"$cli" run --network bogus -- true 2>"$work/err"
expect_eq "run: bad option value" "$?" 2
"$cli" run --image /nonexistent -- true 2>"$work/err"
expect_eq "run: missing image" "$?" 65
expect_eq "run: one line" "$(wc -l <"$work/err")" 1
grep -q '^sandbox: validation: .*/nonexistent' "$work/err" || fail "run: image message: $(cat "$work/err")"
"$cli" nonsense 2>/dev/null
expect_eq "unknown command" "$?" 2
# A reader that goes away stops the command, as SIGPIPE would (not a command left running).
out=$(timeout 60 "$cli" run -- yes | head -1)
expect_eq "run into a closed pipe: status" "${PIPESTATUS[0]}" 141
expect_eq "run into a closed pipe: output" "$out" y
# Closed standard descriptors are not mistaken for what the tool opens next.
expect_eq "run with stdin closed" "$(timeout 60 "$cli" run -- sh -c 'cat; echo end' <&-)" end
# -n keeps the caller's stdin for the caller.
expect_eq "run -n" "$(printf 'a\nb\n' | while read -r l; do echo "$l"; "$cli" run -n -- true; done | tr '\n' ' ')" "a b "
# Input in bulk arrives whole.
expect_eq "run: 16 MiB of stdin" "$(head -c 16777216 /dev/zero | "$cli" run -- wc -c)" 16777216
# Numbers out of range and directories are refused in one line, not wrapped or crashed on.
"$cli" run --timeout 18446744073709552 -- true 2>"$work/err"
expect_eq "run: huge --timeout" "$?" 2
"$cli" run --pids 4294967296 -- true 2>"$work/err"
expect_eq "run: --pids past 2^32" "$?" 2
"$cli" run --cpus 0x10 -- true 2>"$work/err"
expect_eq "run: --cpus in hex" "$?" 2
mkdir -p "$work/dir"
"$cli" run --mount-file "$work/dir:/etc/x" -- true 2>"$work/err"
expect_eq "run: --mount-file of a directory" "$?" 78
expect_eq "run: --mount-file of a directory, one line" "$(wc -l <"$work/err")" 1
# Devices and FIFOs are refused, not read without end or waited on.
timeout 30 "$cli" run -n --mount-file /dev/zero:/x -- true 2>"$work/err"
expect_eq "run: --mount-file of a device" "$?" 81
mkfifo "$work/fifo"
timeout 30 "$cli" run -n --mount-file "$work/fifo:/x" -- true 2>"$work/err"
expect_eq "run: --mount-file of a FIFO" "$?" 81
"$cli" --help | grep -q 'Exit status' || fail "--help documents the exit statuses"

# ---- remote ----------------------------------------------------------------------------------
start_sandboxd cli "$sandboxd"
# The tool speaks gRPC to a service when it was built with it (live output, stdin), else REST.
streaming=0
url=$rest_url
if "$cli" --help | grep -q 'speaks gRPC'; then
  streaming=1
  url=$grpc_url
fi
export CWSANDBOX_API_KEY=$token CWSANDBOX_BASE_URL=$url
unset WANDB_API_KEY

id=$("$cli" create --tag cli-test -- sh -c 'echo main says hi; sleep 600')
expect_eq "create: exit status" "$?" 0
case "$id" in sbx-*) ;; *) fail "create printed [$id]" ;; esac
"$cli" ls --tag cli-test | grep -q "^$id  *RUNNING  *-  *cli-test$" || fail "ls: $("$cli" ls --tag cli-test)"
expect_eq "ls --json" "$("$cli" ls --json --tag cli-test)" \
  "[{\"id\":\"$id\",\"state\":\"RUNNING\",\"tags\":[\"cli-test\"]}]"
expect_eq "get --json" "$("$cli" get "$id" --json)" \
  "{\"id\":\"$id\",\"state\":\"RUNNING\",\"tags\":[\"cli-test\"]}"
out=$(echo hello | "$cli" exec "$id" --env X=y -- sh -c 'cat; echo $X; echo e >&2; exit 3' 2>"$work/err")
expect_eq "exec: exit status" "$?" 3
if [ $streaming = 1 ]; then
  expect_eq "exec: stdout (stdin passed on)" "$out" "hello
y"
else
  expect_eq "exec: stdout" "$out" "y"
fi
expect_eq "exec: stderr" "$(cat "$work/err")" e
head -c 100000 /dev/urandom >"$work/blob"
"$cli" cp "$work/blob" "$id:/tmp/blob" || fail "cp to the sandbox"
"$cli" cp "$id:/tmp/blob" "$work/back" || fail "cp from the sandbox"
cmp -s "$work/blob" "$work/back" || fail "cp: the file changed on the way"
expect_eq "cp to stdout" "$(echo piped | "$cli" cp - "$id:/tmp/p" && "$cli" cp "$id:/tmp/p" -)" piped
expect_eq "logs" "$("$cli" logs "$id")" "main says hi"
"$cli" get no-such-sandbox 2>"$work/err"
expect_eq "get unknown: exit status" "$?" 66
expect_eq "get unknown: one line" "$(wc -l <"$work/err")" 1
grep -q '^sandbox: not_found: ' "$work/err" || fail "get unknown: $(cat "$work/err")"
CWSANDBOX_API_KEY=wrong "$cli" ls 2>"$work/err"
expect_eq "wrong key: exit status" "$?" 75
"$cli" exec "$id" -- 2>/dev/null
expect_eq "exec without a command" "$?" 2
"$cli" create stray words 2>/dev/null
expect_eq "create with stray words" "$?" 2
"$cli" cp "$work/dir" "$id:/tmp/dir" 2>"$work/err"
expect_eq "cp of a directory" "$?" 78
out=$(timeout 60 "$cli" exec "$id" -- yes | head -1)
expect_eq "exec into a closed pipe" "${PIPESTATUS[0]}" 141
"$cli" stop "$id" --grace 1 || fail "stop"
expect_eq "stopped" "$("$cli" get "$id" --json | sed 's/.*"state":"\([A-Z]*\)".*/\1/')" TERMINATED
"$cli" delete "$id" || fail "delete of a stopped sandbox"
"$cli" delete no-such-sandbox || fail "delete of an unknown sandbox"

# ---- on a terminal, as a person sees it --------------------------------------------------------
if ! command -v tmux >/dev/null; then
  echo "tmux is not installed: the terminal checks did not run"
  [ $failures -eq 0 ] && exit 77
  exit 1
fi
pane() { tmux capture-pane -p -t "$session"; }
# wait_pane TEXT SECONDS: until the pane shows TEXT
wait_pane() {
  for _ in $(seq $(($2 * 10))); do pane | grep -q "$1" && return 0; sleep 0.1; done
  return 1
}
tmux new-session -d -s "$session" -x 120 -y 30 \
  "env CWSANDBOX_BASE_URL=$url CWSANDBOX_API_KEY=$token bash --norc --noprofile"
tmux send-keys -t "$session" "PS1='$ '; clear" Enter
sleep 0.5
# Output arrives as the command prints it, not when it ends.
tmux send-keys -t "$session" "$cli run -- sh -c 'echo first; sleep 3; echo second'" Enter
wait_pane '^first$' 10 || fail "terminal: no live output: $(pane)"
pane | grep -q '^second$' && fail "terminal: the second line came with the first"
wait_pane '^second$' 10 || fail "terminal: the command did not finish: $(pane)"
# A shell: keys go to the sandbox's terminal, its exit status comes back.
if [ $streaming = 1 ]; then
  box=$("$cli" create -- sleep 600)
  tmux send-keys -t "$session" "clear; $cli shell $box; echo shell-exit-\$?" Enter
  sleep 1
  tmux send-keys -t "$session" 'echo in-$((6*7)) $(hostname | wc -c)' Enter
  wait_pane '^in-42 [0-9]' 10 || fail "terminal: the shell did not answer: $(pane)"
  tmux send-keys -t "$session" 'exit 5' Enter
  wait_pane '^shell-exit-5$' 10 || fail "terminal: the shell did not end with its status: $(pane)"
  "$cli" delete "$box" || fail "delete after shell"
  echo | "$cli" shell "$box" 2>/dev/null
  expect_eq "shell without a terminal" "$?" 2
fi
# A stop that waits out its grace shows that it is waiting, then clears the line.
slow=$("$cli" create -- sh -c 'trap "" TERM; sleep 600')
tmux send-keys -t "$session" "clear; $cli stop $slow --grace 3; echo stopped-\$?" Enter
wait_pane "stopping $slow\.\.\. [0-9.]* s" 10 || fail "terminal: no progress while stopping: $(pane)"
wait_pane '^stopped-0$' 20 || fail "terminal: stop did not end: $(pane)"
pane | grep -q "stopping $slow" && fail "terminal: the progress line was left behind: $(pane)"
# On a pipe, the same wait prints nothing.
slow=$("$cli" create -- sh -c 'trap "" TERM; sleep 600')
"$cli" stop "$slow" --grace 2 2>"$work/err" | cat
[ -s "$work/err" ] && fail "progress on a pipe: $(cat "$work/err")"

[ $failures -eq 0 ] && echo "all CLI checks passed"
exit $((failures > 0))
