//! Instruction counts of the filter's own logic per request, on the host target, for
//! `valgrind --tool=callgrind` (deterministic, unlike timings on this machine):
//!
//!   CARGO_PROFILE_RELEASE_STRIP=false CARGO_TARGET_DIR=target/profile \
//!       cargo build --release -p bench --bin profile
//!   valgrind --tool=callgrind --collect-atstart=no --toggle-collect=profile::serve \
//!       target/profile/release/profile warm 20000
//!
//! (The release profile strips symbols, and callgrind then collects nothing.) Scenarios:
//! `warm` (one token, cached) and `cold` (a new token on every request, as the benchmark's
//! new-token listener) drive the Worker alone; `gateway-warm` and `gateway-cold` drive the same
//! requests through the Gateway as the proxy-wasm filter does (the request's headers, the
//! generation check, outcomes and effects, the response, forgetting the request), and
//! `glue-warm` and `glue-cold` through the filter's glue before the Gateway (b18c570's
//! filter/http.rs, on the same core calls): the decision layer's own cost is the difference.
//! Each run also prints the host services the core called per request (each is a call across
//! the wasm boundary in Envoy).
//!
//! Signature checks are stubbed (the host verifies them natively in Envoy); everything else
//! is the real pipeline: token parsing, claim checks, caches, scopes, the downstream lookup,
//! the decision record.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;

use serde_json::json;
use sim::{Mint, Sim, SimTenant};
use tvp_core::audit;
use tvp_core::cache;
use tvp_core::callout::CalloutRequest;
use tvp_core::config;
use tvp_core::crypto::{Key, SignatureVerifier};
use tvp_core::flow::{FlightKey, RequestInput, Step, Worker};
use tvp_core::gateway::{Effect, Gateway, Next, RequestHead};
use tvp_core::generation::Generation;
use tvp_core::host::{Host, SharedWriteError};
use tvp_core::jose::Alg;
use tvp_core::secret::Secret;

#[derive(Default)]
struct MemoryHost {
    shared: RefCell<HashMap<String, Vec<u8>>>,
    /// Host services called (each crosses the wasm boundary in Envoy).
    calls: Calls,
}

#[derive(Default)]
struct Calls {
    now: Cell<u64>,
    shared_get: Cell<u64>,
    shared_set: Cell<u64>,
    count: Cell<u64>,
    connection_id: Cell<u64>,
    /// Effects a host applies with one call each (header edits, replies, the record).
    effects: Cell<u64>,
}

fn bump(c: &Cell<u64>) {
    c.set(c.get() + 1);
}

impl Host for MemoryHost {
    fn now_ms(&self) -> u64 {
        bump(&self.calls.now);
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0)
    }
    fn shared_get(&self, key: &str) -> (Option<Vec<u8>>, Option<u32>) {
        bump(&self.calls.shared_get);
        (self.shared.borrow().get(key).cloned(), Some(1))
    }
    fn shared_set(
        &self,
        key: &str,
        value: &[u8],
        _cas: Option<u32>,
    ) -> Result<(), SharedWriteError> {
        bump(&self.calls.shared_set);
        self.shared
            .borrow_mut()
            .insert(key.to_string(), value.to_vec());
        Ok(())
    }
    fn dispatch(&self, _owner: u32, _request: &CalloutRequest, _timeout_ms: u64) -> Option<u32> {
        None
    }
    fn count(&self, _tenant: &str, _counter: tvp_core::metrics::Counter) {
        // In memory in the filter too (flushed on the tick), but counted here.
        bump(&self.calls.count);
    }
    fn connection_id(&self) -> Option<u64> {
        bump(&self.calls.connection_id);
        Some(7)
    }
}

struct AcceptAll;
impl SignatureVerifier for AcceptAll {
    fn verify(&self, _: Alg, _: &Key, _: &[u8], _: &[u8]) -> bool {
        true
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let scenario = args.get(1).map(String::as_str).unwrap_or("warm");
    let (layer, mode) = match scenario.split_once('-') {
        Some((layer, mode)) => (layer, mode),
        None => ("worker", scenario),
    };
    let n: usize = args.get(2).and_then(|v| v.parse().ok()).unwrap_or(10_000);
    let example = std::fs::read_to_string("tenants.example.json").unwrap_or_default();
    let mut doc: serde_json::Value = serde_json::from_str(&example).unwrap_or_default();
    // As the benchmark's stack: the Auth0 tenants' API path, no Okta tenants (they need the
    // agent's key) and no connect pages (they need a sealing key).
    if let Some(list) = doc["tenants"].as_array_mut() {
        list.retain(|t| t["vault"]["type"] == "auth0");
        for t in list.iter_mut().filter_map(serde_json::Value::as_object_mut) {
            t.remove("connect");
        }
    }
    if let Some(settings) = doc["settings"].as_object_mut() {
        settings.remove("sealing_key_env");
    }
    doc["tenants"][0]["vault"]["client_secret_env"] = serde_json::Value::Null;
    doc["tenants"][0]["vault"]
        .as_object_mut()
        .map(|o| o.remove("client_secret_env"));
    doc["tenants"][0]["vault"]["client_secret"] = json!("s");
    if mode == "cold" {
        doc["settings"]["verified_token_cache_size"] = json!(0);
    }
    let bytes = doc.to_string();
    let cfg = match config::parse(bytes.as_bytes(), &|_| None) {
        Ok(c) => Rc::new(c),
        Err(e) => return eprintln!("{e}"),
    };
    let sim_doc = {
        let mut d = doc.clone();
        d["tenants"][1]["vault"]["client_secret"] = json!("g");
        d
    };
    let sim = match SimTenant::from_filter_config(&sim_doc)
        .and_then(|t| Sim::start(t, 0, 0).map_err(|e| e.to_string()))
    {
        Ok(s) => s,
        Err(e) => return eprintln!("{e}"),
    };
    // One signed token; the cold run's distinct tokens only change `jti` in the payload and
    // keep that signature (the stub verifier accepts it), so minting stays out of the profile.
    let signed = sim
        .mint(&Mint {
            tenant: "github".into(),
            sub: "alice".into(),
            claims: Some(json!({"jti": "0"})),
            ..Mint::default()
        })
        .unwrap_or_default();
    let tokens: Vec<String> = (0..if mode == "cold" { n } else { 1 })
        .map(|i| with_jti(&signed, i))
        .collect();
    let host = MemoryHost::default();
    let tenant = &cfg.tenants[0];
    // The in-memory host never refuses a write.
    let _ = host.shared_set(
        &cache::jwks_key(tenant),
        &cache::encode_jwks(host.now_ms(), sim.jwks("github").to_string().as_bytes()),
        None,
    );
    let worker = Worker::new(Rc::clone(&cfg), Box::new(AcceptAll));
    if layer != "worker" {
        // The downstream token is cached first (the Gateway would dispatch the vault call).
        prime(&cfg, &host, &tokens[0]);
    }
    let run = match layer {
        "gateway" => Run::Gateway(
            Gateway::new(worker).with_generation(Generation::new("profile", bytes.as_bytes())),
            request_headers(),
        ),
        "glue" => Run::Glue(worker, request_headers()),
        _ => Run::Worker(worker),
    };
    let before = host.calls.snapshot();
    match serve(run, &host, &tokens, n) {
        Ok(forwarded) => println!("{scenario}: {forwarded} of {n} requests forwarded"),
        Err(deny) => return eprintln!("denied: {deny}"),
    }
    println!(
        "{scenario}: host calls per request: {}",
        host.calls.per_request(&before, n)
    );
}

impl Calls {
    fn snapshot(&self) -> [u64; 6] {
        [
            self.now.get(),
            self.shared_get.get(),
            self.shared_set.get(),
            self.count.get(),
            self.connection_id.get(),
            self.effects.get(),
        ]
    }

    fn per_request(&self, before: &[u64; 6], n: usize) -> String {
        let names = [
            "now",
            "shared_get",
            "shared_set",
            "count (in memory)",
            "connection_id",
            "effects",
        ];
        let after = self.snapshot();
        names
            .iter()
            .zip(after.iter().zip(before))
            .map(|(name, (a, b))| format!("{name} {:.2}", (a - b) as f64 / n as f64))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// The request headers Envoy hands the filter for the benchmark's requests (wrk's, plus the
/// ones Envoy adds); the token goes in per request.
fn request_headers() -> Vec<(String, Vec<u8>)> {
    [
        (":authority", "127.0.0.1:10000"),
        (":path", "/github/user"),
        (":method", "GET"),
        (":scheme", "http"),
        ("x-forwarded-proto", "http"),
        ("x-request-id", "5b8c8f1e-0f7a-4a0e-9a7e-2f0c1d5e6a7b"),
    ]
    .iter()
    .map(|(n, v)| (n.to_string(), v.as_bytes().to_vec()))
    .collect()
}

/// Cache the user's downstream token as the vault's answer would.
fn prime(cfg: &Rc<config::Config>, host: &MemoryHost, token: &str) {
    let mut worker = Worker::new(Rc::clone(cfg), Box::new(AcceptAll));
    let input = RequestInput {
        tenant: 0,
        method: "GET".into(),
        token: token.to_string(),
        subject_token: None,
    };
    if let Step::Wait {
        flight: FlightKey::Token(cache_key),
        ..
    } = worker.begin(host, u32::MAX, input)
    {
        let value = cache::encode_downstream(
            &cache::Downstream::Token(Secret::new("gho_x")),
            host.now_ms() + 3_600_000,
            0,
        );
        // The in-memory host never refuses a write.
        let _ = host.shared_set(&cache_key, &value, None);
    }
}

enum Run {
    Worker(Worker),
    Gateway(Gateway, Vec<(String, Vec<u8>)>),
    Glue(Worker, Vec<(String, Vec<u8>)>),
}

/// The measured part: `n` requests through the worker. Not inlined, so callgrind can count
/// only this (`--toggle-collect=profile::serve`).
#[inline(never)]
fn serve(run: Run, host: &MemoryHost, tokens: &[String], n: usize) -> Result<usize, String> {
    match run {
        Run::Worker(worker) => serve_worker(worker, host, tokens, n),
        Run::Gateway(gateway, headers) => serve_gateway(gateway, &headers, host, tokens, n),
        Run::Glue(worker, headers) => serve_glue(worker, &headers, host, tokens, n),
    }
}

/// The filter's glue before the Gateway (b18c570's filter/http.rs), on the same core calls:
/// headers read once, routed, the token taken, the Worker run, its step applied by reference,
/// the response's status checked for a forwarded request, the request forgotten. The baseline
/// the Gateway's own cost is measured against.
fn serve_glue(
    mut worker: Worker,
    headers: &[(String, Vec<u8>)],
    host: &MemoryHost,
    tokens: &[String],
    n: usize,
) -> Result<usize, String> {
    use tvp_core::endpoints::{self, Route};
    use tvp_core::{auth, mcp};
    let config = Rc::clone(&worker.config);
    let mut forwarded_map: HashMap<u32, (usize, String)> = HashMap::new();
    let mut mcp_map: HashMap<u32, mcp::InFlight> = HashMap::new();
    let mut forwarded = 0usize;
    for i in 0..n {
        let ctx = i as u32 + 2;
        let token = &tokens[i % tokens.len()];
        let mut pairs = headers.to_vec();
        pairs.push((
            "authorization".into(),
            format!("Bearer {token}").into_bytes(),
        ));
        let head = RequestHead::new(pairs);
        let method = head.get(":method").unwrap_or_default();
        let path = head.get(":path").unwrap_or_default();
        let authority = head.get(":authority").unwrap_or_default();
        if !endpoints::host_allowed(&config, &authority) {
            return Err("unknown host".into());
        }
        let Route::Proxy(tenant_id) = endpoints::route(&method, &path) else {
            return Err("not a proxied path".into());
        };
        let Some(tenant) = config.tenants.iter().position(|t| t.id == tenant_id) else {
            return Err("unknown tenant".into());
        };
        let token = auth::check_no_query_token(&path)
            .and_then(|()| auth::bearer_token(&head.all("authorization")))
            .map_err(|d| format!("{d:?}"))?;
        let recognised = mcp::recognise(&method, &|name| head.get_str(name));
        if let Some(request) = recognised.filter(|r| r.kind == mcp::Kind::Session) {
            mcp_map.insert(ctx, mcp::InFlight::new(tenant, request));
        }
        let subject_token = config.tenants[tenant]
            .vault
            .subject_token_header
            .as_deref()
            .and_then(|h| head.get(h));
        drop(head);
        let input = RequestInput {
            tenant,
            method,
            token,
            subject_token,
        };
        match worker.begin(host, ctx, input) {
            Step::Forward(f) => {
                for name in &f.strip {
                    bump(&host.calls.effects);
                    std::hint::black_box(name.len());
                }
                bump(&host.calls.effects);
                std::hint::black_box(f.header.len() + f.value.len());
                host.count(
                    &config.tenants[f.tenant].id,
                    tvp_core::metrics::Counter::Allow,
                );
                forwarded_map.insert(ctx, (f.tenant, f.principal.downstream_key.clone()));
                if let Some(entry) = mcp_map.get_mut(&ctx) {
                    std::hint::black_box(entry.may_open_session());
                }
                let t = &config.tenants[f.tenant];
                let record = f.principal.allow_record.get_or_init(|| {
                    audit::record(Some(t), Some(&f.principal), audit::Decision::Allow, "ok").into()
                });
                bump(&host.calls.effects);
                std::hint::black_box(record.len());
                forwarded += 1;
            }
            other => return Err(format!("request {i}: {other:?}")),
        }
        // The response: an MCP entry looked up, a forwarded request's status checked.
        std::hint::black_box(mcp_map.contains_key(&ctx));
        if let Some((tenant, key)) = forwarded_map.remove(&ctx) {
            worker.backend_answered(host, tenant, &key, &|| Some(200));
        }
        mcp_map.remove(&ctx);
        forwarded_map.remove(&ctx);
        worker.forget(host, ctx);
    }
    Ok(forwarded)
}

/// As the filter's request context: headers in, outcomes applied, the response's headers, the
/// request forgotten.
fn serve_gateway(
    mut gateway: Gateway,
    headers: &[(String, Vec<u8>)],
    host: &MemoryHost,
    tokens: &[String],
    n: usize,
) -> Result<usize, String> {
    let mut forwarded = 0usize;
    for i in 0..n {
        let ctx = i as u32 + 2;
        let token = &tokens[i % tokens.len()];
        // As the ABI decoder builds it: every name and value copied out of the host's map.
        let mut pairs = headers.to_vec();
        pairs.push((
            "authorization".into(),
            format!("Bearer {token}").into_bytes(),
        ));
        let resolved = gateway.on_request_headers(host, ctx, RequestHead::new(pairs), true);
        for (_, outcome) in resolved {
            apply(host, &outcome.effects);
            if outcome.next != Next::Continue {
                let reply = outcome.reply_of().map(|r| r.status);
                return Err(format!("request {i} stopped (reply {reply:?})"));
            }
            forwarded += 1;
        }
        let effects = gateway.on_response_headers(host, ctx, &|| Some(200), &|_| None);
        apply(host, &effects);
        gateway.forget(host, ctx);
    }
    Ok(forwarded)
}

/// What the filter does with each effect, one host call each; the values are only looked at.
fn apply(host: &MemoryHost, effects: &[Effect]) {
    for effect in effects {
        bump(&host.calls.effects);
        let touched = match effect {
            Effect::RemoveHeader(name) | Effect::RemoveResponseHeader(name) => name.len(),
            Effect::SetHeader(name, value) | Effect::SetResponseHeader(name, value) => {
                name.len() + value.len()
            }
            Effect::ClearRouteCache => 0,
            Effect::Reply(reply) => reply.body.len(),
            Effect::Record(record) => record.len(),
            Effect::WakeOnWrite { key, .. } => key.len(),
        };
        std::hint::black_box(touched);
    }
}

fn serve_worker(
    mut worker: Worker,
    host: &MemoryHost,
    tokens: &[String],
    n: usize,
) -> Result<usize, String> {
    let mut forwarded = 0usize;
    for i in 0..n {
        let token = &tokens[i % tokens.len()];
        let input = RequestInput {
            tenant: 0,
            method: "GET".into(),
            token: token.clone(),
            subject_token: None,
        };
        match worker.begin(host, i as u32, input) {
            Step::Forward(f) => {
                // The filter's decision record, built once per token as the filter does.
                let tenant = &worker.config.tenants[f.tenant];
                let record = f.principal.allow_record.get_or_init(|| {
                    audit::record(
                        Some(tenant),
                        Some(&f.principal),
                        audit::Decision::Allow,
                        "ok",
                    )
                    .into()
                });
                forwarded += usize::from(!record.is_empty());
            }
            Step::Wait {
                flight: FlightKey::Token(cache_key),
                ..
            } => {
                // Answer the one vault call as the vault would, then carry on.
                let value = cache::encode_downstream(
                    &cache::Downstream::Token(Secret::new("gho_x")),
                    host.now_ms() + 3_600_000,
                    0,
                );
                // The in-memory host never refuses a write.
                let _ = host.shared_set(&cache_key, &value, None);
                worker.forget(host, i as u32);
            }
            Step::Wait { .. } | Step::WaitElsewhere { .. } => {
                return Err("waited for keys, which are stored".into())
            }
            Step::Deny { deny, .. } => return Err(format!("{deny:?}")),
        }
    }
    Ok(forwarded)
}

/// `token` with its payload's `jti` set to `i`, header and signature unchanged.
fn with_jti(token: &str, i: usize) -> String {
    use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
    use base64::Engine;
    let parts: Vec<&str> = token.split('.').collect();
    let Some(payload) = parts.get(1).and_then(|p| B64.decode(p).ok()) else {
        return token.to_string();
    };
    let mut claims: serde_json::Value = serde_json::from_slice(&payload).unwrap_or_default();
    claims["jti"] = json!(i.to_string());
    format!(
        "{}.{}.{}",
        parts[0],
        B64.encode(claims.to_string()),
        parts.get(2).unwrap_or(&"")
    )
}
