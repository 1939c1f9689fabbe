//! Okta answers (STS, ID-JAG legs): never panic; a token accepted is header-safe, and an
//! interaction URL passed on is on the Okta org's origin.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tvp_core::callout::CalloutResponse;
use tvp_core::config;
use tvp_core::crypto::signing::PureRustSigner;
use tvp_core::vault::{okta, Step, VaultOutcome};

const PEM: &str = "-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwehRANCAAQeGFMv1HVMAvMEHZx1zrM7g//YGsfOT+iCzLHJi8WJbqRsMRxOL/QN2Wo2U+bkVEXTLf5Ibs7XXHqQxqGIgcCj
-----END PRIVATE KEY-----";

/// The two Okta tenants, parsed once (configuration parsing is not what is fuzzed here).
fn configs() -> &'static [config::Config; 2] {
    static CONFIGS: std::sync::OnceLock<[config::Config; 2]> = std::sync::OnceLock::new();
    CONFIGS.get_or_init(|| {
        let vault = |kind: &str| {
            if kind == "okta-sts" {
                serde_json::json!({"type": kind, "cluster": "okta", "token_url": "https://org.okta.example/oauth2/v1/token",
                  "client_id": "a", "private_key_env": "K", "key_id": "k", "resource": "r", "connection": "s"})
            } else {
                serde_json::json!({"type": kind, "cluster": "okta", "token_url": "https://org.okta.example/oauth2/v1/token",
                  "client_id": "a", "private_key_env": "K", "key_id": "k", "audience": "https://as.example/",
                  "resource_token_url": "https://as.example/token", "resource_client_id": "b", "connection": "w"})
            }
        };
        let parse = |kind: &str| {
            let doc = serde_json::json!({"tenants": [{
                "id": "t", "name": "T", "issuer": "https://a.example/", "audience": "x",
                "jwks": {"cluster": "c"}, "algorithms": ["RS256"], "scopes": {"read": ["r"], "write": ["w"]},
                "backend": "https://b.example", "vault": vault(kind),
            }]});
            config::parse(doc.to_string().as_bytes(), &|_| Some(PEM.into())).expect("valid")
        };
        [parse("okta-sts"), parse("id-jag")]
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&selector, body)) = data.split_first() else { return };
    let cfg = &configs()[usize::from(selector & 1)];
    let statuses = [200u16, 400, 401, 403, 429, 500];
    let response = CalloutResponse {
        status: Some(statuses[usize::from(selector >> 1) % statuses.len()]),
        retry_after: None,
        rate_limit_reset: None,
        body: Some(body.to_vec()),
    };
    let leg = (selector >> 5) & 1;
    match okta::read_answer(&cfg.tenants[0].vault, leg, &response, &PureRustSigner, 1_800_000_000) {
        Step::Done(VaultOutcome::Token { access_token, .. }) => {
            assert!(access_token.expose().bytes().all(|b| (0x21..=0x7e).contains(&b)));
        }
        Step::Done(VaultOutcome::ConnectRequired { interaction_uri: Some(uri), .. }) => {
            assert!(uri.to_ascii_lowercase().starts_with("https://org.okta.example/")
                || uri.to_ascii_lowercase() == "https://org.okta.example");
        }
        _ => {}
    }
});
