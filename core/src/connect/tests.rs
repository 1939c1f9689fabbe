use super::*;
use crate::config::{self, Config};
use crate::testing::FakeHost;
use crate::urlencoded;

const NOW_MS: u64 = 1_800_000_000_000;
const BASE: &str = "https://gw.example";

fn config() -> Config {
    let doc = &crate::testing::example_json();
    config::parse(
        doc.as_bytes(),
        &crate::testing::with_sealing_key(&|_| Some("secret".into())),
    )
    .unwrap_or_else(|e| panic!("{e}"))
}

fn host() -> FakeHost {
    let h = FakeHost::default();
    h.now.set(NOW_MS);
    h
}

fn ctx<'a>(host: &'a FakeHost, cfg: &'a Config) -> Ctx<'a> {
    ctx_of(host, cfg, 0)
}

fn ctx_of<'a>(host: &'a FakeHost, cfg: &'a Config, index: usize) -> Ctx<'a> {
    let tenant = &cfg.tenants[index];
    Ctx {
        host,
        tenant,
        connect: tenant.connect.as_ref().unwrap_or_else(|| panic!("connect")),
        keys: keys(cfg),
        base: BASE,
        allow_insecure_cookies: false,
        now_ms: host.now.get(),
    }
}

/// The query of a link's `start` URL (`id=` and the sealed link).
fn link_query(url: &str) -> String {
    urlencoded::query_of(url).to_string()
}

fn keys(cfg: &Config) -> &SealingKeys {
    cfg.settings
        .sealing_keys
        .as_ref()
        .unwrap_or_else(|| panic!("sealing keys"))
}

fn get<'a>(page: &'a str, query: &'a str, cookies: &'a [&'a [u8]]) -> Incoming<'a> {
    Incoming {
        method: "GET",
        page,
        query,
        cookies,
        fetch_site: None,
        origin: None,
    }
}

/// A form of our pages sent by a browser: a POST from the same origin.
fn post<'a>(page: &'a str, query: &'a str, cookies: &'a [&'a [u8]]) -> Incoming<'a> {
    Incoming {
        method: "POST",
        fetch_site: Some("same-origin"),
        ..get(page, query, cookies)
    }
}

fn reply(outcome: Outcome) -> Reply {
    match outcome {
        Outcome::Reply(r) => r,
        Outcome::Call(req, _) => panic!("unexpected call to {}", req.path),
    }
}

fn header<'r>(r: &'r Reply, name: &str) -> Vec<&'r str> {
    r.headers
        .iter()
        .filter(|(n, _)| *n == name)
        .map(|(_, v)| v.as_str())
        .collect()
}

/// The value of `name=` in a `Set-Cookie` of the reply.
fn cookie_value(r: &Reply, name: &str) -> String {
    header(r, "set-cookie")
        .into_iter()
        .find_map(|c| c.strip_prefix(&format!("{name}=")))
        .and_then(|c| c.split(';').next())
        .unwrap_or_default()
        .to_string()
}

fn location_param(r: &Reply, name: &str) -> String {
    let location = header(r, "location").first().copied().unwrap_or_default();
    urlencoded::param(urlencoded::query_of(location), name).unwrap_or_default()
}

fn ok(status: u16, body: serde_json::Value) -> CalloutResponse {
    CalloutResponse {
        status: Some(status),
        retry_after: None,
        rate_limit_reset: None,
        body: Some(body.to_string().into_bytes()),
    }
}

#[test]
fn login_redirect_carries_pkce_and_binds_the_browser() {
    let (h, cfg) = (host(), config());
    let c = ctx(&h, &cfg);
    let r = reply(handle(&c, &get("/accounts", "", &[])));
    assert_eq!(r.status, 302);
    let location = header(&r, "location")[0];
    assert!(
        location.starts_with("http://127.0.0.1:9000/authorize?"),
        "{location}"
    );
    assert_eq!(location_param(&r, "code_challenge_method"), "S256");
    assert_eq!(location_param(&r, "code_challenge").len(), 43);
    assert_eq!(location_param(&r, "audience"), "https://127.0.0.1:9000/me/");
    assert_eq!(
        location_param(&r, "redirect_uri"),
        "https://gw.example/connect/github/login/callback"
    );
    let cookie = header(&r, "set-cookie")[0];
    assert!(cookie.contains("HttpOnly") && cookie.contains("SameSite=Lax"));
    // An https gateway gets `__Host-` cookies: Secure, Path=/, one per tenant.
    assert!(cookie.starts_with("__Host-tvp_login-github="), "{cookie}");
    assert!(
        cookie.contains("; Path=/;") && cookie.contains("Secure"),
        "{cookie}"
    );
}

#[test]
fn login_completes_into_a_session_once() {
    let (h, cfg) = (host(), config());
    let c = ctx(&h, &cfg);
    let start = reply(handle(&c, &get("/accounts", "", &[])));
    let state = location_param(&start, "state");
    let binding = format!(
        "__Host-tvp_login-github={}",
        cookie_value(&start, "__Host-tvp_login-github")
    );
    let query = format!("code=abc&state={state}");
    let cookies: [&[u8]; 1] = [binding.as_bytes()];

    let Outcome::Call(request, pending) = handle(&c, &get("/login/callback", &query, &cookies))
    else {
        panic!("expected the code exchange");
    };
    let body = String::from_utf8(request.body.unwrap_or_default()).unwrap_or_default();
    assert!(body.contains("grant_type=authorization_code") && body.contains("code_verifier="));
    assert_eq!(request.path, "/oauth/token");

    let answer = ok(
        200,
        json!({"access_token": "at", "id_token": "idt", "expires_in": 600}),
    );
    let mut seen = None;
    let r = reply(resume(&c, *pending, &answer, &mut |t, _| {
        seen = Some(t.to_string());
        Some("bob".into())
    }));
    assert_eq!(seen.as_deref(), Some("idt"));
    assert_eq!(r.status, 302);
    assert_eq!(
        header(&r, "location")[0],
        "https://gw.example/connect/github/accounts"
    );
    assert!(!cookie_value(&r, "__Host-tvp_session-github").is_empty());

    // The browser's sealed sign-in is cleared: a replayed callback has nothing to show for it.
    assert!(header(&r, "set-cookie")
        .iter()
        .any(|c| c.starts_with("__Host-tvp_login-github=;") && c.contains("Max-Age=0")));
    assert_eq!(
        reply(handle(&c, &get("/login/callback", &query, &[]))).status,
        400
    );
    // A forged or altered sign-in cookie is not ours.
    let forged = format!(
        "__Host-tvp_login-github={}x",
        cookie_value(&start, "__Host-tvp_login-github")
    );
    let forged_cookies: [&[u8]; 1] = [forged.as_bytes()];
    assert_eq!(
        reply(handle(&c, &get("/login/callback", &query, &forged_cookies))).status,
        400
    );
    // Starting a sign-in stores nothing: only a sealed cookie in the browser.
    let before = h.shared.borrow().len();
    for _ in 0..5 {
        reply(handle(&c, &get("/accounts", "", &[])));
    }
    assert_eq!(h.shared.borrow().len(), before);
}

#[test]
fn an_id_token_that_does_not_verify_makes_no_session() {
    let (h, cfg) = (host(), config());
    let c = ctx(&h, &cfg);
    let start = reply(handle(&c, &get("/accounts", "", &[])));
    let query = format!("code=abc&state={}", location_param(&start, "state"));
    let binding = format!(
        "__Host-tvp_login-github={}",
        cookie_value(&start, "__Host-tvp_login-github")
    );
    let cookies: [&[u8]; 1] = [binding.as_bytes()];
    let Outcome::Call(_, pending) = handle(&c, &get("/login/callback", &query, &cookies)) else {
        panic!("expected the code exchange");
    };
    let answer = ok(200, json!({"access_token": "at", "id_token": "idt"}));
    let r = reply(resume(&c, *pending, &answer, &mut |_, _| None));
    assert_eq!(r.status, 502);
    assert!(header(&r, "set-cookie").is_empty());
}

#[test]
fn state_expires() {
    let (h, cfg) = (host(), config());
    let start = reply(handle(&ctx(&h, &cfg), &get("/accounts", "", &[])));
    let query = format!("code=abc&state={}", location_param(&start, "state"));
    let binding = format!(
        "__Host-tvp_login-github={}",
        cookie_value(&start, "__Host-tvp_login-github")
    );
    let cookies: [&[u8]; 1] = [binding.as_bytes()];
    h.now.set(NOW_MS + records::STATE_TTL_MS + 1);
    let r = reply(handle(
        &ctx(&h, &cfg),
        &get("/login/callback", &query, &cookies),
    ));
    assert_eq!(r.status, 400);
}

#[test]
fn links_are_sealed_and_expire() {
    let (h, cfg) = (host(), config());
    let t = &cfg.tenants[0];
    let k = keys(&cfg);
    let (id, url) = offer(k, t, BASE, "bob", "dk-bob", None, NOW_MS).unwrap_or_default();
    let (_, other) = offer(k, t, BASE, "carol", "dk-carol", None, NOW_MS).unwrap_or_default();
    assert_ne!(url, other);
    let sealed = url
        .strip_prefix(&format!("{BASE}/connect/github/start?id="))
        .unwrap_or_else(|| panic!("{url}"));
    // The short id names the link (MCP elicitationId); nothing of the user shows.
    assert_eq!(id, sealed::digest(sealed));
    // Opaque: one sealed value, nothing of the user readable in it.
    assert!(sealed
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
    // Offering stores nothing: the link is the record.
    assert!(h.shared.borrow().is_empty());
    // Another gateway's key opens nothing; an expired link leads nowhere.
    let query = format!("id={sealed}");
    let other_keys = SealingKeys::parse(&"x".repeat(40)).unwrap_or_else(|e| panic!("{e}"));
    let elsewhere = Ctx {
        keys: &other_keys,
        ..ctx(&h, &cfg)
    };
    assert_eq!(
        reply(handle(&elsewhere, &get("/start", &query, &[]))).status,
        400
    );
    assert_eq!(
        reply(handle(&ctx(&h, &cfg), &get("/start", &query, &[]))).status,
        302
    );
    h.now.set(NOW_MS + records::LINK_TTL_MS + 1);
    let r = reply(handle(&ctx(&h, &cfg), &get("/start", &query, &[])));
    assert_eq!(r.status, 400);
}

/// A signed-in session of `sub` at the github tenant, as its cookie.
fn session_for(cfg: &Config, sub: &str) -> String {
    let session = Session {
        id: "sid".into(),
        tenant: "github".into(),
        sub: sub.into(),
        token: "myacct".into(),
        csrf: "csrf-value".into(),
        expires_ms: NOW_MS + 60_000,
    };
    let sealed = sealed::seal(keys(cfg), Purpose::Session, &session, [9; 24]).unwrap_or_default();
    format!("__Host-tvp_session-github={sealed}")
}

/// The `start` query of a link for bob at the github tenant.
fn bobs_link_query(cfg: &Config) -> String {
    let t = &cfg.tenants[0];
    let (_, url) = offer(keys(cfg), t, BASE, "bob", "dk-bob", None, NOW_MS).unwrap_or_default();
    link_query(&url)
}

#[test]
fn a_link_serves_only_its_user() {
    let (h, cfg) = (host(), config());
    let c = ctx(&h, &cfg);
    let query = bobs_link_query(&cfg);
    let cookie = session_for(&cfg, "alice");
    let cookies: [&[u8]; 1] = [cookie.as_bytes()];
    assert_eq!(
        reply(handle(&c, &get("/start", &query, &cookies))).status,
        403
    );
}

#[test]
fn connect_ticket_must_lead_to_the_tenants_own_auth0() {
    let (h, cfg) = (host(), config());
    let c = ctx(&h, &cfg);
    let query = bobs_link_query(&cfg);
    let cookie = session_for(&cfg, "bob");
    let cookies: [&[u8]; 1] = [cookie.as_bytes()];
    let start = |c: &Ctx<'_>| match handle(c, &get("/start", &query, &cookies)) {
        Outcome::Call(request, pending) => (request, pending),
        Outcome::Reply(r) => panic!("expected a call, got {}", r.status),
    };
    let (request, pending) = start(&c);
    let body: serde_json::Value =
        serde_json::from_slice(&request.body.unwrap_or_default()).unwrap_or_default();
    assert_eq!(body["connection"], "github");
    assert_eq!(body["scopes"], json!(["repo"]));
    assert_eq!(body["code_challenge_method"], "S256");
    let evil = ok(
        201,
        json!({"auth_session": "s", "connect_uri": "http://127.0.0.1:9000.evil.example/c",
               "connect_params": {"ticket": "t"}, "expires_in": 300}),
    );
    let r = reply(resume(&c, *pending, &evil, &mut |_, _| None));
    assert_eq!(r.status, 502);
    assert!(header(&r, "location").is_empty());

    let (_, pending) = start(&c);
    let good = ok(
        201,
        json!({"auth_session": "s", "connect_uri": "http://127.0.0.1:9000/connected-accounts/connect",
               "connect_params": {"ticket": "t&x"}, "expires_in": 300}),
    );
    let r = reply(resume(&c, *pending, &good, &mut |_, _| None));
    assert_eq!(
        header(&r, "location")[0],
        "http://127.0.0.1:9000/connected-accounts/connect?ticket=t%26x"
    );
}

#[test]
fn disconnect_needs_the_forms_csrf_value_and_a_post() {
    let (h, cfg) = (host(), config());
    let c = ctx(&h, &cfg);
    let cookie = session_for(&cfg, "alice");
    let cookies: [&[u8]; 1] = [cookie.as_bytes()];
    let post = |query: &'static str| post("/accounts/delete", query, &cookies);
    assert_eq!(reply(handle(&c, &post("id=cac_1&csrf=nope"))).status, 400);
    assert_eq!(
        reply(handle(&c, &post("id=../x&csrf=csrf-value"))).status,
        400
    );
    assert_eq!(
        reply(handle(
            &c,
            &get("/accounts/delete", "id=cac_1&csrf=csrf-value", &cookies)
        ))
        .status,
        404
    );
    match handle(&c, &post("id=cac_1&csrf=csrf-value")) {
        Outcome::Call(request, _) => {
            assert_eq!(request.method, "DELETE");
            assert_eq!(request.path, "/me/v1/connected-accounts/accounts/cac_1");
        }
        Outcome::Reply(r) => panic!("expected the delete call, got {}", r.status),
    }
}

#[test]
fn on_https_only_host_prefixed_cookies_count() {
    let (h, cfg) = (host(), config());
    let c = ctx(&h, &cfg);
    session_for(&cfg, "alice");
    // A cookie planted without the `__Host-` prefix (from a sibling subdomain, or over plain
    // http) is not a session: the user is sent to sign in.
    let planted: [&[u8]; 1] = [b"tvp_session=sid"];
    let r = reply(handle(&c, &get("/accounts", "", &planted)));
    assert_eq!(r.status, 302);
    assert!(header(&r, "location")[0].contains("/authorize?"));
    // A plain-http gateway (the local stack) scopes unprefixed cookies to the tenant's pages.
    let local = Ctx {
        base: "http://localhost:3000",
        allow_insecure_cookies: true,
        ..ctx(&h, &cfg)
    };
    let r = reply(handle(&local, &get("/accounts", "", &[])));
    let cookie = header(&r, "set-cookie")[0];
    assert!(cookie.starts_with("tvp_login=") && cookie.contains("Path=/connect/github/"));
    assert!(!cookie.contains("Secure"), "{cookie}");
}

#[test]
fn accounts_pages_take_twenty_from_the_cursor() {
    assert_eq!(
        accounts_path("google-oauth2", None),
        "/me/v1/connected-accounts/accounts?connection=google-oauth2&take=20"
    );
    assert_eq!(
        accounts_path("github", Some("c/1&x=2")),
        "/me/v1/connected-accounts/accounts?connection=github&take=20&from=c%2F1%26x%3D2"
    );
}

#[test]
fn an_accounts_page_yields_its_rows_and_next_cursor() {
    let row = |id: &str, c: &str| json!({"id": id, "connection": c, "created_at": "t"});
    let page = json!({"accounts": [row("cac_1", "github"), row("cac_2", "google-oauth2")],
                      "next": "cur_2"});
    assert_eq!(
        accounts_page(&page, "github"),
        Some((vec![("cac_1".into(), "t".into())], Some("cur_2".into())))
    );
    // The last page has no `next` (or an empty one).
    for last in [json!({"accounts": []}), json!({"accounts": [], "next": ""})] {
        assert_eq!(accounts_page(&last, "github"), Some((vec![], None)));
    }
    // Not a list, or a cursor that is not a sane string: the answer is refused.
    for bad in [
        json!({}),
        json!({"accounts": {}}),
        json!({"accounts": [], "next": 2}),
        json!({"accounts": [], "next": "a\nb"}),
    ] {
        assert_eq!(accounts_page(&bad, "github"), None, "{bad}");
    }
}

#[test]
fn the_accounts_page_follows_next_to_the_end_within_a_bound() {
    let (h, cfg) = (host(), config());
    let c = ctx(&h, &cfg);
    let cookie = session_for(&cfg, "alice");
    let cookies: [&[u8]; 1] = [cookie.as_bytes()];
    let first = |c: &Ctx<'_>| match handle(c, &get("/accounts", "", &cookies)) {
        Outcome::Call(request, pending) => (request, pending),
        Outcome::Reply(r) => panic!("expected the list call, got {}", r.status),
    };
    let page = |n: u32, next: Option<&str>| {
        let mut v = json!({"accounts": [{"id": format!("cac_{n}"), "connection": "github",
                                         "created_at": "t"}]});
        if let Some(cursor) = next {
            v["next"] = json!(cursor);
        }
        ok(200, v)
    };
    let (request, mut pending) = first(&c);
    assert!(request.path.ends_with("&take=20"), "{}", request.path);
    for n in 1..=2 {
        let cursor = format!("cur_{n}");
        match resume(&c, *pending, &page(n, Some(&cursor)), &mut |_, _| None) {
            Outcome::Call(request, next) => {
                assert!(request.path.ends_with(&format!("&from={cursor}")));
                assert_eq!(request.method, "GET");
                pending = next;
            }
            Outcome::Reply(r) => panic!("expected the next page, got {}", r.status),
        }
    }
    let r = reply(resume(&c, *pending, &page(3, None), &mut |_, _| None));
    let html = String::from_utf8(r.body).unwrap_or_default();
    for n in 1..=3 {
        assert!(html.contains(&format!("id=cac_{n}&amp;")), "{html}");
    }

    // A list whose `next` never ends is refused after MAX_ACCOUNT_PAGES pages.
    let (_, mut pending) = first(&c);
    for n in 1..=MAX_ACCOUNT_PAGES {
        match resume(&c, *pending, &page(n, Some("again")), &mut |_, _| None) {
            Outcome::Call(_, next) => pending = next,
            Outcome::Reply(r) => {
                assert_eq!(n, MAX_ACCOUNT_PAGES);
                assert_eq!(r.status, 502);
                return;
            }
        }
    }
    panic!("the pages never ended");
}

#[test]
fn a_connect_code_longer_than_the_api_takes_is_refused_before_any_call() {
    let (h, cfg) = (host(), config());
    let c = ctx(&h, &cfg);
    let cookie = session_for(&cfg, "bob");
    let record = Consent {
        tenant: "github".into(),
        session_id: "sid".into(),
        state: "s1".into(),
        auth_session: "as".into(),
        verifier: "v".repeat(43),
        redirect_uri: format!("{BASE}/connect/github/callback"),
        connection: "github".into(),
        link: None,
        downstream_key: "dk-bob".into(),
        expires_ms: NOW_MS + 60_000,
    };
    let sealed = sealed::seal(keys(&cfg), Purpose::Consent, &record, [8; 24]).unwrap_or_default();
    let consent_cookie = format!("__Host-tvp_consent-github={sealed}");
    let cookies: [&[u8]; 2] = [cookie.as_bytes(), consent_cookie.as_bytes()];
    let query = |code_len: usize| format!("state=s1&connect_code={}", "c".repeat(code_len));
    let long = query(MAX_CONNECT_CODE + 1);
    assert_eq!(
        reply(handle(&c, &get("/callback", &long, &cookies))).status,
        400
    );
    // Another state than the cookie's, or no consent cookie: not this browser's consent.
    let other = format!("state=s2&connect_code={}", "c".repeat(MAX_CONNECT_CODE));
    assert_eq!(
        reply(handle(&c, &get("/callback", &other, &cookies))).status,
        400
    );
    let fits = query(MAX_CONNECT_CODE);
    let session_only: [&[u8]; 1] = [cookie.as_bytes()];
    assert_eq!(
        reply(handle(&c, &get("/callback", &fits, &session_only))).status,
        400
    );
    match handle(&c, &get("/callback", &fits, &cookies)) {
        Outcome::Call(request, _) => {
            assert_eq!(request.path, "/me/v1/connected-accounts/complete")
        }
        Outcome::Reply(r) => panic!("expected /complete, got {}", r.status),
    }
}

const OKTA_PEM: &str = "-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwehRANCAAQeGFMv1HVMAvMEHZx1zrM7g//YGsfOT+iCzLHJi8WJbqRsMRxOL/QN2Wo2U+bkVEXTLf5Ibs7XXHqQxqGIgcCj
-----END PRIVATE KEY-----";
const INTERACTION: &str = "https://org.okta.example/interact?session=s1";

/// The example with its second tenant an Okta STS tenant with connect pages.
fn okta_config() -> Config {
    let mut doc: serde_json::Value =
        serde_json::from_str(&crate::testing::example_json()).unwrap_or_default();
    doc["tenants"][1]["vault"] = serde_json::json!({
        "type": "okta-sts", "cluster": "okta",
        "token_url": "https://org.okta.example/oauth2/v1/token",
        "client_id": "agent", "private_key_env": "OKTA_KEY", "key_id": "k1",
        "resource": "https://slack.example/api", "connection": "slack",
    });
    doc["tenants"][1]["connect"] =
        serde_json::json!({"client_id": "okta-web", "client_secret": "okta-secret"});
    let env = |name: &str| Some(if name == "OKTA_KEY" { OKTA_PEM } else { "s" }.to_string());
    let env = crate::testing::with_sealing_key(&env);
    config::parse(doc.to_string().as_bytes(), &env).unwrap_or_else(|e| panic!("{e}"))
}

/// Bob's link at the Okta tenant, leading to [`INTERACTION`].
fn okta_link(c: &Ctx<'_>) -> String {
    let (_, url) = offer(
        c.keys,
        c.tenant,
        BASE,
        "bob",
        "dk",
        Some(INTERACTION),
        NOW_MS,
    )
    .unwrap_or_default();
    url
}

fn okta_ctx<'a>(host: &'a FakeHost, cfg: &'a Config) -> Ctx<'a> {
    ctx_of(host, cfg, 1)
}

fn okta_session_for(cfg: &Config, sub: &str) -> String {
    let tenant = &cfg.tenants[1].id;
    let session = Session {
        id: "okta-sid".into(),
        tenant: tenant.clone(),
        sub: sub.into(),
        token: String::new(),
        csrf: "csrf-value".into(),
        expires_ms: NOW_MS + 60_000,
    };
    let sealed = sealed::seal(keys(cfg), Purpose::Session, &session, [7; 24]).unwrap_or_default();
    format!("__Host-tvp_session-{tenant}={sealed}")
}

#[test]
fn an_okta_link_exists_only_with_an_interaction_to_lead_to() {
    let (okta, auth0) = (okta_config(), config());
    assert_eq!(link_for(&okta.tenants[1], Some("bob"), None), None);
    assert_eq!(
        link_for(&okta.tenants[1], Some("bob"), Some(INTERACTION)),
        Some("bob")
    );
    assert_eq!(link_for(&okta.tenants[1], None, Some(INTERACTION)), None);
    assert_eq!(link_for(&auth0.tenants[0], Some("bob"), None), Some("bob"));
    // The link carries the interaction, sealed: Okta's URL is not in it.
    let t = &okta.tenants[1];
    let (_, url) =
        offer(keys(&okta), t, BASE, "bob", "dk", Some(INTERACTION), NOW_MS).unwrap_or_default();
    assert!(!url.contains("okta") && !url.contains("interact"), "{url}");
}

#[test]
fn an_okta_link_signs_in_at_the_org_and_leads_only_its_user_to_the_interaction() {
    let (h, cfg) = (host(), okta_config());
    let c = okta_ctx(&h, &cfg);
    let url = okta_link(&c);
    assert!(!url.contains("okta") && url.contains("/start?id="), "{url}");
    let query = link_query(&url);
    // Not signed in: the org's authorization endpoint, OpenID only, no Auth0 audience.
    let r = reply(handle(&c, &get("/start", &query, &[])));
    let location = header(&r, "location").join("");
    assert!(
        location.starts_with("https://org.okta.example/oauth2/v1/authorize?"),
        "{location}"
    );
    assert!(location.contains("scope=openid&") || location.ends_with("scope=openid"));
    assert!(!location.contains("audience") && location.contains("code_challenge_method=S256"));
    // Someone else signed in: refused, the link kept for its user.
    let alice = okta_session_for(&cfg, "alice");
    let r = reply(handle(&c, &get("/start", &query, &[alice.as_bytes()])));
    assert_eq!(r.status, 403);
    assert!(header(&r, "location").is_empty());
    // The link's user: on to Okta's consent (again while the link lives: only ever its user).
    let bob = okta_session_for(&cfg, "bob");
    for _ in 0..2 {
        let r = reply(handle(&c, &get("/start", &query, &[bob.as_bytes()])));
        assert_eq!((r.status, header(&r, "location")), (302, vec![INTERACTION]));
    }
    // Past its lifetime the link leads nowhere.
    h.now.set(NOW_MS + records::LINK_TTL_MS + 1);
    let later = okta_ctx(&h, &cfg);
    let r = reply(handle(&later, &get("/start", &query, &[bob.as_bytes()])));
    assert_eq!(r.status, 400);
    // No accounts page or Auth0 consent callback for an Okta tenant.
    for page in ["/accounts", "/callback", "/start"] {
        let r = reply(handle(&c, &get(page, "", &[bob.as_bytes()])));
        assert_eq!(r.status, 404, "{page}");
    }
}

#[test]
fn the_okta_sign_in_uses_basic_auth_then_the_orgs_keys() {
    let (h, cfg) = (host(), okta_config());
    let c = okta_ctx(&h, &cfg);
    let r = reply(handle(&c, &get("/start", "id=x", &[])));
    // An unknown link is refused before any sign-in.
    assert_eq!(r.status, 400);
    let url = okta_link(&c);
    let r = reply(handle(&c, &get("/start", &link_query(&url), &[])));
    let name = format!("__Host-tvp_login-{}", c.tenant.id);
    let cookie = format!("{name}={}", cookie_value(&r, &name));
    let state = location_param(&r, "state");
    let query = format!("code=c0de&state={state}");
    let Outcome::Call(request, pending) =
        handle(&c, &get("/login/callback", &query, &[cookie.as_bytes()]))
    else {
        panic!("a token call");
    };
    assert_eq!(request.path, "/oauth2/v1/token");
    let body = String::from_utf8(request.body.unwrap_or_default()).unwrap_or_default();
    assert!(
        !body.contains("client_secret") && body.contains("code_verifier="),
        "{body}"
    );
    let auth = request.headers.iter().find(|(n, _)| *n == "authorization");
    assert!(auth.is_some_and(|(_, v)| v.starts_with("Basic ")));
    let tokens = ok(
        200,
        serde_json::json!({"access_token": "at", "id_token": "idt", "expires_in": 3600}),
    );
    let mut seen = Vec::new();
    let mut verify = |t: &str, keys: Option<&[u8]>| {
        seen.push((t.to_string(), keys.map(<[u8]>::to_vec)));
        keys.map(|_| "bob".to_string())
    };
    let Outcome::Call(keys_call, pending) = resume(&c, *pending, &tokens, &mut verify) else {
        panic!("a keys call");
    };
    assert_eq!(
        (keys_call.method, keys_call.path.as_str()),
        ("GET", "/oauth2/v1/keys")
    );
    let jwks = ok(200, serde_json::json!({"keys": []}));
    let r = reply(resume(&c, *pending, &jwks, &mut verify));
    assert_eq!(r.status, 302);
    assert!(header(&r, "location")
        .join("")
        .contains(&format!("/start?{}", link_query(&url))));
    assert_eq!(seen.len(), 1, "verified once, with the org's keys");
    assert!(seen[0].1.is_some());
}

/// A session sealed as the gateway seals one, for `sub`, with its own id and anti-CSRF value.
fn sealed_session(cfg: &Config, id: &str, sub: &str, csrf: &str) -> String {
    let session = Session {
        id: id.into(),
        tenant: "github".into(),
        sub: sub.into(),
        token: format!("myacct-{sub}"),
        csrf: csrf.into(),
        expires_ms: NOW_MS + 60_000,
    };
    sealed::seal(keys(cfg), Purpose::Session, &session, [5; 24]).unwrap_or_default()
}

/// A consent in flight, sealed as the gateway seals one, for the session `session_id`.
fn sealed_consent(cfg: &Config, session_id: &str, state: &str) -> String {
    let consent = Consent {
        tenant: "github".into(),
        session_id: session_id.into(),
        state: state.into(),
        auth_session: format!("as-{session_id}"),
        verifier: "v".repeat(43),
        redirect_uri: format!("{BASE}/connect/github/callback"),
        connection: "github".into(),
        link: None,
        downstream_key: "dk".into(),
        expires_ms: NOW_MS + 60_000,
    };
    sealed::seal(keys(cfg), Purpose::Consent, &consent, [6; 24]).unwrap_or_default()
}

#[test]
fn two_cookies_of_one_name_are_refused_before_anything_is_read() {
    let (h, cfg) = (host(), config());
    let c = ctx(&h, &cfg);
    let victim = sealed_session(&cfg, "victim-sid", "alice", "victim-csrf");
    let planted = sealed_session(&cfg, "attacker-sid", "mallory", "attacker-csrf");
    // The victim's own session and one a sibling subdomain planted next to it: in one header
    // or two, in either order, for any of our cookies.
    let both = format!("__Host-tvp_session-github={victim}; __Host-tvp_session-github={planted}");
    let apart = (
        format!("__Host-tvp_session-github={planted}"),
        format!("__Host-tvp_session-github={victim}"),
    );
    let one: [&[u8]; 1] = [both.as_bytes()];
    let two: [&[u8]; 2] = [apart.0.as_bytes(), apart.1.as_bytes()];
    for cookies in [&one[..], &two[..]] {
        for incoming in [
            get("/accounts", "", cookies),
            post("/accounts/delete", "id=cac_1&csrf=victim-csrf", cookies),
            post("/accounts/delete", "id=cac_1&csrf=attacker-csrf", cookies),
            post("/start", "csrf=attacker-csrf", cookies),
            get("/callback", "state=s&connect_code=c", cookies),
        ] {
            let r = reply(handle(&c, &incoming));
            assert_eq!(r.status, 400, "{} {}", incoming.method, incoming.page);
            assert!(String::from_utf8_lossy(&r.body).contains("conflicting cookies"));
            // Nothing changes: no call was made (`reply` panics on one), no cookie is set or
            // cleared (clearing ours would leave the planted one alone).
            assert!(header(&r, "set-cookie").is_empty());
        }
    }
    let login = "__Host-tvp_login-github=a; __Host-tvp_login-github=b";
    let consent = "__Host-tvp_consent-github=a; __Host-tvp_consent-github=b";
    for cookie in [login, consent] {
        let cookies: [&[u8]; 1] = [cookie.as_bytes()];
        let r = reply(handle(
            &c,
            &get("/login/callback", "state=s&code=c", &cookies),
        ));
        assert_eq!(r.status, 400);
    }
    assert_eq!(h.counter("github", "connect.duplicate_cookie"), 12);
    // On a plain-http demo the names have no prefix: the same rule.
    let local = Ctx {
        base: "http://localhost:3000",
        allow_insecure_cookies: true,
        ..ctx(&h, &cfg)
    };
    let cookie = format!("tvp_session={victim}; tvp_session={planted}");
    let cookies: [&[u8]; 1] = [cookie.as_bytes()];
    assert_eq!(
        reply(handle(&local, &get("/accounts", "", &cookies))).status,
        400
    );
    // One cookie of each name is the usual case.
    let mixed = format!("__Host-tvp_session-github={victim}; tvp_session={planted}");
    let cookies: [&[u8]; 1] = [mixed.as_bytes()];
    assert!(matches!(
        handle(&c, &get("/accounts", "", &cookies)),
        Outcome::Call(..)
    ));
}

#[test]
fn a_planted_session_pairs_with_none_of_the_victims_values() {
    let (h, cfg) = (host(), config());
    let c = ctx(&h, &cfg);
    // Mallory signed in herself and planted her session in alice's browser (the only cookie
    // of that name there: alice has none, or it was pushed out of the jar).
    let planted = format!(
        "__Host-tvp_session-github={}",
        sealed_session(&cfg, "mallory-sid", "mallory", "mallory-csrf")
    );
    let cookies: [&[u8]; 1] = [planted.as_bytes()];
    // Alice's forms carry alice's anti-CSRF value, sealed in alice's session: never the
    // planted session's.
    for incoming in [
        post("/accounts/delete", "id=cac_1&csrf=alice-csrf", &cookies),
        post("/start", "csrf=alice-csrf", &cookies),
    ] {
        let r = reply(handle(&c, &incoming));
        assert_eq!(r.status, 400, "{}", incoming.page);
    }
    // Alice's consent in flight is bound to alice's session: with the planted session the
    // callback is refused (the connection would be completed with mallory's token).
    let alice_consent = format!(
        "__Host-tvp_consent-github={}",
        sealed_consent(&cfg, "alice-sid", "alice-state")
    );
    let cookies: [&[u8]; 2] = [planted.as_bytes(), alice_consent.as_bytes()];
    let callback = "state=alice-state&connect_code=code";
    assert_eq!(
        reply(handle(&c, &get("/callback", callback, &cookies))).status,
        400
    );
    // A planted consent (mallory's, bound to her session) with alice's session: refused too.
    let alice = format!(
        "__Host-tvp_session-github={}",
        sealed_session(&cfg, "alice-sid", "alice", "alice-csrf")
    );
    let mallory_consent = format!(
        "__Host-tvp_consent-github={}",
        sealed_consent(&cfg, "mallory-sid", "mallory-state")
    );
    let cookies: [&[u8]; 2] = [alice.as_bytes(), mallory_consent.as_bytes()];
    let callback = "state=mallory-state&connect_code=code";
    assert_eq!(
        reply(handle(&c, &get("/callback", callback, &cookies))).status,
        400
    );
    // A link of alice's agent with the planted session: the wrong user, and the planted
    // session is cleared.
    let (_, link) = offer(
        keys(&cfg),
        &cfg.tenants[0],
        BASE,
        "alice",
        "dk",
        None,
        NOW_MS,
    )
    .unwrap_or_default();
    let cookies: [&[u8]; 1] = [planted.as_bytes()];
    let r = reply(handle(&c, &get("/start", &link_query(&link), &cookies)));
    assert_eq!(r.status, 403);
    assert!(header(&r, "set-cookie")[0].contains("Max-Age=0"));
    // Mallory's own value does pair with her planted session, but her form is on another
    // site, and the browser says so: refused before the session is even opened.
    for (site, origin) in [
        (Some("same-site"), None),
        (Some("cross-site"), Some("https://evil.gw.example")),
        (None, Some("https://evil.gw.example")),
        (None, Some("http://gw.example")),
    ] {
        let incoming = Incoming {
            fetch_site: site,
            origin,
            ..post("/start", "csrf=mallory-csrf", &cookies)
        };
        let r = reply(handle(&c, &incoming));
        assert_eq!(r.status, 403, "{site:?} {origin:?}");
    }
    assert_eq!(h.counter("github", "connect.cross_origin"), 4);
    // Our own pages' forms: same-origin, or `Origin: null` (they send no referrer), or the
    // gateway's own origin.
    for (site, origin) in [
        (Some("same-origin"), Some("null")),
        (None, Some("null")),
        (None, Some("https://gw.example")),
        (None, Some("https://gw.example:443")),
    ] {
        let incoming = Incoming {
            fetch_site: site,
            origin,
            ..post("/start", "csrf=mallory-csrf", &cookies)
        };
        assert!(
            matches!(handle(&c, &incoming), Outcome::Call(..)),
            "{site:?} {origin:?}"
        );
    }
}

#[test]
fn without_the_demo_flag_the_pages_need_an_https_origin_without_a_path() {
    let (h, cfg) = (host(), config());
    for base in ["http://localhost:3000", "https://gw.example/gateway"] {
        let c = Ctx {
            base,
            ..ctx(&h, &cfg)
        };
        let r = reply(handle(&c, &get("/accounts", "", &[])));
        assert_eq!(r.status, 403, "{base}");
        assert!(header(&r, "set-cookie").is_empty());
        let demo = Ctx {
            allow_insecure_cookies: true,
            ..c
        };
        assert_eq!(reply(handle(&demo, &get("/accounts", "", &[]))).status, 302);
    }
    assert_eq!(
        reply(handle(&ctx(&h, &cfg), &get("/accounts", "", &[]))).status,
        302
    );
}

#[test]
fn signing_in_and_starting_a_consent_write_nothing_to_shared_data() {
    const MY_ACCOUNT_TOKEN: &str = "my-account-token-of-bob";
    let (h, cfg) = (host(), config());
    let c = ctx(&h, &cfg);
    let t = &cfg.tenants[0];
    // What shared data holds before: bob's cached "not connected", carol's token.
    let bobs_key = cache::downstream_key_for(t, &t.issuer, "bob", None);
    let carols_key = cache::downstream_key_for(t, &t.issuer, "carol", None);
    let not_connected = cache::Downstream::NotConnected {
        interaction_uri: None,
    };
    let carols = cache::Downstream::Token(crate::secret::Secret::new("gho_carol"));
    for (key, value) in [(&bobs_key, &not_connected), (&carols_key, &carols)] {
        h.shared_set(
            key,
            &cache::encode_downstream(value, NOW_MS + 60_000, 0),
            None,
        )
        .unwrap_or_else(|e| panic!("{e:?}"));
    }
    // Every entry with its version: any write, even of the same bytes, changes it.
    let before = h.shared.borrow().clone();
    let unchanged = |step: &str| assert!(*h.shared.borrow() == before, "{step} wrote");

    // Bob opens his agent's link, not signed in: on to the sign-in.
    let (_, url) = offer(keys(&cfg), t, BASE, "bob", &bobs_key, None, NOW_MS).unwrap_or_default();
    let link = link_query(&url);
    let r = reply(handle(&c, &get("/start", &link, &[])));
    assert_eq!(r.status, 302);
    unchanged("starting a sign-in");

    // The sign-in's callback: the code exchange, then the session.
    let login = format!(
        "__Host-tvp_login-github={}",
        cookie_value(&r, "__Host-tvp_login-github")
    );
    let query = format!("code=abc&state={}", location_param(&r, "state"));
    let Outcome::Call(_, pending) =
        handle(&c, &get("/login/callback", &query, &[login.as_bytes()]))
    else {
        panic!("expected the code exchange");
    };
    unchanged("the login callback");
    let tokens = ok(
        200,
        json!({"access_token": MY_ACCOUNT_TOKEN, "id_token": "idt", "expires_in": 600}),
    );
    let r = reply(resume(&c, *pending, &tokens, &mut |_, _| {
        Some("bob".into())
    }));
    assert_eq!(
        header(&r, "location"),
        vec![format!("{BASE}/connect/github/start?{link}").as_str()]
    );
    unchanged("completing the sign-in");
    // The My Account token lives only in the sealed session cookie.
    let sealed_session = cookie_value(&r, "__Host-tvp_session-github");
    assert!(!sealed_session.contains(MY_ACCOUNT_TOKEN));
    let session: Option<Session> = sealed::open(keys(&cfg), Purpose::Session, &sealed_session);
    assert_eq!(session.map(|s| s.token).as_deref(), Some(MY_ACCOUNT_TOKEN));
    let session = format!("__Host-tvp_session-github={sealed_session}");

    // Back at the link, signed in: the consent starts with the session's token.
    let Outcome::Call(request, pending) = handle(&c, &get("/start", &link, &[session.as_bytes()]))
    else {
        panic!("expected the connect call");
    };
    assert!(request
        .headers
        .iter()
        .any(|(n, v)| *n == "authorization" && *v == format!("Bearer {MY_ACCOUNT_TOKEN}")));
    let body: serde_json::Value =
        serde_json::from_slice(&request.body.unwrap_or_default()).unwrap_or_default();
    let state = body["state"].as_str().unwrap_or_default().to_string();
    unchanged("starting a consent");
    let ticket = ok(
        201,
        json!({"auth_session": "s", "connect_uri": "http://127.0.0.1:9000/connected-accounts/connect",
               "connect_params": {"ticket": "t"}, "expires_in": 300}),
    );
    let r = reply(resume(&c, *pending, &ticket, &mut |_, _| None));
    assert_eq!(r.status, 302);
    unchanged("sending the browser to the provider");
    assert!(h
        .shared
        .borrow()
        .values()
        .all(|(v, _)| !String::from_utf8_lossy(v).contains(MY_ACCOUNT_TOKEN)));

    // The consent's callback: only its completion writes, and only to evict the user's
    // cached "not connected" (the link's key); nothing else changes, nothing is added.
    let consent = format!(
        "__Host-tvp_consent-github={}",
        cookie_value(&r, "__Host-tvp_consent-github")
    );
    let callback = format!("state={state}&connect_code=code");
    let cookies: [&[u8]; 2] = [session.as_bytes(), consent.as_bytes()];
    let Outcome::Call(request, pending) = handle(&c, &get("/callback", &callback, &cookies)) else {
        panic!("expected the complete call");
    };
    assert_eq!(request.path, "/me/v1/connected-accounts/complete");
    unchanged("the consent callback");
    let r = reply(resume(&c, *pending, &ok(201, json!({})), &mut |_, _| None));
    assert_eq!(r.status, 200);
    let after = h.shared.borrow().clone();
    let mut keys_after: Vec<&String> = after.keys().collect();
    let mut keys_before: Vec<&String> = before.keys().collect();
    keys_after.sort();
    keys_before.sort();
    assert_eq!(keys_after, keys_before);
    assert_eq!(after.get(&carols_key), before.get(&carols_key));
    let bobs = after
        .get(&bobs_key)
        .map(|(v, _)| v.clone())
        .unwrap_or_default();
    assert_eq!(cache::decode_downstream(&bobs, NOW_MS), None, "evicted");
}
