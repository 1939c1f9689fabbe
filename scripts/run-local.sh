#!/usr/bin/env bash
# The local stack: the sim (issuers and their authorization servers, Token Vault, Okta), the
# tenants' backend (a real MCP server of the official Python SDK at /mcp that echoes any other
# path, on :9001) and Envoy with the filter, in the foreground on 127.0.0.1:3000. Ctrl-C stops
# them all.
set -euo pipefail
cd "$(dirname "$0")/.."

ENVOY_BIN=${ENVOY_BIN:-.tools/envoy}
# The demo vault client secret reaches Envoy (vm_config host_env_keys) and the sim by env.
export GITHUB_VAULT_CLIENT_SECRET=${GITHUB_VAULT_CLIENT_SECRET:-local-demo-secret}
# The Okta tenants' agent client key (private_key_jwt): made once for this checkout, handed to
# Envoy (which signs with it) and to the sim (which checks the assertions) by env.
mkdir -p .tools
[ -s .tools/okta-agent-key.pem ] || { umask 077; target/release/sim agent-key > .tools/okta-agent-key.pem; }
OKTA_AGENT_PRIVATE_KEY=$(cat .tools/okta-agent-key.pem)
export OKTA_AGENT_PRIVATE_KEY
# The key sealing the connect flow's links and cookies (settings.sealing_key_env): made once
# for this checkout; every Envoy of the stack shares it.
[ -s .tools/sealing-key ] || { umask 077; head -c 32 /dev/urandom | base64 > .tools/sealing-key; }
TVP_SEALING_KEY=$(cat .tools/sealing-key)
export TVP_SEALING_KEY
SIM=target/release/sim

for port in 3000 9000 9001 9002 9901; do
  if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
    echo "port $port is in use; stop whatever holds it (an earlier make run?) and retry" >&2
    exit 1
  fi
done

# The sim's own echo backend is not used here (:9002): the MCP server below is the backend.
"$SIM" serve --config tenants.example.json --port 9000 --backend-port 9002 &
SIM_PID=$!
.venv/bin/python tests/mcp/server.py --port 9001 >/dev/null 2>&1 &
BACKEND_PID=$!
# Start Envoy once the issuers answer, so the first key fetch succeeds.
for _ in $(seq 1 100); do
  if curl -fsS localhost:9000/issuers/github/jwks.json >/dev/null 2>&1 &&
     curl -fsS localhost:9001/ >/dev/null 2>&1; then break; fi
  sleep 0.1
done
REPLICAS=${REPLICAS:-1}
# HOST=native: the dynamic module (make native) instead of the wasm filter.
HOST=${HOST:-wasm}
TVP=target/release/tvp
# Named for either host; only the native one reads it.
NATIVE_MODULE=$PWD/target/native/libtvp_native.so
LOG_LEVELS=wasm:info,dynamic_modules:info
if [ "$REPLICAS" -le 1 ]; then
  CONFIG=envoy/envoy.yaml
  if [ "$HOST" != wasm ]; then
    [ -x "$TVP" ] || cargo build -q --release -p deploy --bin tvp
    "$TVP" render envoy --tenants tenants.example.json --deployment envoy/local.deployment.yaml \
      --host "$HOST" --set "native_module=$NATIVE_MODULE" --out ".tools/$HOST" 2>/dev/null
    CONFIG=".tools/$HOST/envoy.yaml"
  fi
  "$ENVOY_BIN" -c "$CONFIG" --concurrency 2 --disable-hot-restart -l warning --component-log-level "$LOG_LEVELS" &
  ENVOY_PID=$!
else
  # REPLICAS Envoys with the filter (listeners :3001.., admin :9911..) behind the front that
  # `tvp render front` makes on :3000, balancing by the agent's credential: each agent's
  # token is exchanged on one replica, and its MCP sessions stay where they are known.
  [ -x "$TVP" ] || cargo build -q --release -p deploy --bin tvp
  endpoints=
  ENVOY_PID=
  for i in $(seq 1 "$REPLICAS"); do
    dir=.tools/replica-$i
    "$TVP" render envoy --tenants tenants.example.json --deployment envoy/local.deployment.yaml \
      --host "$HOST" --set "native_module=$NATIVE_MODULE" \
      --set listen_port=$((3000 + i)) --set admin_port=$((9910 + i)) --out "$dir" 2>/dev/null
    "$ENVOY_BIN" -c "$dir/envoy.yaml" --concurrency 1 --disable-hot-restart \
      -l warning --component-log-level "$LOG_LEVELS" &
    ENVOY_PID="$ENVOY_PID $!"
    endpoints="$endpoints${endpoints:+,}127.0.0.1:$((3000 + i))"
  done
  "$TVP" render front --set replicas="$endpoints" --set balance=credential \
    --set listen_address=127.0.0.1 --set admin_port=9901 --out .tools/front 2>/dev/null
  "$ENVOY_BIN" -c .tools/front/front.yaml --concurrency 1 --disable-hot-restart -l warning &
  ENVOY_PID="$ENVOY_PID $!"
fi
# shellcheck disable=SC2086
trap 'kill $SIM_PID $BACKEND_PID $ENVOY_PID 2>/dev/null || true' EXIT INT TERM

# Every Envoy with the filter serves, with every tenant's keys.
healthy() {
  local ports=3000
  [ "$REPLICAS" -le 1 ] || ports=$(seq 3001 $((3000 + REPLICAS)))
  for p in $ports; do
    curl -fsS "localhost:$p/health" 2>/dev/null | grep -q '"status":"ok"' || return 1
  done
}
up=
for _ in $(seq 1 200); do
  if healthy; then up=1; break; fi
  # shellcheck disable=SC2086
  kill -0 $ENVOY_PID 2>/dev/null || break
  sleep 0.1
done
if [ -z "$up" ]; then
  echo "Envoy did not come up healthy on :3000 (see its log above)" >&2
  exit 1
fi

bash scripts/walkthrough.sh http://localhost:3000 http://127.0.0.1:9000 || echo "(the walkthrough failed; see above)"

cat <<MSG

token-vault-proxy is up on http://localhost:3000  (Envoy admin: http://localhost:9901)

  # alice has a connected GitHub account: 200 from the backend's echo, with her downstream token
  curl -s -H "Authorization: Bearer \$(make -s token)" localhost:3000/github/user

  # bob has not connected GitHub: 403 connected_account_required with a connect_uri.
  # Open that link in a browser, sign in as "bob", press Allow; then repeat the call: 200.
  curl -s -H "Authorization: Bearer \$(make -s token SUB=bob)" localhost:3000/github/user

  # the same through Okta: the STS exchange (slack; bob's consent is behind the gateway's
  # link, signing in at Okta) and Cross App Access (wiki)
  curl -s -H "Authorization: Bearer \$(make -s token TENANT=slack)" localhost:3000/slack/me
  curl -s -H "Authorization: Bearer \$(make -s token TENANT=wiki)" localhost:3000/wiki/pages

  # bob's connected accounts (sign in as bob): list and disconnect
  #   http://localhost:3000/connect/github/accounts

  # MCP clients need nothing but the URL (they sign in through the gateway's 401; the sim's
  # login page takes any user name: alice has GitHub connected, bob not).
  # VS Code, .vscode/mcp.json:
  #   {"servers": {"github": {"type": "http", "url": "http://localhost:3000/github/mcp"}}}
  # Claude Code:
  #   claude mcp add --transport http github http://localhost:3000/github/mcp
  # The official MCP Python SDK, scripted (what the walkthrough above ran):
  .venv/bin/python tests/mcp/client.py --url http://localhost:3000/github/mcp --oauth-user alice --mode auto

  # an MCP client without the account gets a JSON-RPC URL elicitation carrying its id
  curl -s -H "Authorization: Bearer \$(make -s token SUB=bob)" -H 'Content-Type: application/json' \\
       -H 'Accept: application/json, text/event-stream' -H 'MCP-Protocol-Version: 2025-11-25' \\
       -d '{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"whoami"}}' localhost:3000/github/mcp

  # a read-only token cannot POST: 403 insufficient_scope
  curl -s -X POST -H "Authorization: Bearer \$(make -s token SCOPE=github:read)" localhost:3000/github/repos

  # no token: 401 with a WWW-Authenticate challenge
  curl -si localhost:3000/github/user

  curl -s localhost:3000/tenants ; curl -s localhost:3000/health

A token ready to paste (alice, github, read+write):
  $("$SIM" token)

MSG
# shellcheck disable=SC2086
wait $ENVOY_PID
