//! The sim's Okta org authorization server sign-in (the connect pages of an Okta STS tenant):
//! as strict as Okta about the client, the redirect URI, PKCE and single-use codes.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde_json::json;
use sha2::{Digest, Sha256};
use sim::keys::{claims_of, generate_agent_key_pem, header_of};
use sim::web::{encode, parse_form};
use sim::{Sim, SimTenant};
use support::{exchange, Reply};

const KEY_ENV: &str = "OKTA_AGENT_PRIVATE_KEY";
const CLIENT: &str = "slack-connect-web";
const SECRET: &str = "slack-connect-secret";
const CALLBACK: &str = "https://gw.example/connect/slack/login/callback";
const VERIFIER: &str = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJ";

fn start() -> Sim {
    let pem = generate_agent_key_pem();
    let env = move |name: &str| (name == KEY_ENV).then(|| pem.clone());
    let doc = json!({
        "settings": {"public_base_url": "https://gw.example"},
        "tenants": [{
            "id": "slack", "issuer": "https://agents.example/", "audience": "https://agents.example/api",
            "scopes": {"read": ["r"], "write": []}, "algorithms": ["RS256"],
            "vault": {
                "type": "okta-sts", "cluster": "sim_control",
                "token_url": "http://127.0.0.1:9000/okta/oauth2/v1/token",
                "client_id": "okta-agent-client", "private_key_env": KEY_ENV, "key_id": "k1",
                "resource": "https://slack.example/api", "connection": "slack",
            },
            "connect": {"client_id": CLIENT, "client_secret": SECRET},
        }],
    });
    let tenants = SimTenant::from_filter_config_with(&doc, &env).unwrap();
    Sim::start(tenants, 0, 0).unwrap()
}

fn challenge(verifier: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
}

fn authorize_query(edit: &[(&str, &str)]) -> String {
    let challenge = challenge(VERIFIER);
    let mut params = vec![
        ("response_type", "code"),
        ("client_id", CLIENT),
        ("redirect_uri", CALLBACK),
        ("scope", "openid"),
        ("state", "st4te"),
        ("code_challenge", challenge.as_str()),
        ("code_challenge_method", "S256"),
    ];
    for (k, v) in edit {
        params.retain(|(p, _)| p != k);
        if !v.is_empty() {
            params.push((k, v));
        }
    }
    let q: Vec<String> = params
        .iter()
        .map(|(k, v)| format!("{k}={}", encode(v)))
        .collect();
    q.join("&")
}

fn get(sim: &Sim, target: &str) -> Reply {
    exchange(
        sim.port,
        "GET",
        target,
        &format!("host: 127.0.0.1:{}\r\n", sim.port),
        "",
    )
}

fn post(sim: &Sim, target: &str, extra_headers: &str, body: &str) -> Reply {
    let headers = format!(
        "host: 127.0.0.1:{}\r\ncontent-type: application/x-www-form-urlencoded\r\n{extra_headers}",
        sim.port
    );
    exchange(sim.port, "POST", target, &headers, body)
}

/// Sign in as `user` through the login form; the code from the redirect.
fn sign_in(sim: &Sim, user: &str) -> String {
    let form = get(
        sim,
        &format!("/okta/oauth2/v1/authorize?{}", authorize_query(&[])),
    );
    assert_eq!(form.status, 200);
    assert!(form.body.contains("Sign in to Okta"), "{}", form.body);
    let body = format!("q={}&username={user}", encode(&authorize_query(&[])));
    let r = post(sim, "/okta/oauth2/v1/authorize/login", "", &body);
    assert_eq!(r.status, 302, "{}", r.body);
    let location = r.header("location").unwrap();
    let (at, query) = location.split_once('?').unwrap();
    assert_eq!(at, CALLBACK);
    let params = parse_form(query);
    assert_eq!(params["state"], "st4te");
    params["code"].clone()
}

fn basic(id: &str, secret: &str) -> String {
    use base64::engine::general_purpose::STANDARD;
    format!(
        "authorization: Basic {}\r\n",
        STANDARD.encode(format!("{}:{}", encode(id), encode(secret)))
    )
}

fn redeem(sim: &Sim, code: &str, auth: &str, verifier: &str) -> Reply {
    let body = format!(
        "grant_type=authorization_code&code={}&redirect_uri={}&code_verifier={verifier}",
        encode(code),
        encode(CALLBACK)
    );
    post(sim, "/okta/oauth2/v1/token", auth, &body)
}

#[test]
fn sign_in_yields_an_rs256_id_token_of_the_org_verifiable_with_its_keys() {
    let sim = start();
    let code = sign_in(&sim, "bob");
    let r = redeem(&sim, &code, &basic(CLIENT, SECRET), VERIFIER);
    assert_eq!(r.status, 200, "{}", r.body);
    let id_token = r.json()["id_token"].as_str().unwrap().to_string();
    let claims = claims_of(&id_token).unwrap();
    assert_eq!(claims["iss"], format!("http://127.0.0.1:{}/okta", sim.port));
    assert_eq!(claims["aud"], CLIENT);
    assert_eq!(claims["sub"], "bob");
    let header = header_of(&id_token).unwrap();
    assert_eq!(header["alg"], "RS256");
    // The org's keys name the signing key.
    let keys = get(&sim, "/okta/oauth2/v1/keys").json();
    let kids: Vec<_> = keys["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kid"].clone())
        .collect();
    assert!(kids.contains(&header["kid"]), "{keys}");
    // Single use: the same code again is refused.
    let again = redeem(&sim, &code, &basic(CLIENT, SECRET), VERIFIER);
    assert_eq!(
        (again.status, again.json()["error"].clone()),
        (400, json!("invalid_grant"))
    );
}

#[test]
fn authorize_refuses_unknown_clients_unregistered_redirects_and_plain_pkce() {
    let sim = start();
    let page = |edit: &[(&str, &str)]| {
        get(
            &sim,
            &format!("/okta/oauth2/v1/authorize?{}", authorize_query(edit)),
        )
    };
    // Shown to the user, never redirected to.
    let r = page(&[("client_id", "someone-else")]);
    assert_eq!(r.status, 400);
    assert!(r.body.contains("Unknown client"));
    let r = page(&[("redirect_uri", "https://evil.example/cb")]);
    assert_eq!(r.status, 400);
    assert!(r.header("location").is_none());
    // Sent back to the registered callback with an error.
    for (edit, error) in [
        (("code_challenge_method", "plain"), "invalid_request"),
        (("code_challenge_method", ""), "invalid_request"),
        (("code_challenge", "short"), "invalid_request"),
        (("scope", "profile"), "invalid_scope"),
        (("response_type", "token"), "unsupported_response_type"),
        (("state", ""), "invalid_request"),
    ] {
        let r = page(&[edit]);
        assert_eq!(r.status, 302, "{edit:?}");
        let location = r.header("location").unwrap();
        assert!(location.starts_with(CALLBACK), "{location}");
        assert!(
            location.contains(&format!("error={error}")),
            "{edit:?}: {location}"
        );
    }
}

#[test]
fn the_code_grant_needs_the_clients_basic_secret_and_the_pkce_verifier() {
    let sim = start();
    let code = sign_in(&sim, "bob");
    for auth in [
        String::new(),
        basic(CLIENT, "wrong"),
        basic("someone-else", SECRET),
    ] {
        let r = redeem(&sim, &code, &auth, VERIFIER);
        assert_eq!(
            (r.status, r.json()["error"].clone()),
            (401, json!("invalid_client"))
        );
    }
    // The secret in the form is not how this client authenticates.
    let body = format!(
        "grant_type=authorization_code&code={}&redirect_uri={}&code_verifier={VERIFIER}&client_id={CLIENT}&client_secret={SECRET}",
        encode(&code),
        encode(CALLBACK)
    );
    let r = post(&sim, "/okta/oauth2/v1/token", "", &body);
    assert_eq!(r.status, 401);
    // A wrong verifier spends the code.
    let r = redeem(&sim, &code, &basic(CLIENT, SECRET), "x".repeat(43).as_str());
    assert_eq!(
        (r.status, r.json()["error"].clone()),
        (400, json!("invalid_grant"))
    );
    let r = redeem(&sim, &code, &basic(CLIENT, SECRET), VERIFIER);
    assert_eq!(r.status, 400);
}

#[test]
fn prompt_login_asks_for_credentials_despite_the_session() {
    let sim = start();
    sign_in(&sim, "bob");
    // The cookie is the sim's session: with it a GET signs in at once, unless prompt=login.
    let cookie = "cookie: sim_okta_user=bob\r\n";
    let target = format!("/okta/oauth2/v1/authorize?{}", authorize_query(&[]));
    let headers = format!("host: 127.0.0.1:{}\r\n{cookie}", sim.port);
    let r = exchange(sim.port, "GET", &target, &headers, "");
    assert_eq!(r.status, 302);
    let target = format!(
        "/okta/oauth2/v1/authorize?{}",
        authorize_query(&[("prompt", "login")])
    );
    let r = exchange(sim.port, "GET", &target, &headers, "");
    assert_eq!(r.status, 200);
    assert!(r.body.contains("Sign in to Okta"));
}
