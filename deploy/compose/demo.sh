#!/bin/sh
# The README walkthrough as a check: alice (connected) gets 200 from the backend with her
# downstream token, bob (not connected) 403 connected_account_required, a read-only token
# cannot POST, no token is 401. Exit 1 if any answer differs.
#
# The docker-compose `demo` service runs it; it runs against any stack:
#   TVP_URL   Envoy with the filter     (default http://127.0.0.1:3000)
#   SIM_URL   the sim, for agent tokens (default http://127.0.0.1:9000)
#   DEMO_WAIT_SECONDS   how long to wait for the stack (default 180)
# POSIX sh and curl only (the curlimages/curl image has no jq).
set -eu

TVP_URL=${TVP_URL:-http://127.0.0.1:3000}
SIM_URL=${SIM_URL:-http://127.0.0.1:9000}
wait_seconds=${DEMO_WAIT_SECONDS:-180}

# Envoy is up and every tenant's signing keys are loaded.
waited=0
until curl -fsS "$TVP_URL/health" 2>/dev/null | grep -q '"status":"ok"'; do
  waited=$((waited + 1))
  if [ "$waited" -gt "$wait_seconds" ]; then
    echo "demo: $TVP_URL/health did not report ok within ${wait_seconds}s" >&2
    exit 1
  fi
  sleep 1
done

# An agent token from the sim's dev endpoint (what `make token` does). Arguments: sub, scope
# (empty: the tenant's read and write scopes).
token() {
  curl -fsS -X POST -H 'content-type: application/json' \
    -d "{\"tenant\":\"github\",\"sub\":\"$1\",\"scope\":\"$2\"}" "$SIM_URL/dev/token" |
    sed -n 's/.*"access_token":"\([^"]*\)".*/\1/p'
}

body=$(mktemp)
trap 'rm -f "$body"' EXIT
failed=0

# check WHAT STATUS TEXT CURL-ARGS...: the answer has STATUS and its body contains TEXT.
check() {
  what=$1 want=$2 text=$3
  shift 3
  status=$(curl -sS -o "$body" -w '%{http_code}' "$@") || status=000
  if [ "$status" = "$want" ] && grep -q -- "$text" "$body"; then
    echo "ok   $what"
  else
    echo "FAIL $what: got $status, want $want with \"$text\" in:"
    cat "$body"
    echo
    failed=1
  fi
}

alice=$(token alice "")
bob=$(token bob "")
reader=$(token alice "github:read")

check "alice (connected): 200, the backend saw her GitHub token, not the agent's" \
  200 'Bearer sim_github_alice' -H "Authorization: Bearer $alice" "$TVP_URL/github/user"
check "bob (not connected): 403 connected_account_required" \
  403 'connected_account_required' -H "Authorization: Bearer $bob" "$TVP_URL/github/user"
check "read-only token, POST: 403 insufficient_scope" \
  403 'insufficient_scope' -X POST -H "Authorization: Bearer $reader" "$TVP_URL/github/repos"
check "no token: 401 unauthorized" \
  401 'unauthorized' "$TVP_URL/github/user"

if [ "$failed" -ne 0 ]; then
  echo "demo: some answers were not the expected ones" >&2
  exit 1
fi
echo "demo: all answers as expected"
