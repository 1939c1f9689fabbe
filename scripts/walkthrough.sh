#!/usr/bin/env bash
# The walkthrough `make run` prints: alice is brokered, bob is asked to connect GitHub, opens
# the link (scripted here with curl and a cookie jar, as a browser would), and his next call
# succeeds; then he disconnects from the self-service page. The same through Okta (STS, with
# bob's consent behind the gateway's link; Cross App Access), then the official MCP SDK client
# from nothing but the URL. Bob ends disconnected from GitHub, so you can try it yourself.
# Usage: scripts/walkthrough.sh [gateway-url] [sim-url]
set -euo pipefail
cd "$(dirname "$0")/.."
GW=${1:-http://localhost:3000}
SIM_URL=${2:-http://127.0.0.1:9000}
jar=$(mktemp)
trap 'rm -f "$jar"' EXIT

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
field() { sed -n "s/.*name=\"$1\" value=\"\([^\"]*\)\".*/\1/p" | head -1 | sed 's/&amp;/\&/g'; }
json() { python3 -c "import json,sys; print(json.load(sys.stdin)$1)"; }
browse() { curl -s -L -b "$jar" -c "$jar" "$@"; }
token() { curl -s -H 'content-type: application/json' -d "{\"sub\":\"$1\",\"tenant\":\"${2:-github}\"}" "$SIM_URL/dev/token" | json '["access_token"]'; }
status() { curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $1" "$GW/github/user"; }
expect() { if [ "$1" != "$2" ]; then echo "walkthrough: expected $2, got $1" >&2; exit 1; fi; echo "  HTTP $1"; }

# Open a connect link as bob: sign in at Auth0 (the sim's login page), allow at the provider
# (the sim's consent page); the gateway completes the connection.
connect_bob() {
  local consent q ticket done_page
  consent=$(browse "$1")
  # The login form, unless the browser is still signed in at Auth0 from an earlier visit.
  if echo "$consent" | grep -q 'name="q"'; then
    q=$(echo "$consent" | field q)
    consent=$(browse --data-urlencode "q=$q" --data "username=bob" "$SIM_URL/authorize/login")
  fi
  echo "$consent" | sed -n 's/.*<h1>\([^<]*\)<\/h1>.*/  provider page: \1/p'
  ticket=$(echo "$consent" | field ticket)
  done_page=$(browse --data-urlencode "ticket=$ticket" --data "decision=allow" "$SIM_URL/connected-accounts/approve")
  echo "$done_page" | sed -n 's/.*<h1 class="ok">\([^<]*\)<\/h1>.*/  gateway page: \1/p'
  settle
}

# With several replicas, the one the agent reaches may still remember "not connected" for up
# to settings.not_connected_cache_seconds (the replica that completed the connection forgot
# it at once; the others cannot be told).
settle() {
  if [ "${REPLICAS:-1}" -gt 1 ]; then
    echo "  (waiting ${NOT_CONNECTED_CACHE_SECONDS:-5} s: another replica may still remember \"not connected\")"
    sleep "${NOT_CONNECTED_CACHE_SECONDS:-5}"
  fi
}

# Bob disconnects GitHub on his connected-accounts page.
disconnect_bob() {
  local accounts action
  accounts=$(browse "$GW/connect/github/accounts")
  action=$(echo "$accounts" | sed -n 's/.*<form method="post" action="\([^"]*\)".*/\1/p' | head -1 | sed 's/&amp;/\&/g')
  browse --data '' -o /dev/null "$action"
}

# The official MCP Python SDK client (tests/mcp/client.py) from nothing but the URL, signing in
# as $1 in mode $2; its events summarised, a consent link opened as bob and answered.
mcp_client() {
  coproc MCP { .venv/bin/python tests/mcp/client.py --url "$GW/github/mcp" --oauth-user "$1" --mode "$2" --calls 1 2>/dev/null; }
  # Keep the pipes and pid: bash forgets a coprocess's variables once it exits.
  local pid=$MCP_PID from to line kind
  exec {from}<&"${MCP[0]}" {to}>&"${MCP[1]}"
  while IFS= read -r line <&"$from"; do
    kind=$(echo "$line" | json '["event"]')
    case "$kind" in
      authorized) echo "  signed in at $(echo "$line" | json '["iss"]') (the PRM's authorization server), token for $GW/github/mcp" ;;
      connected) echo "  session open, MCP $(echo "$line" | json '["protocol_version"]')" ;;
      tools) echo "  tools/list: $(echo "$line" | json '["names"]')" ;;
      elicitation)
        echo "  tools/call answered with a URL elicitation ($(echo "$line" | json '["via"]')): $(echo "$line" | json '["url"]')"
        connect_bob "$(echo "$line" | json '["url"]')"
        echo continue >&"$to" ;;
      result) echo "  tools/call whoami: $(echo "$line" | json '["text"]')" ;;
      done) ;;
      *) echo "  $line" ;;
    esac
  done
  exec {from}<&- {to}>&-
  wait "$pid"
}

ALICE=$(token alice)
BOB=$(token bob)

step "alice (GitHub connected) calls GET /github/user: the backend sees her GitHub token, not the agent's"
curl -s -H "Authorization: Bearer $ALICE" "$GW/github/user" |
  python3 -c 'import json,sys; h=dict(json.load(sys.stdin)["headers"]); print("  backend saw: authorization:", h.get("authorization"))' 

step "bob (nothing connected) calls it: 403 connected_account_required, with a link to connect"
answer=$(curl -s -H "Authorization: Bearer $BOB" "$GW/github/user")
echo "$answer" | python3 -m json.tool
link=$(echo "$answer" | json '["connect_uri"]')

step "bob opens the link: signs in at Auth0 (the sim's login page) as bob, allows access at GitHub"
connect_bob "$link"

step "bob's agent retries: 200, brokered with bob's GitHub token"
expect "$(status "$BOB")" 200

step "bob disconnects GitHub on his connected-accounts page"
disconnect_bob
expect "$(status "$BOB")" 403

step "alice calls Slack through Okta's STS exchange and the wiki through Cross App Access (ID-JAG)"
for tenant in slack wiki; do
  curl -s -H "Authorization: Bearer $(token alice $tenant)" "$GW/$tenant/me" |
    python3 -c 'import json,sys; h=dict(json.load(sys.stdin)["headers"]); print("  '"$tenant"' backend saw: authorization:", h.get("authorization"))'
done

step "bob calls Slack: 403 with the gateway's link (Okta's consent URL is never handed out)"
BOB_SLACK=$(token bob slack)
link=$(curl -s -H "Authorization: Bearer $BOB_SLACK" "$GW/slack/me" | json '["connect_uri"]')
echo "  connect_uri: $link"

step "bob opens it: signs in at Okta (the sim's org sign-in), the gateway checks he is bob, and only then sends him to Okta's consent"
page=$(browse "$link")
q=$(echo "$page" | field q)
consent=$(browse --data-urlencode "q=$q" --data "username=bob" "$SIM_URL/okta/oauth2/v1/authorize/login")
session=$(echo "$consent" | field session)
browse --data-urlencode "session=$session" --data "decision=allow" -o /dev/null "$SIM_URL/okta/interact/approve"
settle
code=$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $BOB_SLACK" "$GW/slack/me")
expect "$code" 200

step "an MCP client given only $GW/github/mcp (official MCP Python SDK, 2026-07-28), as alice"
mcp_client alice auto

step "the same as bob, in 2025-11-25: the link arrives as -32042, bob connects, the SDK's retry succeeds"
mcp_client bob legacy

step "bob disconnects again (so you can try the flows yourself)"
disconnect_bob
expect "$(status "$BOB")" 403
