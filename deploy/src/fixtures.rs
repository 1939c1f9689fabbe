//! Tenants documents shared by the unit tests.

use serde_json::{json, Value};

/// The local stack's tenants file.
pub fn example() -> Value {
    serde_json::from_str(include_str!("../../tenants.example.json")).unwrap()
}

/// The example with its first tenant on a real Auth0 tenant and an https backend.
pub fn with_auth0() -> Value {
    let mut doc = example();
    let t = &mut doc["tenants"][0];
    t["issuer"] = json!("https://acme.us.auth0.com/");
    t["jwks"] = json!({"cluster": "acme"});
    t["vault"]["domain"] = json!("acme.us.auth0.com");
    t["vault"]["cluster"] = json!("acme");
    t["backend"] = json!("https://api.github.com/v3/");
    if let Some(c) = t.get_mut("connect") {
        c["login_url"] = json!("https://acme.us.auth0.com");
    }
    doc
}
