//! The sim's My Account API is as strict as Auth0's: scopes per operation, schema limits,
//! pagination and one domain throughout, each refusal in the API's RFC 7807 form.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use serde_json::{json, Value};
use sim::web::encode;
use sim::{Sim, SimTenant};
use support::{exchange, Reply};

/// The Auth0 domain of the tenant; requests name it in `Host`, as Envoy's `:authority` does.
const DOMAIN: &str = "acme.auth0.example";
const CLIENT: &str = "acme-connect-web";
const SECRET: &str = "acme-connect-secret";
const REDIRECT: &str = "https://gw.example/connect/acme/callback";
const ALL_SCOPES: &str =
    "openid create:me:connected_accounts read:me:connected_accounts delete:me:connected_accounts";

fn start() -> Sim {
    let config = json!({"tenants": [{
        "id": "acme", "issuer": format!("https://{DOMAIN}/"), "audience": "https://api.acme.example",
        "scopes": {"read": ["r"], "write": ["w"]}, "algorithms": ["ES256"],
        "vault": {"type": "auth0", "domain": DOMAIN, "client_id": "vault-client",
                  "client_secret": "vault-secret", "connection": "github"},
        "connect": {"client_id": CLIENT, "client_secret": SECRET},
    }]});
    let tenants = SimTenant::from_filter_config(&config).unwrap();
    let sim = Sim::start(tenants, 0, 0).unwrap();
    sim.set_auto_login(Some("bob"));
    sim
}

fn http(sim: &Sim, method: &str, target: &str, headers: &[(&str, &str)], body: &str) -> Reply {
    let mut head = String::new();
    if !headers.iter().any(|(n, _)| *n == "host") {
        head.push_str(&format!("host: {DOMAIN}\r\n"));
    }
    for (n, v) in headers {
        head.push_str(&format!("{n}: {v}\r\n"));
    }
    exchange(sim.port, method, target, &head, body)
}

fn param(url: &str, name: &str) -> String {
    url.split(['?', '&'])
        .find_map(|p| p.strip_prefix(&format!("{name}=")))
        .unwrap_or_default()
        .to_string()
}

/// A My Account token for `scope`, audience `https://{audience_domain}/me/`, by the code
/// grant the filter's connect pages use.
fn my_account_token(sim: &Sim, scope: &str) -> String {
    let verifier = "v".repeat(43);
    let challenge = {
        use base64::Engine;
        use sha2::Digest;
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(sha2::Sha256::digest(verifier.as_bytes()))
    };
    let query = [
        ("response_type", "code"),
        ("client_id", CLIENT),
        (
            "redirect_uri",
            "https://gw.example/connect/acme/login/callback",
        ),
        ("scope", scope),
        ("audience", &format!("https://{DOMAIN}/me/")),
        ("state", "s"),
        ("code_challenge", &challenge),
        ("code_challenge_method", "S256"),
    ]
    .iter()
    .map(|(k, v)| format!("{k}={}", encode(v)))
    .collect::<Vec<_>>()
    .join("&");
    let r = http(sim, "GET", &format!("/authorize?{query}"), &[], "");
    assert_eq!(r.status, 302, "{}", r.body);
    let code = param(r.header("location").unwrap(), "code");
    let form = [
        ("grant_type", "authorization_code"),
        ("client_id", CLIENT),
        ("client_secret", SECRET),
        ("code", &code),
        (
            "redirect_uri",
            "https://gw.example/connect/acme/login/callback",
        ),
        ("code_verifier", &verifier),
    ]
    .iter()
    .map(|(k, v)| format!("{k}={}", encode(v)))
    .collect::<Vec<_>>()
    .join("&");
    let ct = [("content-type", "application/x-www-form-urlencoded")];
    let r = http(sim, "POST", "/oauth/token", &ct, &form);
    assert_eq!(r.status, 200, "{}", r.body);
    r.json()["access_token"].as_str().unwrap().to_string()
}

fn call(sim: &Sim, method: &str, path: &str, token: &str, body: Option<&Value>) -> Reply {
    let auth = format!("Bearer {token}");
    let headers = [
        ("authorization", auth.as_str()),
        ("content-type", "application/json"),
    ];
    let body = body.map(Value::to_string).unwrap_or_default();
    http(
        sim,
        method,
        &format!("/me/v1/connected-accounts{path}"),
        &headers,
        &body,
    )
}

/// An RFC 7807 problem of this status, as the My Account API answers.
fn assert_problem(r: &Reply, status: u16) -> Value {
    assert_eq!(r.status, status, "{}", r.body);
    let v = r.json();
    for member in ["type", "title", "detail"] {
        assert!(v[member].is_string(), "{member}: {v}");
    }
    assert_eq!(v["status"], status);
    v
}

/// The fields named by a 400's `validation_errors`.
fn invalid_fields(r: &Reply) -> Vec<String> {
    let v = assert_problem(r, 400);
    v["validation_errors"]
        .as_array()
        .unwrap_or_else(|| panic!("no validation_errors: {v}"))
        .iter()
        .map(|e| e["field"].as_str().unwrap_or_default().to_string())
        .collect()
}

fn connect_body() -> Value {
    json!({"connection": "github", "redirect_uri": REDIRECT, "state": "st",
           "code_challenge": "c".repeat(43), "code_challenge_method": "S256", "scopes": ["repo"]})
}

#[test]
fn each_operation_needs_its_own_scope() {
    let sim = start();
    let create = my_account_token(&sim, "openid create:me:connected_accounts");
    let read = my_account_token(&sim, "openid read:me:connected_accounts");
    // Listing accounts or connections needs read:, connecting needs create:, deleting delete:.
    assert_problem(&call(&sim, "GET", "/accounts", &create, None), 403);
    assert_problem(&call(&sim, "GET", "/connections", &create, None), 403);
    assert_problem(
        &call(&sim, "POST", "/connect", &read, Some(&connect_body())),
        403,
    );
    let complete = json!({"auth_session": "a", "connect_code": "c", "redirect_uri": REDIRECT});
    assert_problem(
        &call(&sim, "POST", "/complete", &read, Some(&complete)),
        403,
    );
    assert_problem(&call(&sim, "DELETE", "/accounts/cac_x", &read, None), 403);

    assert_eq!(call(&sim, "GET", "/accounts", &read, None).status, 200);
    assert_eq!(call(&sim, "GET", "/connections", &read, None).status, 200);
    let r = call(&sim, "POST", "/connect", &create, Some(&connect_body()));
    assert_eq!(r.status, 201, "{}", r.body);
    // The code grant reports what was granted.
    let all = my_account_token(&sim, ALL_SCOPES);
    assert_eq!(call(&sim, "GET", "/accounts", &all, None).status, 200);
}

#[test]
fn a_token_for_another_domain_is_refused() {
    let sim = start();
    let token = my_account_token(&sim, ALL_SCOPES);
    let auth = format!("Bearer {token}");
    // Its audience is https://acme.auth0.example/me/; the call goes to a custom domain.
    let r = http(
        &sim,
        "GET",
        "/me/v1/connected-accounts/accounts",
        &[("host", "login.acme.example"), ("authorization", &auth)],
        "",
    );
    assert_problem(&r, 401);
    assert_eq!(call(&sim, "GET", "/accounts", &token, None).status, 200);
}

#[test]
fn connect_bodies_are_held_to_the_schema() {
    let sim = start();
    let token = my_account_token(&sim, ALL_SCOPES);
    let refused = |edit: &dyn Fn(&mut Value)| {
        let mut body = connect_body();
        edit(&mut body);
        invalid_fields(&call(&sim, "POST", "/connect", &token, Some(&body)))
    };
    assert_eq!(refused(&|b| b["extra"] = json!(1)), ["extra"]);
    assert_eq!(
        refused(&|b| b["scopes"] = json!(["repo", "repo"])),
        ["scopes"]
    );
    assert_eq!(refused(&|b| b["scopes"] = json!([])), ["scopes"]);
    let many: Vec<String> = (0..101).map(|i| format!("s{i}")).collect();
    assert_eq!(refused(&|b| b["scopes"] = json!(many)), ["scopes"]);
    assert_eq!(
        refused(&|b| b["code_challenge"] = json!("c".repeat(42))),
        ["code_challenge"]
    );
    assert_eq!(
        refused(&|b| b["code_challenge"] = json!("c".repeat(129))),
        ["code_challenge"]
    );
    assert_eq!(
        refused(&|b| b["code_challenge_method"] = json!("plain")),
        ["code_challenge_method"]
    );
    assert_eq!(
        refused(&|b| {
            b.as_object_mut().map(|o| o.remove("code_challenge"));
        }),
        ["code_challenge_method"]
    );
    assert_eq!(
        refused(&|b| {
            b.as_object_mut().map(|o| o.remove("connection"));
        }),
        ["connection"]
    );
    // Everything at its limits is taken.
    let mut body = connect_body();
    body["code_challenge"] = json!("c".repeat(128));
    body["scopes"] = json!((0..100).map(|i| format!("s{i}")).collect::<Vec<_>>());
    assert_eq!(
        call(&sim, "POST", "/connect", &token, Some(&body)).status,
        201
    );
}

#[test]
fn complete_bodies_are_held_to_the_schema() {
    let sim = start();
    let token = my_account_token(&sim, ALL_SCOPES);
    let refused =
        |body: Value| invalid_fields(&call(&sim, "POST", "/complete", &token, Some(&body)));
    let ok = || {
        json!({"auth_session": "a".repeat(64), "connect_code": "c".repeat(46),
               "redirect_uri": REDIRECT, "code_verifier": "v".repeat(43)})
    };
    let with = |k: &str, v: Value| {
        let mut b = ok();
        b[k] = v;
        b
    };
    assert_eq!(
        refused(with("connect_code", json!("c".repeat(47)))),
        ["connect_code"]
    );
    assert_eq!(
        refused(with("auth_session", json!("a".repeat(65)))),
        ["auth_session"]
    );
    assert_eq!(
        refused(with("code_verifier", json!("v".repeat(42)))),
        ["code_verifier"]
    );
    assert_eq!(
        refused(with("code_verifier", json!("v".repeat(129)))),
        ["code_verifier"]
    );
    assert_eq!(refused(with("state", json!("x"))), ["state"]);
    // Within the limits, the body passes the schema and fails on its (unknown) code.
    let r = call(&sim, "POST", "/complete", &token, Some(&ok()));
    let v = assert_problem(&r, 400);
    assert!(v.get("validation_errors").is_none(), "{v}");
}

#[test]
fn accounts_are_paged_by_take_and_from() {
    let sim = start();
    sim.add_accounts("bob", "github", 44);
    let token = my_account_token(&sim, ALL_SCOPES);
    let list = |query: &str| call(&sim, "GET", &format!("/accounts{query}"), &token, None);
    for take in ["0", "21", "x", "-1"] {
        assert_eq!(invalid_fields(&list(&format!("?take={take}"))), ["take"]);
    }
    assert_eq!(invalid_fields(&list("?from=nonsense")), ["from"]);
    // 45 accounts: ten by default; twenty at most a page; `next` until the end.
    let first = list("").json();
    assert_eq!(first["accounts"].as_array().unwrap().len(), 10);
    assert!(first["next"].is_string());
    let mut seen = Vec::new();
    let mut query = "?connection=github&take=20".to_string();
    loop {
        let page = list(&query).json();
        let accounts = page["accounts"].as_array().unwrap();
        assert!(accounts.len() <= 20);
        seen.extend(
            accounts
                .iter()
                .map(|a| a["id"].as_str().unwrap().to_string()),
        );
        match page["next"].as_str() {
            Some(next) => query = format!("?connection=github&take=20&from={}", encode(next)),
            None => break,
        }
    }
    assert_eq!(seen.len(), 45);
    let unique: std::collections::HashSet<&String> = seen.iter().collect();
    assert_eq!(unique.len(), 45);
    // Another connection's filter sees none of them.
    assert_eq!(list("?connection=slack").json()["accounts"], json!([]));
}
