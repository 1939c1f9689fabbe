//! Instruction counts of the filter's own logic per request, on the host target, for
//! `valgrind --tool=callgrind` (deterministic, unlike timings on this machine):
//!
//!   cargo build --release -p bench --bin profile
//!   valgrind --tool=callgrind --collect-atstart=no --toggle-collect=profile::serve \
//!       target/release/profile warm 20000
//!
//! Signature checks are stubbed (the host verifies them natively in Envoy); everything else
//! is the real pipeline: token parsing, claim checks, caches, scopes, the downstream lookup,
//! the decision record.

use std::cell::RefCell;
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
use tvp_core::host::{Host, SharedWriteError};
use tvp_core::jose::Alg;
use tvp_core::secret::Secret;

struct MemoryHost {
    shared: RefCell<HashMap<String, Vec<u8>>>,
}

impl Host for MemoryHost {
    fn now_ms(&self) -> u64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0)
    }
    fn shared_get(&self, key: &str) -> (Option<Vec<u8>>, Option<u32>) {
        (self.shared.borrow().get(key).cloned(), Some(1))
    }
    fn shared_set(
        &self,
        key: &str,
        value: &[u8],
        _cas: Option<u32>,
    ) -> Result<(), SharedWriteError> {
        self.shared
            .borrow_mut()
            .insert(key.to_string(), value.to_vec());
        Ok(())
    }
    fn dispatch(&self, _owner: u32, _request: &CalloutRequest, _timeout_ms: u64) -> Option<u32> {
        None
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
    let mode = args.get(1).map(String::as_str).unwrap_or("warm");
    let n: usize = args.get(2).and_then(|v| v.parse().ok()).unwrap_or(10_000);
    let example = std::fs::read_to_string("tenants.example.json").unwrap_or_default();
    let mut doc: serde_json::Value = serde_json::from_str(&example).unwrap_or_default();
    doc["tenants"][0]["vault"]["client_secret_env"] = serde_json::Value::Null;
    doc["tenants"][0]["vault"]
        .as_object_mut()
        .map(|o| o.remove("client_secret_env"));
    doc["tenants"][0]["vault"]["client_secret"] = json!("s");
    if mode == "cold" {
        doc["settings"]["verified_token_cache_size"] = json!(0);
    }
    let cfg = match config::parse(doc.to_string().as_bytes(), &|_| None) {
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
    let host = MemoryHost {
        shared: RefCell::new(HashMap::new()),
    };
    let tenant = &cfg.tenants[0];
    // The in-memory host never refuses a write.
    let _ = host.shared_set(
        &cache::jwks_key(tenant),
        &cache::encode_jwks(host.now_ms(), sim.jwks("github").to_string().as_bytes()),
        None,
    );
    let worker = Worker::new(Rc::clone(&cfg), Box::new(AcceptAll));
    match serve(worker, &host, &tokens, n) {
        Ok(forwarded) => println!("{mode}: {forwarded} of {n} requests forwarded"),
        Err(deny) => eprintln!("denied: {deny}"),
    }
}

/// The measured part: `n` requests through the worker. Not inlined, so callgrind can count
/// only this (`--toggle-collect=profile::serve`).
#[inline(never)]
fn serve(
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
                worker.forget(i as u32);
            }
            Step::Wait { .. } => return Err("waited for keys, which are stored".into()),
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
