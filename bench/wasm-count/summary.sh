#!/bin/bash
# Deterministic per-request wasm instruction counts (wasmtime fuel) and host calls of filter
# modules, warm and new-token, as the benchmark's requests. Setup (once):
#   .venv/bin/pip install wasmtime cryptography      (into the project's venv, from the root)
#   a plugin configuration as bench's example_stack (Auth0 tenants only, no connect, no
#   sealing_key_env, tenants[0].vault.client_secret set, URLs on the sim's port) in
#   /tmp/perf/plugin.json, and `target/release/sim serve --config /tmp/perf/plugin.json
#   --port 19400 --backend-port 19401` running (it answers the JWKS and vault call-outs).
# usage: bench/wasm-count/summary.sh module.wasm...  -> fuel and host calls per request,
# warm and new
.venv/bin/python "$(dirname "$0")/host.py" --plugin /tmp/perf/plugin.json --sim-port 19400 --requests ${N:-300} "$@" 2>&1 | python3 -c "
import sys,json
for line in sys.stdin:
    m,_,j=line.partition(' ')
    try: r=json.loads(j)
    except Exception: print(line); continue
    cb=r['fuel_by_callback']
    print(f\"{m.split('/')[-1]:28s} {r['label']:5s} fuel {r['fuel_per_request']:10.1f}  calls {r['host_calls_total']:.0f} (+{r['host_calls_per_request'].get('(alloc re-entry)',0):.0f} alloc)  req_hdr {cb.get('proxy_on_request_headers',0):.0f} resp_hdr {cb.get('proxy_on_response_headers',0):.0f} delete {cb.get('proxy_on_delete',0):.0f} statuses {r['statuses']}\")
"
