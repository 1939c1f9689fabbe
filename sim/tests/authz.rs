//! The sim's authorization server refuses what Auth0 refuses: the chain from an MCP client's
//! `resource` to a token the gateway accepts holds only as Auth0 documents it.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use sim::authz::ResourceProfile;
use sim::http::{fetch, Fetched};
use sim::keys::claims_of;
use sim::web::{encode, parse_form};
use sim::{Sim, SimTenant};

const ISSUER: &str = "http://127.0.0.1:9000/issuers/github/";
const RESOURCE: &str = "https://gw.example.com/github/mcp";
const REDIRECT: &str = "http://127.0.0.1:33418/callback";
const VERIFIER: &str = "verifier-verifier-verifier-verifier-verifier-0123456789";

fn start() -> Sim {
    let doc = json!({
        "settings": {"public_base_url": "https://gw.example.com"},
        "tenants": [{
            "id": "github", "issuer": ISSUER,
            "resources": ["/github/mcp"], "algorithms": ["RS256"],
            "scopes": {"read": ["github:read"], "write": ["github:write"]},
            "vault": {"type": "auth0", "cluster": "c", "domain": "127.0.0.1:9000",
                      "client_id": "cid", "client_secret": "s", "connection": "github"},
        }]
    });
    let tenants = SimTenant::from_filter_config(&doc).unwrap();
    Sim::start(tenants, 0, 0).unwrap()
}

fn get(sim: &Sim, target: &str) -> Fetched {
    fetch(sim.port, "GET", target, &[], b"").unwrap()
}

fn post_json(sim: &Sim, target: &str, body: &Value) -> Fetched {
    let headers = [("content-type", "application/json")];
    fetch(
        sim.port,
        "POST",
        target,
        &headers,
        body.to_string().as_bytes(),
    )
    .unwrap()
}

fn post_form(sim: &Sim, target: &str, form: &[(&str, &str)]) -> Fetched {
    let body: Vec<String> = form
        .iter()
        .map(|(k, v)| format!("{k}={}", encode(v)))
        .collect();
    let headers = [("content-type", "application/x-www-form-urlencoded")];
    fetch(
        sim.port,
        "POST",
        target,
        &headers,
        body.join("&").as_bytes(),
    )
    .unwrap()
}

fn register(sim: &Sim) -> String {
    let r = post_json(
        sim,
        "/issuers/github/oidc/register",
        &json!({"client_name": "agent", "redirect_uris": [REDIRECT],
                "token_endpoint_auth_method": "none"}),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    assert!(r.json().get("client_secret").is_none());
    r.json()["client_id"].as_str().unwrap().to_string()
}

fn challenge() -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(VERIFIER.as_bytes()))
}

/// `/authorize` as alice (signed in by cookie); the redirect's query.
fn authorize(
    sim: &Sim,
    client: &str,
    extra: &[(&str, &str)],
) -> std::collections::HashMap<String, String> {
    let mut params = vec![
        ("response_type", "code".to_string()),
        ("client_id", client.to_string()),
        ("redirect_uri", REDIRECT.to_string()),
        ("state", "st".to_string()),
        ("code_challenge", challenge()),
        ("code_challenge_method", "S256".to_string()),
        ("scope", "github:write openid".to_string()),
    ];
    params.extend(extra.iter().map(|(k, v)| (*k, v.to_string())));
    let query: Vec<String> = params
        .iter()
        .map(|(k, v)| format!("{k}={}", encode(v)))
        .collect();
    let r = fetch(
        sim.port,
        "GET",
        &format!("/issuers/github/authorize?{}", query.join("&")),
        &[("cookie", "sim_user=alice")],
        b"",
    )
    .unwrap();
    assert_eq!(r.status, 302, "{}", r.body);
    let location = r.header("location").unwrap();
    let query = location.strip_prefix(&format!("{REDIRECT}?")).unwrap();
    parse_form(query)
}

fn exchange(sim: &Sim, client: &str, code: &str, extra: &[(&str, &str)]) -> Fetched {
    let mut form = vec![
        ("grant_type", "authorization_code"),
        ("code", code),
        ("redirect_uri", REDIRECT),
        ("client_id", client),
        ("code_verifier", VERIFIER),
    ];
    form.extend_from_slice(extra);
    post_form(sim, "/issuers/github/oauth/token", &form)
}

#[test]
fn metadata_names_the_issuer_exactly_at_the_path_inserted_url() {
    let sim = start();
    let issuer = ISSUER;
    for target in [
        "/.well-known/oauth-authorization-server/issuers/github",
        "/issuers/github/.well-known/openid-configuration",
    ] {
        let m = get(&sim, target).json();
        assert_eq!(m["issuer"], issuer, "{target}");
        assert_eq!(m["code_challenge_methods_supported"], json!(["S256"]));
        assert_eq!(m["registration_endpoint"], format!("{issuer}oidc/register"));
        assert_eq!(m["authorization_response_iss_parameter_supported"], true);
    }
    assert_eq!(
        get(&sim, "/.well-known/oauth-authorization-server/issuers/nope").status,
        404
    );
}

#[test]
fn resource_under_the_compatibility_profile_gives_a_token_for_that_api() {
    let sim = start();
    let client = register(&sim);
    let back = authorize(&sim, &client, &[("resource", RESOURCE)]);
    assert_eq!(back["state"], "st");
    assert_eq!(back["iss"], ISSUER);
    let r = exchange(&sim, &client, &back["code"], &[("resource", RESOURCE)]);
    assert_eq!(r.status, 200, "{}", r.body);
    let claims = claims_of(r.json()["access_token"].as_str().unwrap()).unwrap();
    assert_eq!(claims["aud"][0], RESOURCE);
    assert_eq!(claims["sub"], "alice");
    assert_eq!(claims["scope"], "github:write openid");
    // The code is single use.
    let again = exchange(&sim, &client, &back["code"], &[]);
    assert_eq!(
        (again.status, again.json()["error"].clone()),
        (403, json!("invalid_grant"))
    );
}

#[test]
fn without_the_profile_resource_is_ignored_and_the_token_is_for_no_api() {
    let sim = start();
    sim.set_resource_profile(ResourceProfile::Audience);
    let client = register(&sim);
    let back = authorize(&sim, &client, &[("resource", RESOURCE)]);
    let r = exchange(&sim, &client, &back["code"], &[("resource", RESOURCE)]);
    assert_eq!(r.status, 200, "{}", r.body);
    let token = r.json()["access_token"].as_str().unwrap().to_string();
    // Auth0's opaque /userinfo token: no JWT the gateway could accept.
    assert!(claims_of(&token).is_none(), "{token}");
    assert_eq!(r.json()["scope"], "openid");
}

#[test]
fn a_resource_that_is_no_api_is_refused() {
    let sim = start();
    let client = register(&sim);
    let back = authorize(
        &sim,
        &client,
        &[("resource", "https://gw.example.com/github")],
    );
    assert_eq!(back["error"], "access_denied");
    assert_eq!(
        back["error_description"],
        "Service not found: https://gw.example.com/github"
    );
    assert!(!back.contains_key("code"));
}

#[test]
fn pkce_redirect_uris_and_registration_are_enforced() {
    let sim = start();
    // Registration: redirect URIs required, https or loopback, no fragment; known methods.
    for body in [
        json!({"client_name": "x"}),
        json!({"redirect_uris": ["http://evil.example/cb"]}),
        json!({"redirect_uris": ["https://app.example/cb#f"]}),
        json!({"redirect_uris": [REDIRECT], "token_endpoint_auth_method": "private_key_jwt"}),
        json!({"redirect_uris": [REDIRECT], "grant_types": ["client_credentials"]}),
    ] {
        let r = post_json(&sim, "/issuers/github/oidc/register", &body);
        assert_eq!(r.status, 400, "{body}: {}", r.body);
    }
    let client = register(&sim);
    // An unregistered redirect URI is never redirected to.
    let r = get(
        &sim,
        &format!(
            "/issuers/github/authorize?response_type=code&client_id={client}&redirect_uri={}",
            encode("http://127.0.0.1:1/other")
        ),
    );
    assert_eq!((r.status, r.header("location")), (400, None));
    // PKCE is required, S256 only.
    let plain = authorize(&sim, &client, &[("code_challenge_method", "plain")]);
    assert_eq!(plain["error"], "invalid_request");
    // A wrong verifier, another redirect URI or another client get no token.
    let back = authorize(&sim, &client, &[("resource", RESOURCE)]);
    let wrong = exchange(&sim, &client, &back["code"], &[("code_verifier", "x")]);
    assert_eq!(wrong.status, 403, "{}", wrong.body);
    let back = authorize(&sim, &client, &[("resource", RESOURCE)]);
    let other = register(&sim);
    let r = exchange(&sim, &other, &back["code"], &[]);
    assert_eq!(r.status, 403, "{}", r.body);
    // A public client that sends a secret is not authenticated as registered.
    let back = authorize(&sim, &client, &[("resource", RESOURCE)]);
    let r = exchange(&sim, &client, &back["code"], &[("client_secret", "guess")]);
    assert_eq!(
        (r.status, r.json()["error"].clone()),
        (401, json!("invalid_client"))
    );
    // `resource` at the token endpoint cannot switch APIs.
    let back = authorize(&sim, &client, &[("resource", RESOURCE)]);
    let r = exchange(
        &sim,
        &client,
        &back["code"],
        &[("resource", "https://other.example")],
    );
    assert_eq!(
        (r.status, r.json()["error"].clone()),
        (400, json!("invalid_target"))
    );
}

const CIMD_URL: &str = "https://agent.example/oauth/client.json";

fn cimd_document() -> Value {
    json!({"client_id": CIMD_URL, "client_name": "agent", "redirect_uris": [REDIRECT],
           "token_endpoint_auth_method": "none", "grant_types": ["authorization_code"]})
}

#[test]
fn metadata_document_clients_need_the_setting_an_import_and_no_secret() {
    let sim = start();
    let advertised = |sim: &Sim| {
        get(
            sim,
            "/.well-known/oauth-authorization-server/issuers/github",
        )
        .json()["client_id_metadata_document_supported"]
            .clone()
    };
    assert_eq!(advertised(&sim), Value::Null, "off by default, as at Auth0");
    sim.set_cimd_supported(true);
    assert_eq!(advertised(&sim), json!(true));
    // A URL nobody imported is an unknown client: an error page, no redirect.
    let r = get(
        &sim,
        &format!(
            "/issuers/github/authorize?response_type=code&client_id={}&redirect_uri={}",
            encode(CIMD_URL),
            encode(REDIRECT)
        ),
    );
    assert_eq!((r.status, r.header("location")), (400, None));
    // Documents that cannot identify a public client are refused at import.
    for (url, edit) in [
        (
            "http://agent.example/c.json",
            json!({"client_id": "http://agent.example/c.json"}),
        ),
        (
            "https://agent.example",
            json!({"client_id": "https://agent.example"}),
        ),
        (
            CIMD_URL,
            json!({"client_id": "https://other.example/c.json"}),
        ),
        (
            CIMD_URL,
            json!({"token_endpoint_auth_method": "client_secret_post"}),
        ),
        (CIMD_URL, json!({"client_secret": "s"})),
        (CIMD_URL, json!({"redirect_uris": []})),
    ] {
        let mut doc = cimd_document();
        for (k, v) in edit.as_object().unwrap() {
            doc[k] = v.clone();
        }
        assert!(
            sim.import_cimd("github", url, &doc).is_err(),
            "{url} {edit}"
        );
    }
    sim.import_cimd("github", CIMD_URL, &cimd_document())
        .unwrap();
    let back = authorize(&sim, CIMD_URL, &[("resource", RESOURCE)]);
    let r = exchange(&sim, CIMD_URL, &back["code"], &[("resource", RESOURCE)]);
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(sim.registrations(), 0);
}
