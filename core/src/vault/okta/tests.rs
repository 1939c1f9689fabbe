use super::*;
use crate::config::{self, Config};
use crate::crypto::signing::PureRustSigner;
use serde_json::{json, Value};

const NOW: u64 = 1_800_000_000;

/// A P-256 PKCS#8 PEM of a test key (the host-signer probe key: scalar 0x07 repeated).
const PEM: &str = "-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwehRANCAAQeGFMv1HVMAvMEHZx1zrM7g//YGsfOT+iCzLHJi8WJbqRsMRxOL/QN2Wo2U+bkVEXTLf5Ibs7XXHqQxqGIgcCj
-----END PRIVATE KEY-----
";

fn tenant(vault: Value) -> Config {
    try_tenant(vault, PEM).unwrap_or_else(|e| panic!("{e}"))
}

fn try_tenant(vault: Value, pem: &str) -> Result<Config, String> {
    let doc = json!({
        "settings": {},
        "tenants": [{
            "id": "okta", "name": "Okta", "issuer": "https://agents.example/",
            "audience": "https://api.example", "jwks": {"cluster": "idp"},
            "algorithms": ["RS256"], "scopes": {"read": ["r"], "write": ["w"]},
            "backend": "https://api.example", "vault": vault,
        }]
    });
    config::parse(
        doc.to_string().as_bytes(),
        &crate::testing::with_sealing_key(&|_| Some(pem.to_string())),
    )
    .map_err(|e| e.to_string())
}

fn sts() -> VaultConfig {
    tenant(json!({
        "type": "okta-sts", "cluster": "okta",
        "token_url": "https://org.okta.example/oauth2/v1/token",
        "client_id": "agent", "private_key_env": "K", "key_id": "k1",
        "resource": "https://slack.example/api", "connection": "slack",
    }))
    .tenants[0]
        .vault
        .clone()
}

fn id_jag() -> VaultConfig {
    tenant(json!({
        "type": "id-jag", "cluster": "okta",
        "token_url": "https://org.okta.example/oauth2/v1/token",
        "client_id": "agent", "private_key_env": "K", "key_id": "k1",
        "audience": "https://wiki.example/as", "scopes": ["wiki.read", "wiki.write"],
        "resource_token_url": "https://wiki.example/as/token", "resource_cluster": "wiki_as",
        "resource_client_id": "wiki-client", "connection": "wiki",
    }))
    .tenants[0]
        .vault
        .clone()
}

fn form(request: &CalloutRequest) -> Vec<(String, String)> {
    let body = String::from_utf8(request.body.clone().unwrap_or_default()).unwrap_or_default();
    body.split('&')
        .filter_map(|p| p.split_once('='))
        .map(|(k, v)| {
            (
                k.to_string(),
                crate::urlencoded::decode(v).unwrap_or_default(),
            )
        })
        .collect()
}

fn value<'a>(pairs: &'a [(String, String)], name: &str) -> &'a str {
    pairs
        .iter()
        .find(|(k, _)| k == name)
        .map_or("", |(_, v)| v.as_str())
}

fn claims_of(jwt: &str) -> Value {
    use base64::Engine;
    let payload = jwt.split('.').nth(1).unwrap_or_default();
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .unwrap_or_default();
    serde_json::from_slice(&bytes).unwrap_or_default()
}

fn response(status: u16, body: Value) -> CalloutResponse {
    CalloutResponse {
        status: Some(status),
        retry_after: Some("9".into()),
        rate_limit_reset: None,
        body: Some(body.to_string().into_bytes()),
    }
}

fn done(step: Step) -> VaultOutcome {
    match step {
        Step::Done(outcome) => outcome,
        Step::Next(request) => panic!("unexpected next call to {}", request.path),
    }
}

/// The outcome of an answer to leg `leg` that ends the exchange.
fn read(v: &VaultConfig, leg: u8, status: u16, body: Value) -> VaultOutcome {
    done(read_answer(
        v,
        leg,
        &response(status, body),
        &PureRustSigner,
        NOW,
    ))
}

fn request(v: &VaultConfig) -> CalloutRequest {
    first_request(v, "agent.jwt", &PureRustSigner, NOW).unwrap_or_else(|o| panic!("{o:?}"))
}

#[test]
fn sts_request_has_the_exact_literals_and_a_fresh_assertion() {
    let v = sts();
    let r = request(&v);
    assert_eq!(
        (r.cluster.as_str(), r.authority.as_str(), r.path.as_str()),
        ("okta", "org.okta.example", "/oauth2/v1/token")
    );
    let f = form(&r);
    assert_eq!(value(&f, "grant_type"), TOKEN_EXCHANGE);
    assert_eq!(value(&f, "requested_token_type"), STS_TOKEN_TYPE);
    assert_eq!(value(&f, "subject_token"), "agent.jwt");
    assert_eq!(value(&f, "subject_token_type"), ACCESS_TOKEN_TYPE);
    assert_eq!(value(&f, "resource"), "https://slack.example/api");
    assert_eq!(value(&f, "client_assertion_type"), ASSERTION_TYPE);
    let claims = claims_of(value(&f, "client_assertion"));
    assert_eq!(claims["iss"], "agent");
    assert_eq!(claims["sub"], "agent");
    assert_eq!(claims["aud"], "https://org.okta.example/oauth2/v1/token");
    assert_eq!(claims["exp"].as_u64(), Some(NOW + 60));
    let other = claims_of(value(&form(&request(&v)), "client_assertion"));
    assert_ne!(
        claims["jti"], other["jti"],
        "every assertion has its own jti"
    );
}

#[test]
fn sts_answers_are_mapped() {
    let v = sts();
    let read = |status, body| read(&v, 0, status, body);
    assert!(matches!(
        read(
            200,
            json!({"access_token": "sts_tok", "token_type": "Bearer", "expires_in": 3600,
                   "issued_token_type": STS_TOKEN_TYPE})
        ),
        VaultOutcome::Token {
            expires_in: 3600,
            ..
        }
    ));
    assert_eq!(
        read(
            200,
            json!({"access_token": "x", "issued_token_type": ID_JAG_TOKEN_TYPE})
        ),
        VaultOutcome::Failed(DependencyFailure::BadAnswer)
    );
    assert_eq!(
        read(
            400,
            json!({"error": "interaction_required",
                   "interaction_uri": "https://org.okta.example/interact/1"})
        ),
        VaultOutcome::ConnectRequired {
            vault_error: "interaction_required".into(),
            interaction_uri: Some("https://org.okta.example/interact/1".into()),
            missing_scopes: Vec::new(),
        }
    );
    // An interaction URL elsewhere is not passed on: the user is told to connect, no link.
    assert_eq!(
        read(
            400,
            json!({"error": "interaction_required",
                   "interaction_uri": "https://evil.example/phish"})
        ),
        VaultOutcome::ConnectRequired {
            vault_error: "interaction_required".into(),
            interaction_uri: None,
            missing_scopes: Vec::new(),
        }
    );
    assert!(matches!(
        read(401, json!({"error": "invalid_client"})),
        VaultOutcome::Misconfigured { .. }
    ));
    assert!(matches!(
        read(400, json!({"error": "invalid_target"})),
        VaultOutcome::Misconfigured { .. }
    ));
    assert!(matches!(
        read(403, json!({"error": "access_denied"})),
        VaultOutcome::Forbidden { .. }
    ));
    assert_eq!(
        read(429, json!({})),
        VaultOutcome::RateLimited {
            retry_after_seconds: Some(9)
        }
    );
    assert_eq!(
        read(500, json!({})),
        VaultOutcome::Failed(DependencyFailure::BadAnswer)
    );
}

#[test]
fn id_jag_takes_two_legs() {
    let v = id_jag();
    let f = form(&request(&v));
    assert_eq!(value(&f, "requested_token_type"), ID_JAG_TOKEN_TYPE);
    assert_eq!(value(&f, "audience"), "https://wiki.example/as");
    assert_eq!(value(&f, "scope"), "wiki.read wiki.write");
    let leg0 = response(
        200,
        json!({"token_type": "N_A", "expires_in": 300, "access_token": "id.jag.jwt",
               "issued_token_type": ID_JAG_TOKEN_TYPE}),
    );
    let Step::Next(second) = read_answer(&v, 0, &leg0, &PureRustSigner, NOW) else {
        panic!("expected the resource AS call");
    };
    assert_eq!(
        (
            second.cluster.as_str(),
            second.authority.as_str(),
            second.path.as_str()
        ),
        ("wiki_as", "wiki.example", "/as/token")
    );
    let f = form(&second);
    assert_eq!(value(&f, "grant_type"), JWT_BEARER);
    assert_eq!(value(&f, "assertion"), "id.jag.jwt");
    let claims = claims_of(value(&f, "client_assertion"));
    assert_eq!(claims["iss"], "wiki-client");
    assert_eq!(claims["aud"], "https://wiki.example/as/token");

    let read1 = |status, body| read(&v, 1, status, body);
    assert!(matches!(
        read1(
            200,
            json!({"access_token": "xaa", "token_type": "Bearer", "expires_in": 3600})
        ),
        VaultOutcome::Token { .. }
    ));
    assert_eq!(
        read1(
            400,
            json!({"error": "invalid_grant", "error_description": "Assertion is invalid or has expired"})
        ),
        VaultOutcome::Failed(DependencyFailure::BadAnswer)
    );
    assert!(matches!(
        read1(403, json!({"error": "access_denied"})),
        VaultOutcome::Forbidden { .. }
    ));
    assert!(matches!(
        read1(401, json!({"error": "invalid_client"})),
        VaultOutcome::Misconfigured { .. }
    ));
    // A leg-0 answer that is not an ID-JAG goes no further.
    let wrong = response(
        200,
        json!({"access_token": "x", "issued_token_type": STS_TOKEN_TYPE}),
    );
    assert_eq!(
        done(read_answer(&v, 0, &wrong, &PureRustSigner, NOW)),
        VaultOutcome::Failed(DependencyFailure::BadAnswer)
    );
}

#[test]
fn without_a_signature_nothing_is_sent() {
    struct NoSigner;
    impl AssertionSigner for NoSigner {
        fn sign(&self, _: &SigningKey, _: &[u8]) -> Option<Vec<u8>> {
            None
        }
    }
    assert!(matches!(
        first_request(&sts(), "agent.jwt", &NoSigner, NOW),
        Err(VaultOutcome::Misconfigured { .. })
    ));
}

/// Cross App Access with Auth0 as the resource authorization server.
fn auth0_resource(extra: Value) -> Value {
    let mut v = json!({
        "type": "id-jag", "cluster": "okta",
        "token_url": "https://org.okta.example/oauth2/v1/token",
        "client_id": "agent", "private_key_env": "K", "key_id": "k1",
        "audience": "https://wiki.auth0.example/", "scopes": ["wiki.read"],
        "resource": "https://wiki.example/api", "resource_as": "auth0",
        "resource_token_url": "https://wiki.auth0.example/oauth/token",
        "resource_cluster": "wiki_as", "resource_client_id": "wiki-client", "connection": "wiki",
    });
    for (k, x) in extra.as_object().into_iter().flatten() {
        v[k] = x.clone();
    }
    v
}

/// The request of leg 1 after an ID-JAG answer.
fn second_leg(v: &VaultConfig, signer: &dyn AssertionSigner) -> CalloutRequest {
    let leg0 = response(
        200,
        json!({"token_type": "N_A", "expires_in": 300, "access_token": "id.jag.jwt",
               "issued_token_type": ID_JAG_TOKEN_TYPE}),
    );
    match read_answer(v, 0, &leg0, signer, NOW) {
        Step::Next(request) => request,
        Step::Done(outcome) => panic!("expected the resource AS call: {outcome:?}"),
    }
}

#[test]
fn id_jag_at_auth0_with_a_client_secret_sends_resource_on_both_legs() {
    let v = tenant(auth0_resource(
        json!({"resource_client_secret": "wiki-secret"}),
    ))
    .tenants[0]
        .vault
        .clone();
    let f = form(&request(&v));
    assert_eq!(value(&f, "resource"), "https://wiki.example/api");
    assert_eq!(value(&f, "audience"), "https://wiki.auth0.example/");
    let second = second_leg(&v, &PureRustSigner);
    assert_eq!(second.path, "/oauth/token");
    let f = form(&second);
    assert_eq!(value(&f, "grant_type"), JWT_BEARER);
    assert_eq!(value(&f, "client_id"), "wiki-client");
    assert_eq!(value(&f, "client_secret"), "wiki-secret");
    assert_eq!(value(&f, "resource"), "https://wiki.example/api");
    assert!(f.iter().all(|(k, _)| k != "client_assertion"));
}

/// A fixed RSA signature: pure Rust does not sign RSA, the host does.
struct FixedRsa;
impl AssertionSigner for FixedRsa {
    fn sign(&self, _: &SigningKey, _: &[u8]) -> Option<Vec<u8>> {
        Some(vec![1; 256])
    }
}

fn rsa_pem() -> String {
    use base64::Engine;
    use rsa::pkcs8::EncodePrivateKey as _;
    let k = rsa::RsaPrivateKey::new(&mut rand_core::OsRng, 2048).unwrap_or_else(|e| panic!("{e}"));
    let der = k.to_pkcs8_der().unwrap_or_else(|e| panic!("{e}"));
    let b64 = base64::engine::general_purpose::STANDARD.encode(der.as_bytes());
    format!("-----BEGIN PRIVATE KEY-----\n{b64}\n-----END PRIVATE KEY-----\n")
}

#[test]
fn id_jag_at_auth0_with_private_key_jwt_uses_the_issuer_as_aud() {
    let v = try_tenant(auth0_resource(json!({})), &rsa_pem())
        .unwrap_or_else(|e| panic!("{e}"))
        .tenants[0]
        .vault
        .clone();
    let f = form(&second_leg(&v, &FixedRsa));
    assert!(f.iter().all(|(k, _)| k != "client_secret"));
    let assertion = value(&f, "client_assertion");
    let claims = claims_of(assertion);
    assert_eq!(claims["aud"], "https://wiki.auth0.example/");
    assert_eq!(
        (claims["iss"].as_str(), claims["sub"].as_str()),
        (Some("wiki-client"), Some("wiki-client"))
    );
    use base64::Engine;
    let header: Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(assertion.split('.').next().unwrap_or_default())
            .unwrap_or_default(),
    )
    .unwrap_or_default();
    assert_eq!(header["alg"], "RS256");
    // The IdP leg still goes to Okta with Okta's rule: aud = its token endpoint.
    let f =
        form(&first_request(&v, "id.token", &FixedRsa, NOW).unwrap_or_else(|o| panic!("{o:?}")));
    assert_eq!(
        claims_of(value(&f, "client_assertion"))["aud"],
        "https://org.okta.example/oauth2/v1/token"
    );
}

#[test]
fn resource_as_combinations_that_cannot_work_are_refused() {
    let cases: Vec<(Value, &str)> = vec![
        // P-256 signs ES256, which Auth0 does not accept.
        (json!({}), "field 'vault.private_key_env': Auth0 accepts client assertions signed RS256, RS384 or PS256 only"),
        (json!({"audience": "https://wiki.auth0.example", "resource_client_secret": "s"}), "field 'vault.audience'"),
        (json!({"audience": "https://wiki.auth0.example/x/", "resource_client_secret": "s"}), "field 'vault.audience'"),
        (json!({"resource_token_url": "https://other.example/oauth/token", "resource_client_secret": "s"}), "field 'vault.resource_token_url'"),
        (json!({"resource_client_secret": "s", "resource_client_secret_env": "S"}), "field 'vault.resource_client_secret'"),
        (json!({"resource_client_secret": ""}), "field 'vault.resource_client_secret'"),
        (json!({"resource_as": "okta", "resource_client_secret": "s"}), "field 'vault.resource_client_secret': an Okta resource authorization server"),
        (json!({"resource_as": "ping"}), "field 'vault.resource_as'"),
        (json!({"resource": ""}), "field 'vault.resource'"),
    ];
    for (patch, expected) in cases {
        let e = try_tenant(auth0_resource(patch.clone()), PEM)
            .err()
            .unwrap_or_default();
        assert!(
            e.contains("tenant 'okta'") && e.contains(expected),
            "{patch}: {e}"
        );
    }
    // Auth0's own vault fields stay refused on an Okta backend.
    let e = try_tenant(sts_with(json!({"resource_as": "auth0"})), PEM)
        .err()
        .unwrap_or_default();
    assert!(
        e.contains("field 'vault.resource_as': is not used by vault type \"okta-sts\""),
        "{e}"
    );
}

fn sts_with(extra: Value) -> Value {
    let mut v = json!({
        "type": "okta-sts", "cluster": "okta",
        "token_url": "https://org.okta.example/oauth2/v1/token",
        "client_id": "agent", "private_key_env": "K", "key_id": "k1",
        "resource": "https://slack.example/api", "connection": "slack",
    });
    for (k, x) in extra.as_object().into_iter().flatten() {
        v[k] = x.clone();
    }
    v
}

#[test]
fn sts_user_access_sends_the_id_token_from_its_header() {
    let v = tenant(sts_with(
        json!({"subject_token_type": "id_token", "subject_token_header": "X-Agent-ID-Token"}),
    ))
    .tenants[0]
        .vault
        .clone();
    assert_eq!(v.subject_token_header.as_deref(), Some("x-agent-id-token"));
    let f = form(
        &first_request(&v, "the.id.token", &PureRustSigner, NOW)
            .unwrap_or_else(|o| panic!("{o:?}")),
    );
    assert_eq!(value(&f, "subject_token_type"), ID_TOKEN_TYPE);
    assert_eq!(value(&f, "subject_token"), "the.id.token");
    for (patch, expected) in [
        (json!({"subject_token_type": "id_token"}), "field 'vault.subject_token_header': required when subject_token_type is id_token"),
        (json!({"subject_token_type": "id_token", "subject_token_header": "authorization"}), "field 'vault.subject_token_header': must not be authorization"),
        (json!({"subject_token_header": "x-id"}), "field 'vault.subject_token_header': only used with subject_token_type refresh_token or id_token"),
    ] {
        let e = try_tenant(sts_with(patch.clone()), PEM).err().unwrap_or_default();
        assert!(e.contains(expected), "{patch}: {e}");
    }
}
