//! Tenants documents shared by the unit tests.

use serde_json::{json, Value};

/// The local stack's tenants file, its Auth0 tenants only: the rendering tests are about
/// them, and the Okta ones reach the sim by IP address, which Istio cannot name.
pub fn example() -> Value {
    let mut doc: Value = serde_json::from_str(include_str!("../../tenants.example.json")).unwrap();
    if let Some(list) = doc["tenants"].as_array_mut() {
        list.retain(|t| t["vault"]["type"] == "auth0");
    }
    doc
}

/// Point a tenant at the Auth0 tenant `host`, reached through `cluster` (JWKS by discovery).
pub fn on_auth0(t: &mut Value, host: &str, cluster: &str) {
    t["issuer"] = json!(format!("https://{host}/"));
    t["jwks"] = json!({ "cluster": cluster });
    t["vault"]["domain"] = json!(host);
    t["vault"]["cluster"] = json!(cluster);
    if let Some(c) = t.get_mut("connect") {
        c["login_url"] = json!(format!("https://{host}"));
    }
}

/// The example with its first tenant on a real Auth0 tenant and an https backend.
pub fn with_auth0() -> Value {
    let mut doc = example();
    on_auth0(&mut doc["tenants"][0], "acme.us.auth0.com", "acme");
    doc["tenants"][0]["backend"] = json!("https://api.github.com/v3/");
    doc
}
