//! The Connected Accounts flow run by the filter, end to end in real Envoy against the sim's
//! Auth0 login, My Account API and provider consent page, driven by a cookie-keeping client.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::browser::{enc, split_url, Browser};
use common::*;
use serde_json::json;

fn stack() -> Stack {
    Stack::with(Options {
        public_base_is_stack: true,
        ..Options::default()
    })
}

/// The agent's refusal for a user without the account, with its connect link.
fn refused_with_link(stack: &Stack, token: &str) -> String {
    let r = stack.call("GET", "/github/user", token);
    assert_eq!(r.status, 403, "{}", r.text());
    let body = r.json();
    assert_eq!(body["error"], "connected_account_required");
    assert_eq!(body["requiredScopes"], json!(["repo"]));
    let url = body["connect_uri"]
        .as_str()
        .expect("connect_uri")
        .to_string();
    let prefix = format!("http://127.0.0.1:{}/connect/github/start?id=", stack.port);
    assert!(url.starts_with(&prefix), "{url}");
    // Opaque: no user id, no token in the link.
    assert_opaque_link(&url);
    assert!(!url.contains(token));
    url
}

/// Sign in at the sim's login form as `user` (the browser has no sim session yet).
fn sign_in(browser: &mut Browser, stack: &Stack, url: &str, user: &str) -> (String, Response) {
    let (at, page) = browser.open(url);
    assert!(at.contains("/authorize?"), "{at}");
    assert_eq!(page.status, 200, "{}", page.text());
    let q = Browser::field(&page.text(), "q").expect("login form");
    let login = format!("http://127.0.0.1:{}/authorize/login", stack.sim.port);
    browser.submit(&login, &format!("q={}&username={user}", enc(&q)))
}

/// Approve at the provider's consent page; returns where the browser ended.
fn consent(
    browser: &mut Browser,
    stack: &Stack,
    page: &Response,
    decision: &str,
) -> (String, Response) {
    let ticket = Browser::field(&page.text(), "ticket")
        .unwrap_or_else(|| panic!("no consent form: {} {}", page.status, page.text()));
    let approve = format!(
        "http://127.0.0.1:{}/connected-accounts/approve",
        stack.sim.port
    );
    browser.submit(
        &approve,
        &format!("ticket={}&decision={decision}", enc(&ticket)),
    )
}

#[test]
fn bob_connects_from_the_link_and_his_next_call_succeeds() {
    let stack = stack();
    let token = stack.token("github", "bob");
    let link = refused_with_link(&stack, &token);
    // Each refusal seals a fresh link (the link is the record: nothing is stored), for the
    // same user; nothing of the user shows in it.
    let again = refused_with_link(&stack, &token);
    assert_ne!(again, link);
    assert_opaque_link(&link);

    let mut browser = Browser::new();
    let (at, page) = sign_in(&mut browser, &stack, &link, "bob");
    assert!(at.contains("/connected-accounts/connect?ticket="), "{at}");
    assert!(page.text().contains("Connect your github account"));
    let (at, done) = consent(&mut browser, &stack, &page, "allow");
    assert!(
        at.contains("/connect/github/callback?connect_code="),
        "{at}"
    );
    assert_eq!(done.status, 200, "{}", done.text());
    assert!(done.text().contains("Your github account is connected"));
    assert!(done.header("content-security-policy").is_some());
    assert!(stack.sim.is_connected("bob", "github"));

    // The cached "not connected" was cleared: the very next call is forwarded.
    let r = stack.call("GET", "/github/user", &token);
    assert_eq!(r.status, 200, "{}", r.text());
    let seen = stack.sim.backend_requests();
    let auth = seen
        .last()
        .and_then(|b| b.header("authorization").map(str::to_string));
    assert!(auth.is_some_and(|a| a.starts_with("Bearer sim_github_bob_")));

    // The callbacks are single use: their sealed cookies are cleared, and Auth0 takes a code
    // once, so replaying them (on any replica) finds nothing.
    let callback = browser
        .visited
        .iter()
        .find(|u| u.contains("/connect/github/callback?"))
        .cloned();
    let (_, replay) = browser.open(&callback.expect("callback visited"));
    assert_eq!(replay.status, 400);
    let login_cb = browser
        .visited
        .iter()
        .find(|u| u.contains("/login/callback?"))
        .cloned();
    let (_, replay) = browser.open(&login_cb.expect("login callback visited"));
    assert_eq!(replay.status, 400);
    // The link lives on until it expires, for its user only: opening it again just connects
    // the same account again (here: to the provider's consent).
    let (at, _) = browser.open(&link);
    assert!(at.contains("/connected-accounts/connect?ticket="), "{at}");
}

#[test]
fn a_tenant_whose_agents_sign_es256_only_still_verifies_auth0s_rs256_id_token() {
    // Agent tokens ES256 only (another issuer than Auth0, so the vault takes the user's Auth0
    // refresh token); the login's ID token is Auth0's RS256 (connect's own list).
    let stack = Stack::with(Options {
        public_base_is_stack: true,
        edit: Some(Box::new(|c| {
            c["tenants"][0]["algorithms"] = json!(["ES256"]);
            c["tenants"][0]["vault"]["subject_token_type"] = json!("refresh_token");
            c["tenants"][0]["vault"]["subject_token_header"] = json!("x-auth0-refresh-token");
        })),
        ..Options::default()
    });
    let token = stack.mint(Mint {
        tenant: "github".into(),
        sub: "bob".into(),
        alg: Some("ES256".into()),
        ..Mint::default()
    });
    let call = |token: &str| {
        let auth = format!("Bearer {token}");
        let headers = [
            ("authorization", auth.as_str()),
            ("x-auth0-refresh-token", "rt-bob"),
        ];
        stack.request("GET", "/github/user", &headers, b"")
    };
    let refused = call(&token);
    assert_eq!(refused.status, 403, "{}", refused.text());
    let link = refused.json()["connect_uri"].as_str().unwrap().to_string();
    let mut browser = Browser::new();
    let (_, page) = sign_in(&mut browser, &stack, &link, "bob");
    let (_, done) = consent(&mut browser, &stack, &page, "allow");
    assert_eq!(done.status, 200, "{}", done.text());
    assert_eq!(call(&token).status, 200);
    // The agents' list still rules agent tokens: RS256 is refused for them.
    let rs256 = stack.token("github", "bob");
    assert_eq!(call(&rs256).status, 401);
}

#[test]
fn flow_state_is_shared_by_envoys_workers() {
    let stack = Stack::with(Options {
        public_base_is_stack: true,
        concurrency: 2,
        ..Options::default()
    });
    // Each request is its own connection, which the kernel spreads over both workers: a flow
    // step can only succeed if the state the previous step left is visible to every worker.
    for user in ["bob", "carol"] {
        let link = refused_with_link(&stack, &stack.token("github", user));
        let mut browser = Browser::new();
        let (_, page) = sign_in(&mut browser, &stack, &link, user);
        let (_, done) = consent(&mut browser, &stack, &page, "allow");
        assert_eq!(done.status, 200, "{}", done.text());
        assert!(stack.sim.is_connected(user, "github"));
    }
    // Log lines carry the worker's thread id: the connect pages ran on both.
    let threads: std::collections::HashSet<String> = stack
        .log_text()
        .lines()
        .filter(|l| l.contains(" connect GET "))
        .filter_map(|l| l.split("][").nth(1).map(str::to_string))
        .collect();
    assert_eq!(threads.len(), 2, "{threads:?}");
}

#[test]
fn a_link_for_bob_refuses_alice() {
    let stack = stack();
    let link = refused_with_link(&stack, &stack.token("github", "bob"));
    let mut browser = Browser::new();
    let (at, page) = sign_in(&mut browser, &stack, &link, "alice");
    assert!(at.contains("/connect/github/start?id="), "{at}");
    assert_eq!(page.status, 403);
    assert!(page.text().contains("signed in as a different user"));
    assert_eq!(
        stack.sim.count(Endpoint::MyAccount),
        0,
        "no connect ticket was asked for"
    );
    assert!(!stack.sim.is_connected("bob", "github"));
    // "Sign in with another account" asks for credentials again despite Auth0's single
    // sign-on (prompt=login), and bob can then connect.
    let html = page.text();
    let start = html.find("href=\"").map(|i| i + 6).unwrap();
    let retry = html[start..start + html[start..].find('"').unwrap()].replace("&amp;", "&");
    assert!(retry.contains("fresh=1"), "{retry}");
    let (at, page) = sign_in(&mut browser, &stack, &retry, "bob");
    assert!(at.contains("/connected-accounts/connect?ticket="), "{at}");
    let (_, done) = consent(&mut browser, &stack, &page, "allow");
    assert_eq!(done.status, 200, "{}", done.text());
    assert!(stack.sim.is_connected("bob", "github"));
}

#[test]
fn a_login_callback_from_another_browser_is_refused() {
    let stack = stack();
    let link = refused_with_link(&stack, &stack.token("github", "bob"));
    let mut victim = Browser::new();
    // The victim's browser starts the login; the attacker's browser finishes it.
    let first = victim.send("GET", &link, None);
    let authorize = first.header("location").expect("to login").to_string();
    let (_, form) = victim.open(&authorize);
    let q = Browser::field(&form.text(), "q").expect("login form");
    let login = format!("http://127.0.0.1:{}/authorize/login", stack.sim.port);
    let r = victim.send("POST", &login, Some(&format!("q={}&username=bob", enc(&q))));
    let callback = r.header("location").expect("callback").to_string();
    let mut attacker = Browser::new();
    let (_, page) = attacker.open(&callback);
    assert_eq!(page.status, 400);
    assert!(page.text().contains("did not start in this browser"));
    // The attempt changed nothing for the victim, whose own browser still completes the sign-in.
    let (_, page) = victim.open(&callback);
    assert_eq!(page.status, 200, "{}", page.text());
    assert!(page.text().contains("Connect your github account"));
}

#[test]
fn forged_connect_code_and_declined_consent_do_not_connect() {
    let stack = stack();
    let link = refused_with_link(&stack, &stack.token("github", "bob"));
    let mut browser = Browser::new();
    let (_, page) = sign_in(&mut browser, &stack, &link, "bob");
    let ticket = Browser::field(&page.text(), "ticket")
        .unwrap_or_else(|| panic!("no consent form: {} {}", page.status, page.text()));
    let approve = format!(
        "http://127.0.0.1:{}/connected-accounts/approve",
        stack.sim.port
    );
    let r = browser.send(
        "POST",
        &approve,
        Some(&format!("ticket={}&decision=allow", enc(&ticket))),
    );
    let callback = r.header("location").expect("callback").to_string();
    let code_start = callback.find("connect_code=").expect("connect_code") + "connect_code=".len();
    let code_end = callback[code_start..]
        .find('&')
        .map_or(callback.len(), |i| code_start + i);
    let forged = format!(
        "{}forged-code{}",
        &callback[..code_start],
        &callback[code_end..]
    );
    let (_, page) = browser.open(&forged);
    assert_eq!(page.status, 400, "{}", page.text());
    assert!(page.text().contains("was not connected"));
    assert!(!stack.sim.is_connected("bob", "github"));

    // Declining at the provider ends the flow with a plain page.
    let link = refused_with_link(&stack, &stack.token("github", "bob"));
    let (_, page) = browser.open(&link);
    let (_, done) = consent(&mut browser, &stack, &page, "deny");
    assert_eq!(done.status, 403, "{}", done.text());
    assert!(!stack.sim.is_connected("bob", "github"));
}

#[test]
fn connect_uri_off_the_tenant_is_never_a_redirect() {
    let stack = stack();
    let link = refused_with_link(&stack, &stack.token("github", "bob"));
    stack.sim.fail(
        Endpoint::MyAccount,
        Fault::body(
            201,
            "application/json",
            json!({"auth_session": "s", "connect_uri": "https://evil.example/connect",
                   "connect_params": {"ticket": "t"}, "expires_in": 300})
            .to_string(),
        ),
        Some(1),
    );
    let mut browser = Browser::new();
    let (at, page) = sign_in(&mut browser, &stack, &link, "bob");
    assert!(!at.contains("evil.example"), "{at}");
    assert_eq!(page.status, 502);
    assert!(browser.visited.iter().all(|u| !u.contains("evil.example")));
}

#[test]
fn accounts_page_lists_and_disconnects() {
    let stack = stack();
    let token = stack.token("github", "alice");
    assert_eq!(stack.call("GET", "/github/user", &token).status, 200);

    let mut browser = Browser::new();
    let accounts = format!("http://127.0.0.1:{}/connect/github/accounts", stack.port);
    let (_, page) = sign_in(&mut browser, &stack, &accounts, "alice");
    assert_eq!(page.status, 200, "{}", page.text());
    let html = page.text();
    // The disconnect form posts to its action URL, which carries the account and the
    // anti-CSRF value.
    let action = Browser::form_action(&html).expect("an account row");
    let delete = action.clone();
    assert!(
        action.contains("id=cac_") && action.contains("&csrf="),
        "{action}"
    );

    // Without the form's anti-CSRF value nothing is deleted.
    let forged = format!(
        "{}&csrf=wrong",
        delete.split("&csrf=").next().unwrap_or_default()
    );
    let (_, refused) = browser.submit(&forged, "");
    assert_eq!(refused.status, 400);
    assert!(stack.sim.is_connected("alice", "github"));
    // From another browser (no session) neither.
    let (_, refused) = Browser::new().submit(&delete, "");
    assert_eq!(refused.status, 401);
    // Nor by a GET (a link or a prefetch).
    assert_eq!(browser.send("GET", &delete, None).status, 404);

    let (at, after) = browser.submit(&delete, "");
    assert!(at.ends_with("/connect/github/accounts"), "{at}");
    assert_eq!(after.status, 200);
    assert!(after.text().contains("No github account is connected"));
    assert!(!stack.sim.is_connected("alice", "github"));

    // Her cached downstream token was evicted: the next call needs consent again.
    let r = stack.call("GET", "/github/user", &token);
    assert_eq!(r.status, 403, "{}", r.text());
    assert!(r.json()["connect_uri"].is_string());

    // A bare GET of the start page connects nothing: it shows the accounts page.
    let start = format!("http://127.0.0.1:{}/connect/github/start", stack.port);
    let (at, page) = browser.open(&start);
    assert!(at.ends_with("/connect/github/accounts"), "{at}");
    // Its Connect button (a POST with the session's anti-CSRF value) connects it again.
    let connect = Browser::form_action(&page.text()).expect("a Connect button");
    assert!(connect.contains("/start?csrf="), "{connect}");
    let (_, page) = browser.submit(&connect, "");
    let (_, done) = consent(&mut browser, &stack, &page, "allow");
    assert_eq!(done.status, 200, "{}", done.text());
    assert_eq!(stack.call("GET", "/github/user", &token).status, 200);
}

#[test]
fn connect_pages_refuse_bad_input() {
    let stack = stack();
    let base = format!("http://127.0.0.1:{}", stack.port);
    let mut browser = Browser::new();
    for (path, status) in [
        ("/connect/github/start?id=unknown", 400),
        ("/connect/github/start?id=a&id=b", 302),
        ("/connect/github/callback?state=nope&connect_code=x", 400),
        ("/connect/github/login/callback?state=nope&code=x", 400),
        ("/connect/github/nowhere", 404),
        ("/connect/google/start", 404),
        ("/connect/nosuch/start", 404),
    ] {
        let r = browser.send("GET", &format!("{base}{path}"), None);
        assert_eq!(r.status, status, "{path}: {}", r.text());
        if status == 302 {
            // A duplicated id is no id: the user is sent to their own accounts page, not to
            // someone's link.
            let location = r.header("location").unwrap_or("http://x/");
            let (authority, _, path) = split_url(location);
            assert_eq!(authority, format!("127.0.0.1:{}", stack.port));
            assert_eq!(path, "/connect/github/accounts");
        }
    }
    // The fragment form of the callback gets the page that moves it to the query.
    let r = browser.send("GET", &format!("{base}/connect/github/callback"), None);
    assert_eq!(r.status, 200);
    assert!(r.text().contains("location.hash"));
}

#[test]
fn the_make_run_walkthrough_passes() {
    // As in `make run`: the backend is the SDK's MCP server (echoing other paths).
    let backend = common::mcp::Backend::start();
    let stack = Stack::with(backend.options());
    let out = std::process::Command::new("bash")
        .arg(root().join("scripts/walkthrough.sh"))
        .arg(format!("http://127.0.0.1:{}", stack.port))
        .arg(format!("http://127.0.0.1:{}", stack.sim.port))
        .output()
        .expect("bash runs");
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("gateway page: Your github account is connected"),
        "{text}"
    );
    assert!(
        text.contains("backend saw: authorization: Bearer sim_github_alice_"),
        "{text}"
    );
    // Okta: alice brokered by STS and by Cross App Access; bob's consent behind our link.
    // The MCP part: the SDK client from the bare URL, alice brokered, bob connecting.
    for line in [
        "slack backend saw: authorization: Bearer sts_slack_alice_",
        "wiki backend saw: authorization: Bearer xaa_wiki_alice_",
        "connect_uri: http://127.0.0.1:",
        "session open, MCP 2026-07-28",
        "tools/call whoami: authorization=Bearer sim_github_alice_",
        "tools/call answered with a URL elicitation (error)",
        "tools/call whoami: authorization=Bearer sim_github_bob_",
    ] {
        assert!(text.contains(line), "{line} not in {text}");
    }
    assert!(
        !stack.sim.is_connected("bob", "github"),
        "the walkthrough disconnects bob again"
    );
}

#[test]
fn the_accounts_page_pages_through_more_than_twenty_accounts() {
    let stack = stack();
    // Alice's github account and 24 more: two pages of take=20 (the API's maximum).
    stack.sim.add_accounts("alice", "github", 24);
    let mut browser = Browser::new();
    let accounts = format!("http://127.0.0.1:{}/connect/github/accounts", stack.port);
    let before = stack.sim.count(Endpoint::MyAccount);
    let (_, page) = sign_in(&mut browser, &stack, &accounts, "alice");
    assert_eq!(page.status, 200, "{}", page.text());
    assert_eq!(page.text().matches(">Disconnect</button>").count(), 25);
    assert_eq!(stack.sim.count(Endpoint::MyAccount) - before, 2);
}

#[test]
fn a_connect_pages_body_never_goes_on_while_its_call_out_is_pending() {
    // Every other path leads to the backend here (an ingress shared with another
    // application): a connect request let through would reach it with the session cookie and
    // the form's anti-CSRF value.
    let stack = Stack::with(Options {
        public_base_is_stack: true,
        rest_to_backend: true,
        ..Options::default()
    });
    let token = stack.token("github", "alice");
    assert_eq!(stack.call("GET", "/github/user", &token).status, 200);
    let mut browser = Browser::new();
    let accounts = format!("http://127.0.0.1:{}/connect/github/accounts", stack.port);
    let (_, page) = sign_in(&mut browser, &stack, &accounts, "alice");
    assert_eq!(page.status, 200, "{}", page.text());
    let action = Browser::form_action(&page.text()).expect("an account row");
    let cookie = browser.cookies_for(&action).expect("the session cookie");
    let (_, _, path) = split_url(&action);
    let before = stack.sim.backend_requests().len();

    // The disconnect's call-out is slow; the form's body comes after the headers were stopped.
    stack.sim.fail(
        Endpoint::MyAccount,
        Fault::Delay(std::time::Duration::from_millis(1000)),
        Some(1),
    );
    let headers = [
        ("cookie", cookie.as_str()),
        ("content-type", "application/x-www-form-urlencoded"),
    ];
    let r = http_with_body_after(
        stack.port,
        "POST",
        &path,
        &headers,
        b"confirm=1&note=whatever-the-form-sends",
        Some(std::time::Duration::from_millis(300)),
    )
    .expect("an answer");
    // The filter's own answer, once the call-out answered...
    assert_eq!(r.status, 303, "{}", r.text());
    assert!(
        r.header("location")
            .is_some_and(|l| l.ends_with("/connect/github/accounts")),
        "{:?}",
        r.header("location")
    );
    assert!(!stack.sim.is_connected("alice", "github"));
    // ...and nothing of the request reached the backend: not its headers, not its body.
    let seen = stack.sim.backend_requests();
    assert_eq!(seen.len(), before, "{:?}", &seen[before..]);
}

#[test]
fn a_planted_cookie_next_to_the_browsers_own_is_refused_and_changes_nothing() {
    let stack = stack();
    let token = stack.token("github", "alice");
    assert_eq!(stack.call("GET", "/github/user", &token).status, 200);
    let accounts = format!("http://127.0.0.1:{}/connect/github/accounts", stack.port);
    // Alice is signed in to the accounts page in her browser.
    let mut alice = Browser::new();
    let (_, page) = sign_in(&mut alice, &stack, &accounts, "alice");
    assert_eq!(page.status, 200, "{}", page.text());
    let delete = Browser::form_action(&page.text()).expect("an account row");
    let own = alice.cookies_for(&delete).expect("alice's session");
    // Carol signs in herself and plants her session in alice's browser from a sibling
    // subdomain (`Domain=` the parent, a longer path: the browser sends both, hers first).
    let mut carol = Browser::new();
    let (_, page) = sign_in(&mut carol, &stack, &accounts, "carol");
    assert_eq!(page.status, 200, "{}", page.text());
    let planted = carol.cookies_for(&accounts).expect("carol's session");
    assert!(planted.starts_with("tvp_session="), "{planted}");
    let both = format!("{planted}; {own}");
    let my_account = stack.sim.count(Endpoint::MyAccount);
    let (_, _, delete_path) = split_url(&delete);
    for (method, path) in [
        ("GET", "/connect/github/accounts"),
        ("POST", delete_path.as_str()),
        ("GET", "/connect/github/callback?state=s&connect_code=c"),
    ] {
        let r = stack.request(method, path, &[("cookie", &both)], b"");
        assert_eq!(r.status, 400, "{method} {path}: {}", r.text());
        assert!(r.text().contains("conflicting cookies"), "{}", r.text());
        assert!(r.header("set-cookie").is_none(), "no cookie set or cleared");
    }
    // Nothing was asked of the My Account API, nothing deleted.
    assert_eq!(stack.sim.count(Endpoint::MyAccount), my_account);
    assert!(stack.sim.is_connected("alice", "github"));
    // Counted (flushed on the filter's next tick).
    let counted = stack.eventually(3, || {
        stack.stat("wasmcustom.tvp.github.connect.duplicate_cookie")
    });
    assert_eq!(counted, 3);
    // Her own cookie alone still works.
    let (_, page) = alice.open(&accounts);
    assert_eq!(page.status, 200, "{}", page.text());

    // Where alice has no cookie of ours, carol's planted session and its own anti-CSRF value
    // agree; but carol's form is on her site, and the browser says so.
    let (_, page) = carol.open(&accounts);
    let connect = Browser::form_action(&page.text()).expect("carol's Connect button");
    assert!(connect.contains("/start?csrf="), "{connect}");
    let (_, _, connect_path) = split_url(&connect);
    let my_account = stack.sim.count(Endpoint::MyAccount);
    for header in [
        ("sec-fetch-site", "same-site"),
        ("origin", "http://evil.127.0.0.1.nip.io"),
    ] {
        let r = stack.request("POST", &connect_path, &[("cookie", &planted), header], b"");
        assert_eq!(r.status, 403, "{header:?}: {}", r.text());
        assert!(r.text().contains("did not come from these pages"));
    }
    assert_eq!(stack.sim.count(Endpoint::MyAccount), my_account);
    // Her own pages' button, as a browser sends it, still connects.
    let r = stack.request(
        "POST",
        &connect_path,
        &[
            ("cookie", &planted),
            ("sec-fetch-site", "same-origin"),
            ("origin", "null"),
        ],
        b"",
    );
    assert_eq!(r.status, 302, "{}", r.text());
}
