//! Bearer extraction, untrusted JWS parsing and claim checks: never panic, and anything
//! accepted is structurally what we promise (three segments, an allowed algorithm).
#![no_main]

use libfuzzer_sys::fuzz_target;
use tvp_core::{auth, config, jose, jwt};

/// The example's Auth0 tenants, parsed once; a configuration that stopped parsing fails
/// loudly rather than leaving the target with nothing to check.
fn example() -> &'static config::Config {
    static CONFIG: std::sync::OnceLock<config::Config> = std::sync::OnceLock::new();
    CONFIG.get_or_init(|| {
        let mut doc: serde_json::Value =
            serde_json::from_slice(include_bytes!("../../tenants.example.json")).expect("json");
        if let Some(list) = doc["tenants"].as_array_mut() {
            list.retain(|t| t["vault"]["type"] == "auth0");
        }
        let env = |name: &str| match name {
            "TVP_SEALING_KEY" => Some("fuzz-sealing-key-fuzz-sealing-key-fuzz-sealing".into()),
            _ => Some("x".into()),
        };
        config::parse(doc.to_string().as_bytes(), &env).expect("the example parses")
    })
}

fuzz_target!(|data: &[u8]| {
    let _ = auth::bearer_token(&[data]);
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(parsed) = jwt::parse(text, 65_536, Some("email")) {
        assert_eq!(text.matches('.').count(), 2);
        assert!(jose::Alg::from_name(parsed.alg.name()).is_some());
        let tenant = &example().tenants[0];
        let rules = jwt::ClaimRules { issuer: &tenant.issuer, audiences: &tenant.audiences, skew_s: 60 };
        let _ = jwt::check_claims(&parsed.claims, &rules, 1_800_000_000);
    }
});
