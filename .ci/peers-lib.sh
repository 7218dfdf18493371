# Sourced by the scripts that run a sandboxd for a client (.ci/peers-*, .ci/packaging,
# tests/cli/cli_test.sh).
#   peers_workdir           $work: a temporary directory, removed (with sandboxd stopped) at exit
#   start_sandboxd NAME P   starts the sandboxd program P on loopback ports of its own (a client
#                           is never pointed anywhere else); sets $pid, $token, $rest_url and
#                           $grpc_url; needs $work
#   peers_sandboxd NAME B   the same for B/sandboxd/sandboxd of build directory B
peers_workdir() {
  work=$(mktemp -d)
  pid=
  trap 'if [ -n "$pid" ]; then kill -TERM "$pid" 2>/dev/null && wait "$pid" 2>/dev/null; fi; rm -rf "$work"' EXIT
}

start_sandboxd() {
  token=$(head -c 24 /dev/urandom | base64 | tr -d '/+=')
  SANDBOXD_TOKEN=$token "$2" --listen 127.0.0.1:0 \
    --grpc-listen 127.0.0.1:0 >"$work/urls" 2>"$work/sandboxd.log" &
  pid=$!
  for _ in $(seq 100); do [ "$(wc -l <"$work/urls")" -ge 2 ] && break; sleep 0.1; done
  rest_url=$(sed -n 1p "$work/urls")
  grpc_url=$(sed -n 2p "$work/urls")
  case $rest_url,$grpc_url in
  http://127.0.0.1:*,http://127.0.0.1:*) ;;
  *) echo "$1: sandboxd did not start"; cat "$work/sandboxd.log"; exit 1 ;;
  esac
}

peers_sandboxd() {
  start_sandboxd "$1" "$PWD/$2/sandboxd/sandboxd"
}
