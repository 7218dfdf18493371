# Sourced by .ci/peers-*: what both official clients' runs need.
#   peers_workdir           $work: a temporary directory, removed (with sandboxd stopped) at exit
#   peers_sandboxd NAME B   starts B/sandboxd/sandboxd on loopback ports of its own (the client is
#                           never pointed anywhere else); sets $token and $grpc_url
peers_workdir() {
  work=$(mktemp -d)
  pid=
  trap 'if [ -n "$pid" ]; then kill -TERM "$pid" 2>/dev/null && wait "$pid" 2>/dev/null; fi; rm -rf "$work"' EXIT
}

peers_sandboxd() {
  token=$(head -c 24 /dev/urandom | base64 | tr -d '/+=')
  SANDBOXD_TOKEN=$token "$PWD/$2/sandboxd/sandboxd" --listen 127.0.0.1:0 \
    --grpc-listen 127.0.0.1:0 >"$work/urls" 2>"$work/sandboxd.log" &
  pid=$!
  for _ in $(seq 100); do [ "$(wc -l <"$work/urls")" -ge 2 ] && break; sleep 0.1; done
  grpc_url=$(sed -n 2p "$work/urls")
  case $grpc_url in
  http://127.0.0.1:*) ;;
  *) echo "$1: sandboxd did not start"; cat "$work/sandboxd.log"; exit 1 ;;
  esac
}
