//! Hostile and broken inputs from RFC 8725 and the public JWT attack catalogues, each with the
//! status it must get, in real Envoy. For every case: nothing reaches the backend unless the
//! case says so, the vault is not asked for refused tokens, and (the harness checks this on
//! every answer and on Envoy's log) no token leaks.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::*;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use sim::keys::b64;

struct Case {
    name: &'static str,
    path: String,
    headers: Vec<(String, String)>,
    status: u16,
    forwarded: bool,
}

fn bearer(name: &'static str, token: String, status: u16) -> Case {
    Case {
        name,
        path: "/github/user".into(),
        headers: vec![("authorization".into(), format!("Bearer {token}"))],
        status,
        forwarded: status == 200,
    }
}

/// header.payload.signature from JSON texts and raw signature bytes.
fn forge(header: &str, payload: &str, signature: &str) -> String {
    format!(
        "{}.{}.{}",
        b64(header.as_bytes()),
        b64(payload.as_bytes()),
        signature
    )
}

fn hmac_sha256(key: &[u8], message: &[u8]) -> Vec<u8> {
    let mut k = [0u8; 64];
    if key.len() > 64 {
        k[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        k[..key.len()].copy_from_slice(key);
    }
    let pad = |b: u8| k.iter().map(|x| x ^ b).collect::<Vec<u8>>();
    let inner = Sha256::new()
        .chain_update(pad(0x36))
        .chain_update(message)
        .finalize();
    Sha256::new()
        .chain_update(pad(0x5c))
        .chain_update(inner)
        .finalize()
        .to_vec()
}

#[test]
fn hostile_inputs_are_refused_with_the_right_status() {
    let stack = Stack::start();
    let m = |claims: Value, header: Value| {
        stack.mint(Mint {
            tenant: "github".into(),
            sub: "alice".into(),
            claims: Some(claims),
            header: Some(header),
            ..Mint::default()
        })
    };
    let claims = |extra: Value| m(extra, json!({}));
    let head = |extra: Value| m(json!({}), extra);
    let alg = |a: &str| {
        stack.mint(Mint {
            tenant: "github".into(),
            sub: "alice".into(),
            alg: Some(a.into()),
            ..Mint::default()
        })
    };
    let good = stack.token("github", "alice");
    let (h, rest) = good.split_once('.').unwrap();
    let (p, s) = rest.split_once('.').unwrap();
    let claims_json = json!({"iss": format!("http://127.0.0.1:{}/issuers/github/", stack.sim.port), "sub": "alice", "aud": "http://localhost:3000/github/mcp", "exp": 4_000_000_000u64, "scope": "github:read github:write"});
    let raw_claims = |c: &str| forge(r#"{"alg":"RS256","kid":"github-rsa-1"}"#, c, s);
    // HS256 "signed" with the tenant's RSA public key (the classic algorithm confusion).
    let jwks = stack.sim.jwks("github");
    let n = jwks["keys"][0]["n"].as_str().unwrap().to_string();
    let hs_input = format!("{}.{p}", b64(br#"{"alg":"HS256","kid":"github-rsa-1"}"#));
    let hs = format!(
        "{hs_input}.{}",
        b64(&hmac_sha256(n.as_bytes(), hs_input.as_bytes()))
    );

    let mut cases = vec![
        bearer(
            "alg none",
            forge(r#"{"alg":"none"}"#, &claims_json.to_string(), s),
            401,
        ),
        bearer(
            "alg None",
            forge(r#"{"alg":"None"}"#, &claims_json.to_string(), s),
            401,
        ),
        bearer(
            "alg NONE",
            forge(r#"{"alg":"NONE"}"#, &claims_json.to_string(), s),
            401,
        ),
        bearer(
            "alg none, empty signature",
            format!("{}.{p}.", b64(br#"{"alg":"none"}"#)),
            401,
        ),
        bearer("HS256 with the RSA public key", hs, 401),
        bearer(
            "HS384 header",
            forge(
                r#"{"alg":"HS384","kid":"github-rsa-1"}"#,
                &claims_json.to_string(),
                s,
            ),
            401,
        ),
        bearer("RS512, not allowed for the tenant", alg("RS512"), 401),
        bearer("PS256, not allowed for the tenant", alg("PS256"), 401),
        bearer("EdDSA, not allowed for the tenant", alg("EdDSA"), 401),
        bearer(
            "alg lower case",
            forge(
                r#"{"alg":"rs256","kid":"github-rsa-1"}"#,
                &claims_json.to_string(),
                s,
            ),
            401,
        ),
        bearer(
            "alg with a trailing space",
            forge(
                r#"{"alg":"RS256 ","kid":"github-rsa-1"}"#,
                &claims_json.to_string(),
                s,
            ),
            401,
        ),
        bearer(
            "ES256 naming the RSA key",
            m(json!({}), json!({"alg": "ES256", "kid": "github-rsa-1"})),
            401,
        ),
        bearer("kid unknown", head(json!({"kid": "nope"})), 401),
        bearer("kid empty", head(json!({"kid": ""})), 401),
        bearer("kid very long", head(json!({"kid": "k".repeat(2000)})), 401),
        bearer(
            "kid path-like",
            head(json!({"kid": "../../../../dev/null"})),
            401,
        ),
        bearer(
            "kid SQL-like",
            head(json!({"kid": "x' UNION SELECT 'key"})),
            401,
        ),
        bearer("kid not a string", head(json!({"kid": 7})), 401),
        bearer(
            "jku elsewhere",
            head(json!({"kid": "evil", "jku": "http://127.0.0.1:1/jwks.json"})),
            401,
        ),
        bearer(
            "x5u elsewhere",
            head(json!({"kid": "evil", "x5u": "http://127.0.0.1:1/cert.pem"})),
            401,
        ),
        bearer(
            "embedded jwk",
            head(json!({"kid": "evil", "jwk": jwks["keys"][0]})),
            401,
        ),
        bearer(
            "embedded x5c",
            head(json!({"kid": "evil", "x5c": ["MIIB"]})),
            401,
        ),
        bearer(
            "crit with an unknown extension",
            head(json!({"crit": ["x-unknown"], "x-unknown": 1})),
            401,
        ),
        bearer("crit empty", head(json!({"crit": []})), 401),
        bearer(
            "b64 false",
            head(json!({"b64": false, "crit": ["b64"]})),
            401,
        ),
        bearer("zip", head(json!({"zip": "DEF"})), 401),
        bearer("nested cty JWT", head(json!({"cty": "JWT"})), 401),
        bearer("JWE, five parts", format!("{h}.{p}.{s}.{s}.{s}"), 401),
        bearer("two segments", format!("{h}.{p}"), 401),
        bearer("four segments", format!("{h}.{p}.{s}.x"), 401),
        bearer("trailing dot", format!("{good}."), 401),
        bearer("empty header segment", format!(".{p}.{s}"), 401),
        bearer("empty payload segment", format!("{h}..{s}"), 401),
        bearer(
            "standard base64 alphabet",
            format!("{h}.{p}.{}", s.replace('-', "+").replace('_', "/")),
            401,
        ),
        bearer("base64 padding", format!("{h}=.{p}.{s}"), 401),
        bearer(
            "header not JSON",
            format!("{}.{p}.{s}", b64(b"alg=RS256")),
            401,
        ),
        bearer(
            "header with a BOM",
            format!("{}.{p}.{s}", b64("\u{feff}{\"alg\":\"RS256\"}".as_bytes())),
            401,
        ),
        bearer(
            "duplicate alg",
            forge(
                r#"{"alg":"RS256","alg":"RS256","kid":"github-rsa-1"}"#,
                &claims_json.to_string(),
                s,
            ),
            401,
        ),
        bearer(
            "duplicate sub",
            raw_claims(&format!(
                "{{\"sub\":\"bob\",{}",
                &claims_json.to_string()[1..]
            )),
            401,
        ),
        bearer("claims an array", raw_claims("[1,2]"), 401),
        bearer("claims a string", raw_claims("\"alice\""), 401),
        bearer("claims not JSON", raw_claims("sub=alice"), 401),
        bearer(
            "signature truncated",
            good[..good.len() - 10].to_string(),
            401,
        ),
        bearer(
            "signature all zero",
            format!("{h}.{p}.{}", b64(&[0u8; 256])),
            401,
        ),
        bearer(
            "signature from another token",
            format!(
                "{h}.{}.{s}",
                b64(json!({"sub": "admin"}).to_string().as_bytes())
            ),
            401,
        ),
        bearer(
            "ES256 r = s = 0",
            m(json!({}), json!({"alg": "ES256"}))
                .rsplit_once('.')
                .map(|(a, _)| format!("{a}.{}", b64(&[0u8; 64])))
                .unwrap(),
            401,
        ),
        bearer("exp a string", claims(json!({"exp": "4000000000"})), 401),
        bearer("exp a float", claims(json!({"exp": 4000000000.5})), 401),
        bearer("exp negative", claims(json!({"exp": -1})), 401),
        bearer("exp huge", claims(json!({"exp": 1e30})), 401),
        bearer("exp missing", claims(json!({"exp": null})), 401),
        bearer(
            "exp in the past",
            claims(json!({"exp": 1_000_000_000})),
            401,
        ),
        bearer("nbf a string", claims(json!({"nbf": "0"})), 401),
        bearer(
            "nbf in the future",
            claims(json!({"nbf": 4_000_000_000u64})),
            401,
        ),
        bearer("iat a string", claims(json!({"iat": "now"})), 401),
        bearer("aud empty array", claims(json!({"aud": []})), 401),
        bearer("aud a number", claims(json!({"aud": 1})), 401),
        bearer(
            "aud of another resource",
            claims(json!({"aud": "https://google.tvp.example"})),
            401,
        ),
        bearer(
            "aud array holding ours among others",
            claims(json!({"aud": ["https://x", "http://localhost:3000/github/mcp"]})),
            200,
        ),
        bearer(
            "iss without its trailing slash",
            claims(json!({"iss": format!("http://127.0.0.1:{}/issuers/github", stack.sim.port)})),
            401,
        ),
        bearer(
            "iss with a double slash",
            claims(json!({"iss": format!("http://127.0.0.1:{}/issuers/github//", stack.sim.port)})),
            401,
        ),
        bearer(
            "iss of another tenant",
            claims(json!({"iss": format!("http://127.0.0.1:{}/issuers/google/", stack.sim.port)})),
            401,
        ),
        bearer(
            "token of another tenant",
            stack.mint(Mint {
                tenant: "google".into(),
                sub: "alice".into(),
                ..Mint::default()
            }),
            401,
        ),
        bearer("sub empty", claims(json!({"sub": ""})), 401),
        bearer("sub a number", claims(json!({"sub": 42})), 401),
        bearer(
            "scope an array",
            claims(json!({"scope": ["github:read"]})),
            401,
        ),
        bearer(
            "permissions a string",
            claims(json!({"permissions": "github:read"})),
            401,
        ),
        bearer(
            "token over 8 KB",
            claims(json!({"pad": "x".repeat(9000)})),
            401,
        ),
        bearer(
            "no scopes",
            stack.mint(Mint {
                tenant: "github".into(),
                sub: "alice".into(),
                scope: Some("other".into()),
                ..Mint::default()
            }),
            403,
        ),
    ];
    let header_case = |name: &'static str, headers: Vec<(&str, String)>, status: u16| Case {
        name,
        path: "/github/user".into(),
        headers: headers
            .into_iter()
            .map(|(n, v)| (n.to_string(), v))
            .collect(),
        status,
        forwarded: status == 200,
    };
    cases.extend([
        header_case(
            "two Authorization headers",
            vec![
                ("authorization", format!("Bearer {good}")),
                ("authorization", format!("Bearer {good}")),
            ],
            400,
        ),
        header_case(
            "Bearer without a token",
            vec![("authorization", "Bearer".into())],
            400,
        ),
        header_case(
            "Bearer and a space",
            vec![("authorization", "Bearer ".into())],
            400,
        ),
        header_case(
            "lower-case scheme",
            vec![("authorization", format!("bearer {good}"))],
            200,
        ),
        header_case(
            "two spaces",
            vec![("authorization", format!("Bearer  {good}"))],
            400,
        ),
        header_case(
            "a tab inside",
            vec![("authorization", format!("Bearer {h}\t{p}"))],
            400,
        ),
        header_case(
            "a comma inside",
            vec![("authorization", format!("Bearer {h},{p}"))],
            400,
        ),
        header_case(
            "Basic scheme",
            vec![("authorization", "Basic YWxpY2U6cGFzcw==".into())],
            401,
        ),
        header_case(
            "token in a cookie",
            vec![("cookie", format!("access_token={good}"))],
            401,
        ),
        header_case(
            "headers over 64 KB",
            vec![
                ("authorization", format!("Bearer {good}")),
                ("x-big", "y".repeat(70_000)),
            ],
            431,
        ),
    ]);
    cases.push(Case {
        name: "token in the query",
        path: format!("/github/user?access_token={good}"),
        headers: vec![],
        status: 400,
        forwarded: false,
    });
    cases.push(Case {
        name: "token in the query and the header",
        path: format!("/github/user?access_token={good}"),
        headers: vec![("authorization".into(), format!("Bearer {good}"))],
        status: 400,
        forwarded: false,
    });
    cases.push(Case {
        name: "CR LF in the path",
        path: "/github/a%0d%0aSet-Cookie:%20x".into(),
        headers: vec![],
        status: 401,
        forwarded: false,
    });
    cases.push(Case {
        name: "quotes in the path",
        path: "/github/\"x\"".into(),
        headers: vec![],
        status: 401,
        forwarded: false,
    });

    assert!(cases.len() >= 60, "{} cases", cases.len());
    let mut names = std::collections::HashSet::new();
    for case in &cases {
        assert!(names.insert(case.name), "duplicate case {}", case.name);
        let before = stack.sim.count(Endpoint::Backend);
        let headers: Vec<(&str, &str)> = case
            .headers
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_str()))
            .collect();
        // Written as given: repeated headers, quotes in the path, a 70 KB header.
        let r = stack.request_raw("GET", &case.path, &headers, b"");
        assert_eq!(r.status, case.status, "{}: {}", case.name, r.text());
        let forwarded = stack.sim.count(Endpoint::Backend) - before;
        assert_eq!(
            forwarded,
            u64::from(case.forwarded),
            "{}: forwarded {forwarded}",
            case.name
        );
        for (_, v) in &r.headers {
            assert!(!v.contains('\r') && !v.contains('\n'), "{}", case.name);
        }
    }
    // One exchange for alice, for the cases that were allowed; none for refused tokens.
    assert_eq!(stack.sim.count(Endpoint::Vault), 1);
    eprintln!("{} hostile cases passed", cases.len());
}

/// `/github/../x` and its encoded forms would reach the backend outside the tenant's prefix
/// with alice's downstream token. Envoy normalises (or refuses) them before the filter, and
/// the filter refuses what is left; none reaches the backend, each gets a clear 400 or 404.
#[test]
fn paths_leaving_the_tenants_prefix_never_reach_the_backend() {
    let stack = Stack::start();
    let token = stack.token("github", "alice");
    // The token works: a plain path is forwarded.
    assert_eq!(stack.call("GET", "/github/user", &token).status, 200);
    let before = stack.sim.backend_requests().len();
    for path in [
        "/github/../x",
        "/github/%2e%2e/x",
        "/github/%2E%2E/x",
        "/github/%2F..%2Fx",
        "/github/%2f..%2fx",
        "/github/.%2e/x",
        "/github/%5C..%5Cx",
        "/github/./../x",
        "/github/a/../../x",
    ] {
        // Written as given: a client library might resolve the dots itself.
        let auth = format!("Bearer {token}");
        let r = stack.request_raw("GET", path, &[("authorization", &auth)], b"");
        assert!(
            r.status == 400 || r.status == 404,
            "{path}: {} {}",
            r.status,
            r.text()
        );
        let seen = stack.sim.backend_requests();
        assert_eq!(
            seen.len(),
            before,
            "{path} reached the backend as {:?}",
            seen.last().map(|r| &r.path)
        );
    }
}

/// With `settings.hosts`, a request for another host is refused before anything else (no
/// tenant token for `Host: other-app` on a shared ingress); the gateway's own host works.
#[test]
fn requests_for_other_hosts_are_refused_first() {
    let stack = Stack::with(Options {
        edit: Some(Box::new(|c: &mut Value| {
            c["settings"]["hosts"] = json!(["localhost", "agents.example.com:443"]);
        })),
        ..Options::default()
    });
    let token = stack.token("github", "alice");
    let auth = format!("Bearer {token}");
    // The harness's client says `host: localhost`.
    assert_eq!(stack.call("GET", "/github/user", &token).status, 200);
    let before = stack.sim.count(Endpoint::Backend);
    for host in ["other-app", "agents.example.com", "agents.example.com:8443"] {
        for path in ["/github/user", "/health", "/connect/github/start"] {
            let r = stack.request(
                "GET",
                path,
                &[("authorization", &auth), ("host", host)],
                b"",
            );
            assert_eq!(r.status, 421, "{host} {path}: {}", r.text());
            assert_eq!(r.json()["error"], "misdirected_request");
        }
    }
    assert_eq!(stack.sim.count(Endpoint::Backend), before);
    let r = stack.request(
        "GET",
        "/github/user",
        &[("authorization", &auth), ("host", "agents.example.com:443")],
        b"",
    );
    assert_eq!(r.status, 200, "{}", r.text());
}

/// `token` with a random signature of the same length (a new one per `seed`): the real `kid`,
/// issuer and audience, so only the signature check can refuse it.
fn junk_signature(token: &str, seed: u64) -> String {
    let (signed, _) = token.rsplit_once('.').unwrap();
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    let bytes: Vec<u8> = (0..256)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    format!("{signed}.{}", b64(&bytes))
}

/// A forged token with a real `kid` and the right issuer and audience costs a signature
/// check. Repeated, it is checked once (the failed-token cache); a flood of distinct ones
/// spends the tenant's `signature_failures_per_second`, after which new tokens get 503 with
/// `Retry-After` and no check, while a verified token keeps working; then it recovers.
#[test]
fn forged_signatures_are_checked_once_and_a_flood_is_held_back() {
    let stack = Stack::with(Options {
        settings: json!({"jwks_min_refetch_seconds": 1, "callout_timeout_ms": 1500,
                         "signature_failures_per_second": 5}),
        ..Options::default()
    });
    let stat = |name: &str| stack.stat(&format!("wasmcustom.tvp.github.{name}"));
    let alice = stack.token("github", "alice");
    assert_eq!(stack.call("GET", "/github/user", &alice).status, 200);
    let backend = stack.sim.count(Endpoint::Backend);

    let forged = junk_signature(&stack.token("github", "mallory"), 1);
    for _ in 0..20 {
        let r = stack.call("GET", "/github/user", &forged);
        assert_eq!(r.status, 401, "{}", r.text());
        assert_eq!(r.json()["error"], "invalid_token");
        let challenge = r.header("www-authenticate").unwrap_or_default();
        assert!(challenge.contains("error=\"invalid_token\""), "{challenge}");
    }
    assert_eq!(stack.eventually(19, || stat("signature.failed_cached")), 19);
    assert_eq!(stat("signature.failed"), 1, "twenty requests, one check");

    // A flood of distinct forgeries, with alice's requests in between.
    let (mut checked, mut held) = (0u64, 0u64);
    for i in 0..40 {
        let r = stack.call(
            "GET",
            "/github/user",
            &junk_signature(&stack.token("github", "mallory"), 100 + i),
        );
        match r.status {
            401 => checked += 1,
            503 => {
                held += 1;
                assert_eq!(r.header("retry-after"), Some("1"));
                assert_eq!(r.json()["error"], "temporarily_unavailable");
                assert!(r.header("www-authenticate").is_none());
            }
            other => panic!("{other}: {}", r.text()),
        }
        if i % 10 == 0 {
            assert_eq!(stack.call("GET", "/github/user", &alice).status, 200);
        }
    }
    assert!(checked >= 1 && held >= 25, "checked {checked}, held {held}");
    assert_eq!(
        stack.eventually(1 + checked, || stat("signature.failed")),
        1 + checked
    );
    assert_eq!(stat("deny.verification_throttled"), held);
    // The repeated forgery is still a plain 401 from the cache, not a 503.
    assert_eq!(stack.call("GET", "/github/user", &forged).status, 401);
    // Nothing forged reached the backend; alice's four did.
    assert_eq!(stack.sim.count(Endpoint::Backend), backend + 4);

    // Once the flood stops, the budget refills within a second: a new token of alice's works.
    std::thread::sleep(std::time::Duration::from_millis(1200));
    let fresh = stack.mint(Mint {
        tenant: "github".into(),
        sub: "alice".into(),
        claims: Some(json!({"jti": "after-the-flood"})),
        ..Mint::default()
    });
    assert_eq!(stack.call("GET", "/github/user", &fresh).status, 200);
}
