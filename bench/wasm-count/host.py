#!/usr/bin/env python3
"""A minimal proxy-wasm host (as Envoy's) that runs a filter module under wasmtime with fuel
metering: deterministic wasm instruction counts and exact host-call counts per request.

usage: bench/wasm-count/host.py --plugin PLUGIN.json --sim-port P MODULE.wasm [MODULE2.wasm ...] [--requests N] [--sim-port P]

Requests are the benchmark's: GET /github/user with a bearer token, warm (one token, cached)
and new (a new token each request, verified-token cache off). Call-outs (JWKS, vault) go to a
running sim over HTTP. verify_signature is done natively (cryptography), as Envoy's BoringSSL.
"""
import collections
import http.client
import json
import struct
import sys
import time
import uuid

import wasmtime
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

OK, NOT_FOUND, BAD_ARGUMENT, CAS_MISMATCH = 0, 1, 2, 8


def encode_map(pairs):
    out = struct.pack("<I", len(pairs))
    for n, v in pairs:
        out += struct.pack("<II", len(n), len(v))
    for n, v in pairs:
        out += n + b"\0" + v + b"\0"
    return out


def decode_map(b):
    if not b:
        return []
    (count,) = struct.unpack_from("<I", b, 0)
    sizes = [struct.unpack_from("<II", b, 4 + 8 * i) for i in range(count)]
    at = 4 + 8 * count
    out = []
    for nl, vl in sizes:
        n = b[at:at + nl]
        at += nl + 1
        v = b[at:at + vl]
        at += vl + 1
        out.append((bytes(n), bytes(v)))
    return out


def pb_fields(b):
    i, out = 0, {}
    while i < len(b):
        tag = b[i]
        i += 1
        ln, shift = 0, 0
        while True:
            c = b[i]
            i += 1
            ln |= (c & 0x7F) << shift
            shift += 7
            if not c & 0x80:
                break
        if tag & 7 == 2:
            out[tag >> 3] = bytes(b[i:i + ln])
            i += ln
        else:
            out[tag >> 3] = ln
    return out


def verify_signature(args):
    f = pb_fields(args)
    hname, spki, sig, text = f[1].decode(), f[2], f[3], f[4]
    h = {"sha256": hashes.SHA256(), "sha384": hashes.SHA384(), "sha512": hashes.SHA512()}[hname]
    try:
        key = serialization.load_der_public_key(spki)
        if isinstance(key, rsa.RSAPublicKey):
            key.verify(sig, text, padding.PKCS1v15(), h)
        else:
            key.verify(sig, text, ec.ECDSA(h))
        return b"\x08\x01"
    except (InvalidSignature, ValueError):
        return b"\x08\x00"


class Host:
    def __init__(self, path, plugin_config, sim_port):
        cfg = wasmtime.Config()
        cfg.consume_fuel = True
        self.engine = wasmtime.Engine(cfg)
        self.store = wasmtime.Store(self.engine)
        self.store.set_wasi(wasmtime.WasiConfig())
        self.store.set_fuel(1 << 62)
        self.sim_port = sim_port
        self.plugin_config = plugin_config
        self.shared = {}
        self.calls = collections.Counter()
        self.by_callback = collections.Counter()
        self.metrics = {}
        self.effective = 0
        self.root = 1
        self.req_headers = {}
        self.resp_headers = {}
        self.pending = []
        self.next_token = 1
        self.callout = None
        self.continued = set()
        self.replied = {}
        self.logs = []
        self.next_conn = 100
        self.conn_of = {}
        linker = wasmtime.Linker(self.engine)
        linker.define_wasi()
        module = wasmtime.Module.from_file(self.engine, path)
        for imp in module.imports:
            if imp.module != "env":
                continue
            name = imp.name
            impl = getattr(self, name, None)
            ty = imp.type

            def make(name, impl, nres):
                def f(caller, *args):
                    self.calls[name] += 1
                    self.caller = caller
                    if impl is None:
                        return NOT_FOUND if nres else None
                    return impl(*args)
                return f

            linker.define_func("env", name, ty, make(name, impl, len(ty.results)), access_caller=True)
        self.instance = linker.instantiate(self.store, module)
        self.ex = self.instance.exports(self.store)
        self.mem = self.ex["memory"]
        self.caller = self.store
        self.ex["_initialize"](self.store)

    # -- memory helpers --
    def read(self, ptr, size):
        return bytes(self.mem.read(self.caller, ptr, ptr + size))

    def write(self, ptr, data):
        self.mem.write(self.caller, data, ptr)

    def give(self, data, ret_ptr, ret_size):
        """Hand `data` to the module as Envoy does: allocated by the module, pointer written."""
        if len(data) == 0:
            self.write(ret_ptr, struct.pack("<I", 0))
            self.write(ret_size, struct.pack("<I", 0))
            return
        caller = self.caller
        self.calls["(alloc re-entry)"] += 1
        ptr = self.ex["proxy_on_memory_allocate"](caller, len(data))
        self.caller = caller
        self.write(ptr, data)
        self.write(ret_ptr, struct.pack("<I", ptr))
        self.write(ret_size, struct.pack("<I", len(data)))

    # -- host calls --
    def proxy_log(self, level, ptr, size):
        msg = self.read(ptr, size).decode(errors="replace")
        if level >= 3:
            self.logs.append((level, msg))
        return OK

    def proxy_get_log_level(self, ret):
        self.write(ret, struct.pack("<I", 3))  # warning, as the benchmark's Envoy
        return OK

    def proxy_get_current_time_nanoseconds(self, ret):
        self.write(ret, struct.pack("<Q", time.time_ns()))
        return OK

    def proxy_set_tick_period_milliseconds(self, ms):
        return OK

    def proxy_get_buffer_bytes(self, kind, start, max_size, ret_ptr, ret_size):
        if kind == 7:
            data = self.plugin_config
        elif kind == 4 and self.callout is not None:
            data = self.callout[1]
        else:
            return NOT_FOUND
        max_size &= 0xFFFFFFFF
        self.give(data[start:start + max_size], ret_ptr, ret_size)
        return OK

    def headers_of(self, kind):
        if kind == 0:
            return self.req_headers.get(self.effective)
        if kind == 2:
            return self.resp_headers.get(self.effective)
        if kind == 6 and self.callout is not None:
            return self.callout[0]
        return None

    def proxy_get_header_map_pairs(self, kind, ret_ptr, ret_size):
        h = self.headers_of(kind)
        if h is None:
            return NOT_FOUND
        self.give(encode_map(h), ret_ptr, ret_size)
        return OK

    def proxy_get_header_map_value(self, kind, kp, ks, ret_ptr, ret_size):
        h = self.headers_of(kind)
        name = self.read(kp, ks)
        for n, v in h or []:
            if n == name:
                self.give(v, ret_ptr, ret_size)
                return OK
        return NOT_FOUND

    def proxy_replace_header_map_value(self, kind, kp, ks, vp, vs):
        h = self.headers_of(kind)
        if h is None:
            return BAD_ARGUMENT
        name, value = self.read(kp, ks), self.read(vp, vs)
        h[:] = [p for p in h if p[0] != name] + [(name, value)]
        return OK

    def proxy_remove_header_map_value(self, kind, kp, ks):
        h = self.headers_of(kind)
        if h is None:
            return BAD_ARGUMENT
        name = self.read(kp, ks)
        h[:] = [p for p in h if p[0] != name]
        return OK

    def proxy_add_header_map_value(self, kind, kp, ks, vp, vs):
        h = self.headers_of(kind)
        if h is None:
            return BAD_ARGUMENT
        h.append((self.read(kp, ks), self.read(vp, vs)))
        return OK

    def proxy_get_shared_data(self, kp, ks, ret_ptr, ret_size, ret_cas):
        key = self.read(kp, ks)
        if key not in self.shared:
            return NOT_FOUND
        value, cas = self.shared[key]
        self.give(value, ret_ptr, ret_size)
        self.write(ret_cas, struct.pack("<I", cas))
        return OK

    def proxy_set_shared_data(self, kp, ks, vp, vs, cas):
        key = self.read(kp, ks)
        current = self.shared.get(key)
        if cas and current and current[1] != cas:
            return CAS_MISMATCH
        self.shared[key] = (self.read(vp, vs), (current[1] + 1) if current else 1)
        return OK

    def proxy_get_property(self, pp, ps, ret_ptr, ret_size):
        path = self.read(pp, ps).split(b"\0")
        if path == [b"plugin_name"]:
            self.give(b"tvp", ret_ptr, ret_size)
            return OK
        if path == [b"connection", b"id"]:
            self.give(struct.pack("<Q", self.conn_of.get(self.effective, 1)), ret_ptr, ret_size)
            return OK
        return NOT_FOUND

    def proxy_set_property(self, pp, ps, vp, vs):
        return OK

    def proxy_set_effective_context(self, ctx):
        if ctx != self.root and ctx not in self.req_headers:
            return BAD_ARGUMENT
        self.effective = ctx
        return OK

    def proxy_continue_stream(self, stream):
        self.continued.add(self.effective)
        return OK

    def proxy_send_local_response(self, status, dp, ds, bp, bs, hp, hs, grpc):
        self.replied[self.effective] = (status, self.read(bp, bs))
        return OK

    def proxy_define_metric(self, kind, np, ns, ret):
        name = self.read(np, ns)
        mid = self.metrics.setdefault(name, len(self.metrics) + 1)
        self.write(ret, struct.pack("<I", mid))
        return OK

    def proxy_increment_metric(self, mid, delta):
        return OK

    def proxy_record_metric(self, mid, value):
        return OK

    def proxy_call_foreign_function(self, np, ns, ap, as_, ret_ptr, ret_size):
        name = self.read(np, ns)
        if name == b"verify_signature":
            self.give(verify_signature(self.read(ap, as_)), ret_ptr, ret_size)
            return OK
        return NOT_FOUND  # `sign` and `clear_route_cache` are not needed here

    def proxy_http_call(self, up, us, hp, hs, bp, bs, tp, ts, timeout, ret_token):
        headers = decode_map(self.read(hp, hs))
        body = self.read(bp, bs)
        token = self.next_token
        self.next_token += 1
        self.pending.append((token, self.effective, headers, body))
        self.write(ret_token, struct.pack("<I", token))
        return OK

    # -- driving --
    def fuel(self):
        return self.store.get_fuel()

    def call(self, name, *args):
        self.caller = self.store
        f0 = self.fuel()
        r = self.ex[name](self.store, *args)
        self.by_callback[name] += f0 - self.fuel()
        return r

    def deliver_callouts(self):
        while self.pending:
            token, owner, headers, body = self.pending.pop(0)
            h = dict((n.decode(), v.decode()) for n, v in headers)
            conn = http.client.HTTPConnection("127.0.0.1", self.sim_port, timeout=10)
            extra = {n: v for n, v in h.items() if not n.startswith(":")}
            conn.request(h[":method"], h[":path"], body=body or None, headers=extra)
            r = conn.getresponse()
            rbody = r.read()
            rh = [(b":status", str(r.status).encode())] + [
                (k.lower().encode(), v.encode()) for k, v in r.getheaders()
            ]
            conn.close()
            self.callout = (rh, rbody)
            self.effective = owner
            self.call("proxy_on_http_call_response", owner, token, len(rh), len(rbody), 0)
            self.callout = None

    def start(self):
        self.call("proxy_on_context_create", self.root, 0)
        self.effective = self.root
        self.call("proxy_on_vm_start", self.root, 0)
        ok = self.call("proxy_on_configure", self.root, len(self.plugin_config))
        if not ok:
            raise SystemExit(f"configure failed: {self.logs}")
        self.tick()

    def tick(self):
        self.effective = self.root
        self.call("proxy_on_tick", self.root)
        self.deliver_callouts()

    def request(self, ctx, token, port=10000):
        """One request as Envoy runs it; returns (status, fuel, host calls)."""
        self.conn_of[ctx] = self.next_conn
        self.next_conn += 1
        self.req_headers[ctx] = [
            (b":authority", f"127.0.0.1:{port}".encode()),
            (b":path", b"/github/user"),
            (b":method", b"GET"),
            (b":scheme", b"http"),
            (b"authorization", b"Bearer " + token.encode()),
            (b"x-forwarded-proto", b"http"),
            (b"x-request-id", str(uuid.UUID(int=ctx)).encode()),
        ]
        before_calls = self.calls.copy()
        f0 = self.fuel()
        self.effective = ctx
        self.call("proxy_on_context_create", ctx, self.root)
        self.effective = ctx
        action = self.call("proxy_on_request_headers", ctx, len(self.req_headers[ctx]), 1)
        if action != 0:
            self.deliver_callouts()
        forwarded = (action == 0 or ctx in self.continued) and ctx not in self.replied
        status = 200 if forwarded else self.replied.get(ctx, (0,))[0]
        if forwarded:
            self.resp_headers[ctx] = [
                (b":status", b"200"),
                (b"content-length", b"2"),
                (b"content-type", b"text/plain"),
                (b"date", b"Mon, 30 Nov 2026 12:00:00 GMT"),
                (b"server", b"envoy"),
                (b"x-envoy-upstream-service-time", b"0"),
            ]
            self.effective = ctx
            self.call("proxy_on_response_headers", ctx, len(self.resp_headers[ctx]), 0)
            self.effective = ctx
            self.call("proxy_on_response_body", ctx, 2, 1)
        self.effective = ctx
        self.call("proxy_on_done", ctx)
        self.effective = ctx
        self.call("proxy_on_log", ctx)
        self.effective = ctx
        self.call("proxy_on_delete", ctx)
        fuel = f0 - self.fuel()
        self.req_headers.pop(ctx, None)
        self.resp_headers.pop(ctx, None)
        self.continued.discard(ctx)
        self.replied.pop(ctx, None)
        return status, fuel, self.calls - before_calls


def mint(sim_port, jti=None):
    body = {"tenant": "github", "sub": "alice"}
    if jti is not None:
        body["claims"] = {"jti": str(jti)}
    conn = http.client.HTTPConnection("127.0.0.1", sim_port, timeout=10)
    conn.request("POST", "/dev/token", body=json.dumps(body), headers={"content-type": "application/json"})
    answer = json.loads(conn.getresponse().read())
    conn.close()
    return answer["access_token"]


def scenario(path, plugin, sim_port, tokens, n, label):
    host = Host(path, json.dumps(plugin).encode(), sim_port)
    host.start()
    # Warm-up: keys fetched, the downstream token exchanged, every code path touched once.
    for i in range(3):
        host.request(2 + i, tokens[i % len(tokens)])
    total_fuel = 0
    host.by_callback.clear()
    calls = collections.Counter()
    statuses = collections.Counter()
    for i in range(n):
        if i % 1000 == 999:
            host.tick()
        status, fuel, c = host.request(100 + i, tokens[(i + 3) % len(tokens)])
        statuses[status] += 1
        total_fuel += fuel
        calls += c
    per = {k: v / n for k, v in sorted(calls.items())}
    return {
        "label": label,
        "fuel_per_request": total_fuel / n,
        "statuses": dict(statuses),
        "host_calls_per_request": per,
        "host_calls_total": sum(v for k, v in per.items() if not k.startswith("(")),
        "fuel_by_callback": {k: v / n for k, v in host.by_callback.items() if k != "proxy_on_tick"},
    }


def main():
    args = sys.argv[1:]
    n = 2000
    sim_port = None
    plugin_file = None
    modules = []
    i = 0
    while i < len(args):
        if args[i] == "--requests":
            n = int(args[i + 1]); i += 2
        elif args[i] == "--sim-port":
            sim_port = int(args[i + 1]); i += 2
        elif args[i] == "--plugin":
            plugin_file = args[i + 1]; i += 2
        else:
            modules.append(args[i]); i += 1
    plugin = json.load(open(plugin_file))
    cold = json.loads(json.dumps(plugin))
    cold["settings"]["verified_token_cache_size"] = 0
    warm_tokens = [mint(sim_port)]
    fresh = [mint(sim_port, j) for j in range(n + 3)]
    results = []
    for m in modules:
        results.append((m, scenario(m, plugin, sim_port, warm_tokens, n, "warm")))
        results.append((m, scenario(m, cold, sim_port, fresh, n, "new")))
    for m, r in results:
        print(m, json.dumps(r, indent=None))


if __name__ == "__main__":
    main()
