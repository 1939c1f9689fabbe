//! The sim's Okta: STS and ID-JAG token calls with real client assertions, over HTTP.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::sync::OnceLock;

use serde_json::{json, Value};
use sim::keys::{claims_of, client_assertion, generate_agent_key_pem, header_of, ClientKey};
use sim::okta::{
    CLIENT_ASSERTION_TYPE, ID_JAG_TOKEN_TYPE, ID_JAG_TYP, JWT_BEARER_GRANT, STS_TOKEN_TYPE,
    TOKEN_EXCHANGE_GRANT,
};
use sim::web::encode;
use sim::{Endpoint, Fault, Mint, OktaGrant, Sim, SimTenant, ACCESS_TOKEN_TYPE};
use support::{exchange, Reply};

const TOKEN_URL: &str = "http://127.0.0.1:9000/okta/oauth2/v1/token";
const RESOURCE_AS: &str = "http://127.0.0.1:9000/resource-as";
const RESOURCE_TOKEN_URL: &str = "http://127.0.0.1:9000/resource-as/oauth2/v1/token";
const AGENT: &str = "okta-agent-client";
const RESOURCE_CLIENT: &str = "wiki-resource-client";
const KID: &str = "agent-key-1";
const KEY_ENV: &str = "OKTA_AGENT_PRIVATE_KEY";

/// One agent key for the whole run (RSA key generation is slow).
fn agent_pem() -> &'static str {
    static PEM: OnceLock<String> = OnceLock::new();
    PEM.get_or_init(generate_agent_key_pem)
}

fn config() -> Value {
    let tenant = |id: &str, vault: Value| {
        json!({
            "id": id, "issuer": format!("https://{id}.example/"), "audience": "https://agents.example/api",
            "scopes": {"read": ["docs.read"], "write": []}, "algorithms": ["RS256"], "vault": vault,
        })
    };
    json!({"tenants": [
        tenant("slack-sts", json!({
            "type": "okta-sts", "cluster": "sim_control", "token_url": TOKEN_URL,
            "client_id": AGENT, "private_key_env": KEY_ENV, "key_id": KID,
            "resource": "https://slack.example/api", "connection": "slack",
        })),
        tenant("wiki-xaa", json!({
            "type": "id-jag", "cluster": "sim_control", "token_url": TOKEN_URL,
            "client_id": AGENT, "private_key_env": KEY_ENV, "key_id": KID,
            "audience": RESOURCE_AS, "scopes": ["wiki.read"],
            "resource_token_url": RESOURCE_TOKEN_URL,
            "resource_client_id": RESOURCE_CLIENT, "connection": "wiki",
        })),
        // Okta "user access": the subject is the user's ID token for the agent's client.
        tenant("slack-user", json!({
            "type": "okta-sts", "cluster": "sim_control", "token_url": TOKEN_URL,
            "client_id": AGENT, "private_key_env": KEY_ENV, "key_id": KID,
            "resource": USER_RESOURCE, "connection": "slack",
            "subject_token_type": "id_token", "subject_token_header": "x-agent-id-token",
        })),
        // Cross App Access with Auth0 as the resource AS: by client secret, and by RS256 key.
        tenant("wiki-auth0-secret", json!({
            "type": "id-jag", "cluster": "sim_control", "token_url": TOKEN_URL,
            "client_id": AGENT, "private_key_env": KEY_ENV, "key_id": KID,
            "audience": AUTH0_ISSUER, "scopes": ["wiki.read"], "resource": WIKI_API,
            "resource_as": "auth0", "resource_token_url": format!("{AUTH0_ISSUER}oauth/token"),
            "resource_client_id": AUTH0_SECRET_CLIENT, "resource_client_secret": AUTH0_SECRET,
            "connection": "wiki",
        })),
        tenant("wiki-auth0-key", json!({
            "type": "id-jag", "cluster": "sim_control", "token_url": TOKEN_URL,
            "client_id": AGENT, "private_key_env": KEY_ENV, "key_id": KID,
            "audience": AUTH0_ISSUER, "scopes": ["wiki.read"], "resource": WIKI_API,
            "resource_as": "auth0", "resource_token_url": format!("{AUTH0_ISSUER}oauth/token"),
            "resource_client_id": AUTH0_KEY_CLIENT, "connection": "wiki",
        })),
    ]})
}

const USER_RESOURCE: &str = "https://slack.example/user-api";
const AUTH0_ISSUER: &str = "https://wiki.auth0.example/";
const WIKI_API: &str = "https://wiki.example/api";
const AUTH0_SECRET_CLIENT: &str = "wiki-auth0-secret-client";
const AUTH0_SECRET: &str = "wiki-auth0-secret-value";
const AUTH0_KEY_CLIENT: &str = "wiki-auth0-key-client";

fn start() -> Sim {
    let env = |name: &str| (name == KEY_ENV).then(|| agent_pem().to_string());
    let tenants = SimTenant::from_filter_config_with(&config(), &env).unwrap();
    Sim::start(tenants, 0, 0).unwrap()
}

fn http(port: u16, method: &str, target: &str, form: &[(&str, &str)]) -> Reply {
    let body: Vec<String> = form
        .iter()
        .map(|(k, v)| format!("{}={}", encode(k), encode(v)))
        .collect();
    let headers =
        format!("host: 127.0.0.1:{port}\r\ncontent-type: application/x-www-form-urlencoded\r\n");
    exchange(port, method, target, &headers, &body.join("&"))
}

fn assertion(client_id: &str, aud: &str) -> String {
    client_assertion(agent_pem(), KID, client_id, aud, 120).unwrap()
}

fn agent_token(sim: &Sim, tenant: &str, sub: &str) -> String {
    sim.mint(&Mint {
        tenant: tenant.into(),
        sub: sub.into(),
        ..Mint::default()
    })
    .unwrap()
}

fn sts_form(subject: &str, assertion: &str) -> Vec<(&'static str, String)> {
    vec![
        ("grant_type", TOKEN_EXCHANGE_GRANT.to_string()),
        ("requested_token_type", STS_TOKEN_TYPE.to_string()),
        ("subject_token", subject.to_string()),
        ("subject_token_type", ACCESS_TOKEN_TYPE.to_string()),
        ("resource", "https://slack.example/api".to_string()),
        ("client_assertion_type", CLIENT_ASSERTION_TYPE.to_string()),
        ("client_assertion", assertion.to_string()),
    ]
}

fn post(sim: &Sim, path: &str, form: &[(&'static str, String)]) -> Reply {
    let pairs: Vec<(&str, &str)> = form.iter().map(|(k, v)| (*k, v.as_str())).collect();
    http(sim.port, "POST", path, &pairs)
}

fn sts(sim: &Sim, sub: &str) -> Reply {
    let subject = agent_token(sim, "slack-sts", sub);
    post(
        sim,
        "/okta/oauth2/v1/token",
        &sts_form(&subject, &assertion(AGENT, TOKEN_URL)),
    )
}

/// A 401 `invalid_client` whose description says `why`.
fn assert_invalid_client(r: &Reply, why: &str) {
    assert_eq!(r.status, 401, "{}", r.body);
    assert_eq!(r.json()["error"], "invalid_client");
    let description = r.json()["error_description"].to_string();
    assert!(description.contains(why), "{description} (expected: {why})");
}

#[test]
fn sts_gives_alice_her_stored_token() {
    let sim = start();
    let r = sts(&sim, "alice");
    assert_eq!(r.status, 200, "{}", r.body);
    let body = r.json();
    let token = body["access_token"].as_str().unwrap();
    assert!(token.starts_with("sts_slack_alice_"), "{token}");
    assert_eq!(body["issued_token_type"], STS_TOKEN_TYPE);
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], 3600);
    assert!(sim.downstream_tokens().contains(&token.to_string()));
    assert_eq!(sim.count(Endpoint::Okta), 1);
    assert_eq!(
        sim.okta_requests()[0]["resource"],
        "https://slack.example/api"
    );
}

#[test]
fn sts_asks_bob_to_consent_then_gives_him_a_token() {
    let sim = start();
    sim.set_auto_consent(true);
    let r = sts(&sim, "bob");
    assert_eq!(r.status, 400, "{}", r.body);
    assert_eq!(r.header("cache-control"), Some("no-store"));
    let body = r.json();
    assert_eq!(body["error"], "interaction_required");
    let uri = body["interaction_uri"].as_str().unwrap();
    let prefix = format!("http://127.0.0.1:{}", sim.port);
    let path = uri.strip_prefix(&prefix).unwrap();
    let session = path.split_once("session=").unwrap().1.to_string();

    let page = http(sim.port, "GET", path, &[]);
    assert_eq!(page.status, 200);
    assert!(page
        .body
        .contains("Allow slack-sts to use your slack account (bob)?"));
    assert!(page.body.contains("document.forms[0].submit()"));

    let approve = [("session", session.as_str()), ("decision", "allow")];
    let done = http(sim.port, "POST", "/okta/interact/approve", &approve);
    assert!(done
        .body
        .contains("Connected. You can return to your agent."));
    assert!(sim.is_connected("bob", "slack"));
    // Sessions are single-use.
    let again = http(sim.port, "POST", "/okta/interact/approve", &approve);
    assert_eq!(again.status, 400);

    let r = sts(&sim, "bob");
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.json()["access_token"]
        .as_str()
        .unwrap()
        .starts_with("sts_slack_bob_"));
}

#[test]
fn sts_deny_leaves_the_user_unconnected() {
    let sim = start();
    let r = sts(&sim, "bob");
    let uri = r.json()["interaction_uri"].as_str().unwrap().to_string();
    let session = uri.split_once("session=").unwrap().1;
    let page = http(
        sim.port,
        "GET",
        &format!("/okta/interact?session={session}"),
        &[],
    );
    assert!(!page.body.contains("<script>"));
    let form = [("session", session), ("decision", "deny")];
    let done = http(sim.port, "POST", "/okta/interact/approve", &form);
    assert!(done.body.contains("Not connected"));
    assert!(!sim.is_connected("bob", "slack"));
    assert_eq!(sts(&sim, "bob").json()["error"], "interaction_required");
}

#[test]
fn sts_refuses_a_replayed_client_assertion() {
    let sim = start();
    assert_eq!(sts(&sim, "alice").status, 200);
    let sent = sim.okta_requests()[0].clone();
    let subject = agent_token(&sim, "slack-sts", "alice");
    let replay = sts_form(&subject, &sent["client_assertion"]);
    assert_invalid_client(
        &post(&sim, "/okta/oauth2/v1/token", &replay),
        "jti was already used",
    );
}

#[test]
fn sts_refuses_bad_client_assertions() {
    let sim = start();
    let subject = agent_token(&sim, "slack-sts", "alice");
    let other_pem = generate_agent_key_pem();
    let bad = [
        (
            client_assertion(agent_pem(), KID, AGENT, TOKEN_URL, -120).unwrap(),
            "expired",
        ),
        (
            assertion(AGENT, RESOURCE_TOKEN_URL),
            "aud must be the token endpoint URL",
        ),
        (
            client_assertion(&other_pem, KID, AGENT, TOKEN_URL, 120).unwrap(),
            "signature is invalid",
        ),
        (
            client_assertion(agent_pem(), "other-kid", AGENT, TOKEN_URL, 120).unwrap(),
            "kid is not registered",
        ),
        ("not.a.jwt".to_string(), "Client authentication failed"),
    ];
    for (a, why) in &bad {
        let r = post(&sim, "/okta/oauth2/v1/token", &sts_form(&subject, a));
        assert_invalid_client(&r, why);
    }
    let mut no_type = sts_form(&subject, &assertion(AGENT, TOKEN_URL));
    no_type.retain(|(k, _)| *k != "client_assertion_type");
    let r = post(&sim, "/okta/oauth2/v1/token", &no_type);
    assert_invalid_client(&r, "client_assertion_type");
    // Within the skew, a just-expired assertion still counts.
    let recent = client_assertion(agent_pem(), KID, AGENT, TOKEN_URL, -5).unwrap();
    let r = post(&sim, "/okta/oauth2/v1/token", &sts_form(&subject, &recent));
    assert_eq!(r.status, 200, "{}", r.body);
}
#[test]
fn sts_refuses_a_wrong_resource_or_subject_token() {
    let sim = start();
    let subject = agent_token(&sim, "slack-sts", "alice");
    let mut form = sts_form(&subject, &assertion(AGENT, TOKEN_URL));
    form[4].1 = "https://other.example/api".into();
    let r = post(&sim, "/okta/oauth2/v1/token", &form);
    assert_eq!(
        (r.status, r.json()["error"].clone()),
        (400, json!("invalid_target"))
    );

    // Signed by another tenant's issuer.
    let foreign = agent_token(&sim, "wiki-xaa", "alice");
    let r = post(
        &sim,
        "/okta/oauth2/v1/token",
        &sts_form(&foreign, &assertion(AGENT, TOKEN_URL)),
    );
    assert_eq!(
        (r.status, r.json()["error"].clone()),
        (400, json!("invalid_grant"))
    );
}

#[test]
fn okta_endpoint_can_be_faulted() {
    let sim = start();
    sim.fail(Endpoint::Okta, Fault::status(503), Some(1));
    assert_eq!(sts(&sim, "alice").status, 503);
    assert_eq!(sts(&sim, "alice").status, 200);
    assert_eq!(sim.count(Endpoint::Okta), 2);
}

fn leg1_form(subject: String, audience: &str, scope: &str) -> Vec<(&'static str, String)> {
    vec![
        ("grant_type", TOKEN_EXCHANGE_GRANT.to_string()),
        ("requested_token_type", ID_JAG_TOKEN_TYPE.to_string()),
        ("subject_token", subject),
        ("subject_token_type", ACCESS_TOKEN_TYPE.to_string()),
        ("audience", audience.to_string()),
        ("scope", scope.to_string()),
        ("client_assertion_type", CLIENT_ASSERTION_TYPE.to_string()),
        ("client_assertion", assertion(AGENT, TOKEN_URL)),
    ]
}

fn id_jag_leg1(sim: &Sim, sub: &str, scope: &str) -> Reply {
    let subject = agent_token(sim, "wiki-xaa", sub);
    post(
        sim,
        "/okta/oauth2/v1/token",
        &leg1_form(subject, RESOURCE_AS, scope),
    )
}

/// Leg 2 with `client`'s assertion.
fn id_jag_leg2_as(sim: &Sim, id_jag: &str, client: &str) -> Reply {
    let form = vec![
        ("grant_type", JWT_BEARER_GRANT.to_string()),
        ("assertion", id_jag.to_string()),
        ("client_assertion_type", CLIENT_ASSERTION_TYPE.to_string()),
        ("client_assertion", assertion(client, RESOURCE_TOKEN_URL)),
    ];
    post(sim, "/resource-as/oauth2/v1/token", &form)
}

fn id_jag_leg2(sim: &Sim, id_jag: &str) -> Reply {
    id_jag_leg2_as(sim, id_jag, RESOURCE_CLIENT)
}

fn id_jag(sim: &Sim, sub: &str, scope: &str) -> String {
    let r = id_jag_leg1(sim, sub, scope);
    assert_eq!(r.status, 200, "{}", r.body);
    r.json()["access_token"].as_str().unwrap().to_string()
}

#[test]
fn id_jag_both_legs() {
    let sim = start();
    let r = id_jag_leg1(&sim, "bob", "wiki.read");
    assert_eq!(r.status, 200, "{}", r.body);
    let body = r.json();
    assert_eq!(body["token_type"], "N_A");
    assert_eq!(body["expires_in"], 300);
    assert_eq!(body["issued_token_type"], ID_JAG_TOKEN_TYPE);
    let jag = body["access_token"].as_str().unwrap();
    assert_eq!(header_of(jag).unwrap()["typ"], ID_JAG_TYP);
    let claims = claims_of(jag).unwrap();
    assert_eq!(claims["aud"], RESOURCE_AS);
    assert_eq!(claims["sub"], "bob");
    assert_eq!(claims["scope"], "wiki.read");
    assert_eq!(claims["iss"], format!("http://127.0.0.1:{}/okta", sim.port));
    assert!(sim.minted().contains(&jag.to_string()));

    let r = id_jag_leg2(&sim, jag);
    assert_eq!(r.status, 200, "{}", r.body);
    let body = r.json();
    let token = body["access_token"].as_str().unwrap();
    assert!(token.starts_with("xaa_wiki_bob_"), "{token}");
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["scope"], "wiki.read");
    assert!(sim.downstream_tokens().contains(&token.to_string()));
    assert_eq!(
        (sim.count(Endpoint::Okta), sim.count(Endpoint::ResourceAs)),
        (1, 1)
    );
    assert_eq!(sim.okta_requests().len(), 2);
}

#[test]
fn id_jag_is_single_use() {
    let sim = start();
    let jag = id_jag(&sim, "alice", "wiki.read");
    assert_eq!(id_jag_leg2(&sim, &jag).status, 200);
    let r = id_jag_leg2(&sim, &jag);
    assert_eq!(r.status, 400, "{}", r.body);
    assert_eq!(
        r.json(),
        json!({"error": "invalid_grant", "error_description": "Assertion is invalid or has expired"})
    );
}

#[test]
fn id_jag_refuses_admin_scopes_and_forgeries() {
    let sim = start();
    let r = id_jag_leg2(&sim, &id_jag(&sim, "alice", "wiki.read wiki.admin"));
    assert_eq!(r.status, 403, "{}", r.body);
    assert_eq!(r.json()["error"], "access_denied");

    // An agent token is no ID-JAG.
    let r = id_jag_leg2(&sim, &agent_token(&sim, "wiki-xaa", "alice"));
    assert_eq!(r.json()["error"], "invalid_grant");
}

#[test]
fn id_jag_leg2_authenticates_the_resource_client() {
    let sim = start();
    let jag = id_jag(&sim, "alice", "wiki.read");
    // The agent's own client is not the resource client.
    let r = id_jag_leg2_as(&sim, &jag, AGENT);
    assert_invalid_client(&r, "Client authentication failed");
    // The ID-JAG was not spent by a call that failed client authentication.
    assert_eq!(id_jag_leg2(&sim, &jag).status, 200);
}

#[test]
fn id_jag_leg1_checks_the_audience() {
    let sim = start();
    let subject = agent_token(&sim, "wiki-xaa", "alice");
    let form = leg1_form(subject, "http://elsewhere.example/", "wiki.read");
    let r = post(&sim, "/okta/oauth2/v1/token", &form);
    assert_eq!(
        (r.status, r.json()["error"].clone()),
        (400, json!("invalid_target"))
    );
}

#[test]
fn config_reads_okta_vaults_and_p256_keys() {
    use p256::pkcs8::{EncodePrivateKey, LineEnding};
    let ec = p256::ecdsa::SigningKey::random(&mut rand::rngs::OsRng);
    let ec_pem = ec.to_pkcs8_pem(LineEnding::LF).unwrap().to_string();
    let env = |name: &str| (name == KEY_ENV).then(|| ec_pem.clone());
    let tenants = SimTenant::from_filter_config_with(&config(), &env).unwrap();
    let vault = tenants[0].okta.as_ref().unwrap();
    assert_eq!(vault.public_key.alg(), "ES256");
    assert_eq!(
        vault.public_key,
        ClientKey::from_private_pem(&ec_pem).unwrap()
    );
    assert!(matches!(vault.grant, OktaGrant::Sts { .. }));
    assert_eq!(tenants[0].vault_client_id, None);
    assert!(matches!(
        tenants[1].okta.as_ref().unwrap().grant,
        OktaGrant::IdJag { .. }
    ));

    let sim = Sim::start(tenants, 0, 0).unwrap();
    let subject = agent_token(&sim, "slack-sts", "alice");
    let signed = client_assertion(&ec_pem, KID, AGENT, TOKEN_URL, 60).unwrap();
    assert_eq!(header_of(&signed).unwrap()["alg"], "ES256");
    let r = post(&sim, "/okta/oauth2/v1/token", &sts_form(&subject, &signed));
    assert_eq!(r.status, 200, "{}", r.body);

    let missing = SimTenant::from_filter_config_with(&config(), &|_| None).unwrap_err();
    assert!(missing.contains(KEY_ENV), "{missing}");
}

/// An STS call with `subject` whose form fields at the given positions are replaced.
fn sts_patched(sim: &Sim, subject: &str, patch: &[(usize, &str)]) -> Reply {
    let mut form = sts_form(subject, &assertion(AGENT, TOKEN_URL));
    for (at, value) in patch {
        form[*at].1 = value.to_string();
    }
    post(sim, "/okta/oauth2/v1/token", &form)
}

/// A user-access STS call with the user's `subject` of `subject_type`.
fn user_sts(sim: &Sim, subject: &str, subject_type: &str) -> Reply {
    sts_patched(sim, subject, &[(3, subject_type), (4, USER_RESOURCE)])
}

fn id_token(sim: &Sim, tenant: &str, aud: &str) -> String {
    sim.mint(&Mint {
        tenant: tenant.into(),
        sub: "alice".into(),
        claims: Some(json!({"aud": aud})),
        ..Mint::default()
    })
    .unwrap()
}

const ID_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:id_token";

fn error_of(r: &Reply) -> (u16, Value) {
    (r.status, r.json()["error"].clone())
}

#[test]
fn sts_user_access_takes_an_id_token_for_the_agent_client() {
    let sim = start();
    let good = id_token(&sim, "slack-user", AGENT);
    assert_eq!(user_sts(&sim, &good, ID_TOKEN_TYPE).status, 200);
    // Okta: user access takes an ID token minted for the AI agent's own client
    // (https://developer.okta.com/docs/guides/ai-agent-token-exchange/resourceserver/main/).
    let fresh = id_token(&sim, "slack-user", AGENT);
    let r = user_sts(&sim, &fresh, ACCESS_TOKEN_TYPE);
    assert_eq!(error_of(&r), (400, json!("invalid_request")), "{}", r.body);
    let for_the_api = id_token(&sim, "slack-user", "https://agents.example/api");
    let r = user_sts(&sim, &for_the_api, ID_TOKEN_TYPE);
    assert_eq!(error_of(&r), (400, json!("invalid_grant")), "{}", r.body);
}

#[test]
fn sts_machine_access_takes_an_access_token_for_the_agent_resource() {
    let sim = start();
    let subject = agent_token(&sim, "slack-sts", "alice");
    let r = sts_patched(&sim, &subject, &[(3, ID_TOKEN_TYPE)]);
    assert_eq!(error_of(&r), (400, json!("invalid_request")), "{}", r.body);
    // An access token for another audience than the agent's resource URL.
    let other = id_token(&sim, "slack-sts", AGENT);
    let r = sts_patched(&sim, &other, &[]);
    assert_eq!(error_of(&r), (400, json!("invalid_grant")), "{}", r.body);
}

#[test]
fn sts_requested_token_type_must_be_exact() {
    let sim = start();
    let subject = agent_token(&sim, "slack-sts", "alice");
    // The typo in Okta's own parameter table (a colon missing) is not accepted.
    let r = sts_patched(
        &sim,
        &subject,
        &[(1, "urn:okta:params:oauthtoken-type:oauth-sts")],
    );
    assert_eq!(error_of(&r), (400, json!("invalid_request")), "{}", r.body);
}

#[test]
fn okta_refuses_an_absurd_assertion_lifetime() {
    let sim = start();
    let subject = agent_token(&sim, "slack-sts", "alice");
    let day = client_assertion(agent_pem(), KID, AGENT, TOKEN_URL, 86_400).unwrap();
    let r = post(&sim, "/okta/oauth2/v1/token", &sts_form(&subject, &day));
    assert_invalid_client(&r, "lifetime is too long");
}

/// An ID-JAG from Okta for the Auth0 resource AS, as `tenant`'s resource client.
fn auth0_id_jag(sim: &Sim, tenant: &str) -> String {
    let subject = agent_token(sim, tenant, "alice");
    let mut form = leg1_form(subject, AUTH0_ISSUER, "wiki.read");
    form.push(("resource", WIKI_API.to_string()));
    let r = post(sim, "/okta/oauth2/v1/token", &form);
    assert_eq!(r.status, 200, "{}", r.body);
    let id_jag = r.json()["access_token"].as_str().unwrap().to_string();
    // draft-ietf-oauth-identity-assertion-authz-grant: the resource rides in the ID-JAG.
    assert_eq!(claims_of(&id_jag).unwrap()["resource"], WIKI_API);
    id_jag
}

fn auth0_leg2(sim: &Sim, id_jag: &str, auth: &[(&'static str, String)]) -> Reply {
    let mut form = vec![
        ("grant_type", JWT_BEARER_GRANT.to_string()),
        ("assertion", id_jag.to_string()),
    ];
    form.extend_from_slice(auth);
    post(sim, "/oauth/token", &form)
}

fn secret_auth(secret: &str) -> Vec<(&'static str, String)> {
    vec![
        ("client_id", AUTH0_SECRET_CLIENT.to_string()),
        ("client_secret", secret.to_string()),
        ("resource", WIKI_API.to_string()),
    ]
}

fn key_auth(assertion: String) -> Vec<(&'static str, String)> {
    vec![
        ("client_assertion_type", CLIENT_ASSERTION_TYPE.to_string()),
        ("client_assertion", assertion),
    ]
}

#[test]
fn auth0_resource_as_takes_a_client_secret_and_a_known_resource() {
    let sim = start();
    // https://auth0.com/docs/api/authentication/cross-app-access/get-token
    let r = auth0_leg2(
        &sim,
        &auth0_id_jag(&sim, "wiki-auth0-secret"),
        &secret_auth("wrong"),
    );
    assert_eq!(error_of(&r), (401, json!("invalid_client")), "{}", r.body);
    let mut unknown = secret_auth(AUTH0_SECRET);
    unknown[2].1 = "https://unknown.example/api".into();
    let r = auth0_leg2(&sim, &auth0_id_jag(&sim, "wiki-auth0-secret"), &unknown);
    assert_eq!(error_of(&r), (403, json!("access_denied")), "{}", r.body);
    let r = auth0_leg2(&sim, &auth0_id_jag(&sim, "wiki-auth0-secret"), &[]);
    assert_eq!(error_of(&r), (401, json!("invalid_client")), "{}", r.body);
    let r = auth0_leg2(
        &sim,
        &auth0_id_jag(&sim, "wiki-auth0-secret"),
        &secret_auth(AUTH0_SECRET),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.json()["access_token"]
        .as_str()
        .unwrap()
        .starts_with("xaa_wiki_alice_"));
    assert_eq!(sim.count(Endpoint::ResourceAs), 4);
}

#[test]
fn auth0_resource_as_checks_client_assertions_as_auth0_does() {
    use p256::pkcs8::{EncodePrivateKey, LineEnding};
    let sim = start();
    let signed = |aud: &str, lifetime: i64| {
        client_assertion(agent_pem(), KID, AUTH0_KEY_CLIENT, aud, lifetime).unwrap()
    };
    let ec = p256::ecdsa::SigningKey::random(&mut rand::rngs::OsRng);
    let ec_pem = ec.to_pkcs8_pem(LineEnding::LF).unwrap().to_string();
    // https://auth0.com/docs/get-started/authentication-and-authorization-flow/authenticate-with-private-key-jwt
    let bad = [
        // Okta's rule (aud = the token endpoint) is not Auth0's.
        (
            signed(&format!("{AUTH0_ISSUER}oauth/token"), 60),
            "aud must be the tenant's issuer",
        ),
        (
            signed("https://wiki.auth0.example", 60),
            "aud must be the tenant's issuer",
        ),
        (
            client_assertion(&ec_pem, KID, AUTH0_KEY_CLIENT, AUTH0_ISSUER, 60).unwrap(),
            "RS256, RS384 or PS256",
        ),
        (signed(AUTH0_ISSUER, 600), "lifetime is too long"),
        (
            client_assertion(agent_pem(), KID, AGENT, AUTH0_ISSUER, 60).unwrap(),
            "Client authentication failed",
        ),
    ];
    for (a, why) in bad {
        let r = auth0_leg2(&sim, &auth0_id_jag(&sim, "wiki-auth0-key"), &key_auth(a));
        assert_invalid_client(&r, why);
    }
    let good = signed(AUTH0_ISSUER, 60);
    let r = auth0_leg2(
        &sim,
        &auth0_id_jag(&sim, "wiki-auth0-key"),
        &key_auth(good.clone()),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    // Single use: the same assertion again is refused.
    let r = auth0_leg2(&sim, &auth0_id_jag(&sim, "wiki-auth0-key"), &key_auth(good));
    assert_invalid_client(&r, "jti was already used");
}
