//! What several targets share: the example configuration, parsed once.

use tvp_core::config;

/// The example's Auth0 tenants, parsed once; a configuration that stopped parsing fails
/// loudly rather than leaving the target with nothing to check.
pub fn example() -> &'static config::Config {
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
