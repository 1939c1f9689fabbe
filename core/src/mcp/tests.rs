use super::*;

fn offer(link: bool) -> ConnectOffer {
    ConnectOffer {
        connection: "github".into(),
        message: "Authorization required to access the Token Vault: github".into(),
        link: link.then(|| ConnectLink {
            id: "L1".into(),
            url: "https://gw/connect/github/start?id=L1".into(),
        }),
    }
}

fn request(version: Option<&str>) -> McpRequest {
    McpRequest {
        kind: Kind::Message,
        protocol_version: version.map(str::to_string),
        method_header: None,
        name_header: None,
        session: None,
    }
}

#[derive(Debug, PartialEq)]
enum Unconnected {
    Relay,
    Answer(Reply),
    Refuse,
}

fn decide(body: Value, version: Option<&str>, session_url: bool, link: bool) -> Unconnected {
    let message = parse(body.to_string().as_bytes());
    let request = request(version);
    if relays(&request, message.as_ref()) {
        return Unconnected::Relay;
    }
    match super::answer(&request, message.as_ref(), session_url, &offer(link)) {
        Some(reply) => Unconnected::Answer(reply),
        None => Unconnected::Refuse,
    }
}

fn answer(body: Value, version: Option<&str>, session_url: bool, link: bool) -> Value {
    match decide(body, version, session_url, link) {
        Unconnected::Answer(r) => serde_json::from_slice(&r.body).unwrap_or_default(),
        other => panic!("expected an answer, got {other:?}"),
    }
}

fn call(id: Value) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "method": "tools/call", "params": {"name": "x"}})
}

/// A 2026-07-28 request as the SDK sends it: capabilities in `_meta`.
fn modern(method: &str, capabilities: Value) -> Value {
    json!({"jsonrpc": "2.0", "id": 9, "method": method,
           "params": {"name": "x", "_meta": {
               "io.modelcontextprotocol/protocolVersion": "2026-07-28",
               CLIENT_CAPABILITIES: capabilities}}})
}

#[test]
fn recognises_streamable_http_requests_only() {
    let sse = Some("application/json, text/event-stream");
    let h = |method: &str,
             content_type: Option<&'static str>,
             version: Option<&'static str>,
             accept: Option<&'static str>,
             session: Option<&'static str>| {
        let lookup = move |name: &str| match name {
            "content-type" => content_type,
            "mcp-protocol-version" => version,
            "accept" => accept,
            "mcp-session-id" => session,
            _ => None,
        };
        recognise(method, &lookup)
    };
    let post = h("POST", Some("application/json"), None, sse, None);
    assert_eq!(post.map(|r| r.kind), Some(Kind::Message));
    assert!(h(
        "POST",
        Some("application/json; charset=utf-8"),
        Some("2025-11-25"),
        None,
        None
    )
    .is_some());
    assert!(h("POST", Some("text/plain"), Some("2025-11-25"), sse, None).is_none());
    assert!(h("POST", Some("application/json"), None, Some("*/*"), None).is_none());
    // The session's stream and its end are MCP's only when they name the session.
    let get = h("GET", None, None, Some("text/event-stream"), Some("s1"));
    assert_eq!(get.map(|r| r.kind), Some(Kind::Session));
    assert!(h("GET", None, None, Some("text/event-stream"), None).is_none());
    assert!(h("DELETE", None, None, None, Some("s1")).is_some());
    let r = h(
        "POST",
        Some("application/json"),
        Some("2025-11-25\r\nx"),
        sse,
        Some("bad\nid"),
    );
    assert_eq!(
        r.map(|r| (r.protocol_version, r.session)),
        Some((None, None))
    );
}

#[test]
fn lifecycle_and_listing_are_relayed_without_a_credential() {
    for method in RELAYED_METHODS {
        let body = json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": {}});
        for version in [None, Some("2025-11-25"), Some("2026-07-28")] {
            assert_eq!(
                decide(body.clone(), version, true, true),
                Unconnected::Relay,
                "{method}"
            );
        }
    }
    // Notifications, and the client's answers to server requests.
    let note = json!({"jsonrpc": "2.0", "method": "notifications/initialized"});
    assert_eq!(decide(note, None, false, true), Unconnected::Relay);
    let response = json!({"jsonrpc": "2.0", "id": 3, "result": {"action": "accept"}});
    assert_eq!(decide(response, None, false, true), Unconnected::Relay);
    let session = McpRequest {
        kind: Kind::Session,
        ..request(Some("2025-11-25"))
    };
    assert!(relays(&session, None));
}

#[test]
fn url_elicitation_error_only_for_sessions_that_declared_it() {
    for id in [json!(7), json!("req-7")] {
        let a = answer(call(id.clone()), Some("2025-11-25"), true, true);
        assert_eq!(a["id"], id);
        assert_eq!(a["error"]["code"], -32042);
        let e = &a["error"]["data"]["elicitations"][0];
        assert_eq!(e["mode"], "url");
        assert_eq!(e["elicitationId"], "L1");
        assert_eq!(e["url"], "https://gw/connect/github/start?id=L1");
    }
    // Undeclared: a tool error naming the link, no -32042 and no resultType (2025-11-25).
    let a = answer(call(json!(8)), Some("2025-11-25"), false, true);
    assert_eq!(a["result"]["isError"], true);
    assert!(a["result"].get("resultType").is_none());
    let text = a["result"]["content"][0]["text"]
        .as_str()
        .unwrap_or_default();
    assert!(
        text.contains("https://gw/connect/github/start?id=L1"),
        "{text}"
    );
    // Older revisions have no URL elicitation at all.
    let a = answer(call(json!(1)), Some("2025-06-18"), true, true);
    assert_eq!(a["result"]["isError"], true);
}

#[test]
fn input_required_only_where_2026_allows_it() {
    let url = json!({"elicitation": {"form": {}, "url": {}}});
    for method in INPUT_REQUIRED_METHODS {
        let a = answer(modern(method, url.clone()), Some("2026-07-28"), false, true);
        assert_eq!(a["result"]["resultType"], "input_required", "{method}");
        let input = &a["result"]["inputRequests"]["connect_github"];
        assert_eq!(input["method"], "elicitation/create");
        assert_eq!(input["params"]["mode"], "url");
        assert_eq!(
            input["params"]["url"],
            "https://gw/connect/github/start?id=L1"
        );
        assert!(input["params"].get("elicitationId").is_none());
        assert!(a["result"].get("requestState").is_none());
        assert_eq!(a["id"], 9);
    }
    // Any other method: an error, never input_required.
    let a = answer(
        modern("completion/complete", url.clone()),
        Some("2026-07-28"),
        false,
        true,
    );
    assert_eq!(a["error"]["code"], -32000);
    // Form-only elicitation, or none: a tool error carrying resultType.
    for capabilities in [json!({"elicitation": {"form": {}}}), json!({})] {
        let a = answer(
            modern("tools/call", capabilities),
            Some("2026-07-28"),
            false,
            true,
        );
        assert_eq!(a["result"]["isError"], true);
        assert_eq!(a["result"]["resultType"], "complete");
    }
    // -32042 belongs to 2025-11-25 only.
    let a = answer(
        modern("tools/call", json!({})),
        Some("2026-07-28"),
        true,
        true,
    );
    assert_ne!(a["error"]["code"], -32042);
    // Without a link no URL elicitation is possible.
    let a = answer(modern("tools/call", url), Some("2026-07-28"), false, false);
    assert_eq!(a["result"]["isError"], true);
}

#[test]
fn initialize_declares_url_elicitation_in_its_capabilities() {
    let init = |caps: Value| {
        json!({"jsonrpc": "2.0", "id": 0, "method": "initialize",
               "params": {"protocolVersion": "2025-11-25", "capabilities": caps,
                          "clientInfo": {"name": "c", "version": "1"}}})
    };
    let declared =
        |caps| parse(init(caps).to_string().as_bytes()).map(|m| m.declares_url_elicitation);
    assert_eq!(declared(json!({"elicitation": {"url": {}}})), Some(true));
    assert_eq!(declared(json!({"elicitation": {}})), Some(false));
    assert_eq!(declared(json!({})), Some(false));
    // Only initialize declares through `capabilities`.
    let other = json!({"jsonrpc": "2.0", "id": 0, "method": "tools/call",
                       "params": {"capabilities": {"elicitation": {"url": {}}}}});
    assert_eq!(
        parse(other.to_string().as_bytes()).map(|m| m.declares_url_elicitation),
        Some(false)
    );
}

#[test]
fn only_messages_outside_a_session_may_open_one() {
    let mut r = request(None);
    assert!(InFlight::new(0, r.clone()).may_open_session());
    r.session = Some("s".into());
    assert!(!InFlight::new(0, r.clone()).may_open_session());
    r.session = None;
    r.kind = Kind::Session;
    assert!(!InFlight::new(0, r).may_open_session());
}

#[test]
fn headers_must_agree_with_the_body() {
    let message = parse(modern("tools/call", json!({})).to_string().as_bytes());
    let Some(message) = message else {
        panic!("parses")
    };
    let with = |method: Option<&str>, name: Option<&str>| McpRequest {
        method_header: method.map(str::to_string),
        name_header: name.map(str::to_string),
        ..request(Some("2026-07-28"))
    };
    assert!(headers_agree(
        &with(Some("tools/call"), Some("x")),
        &message
    ));
    assert!(headers_agree(&with(None, None), &message));
    assert!(!headers_agree(
        &with(Some("tools/list"), Some("x")),
        &message
    ));
    assert!(!headers_agree(
        &with(Some("tools/call"), Some("y")),
        &message
    ));
    assert!(headers_agree(
        &with(Some("tools/call"), Some("=?base64?eA==?=")),
        &message
    ));
}

#[test]
fn only_single_json_rpc_messages_are_read() {
    for body in [
        json!([call(json!(1))]),
        json!({"jsonrpc": "2.0", "id": null, "method": "tools/call"}),
        json!({"jsonrpc": "2.0", "id": {"a": 1}, "method": "tools/call"}),
        json!({"jsonrpc": "1.0", "id": 1, "method": "tools/call"}),
        json!({"jsonrpc": "2.0", "result": {}}),
        json!({"jsonrpc": "2.0", "id": 1, "method": "x", "result": {}}),
        json!("text"),
    ] {
        assert_eq!(parse(body.to_string().as_bytes()), None, "{body}");
        assert_eq!(
            decide(body, Some("2025-11-25"), true, true),
            Unconnected::Refuse
        );
    }
    assert!(parse(b"{not json").is_none());
}

#[test]
fn remembered_sessions_are_per_user_and_expire() {
    let host = crate::testing::FakeHost::default();
    host.now.set(1_000);
    remember_session(&host, "github", "alice", "s1");
    assert!(session_remembered(&host, "github", "alice", "s1"));
    assert!(!session_remembered(&host, "github", "alice", "s2"));
    assert!(!session_remembered(&host, "github", "bob", "s1"));
    assert!(!session_remembered(&host, "google", "alice", "s1"));
    // Parts are delimited: ("ab", "c") and ("a", "bc") differ.
    assert_ne!(sessions_key("ab", "c"), sessions_key("a", "bc"));
    assert_ne!(
        session_digest("ab", "c", "s"),
        session_digest("a", "bc", "s")
    );
    // Neither the user nor the session id is stored.
    let key = sessions_key("github", "alice");
    assert!(!key.contains("alice"));
    let stored = host.shared_get(&key).0.unwrap();
    assert!(!stored.windows(2).any(|w| w == b"s1"));
    host.now.set(1_000 + SESSION_TTL_MS);
    assert!(!session_remembered(&host, "github", "alice", "s1"));
}

#[test]
fn a_user_opening_sessions_keeps_one_bounded_record() {
    let host = crate::testing::FakeHost::default();
    for i in 0..1_000u64 {
        host.now.set(i);
        remember_session(&host, "github", "alice", &format!("s{i}"));
    }
    // One shared-data entry for all of them, of at most 16 sessions: the latest.
    assert_eq!(host.shared.borrow().len(), 1);
    let key = sessions_key("github", "alice");
    let stored = host.shared_get(&key).0.unwrap();
    assert_eq!(stored.len(), MAX_SESSIONS_PER_USER * 24);
    assert!(session_remembered(&host, "github", "alice", "s999"));
    assert!(session_remembered(&host, "github", "alice", "s984"));
    assert!(!session_remembered(&host, "github", "alice", "s983"));
    // The same session again is not a second entry; lapsed ones leave first.
    remember_session(&host, "github", "alice", "s999");
    assert_eq!(host.shared_get(&key).0.unwrap().len(), stored.len());
    host.now.set(998 + SESSION_TTL_MS);
    remember_session(&host, "github", "alice", "new");
    assert_eq!(host.shared_get(&key).0.unwrap().len(), 2 * 24);
    // A record that is not one is replaced, not trusted.
    host.shared
        .borrow_mut()
        .insert(key.clone(), (vec![1, 2, 3], 9));
    assert!(!session_remembered(&host, "github", "alice", "new"));
    remember_session(&host, "github", "alice", "new");
    assert!(session_remembered(&host, "github", "alice", "new"));
}

#[test]
fn modern_headers_alone_show_what_is_relayed() {
    let with = |method: Option<&str>| McpRequest {
        method_header: method.map(str::to_string),
        ..request(Some("2026-07-28"))
    };
    assert!(relays_by_headers(&with(Some("server/discover"))));
    assert!(relays_by_headers(&with(Some("tools/list"))));
    assert!(relays_by_headers(&with(Some("notifications/cancelled"))));
    assert!(!relays_by_headers(&with(Some("tools/call"))));
    assert!(!relays_by_headers(&with(None)));
}

#[test]
fn a_connect_refusal_makes_the_offer_with_its_link_and_missing_scopes() {
    let deny = Deny::ConnectRequired {
        connection: "github".into(),
        tenant_name: "GitHub".into(),
        scopes: vec!["repo".into(), "gist".into()],
        missing_scopes: vec!["gist".into()],
        connect: Some(Box::new(ConnectLink {
            id: "L1".into(),
            url: "https://gw/connect/github/start?id=L1".into(),
        })),
        interaction_uri: None,
    };
    let offer = ConnectOffer::for_refusal(&deny).unwrap_or_else(|| panic!("an offer"));
    assert_eq!(offer.connection, "github");
    assert!(offer.message.contains("gist"), "{}", offer.message);
    assert_eq!(offer.link.map(|l| l.id), Some("L1".to_string()));
    assert_eq!(ConnectOffer::for_refusal(&Deny::MissingToken), None);
}

#[test]
fn ids_come_back_byte_for_byte() {
    for id in [
        "1.0",
        "1e3",
        "-0",
        "123456789012345678901234567890",
        "\"\\u0041b\"",
        "7",
    ] {
        let body = format!(
            r#"{{"jsonrpc": "2.0", "id": {id}, "method": "tools/call", "params": {{"name": "x"}}}}"#
        );
        let message = parse(body.as_bytes());
        assert_eq!(message.as_ref().and_then(|m| m.id.as_deref()), Some(id));
        let reply = super::answer(&request(None), message.as_ref(), false, &offer(true))
            .unwrap_or_else(|| panic!("an answer for {id}"));
        let text = String::from_utf8(reply.body).unwrap_or_default();
        assert!(text.starts_with(&format!("{{\"id\":{id},")), "{text}");
        let v: Value = serde_json::from_str(&text).unwrap_or_default();
        assert_eq!(v["jsonrpc"], "2.0", "{text}");
    }
    for id in ["null", "true", "[1]", "{\"a\":1}"] {
        let body = format!(r#"{{"jsonrpc": "2.0", "id": {id}, "method": "tools/call"}}"#);
        assert_eq!(parse(body.as_bytes()), None, "{id}");
    }
}
