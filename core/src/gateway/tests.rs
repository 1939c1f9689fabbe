//! The request-level decisions, event by event, as a host sees them.

use super::*;
use crate::crypto::PureRustVerifier;
use crate::testing::FakeHost;
use serde_json::{json, Value};
use sim::keys::IssuerKeys;

const NOW_S: u64 = 1_800_000_000;
const ALICE: &str = "alice";

struct Fixture {
    host: FakeHost,
    gateway: Gateway,
    keys: IssuerKeys,
    /// The agent tokens' audience.
    aud: String,
    /// `:authority` and `x-forwarded-proto` of the requests.
    origin: (&'static str, Option<&'static str>),
}

fn fixture_with(edit: impl Fn(&mut Value)) -> Fixture {
    let mut doc: Value = serde_json::from_str(&crate::testing::example_json()).unwrap_or_default();
    edit(&mut doc);
    let env = crate::testing::with_sealing_key(&|_| Some("secret".into()));
    let cfg =
        crate::config::parse(doc.to_string().as_bytes(), &env).unwrap_or_else(|e| panic!("{e}"));
    let host = FakeHost::default();
    host.now.set(NOW_S * 1000);
    let worker = Worker::new(Rc::new(cfg), Box::new(PureRustVerifier));
    Fixture {
        host,
        gateway: Gateway::new(worker),
        keys: IssuerKeys::generate("github"),
        aud: "http://localhost:3000/github/mcp".into(),
        origin: ("localhost:3000", None),
    }
}

fn fixture() -> Fixture {
    fixture_with(|_| {})
}

fn head(method: &str, path: &str, extra: &[(&str, &str)]) -> RequestHead {
    head_at("localhost:3000", method, path, extra)
}

fn head_at(authority: &str, method: &str, path: &str, extra: &[(&str, &str)]) -> RequestHead {
    let mut pairs = vec![
        (":method".to_string(), method.as_bytes().to_vec()),
        (":path".to_string(), path.as_bytes().to_vec()),
        (":authority".to_string(), authority.as_bytes().to_vec()),
        (":scheme".to_string(), b"http".to_vec()),
    ];
    pairs.extend(
        extra
            .iter()
            .map(|(n, v)| (n.to_string(), v.as_bytes().to_vec())),
    );
    RequestHead::new(pairs)
}

fn answer(status: u16, body: &Value) -> CalloutResponse {
    CalloutResponse {
        status: Some(status),
        retry_after: None,
        rate_limit_reset: None,
        body: Some(body.to_string().into_bytes()),
    }
}

impl Fixture {
    fn token(&self, sub: &str, scope: &str) -> String {
        let claims = json!({"iss": "http://127.0.0.1:9000/issuers/github/",
            "aud": self.aud, "sub": sub,
            "exp": NOW_S + 600, "scope": scope});
        self.keys
            .sign(
                "RS256",
                "current",
                &json!({"alg": "RS256", "kid": "github-rsa-1"}),
                &claims,
            )
            .unwrap_or_default()
    }

    fn bearer(&self, sub: &str) -> String {
        format!("Bearer {}", self.token(sub, "github:read github:write"))
    }

    fn headers(&mut self, ctx: u32, head: RequestHead) -> Resolved {
        self.gateway.on_request_headers(&self.host, ctx, head, true)
    }

    /// The outcome for `ctx` among `resolved` (none: it stays stopped).
    fn of(resolved: &Resolved, ctx: u32) -> Outcome {
        resolved
            .iter()
            .rev()
            .find(|(c, _)| *c == ctx)
            .map_or(Outcome::stop(), |(_, o)| o.clone())
    }

    /// The last call-out sent and its token.
    fn last_sent(&self) -> (u32, CalloutRequest) {
        let sent = self.host.sent.borrow();
        let token = u32::try_from(sent.len()).unwrap_or_default();
        (
            token,
            sent.last()
                .map(|(_, r)| r.clone())
                .unwrap_or_else(|| panic!("nothing sent")),
        )
    }

    /// Answer the last call-out (sent by `owner`).
    fn respond(&mut self, owner: u32, status: u16, body: &Value) -> Resolved {
        let (token, _) = self.last_sent();
        self.gateway
            .on_callout_response(&self.host, token, &answer(status, body), owner)
    }

    /// A GET by `sub` for `/github/user` answered through keys and the vault.
    fn brokered(&mut self, ctx: u32, sub: &str, vault: (u16, Value)) -> Outcome {
        let bearer = self.bearer(sub);
        let mut extra = vec![("authorization", bearer.as_str())];
        extra.extend(self.origin.1.map(|p| ("x-forwarded-proto", p)));
        let h = head_at(self.origin.0, "GET", "/github/user", &extra);
        let r = self.headers(ctx, h);
        assert_eq!(Self::of(&r, ctx), Outcome::stop());
        assert!(self.last_sent().1.path.ends_with("jwks.json"));
        let jwks = self.keys.jwks();
        let r = self.respond(ctx, 200, &jwks);
        assert_eq!(self.last_sent().1.path, "/oauth/token", "{r:?}");
        let r = self.respond(ctx, vault.0, &vault.1);
        Self::of(&r, ctx)
    }
}

fn replies(outcome: &Outcome) -> &Reply {
    outcome
        .reply_of()
        .unwrap_or_else(|| panic!("no reply in {outcome:?}"))
}

fn header<'r>(reply: &'r Reply, name: &str) -> Option<&'r str> {
    reply
        .headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

#[test]
fn a_forward_replaces_credentials_records_and_goes_on() {
    let mut f = fixture_with(|doc| doc["settings"]["strip_headers"] = json!(["x-api-key"]));
    let outcome = f.brokered(
        1,
        ALICE,
        (200, json!({"access_token": "gho_1", "expires_in": 3600})),
    );
    assert_eq!(outcome.next, Next::Continue);
    let edits: Vec<&Effect> = outcome
        .effects
        .iter()
        .filter(|e| e.is_request_edit())
        .collect();
    assert_eq!(
        edits,
        vec![
            &Effect::RemoveHeader("proxy-authorization".into()),
            &Effect::RemoveHeader("x-forwarded-authorization".into()),
            &Effect::RemoveHeader("x-api-key".into()),
            &Effect::SetHeader("authorization".into(), "Bearer gho_1".into()),
        ]
    );
    let record = outcome.effects.iter().find_map(|e| match e {
        Effect::Record(r) => Some(r.clone()),
        _ => None,
    });
    assert!(record.is_some_and(|r| r.contains(r#""decision":"allow""#)));
    // Its body goes on now.
    let body = f
        .gateway
        .on_request_body(&f.host, 1, 10, true, &|_| Vec::new());
    assert_eq!(body, Outcome::go_on());
}

#[test]
fn a_forward_whose_headers_cannot_be_rewritten_is_refused_and_stays_stopped() {
    let mut f = fixture();
    let outcome = f.brokered(
        1,
        ALICE,
        (200, json!({"access_token": "gho_1", "expires_in": 3600})),
    );
    assert_eq!(outcome.next, Next::Continue);
    // The host could not set the header: fail closed.
    let refused = f.gateway.edit_failed(&f.host, 1);
    assert_eq!(refused.next, Next::Stop);
    assert_eq!(replies(&refused).status, 502);
    assert_eq!(
        f.gateway
            .on_request_body(&f.host, 1, 10, true, &|_| Vec::new()),
        Outcome::stop()
    );
    // And its response evicts nothing: it was never forwarded.
    let effects = f
        .gateway
        .on_response_headers(&f.host, 1, &|| Some(401), &|_| None);
    assert!(effects.is_empty());
    assert_eq!(f.host.counter("github", "downstream_evicted"), 0);
}

#[test]
fn a_stopped_request_keeps_its_body_and_trailers_until_it_goes_on() {
    let mut f = fixture();
    let bearer = f.bearer(ALICE);
    let r = f.headers(
        1,
        head("POST", "/github/repos", &[("authorization", &bearer)]),
    );
    assert_eq!(Fixture::of(&r, 1), Outcome::stop());
    // Waiting for keys: body and trailers wait too.
    let no_body = |_| Vec::new();
    assert_eq!(
        f.gateway.on_request_body(&f.host, 1, 5, false, &no_body),
        Outcome::stop()
    );
    assert_eq!(
        f.gateway.on_request_trailers(&f.host, 1, &no_body),
        Outcome::stop()
    );
    // A request the filter answers itself never lets its body go on.
    let r = f.headers(2, head("GET", "/github/x", &[]));
    assert_eq!(replies(&Fixture::of(&r, 2)).status, 401);
    assert_eq!(
        f.gateway.on_request_body(&f.host, 2, 5, true, &no_body),
        Outcome::stop()
    );
    // A request the gateway never saw is not let through either.
    assert_eq!(
        f.gateway.on_request_body(&f.host, 9, 5, true, &no_body),
        Outcome::stop()
    );
    // Forgotten: nothing kept.
    f.gateway.forget(&f.host, 2);
    assert!(!f.gateway.live.contains_key(&2));
}

#[test]
fn a_challenge_names_the_metadata_of_the_resource_and_the_scopes() {
    let mut f = fixture();
    let r = f.headers(1, head("POST", "/github/mcp", &[]));
    let reply = replies(&Fixture::of(&r, 1)).clone();
    assert_eq!(reply.status, 401);
    let challenge = header(&reply, "www-authenticate").unwrap_or_default();
    assert!(
        challenge.contains(
            r#"resource_metadata="http://localhost:3000/.well-known/oauth-protected-resource/github/mcp""#
        ),
        "{challenge}"
    );
    assert!(
        challenge.contains(r#"scope="github:read github:write""#),
        "{challenge}"
    );
    assert_eq!(f.host.counter("github", "deny.missing_token"), 1);
}

#[test]
fn without_a_public_url_a_link_names_the_request_s_own_origin() {
    let mut f = fixture_with(|doc| {
        let s = doc["settings"].as_object_mut();
        s.map(|s| s.remove("public_base_url"));
        doc["settings"]["resource_from_request"] = json!(true);
        doc["tenants"][0]["resources"] = json!(["https://gw.example:8443/github/mcp"]);
    });
    f.aud = "https://gw.example:8443/github/mcp".into();
    f.origin = ("gw.example:8443", Some("https"));
    let missing = json!({"error": "federated_connection_refresh_token_not_found",
        "error_description": "no account"});
    let outcome = f.brokered(1, "bob", (401, missing));
    let reply = replies(&outcome);
    let body: Value = serde_json::from_slice(&reply.body).unwrap_or_default();
    let link = body["connect_uri"].as_str().unwrap_or_default();
    assert!(
        link.starts_with("https://gw.example:8443/connect/github/start?id="),
        "{body}"
    );
}

#[test]
fn other_hosts_are_refused_before_anything_else() {
    let mut f = fixture_with(|doc| doc["settings"]["hosts"] = json!(["gw.example.com"]));
    let r = f.headers(1, head("GET", "/health", &[]));
    assert_eq!(replies(&Fixture::of(&r, 1)).status, 421);
    assert!(f.host.sent.borrow().is_empty());
}

#[test]
fn a_user_without_the_account_gets_a_link_under_the_public_url() {
    let mut f = fixture();
    let missing = json!({"error": "federated_connection_refresh_token_not_found",
        "error_description": "no account"});
    let outcome = f.brokered(1, "bob", (401, missing));
    let reply = replies(&outcome);
    let body: Value = serde_json::from_slice(&reply.body).unwrap_or_default();
    assert_eq!(body["error"], "connected_account_required", "{body}");
    let link = body["connect_uri"].as_str().unwrap_or_default();
    assert!(
        link.starts_with("http://localhost:3000/connect/github/start?id="),
        "{body}"
    );
    assert_eq!(outcome.next, Next::Stop);
}

/// Bob (without the account) posts an MCP message with `extra` headers; the key fetch and
/// the vault's "no account" answer follow. The outcome of that answer for request 1.
fn unconnected_mcp_message(f: &mut Fixture, extra: &[(&str, &str)]) -> Outcome {
    let bearer = f.bearer("bob");
    let mut headers = vec![
        ("authorization", bearer.as_str()),
        ("content-type", "application/json"),
        ("accept", "application/json, text/event-stream"),
        ("mcp-protocol-version", "2025-11-25"),
    ];
    headers.extend_from_slice(extra);
    let r = f
        .gateway
        .on_request_headers(&f.host, 1, head("POST", "/github/mcp", &headers), false);
    assert_eq!(Fixture::of(&r, 1), Outcome::stop());
    let jwks = f.keys.jwks();
    f.respond(1, 200, &jwks);
    let missing = json!({"error": "federated_connection_refresh_token_not_found",
        "error_description": "no account"});
    let r = f.respond(1, 401, &missing);
    Fixture::of(&r, 1)
}

#[test]
fn an_mcp_message_of_a_user_without_the_account_waits_on_the_hold_route_then_is_answered() {
    let mut f = fixture();
    let held = unconnected_mcp_message(&mut f, &[]);
    assert_eq!(held.next, Next::Continue);
    assert!(held
        .effects
        .contains(&Effect::RemoveHeader("authorization".into())));
    assert!(held.effects.contains(&Effect::SetHeader(
        ":path".into(),
        "/.tvp-hold/github/mcp".into()
    )));
    assert!(held.effects.contains(&Effect::ClearRouteCache));
    // Its body: a tool call, answered in JSON-RPC with the consent (no HTTP refusal).
    let call = br#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"x"}}"#;
    let partial = f
        .gateway
        .on_request_body(&f.host, 1, 10, false, &|_| call.to_vec());
    assert_eq!(partial, Outcome::stop());
    let done = f
        .gateway
        .on_request_body(&f.host, 1, call.len(), true, &|_| call.to_vec());
    assert_eq!(done.next, Next::Stop);
    let reply = replies(&done);
    let body: Value = serde_json::from_slice(&reply.body).unwrap_or_default();
    assert_eq!(body["id"], 7, "{body}");
    assert_eq!(f.host.counter("github", "mcp.elicitation"), 1);
}

#[test]
fn an_mcp_message_declared_too_large_to_read_is_answered_plainly_not_held() {
    let mut f = fixture();
    let too_large = (crate::mcp::MAX_BODY_BYTES + 1).to_string();
    let answered = unconnected_mcp_message(&mut f, &[("content-length", &too_large)]);
    assert_eq!(answered.next, Next::Stop);
    assert_eq!(replies(&answered).status, 403);
    assert!(!answered.effects.contains(&Effect::ClearRouteCache));
}

#[test]
fn a_call_out_that_cannot_start_decides_the_request_at_once() {
    let mut f = fixture();
    f.host.refuse_dispatch.set(true);
    let bearer = f.bearer(ALICE);
    let r = f.headers(
        1,
        head("GET", "/github/user", &[("authorization", &bearer)]),
    );
    let outcome = Fixture::of(&r, 1);
    assert_eq!(replies(&outcome).status, 503, "{outcome:?}");
}

#[test]
fn a_backend_401_evicts_the_token_it_was_forwarded_with() {
    let mut f = fixture();
    let outcome = f.brokered(
        1,
        ALICE,
        (200, json!({"access_token": "gho_1", "expires_in": 3600})),
    );
    assert_eq!(outcome.next, Next::Continue);
    f.gateway
        .on_response_headers(&f.host, 1, &|| Some(401), &|_| None);
    assert_eq!(f.host.counter("github", "downstream_evicted"), 1);
    // Once per request: a second response callback evicts nothing more.
    f.gateway
        .on_response_headers(&f.host, 1, &|| Some(401), &|_| None);
    assert_eq!(f.host.counter("github", "downstream_evicted"), 1);
}

#[test]
fn health_and_local_endpoints_answer_without_a_token() {
    let mut f = fixture();
    let r = f.headers(1, head("GET", "/health", &[]));
    let reply = replies(&Fixture::of(&r, 1)).clone();
    let body: Value = serde_json::from_slice(&reply.body).unwrap_or_default();
    assert_eq!(
        (reply.status, body["status"].as_str()),
        (200, Some("degraded"))
    );
    assert_eq!(body["tenants"]["github"]["keys_loaded"], false);
    let r = f.headers(
        2,
        head(
            "GET",
            "/.well-known/oauth-protected-resource/github/mcp",
            &[],
        ),
    );
    let reply = replies(&Fixture::of(&r, 2)).clone();
    assert_eq!(reply.status, 200);
    let body: Value = serde_json::from_slice(&reply.body).unwrap_or_default();
    assert_eq!(body["resource"], "http://localhost:3000/github/mcp");
    let r = f.headers(3, head("GET", "/nope/x", &[]));
    assert_eq!(replies(&Fixture::of(&r, 3)).status, 404);
}

#[test]
fn a_superseded_configuration_refuses_before_anything_else() {
    let mut f = fixture();
    let old = Generation::new("tvp", b"old configuration");
    let config = Rc::clone(f.gateway.config());
    f.gateway = Gateway::new(Worker::new(config, Box::new(PureRustVerifier))).with_generation(old);
    // Current while nothing else claimed.
    let r = f.headers(1, head("GET", "/health", &[]));
    assert_eq!(replies(&Fixture::of(&r, 1)).status, 200);
    // A push: the new configuration's first tick claims the record.
    let mut new = Generation::new("tvp", b"new configuration");
    new.tick(&f.host);
    // The old configuration's reading stands for RECHECK_MS, no longer.
    let r = f.headers(4, head("GET", "/health", &[]));
    assert_eq!(replies(&Fixture::of(&r, 4)).status, 200);
    f.host
        .now
        .set(f.host.now.get() + crate::generation::RECHECK_MS);
    let r = f.headers(2, head("GET", "/health", &[]));
    let refused = Fixture::of(&r, 2);
    assert_eq!(replies(&refused).status, 503);
    assert!(refused
        .effects
        .iter()
        .any(|e| matches!(e, Effect::Record(r) if r.contains("superseded_configuration"))));
    assert_eq!(
        f.host
            .counter("token-vault-proxy", "deny.superseded_configuration"),
        1
    );
    // Its body never goes on.
    assert_eq!(
        f.gateway
            .on_request_body(&f.host, 2, 1, true, &|_| Vec::new()),
        Outcome::stop()
    );
}

#[test]
fn a_connect_page_keeps_its_body_and_trailers_until_its_call_out_answers() {
    use crate::connect::records::Session;
    use crate::connect::sealed::{seal, Purpose};
    let mut f = fixture();
    let config = Rc::clone(f.gateway.config());
    let keys = config
        .settings
        .sealing_keys
        .as_ref()
        .unwrap_or_else(|| panic!("sealing keys"));
    let session = Session {
        id: "sid".into(),
        tenant: "github".into(),
        sub: ALICE.into(),
        token: "myacct".into(),
        csrf: "csrf-value".into(),
        expires_ms: NOW_S * 1000 + 60_000,
    };
    // The example's public URL is plain http (a demo): the cookies have no `__Host-` prefix.
    let cookie = format!(
        "tvp_session={}",
        seal(keys, Purpose::Session, &session, [9; 24]).unwrap_or_default()
    );
    let ticket = json!({"auth_session": "s",
        "connect_uri": "http://127.0.0.1:9000/connected-accounts/connect",
        "connect_params": {"ticket": "t"}, "expires_in": 300});
    let no_body = |_| Vec::new();
    // The disconnect form and the accounts page's "connect" button: POSTs whose My Account
    // call-out is pending while their body and trailers arrive.
    for (ctx, path, call, (status, body), decided) in [
        (
            1,
            "/connect/github/accounts/delete?id=cac_1&csrf=csrf-value",
            ("DELETE", "/me/v1/connected-accounts/accounts/cac_1"),
            (204, json!({})),
            303,
        ),
        (
            2,
            "/connect/github/start?csrf=csrf-value",
            ("POST", "/me/v1/connected-accounts/connect"),
            (201, ticket),
            302,
        ),
    ] {
        let form = head(
            "POST",
            path,
            &[
                ("cookie", &cookie),
                ("sec-fetch-site", "same-origin"),
                ("content-type", "application/x-www-form-urlencoded"),
            ],
        );
        let r = f.gateway.on_request_headers(&f.host, ctx, form, false);
        assert_eq!(Fixture::of(&r, ctx), Outcome::stop(), "{path}");
        let (token, request) = f.last_sent();
        assert_eq!((request.method, request.path.as_str()), call);
        // The call-out is pending: every chunk and the trailers wait.
        for (size, end) in [(5, false), (12, true)] {
            assert_eq!(
                f.gateway.on_request_body(&f.host, ctx, size, end, &no_body),
                Outcome::stop(),
                "{path}"
            );
        }
        assert_eq!(
            f.gateway.on_request_trailers(&f.host, ctx, &no_body),
            Outcome::stop()
        );
        // It answers: the filter answers the page itself, and nothing goes on, ever.
        let r = f
            .gateway
            .on_callout_response(&f.host, token, &answer(status, &body), ctx);
        let outcome = Fixture::of(&r, ctx);
        assert_eq!(outcome.next, Next::Stop, "{path}");
        assert_eq!(replies(&outcome).status, decided, "{path}");
        assert!(!outcome.effects.iter().any(Effect::is_request_edit));
        assert_eq!(
            f.gateway.on_request_body(&f.host, ctx, 12, true, &no_body),
            Outcome::stop()
        );
        assert_eq!(
            f.gateway.on_request_trailers(&f.host, ctx, &no_body),
            Outcome::stop()
        );
    }
    assert_eq!(f.host.counter("github", "allow"), 0);
    assert_eq!(f.host.counter("github", "connect.disconnected"), 1);
    assert_eq!(f.host.counter("github", "connect.started"), 1);
}
