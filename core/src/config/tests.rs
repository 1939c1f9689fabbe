use super::*;
use serde_json::{json, Value};

fn example() -> Value {
    serde_json::from_str(&crate::testing::example_json()).unwrap_or_default()
}

fn env(name: &str) -> Option<String> {
    if name == "TVP_SEALING_KEY" {
        return Some(crate::testing::SEALING_KEY.to_string());
    }
    (name == "GITHUB_VAULT_CLIENT_SECRET").then(|| "s3cret".to_string())
}

fn parse_value(v: &Value) -> Result<Config, ConfigErrors> {
    parse(v.to_string().as_bytes(), &env)
}

/// Apply `edit` to the example's first tenant and return the error lines.
fn error_for(edit: impl FnOnce(&mut Value)) -> String {
    let mut doc = example();
    edit(&mut doc["tenants"][0]);
    match parse_value(&doc) {
        Ok(_) => "accepted".into(),
        Err(e) => {
            for line in &e {
                assert!(!line.to_string().contains('\n'), "one line: {line}");
            }
            e.to_string()
        }
    }
}

#[test]
fn example_parses_with_defaults_and_env_secret() {
    let cfg = parse_value(&example()).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(cfg.tenants.len(), 2);
    let gh = &cfg.tenants[0];
    assert!(matches!(
        &gh.vault.backend,
        VaultBackend::Auth0 { client_secret } if client_secret.expose() == "s3cret"
    ));
    assert_eq!(gh.algorithms, vec![Alg::Rs256, Alg::Es256]);
    assert_eq!(gh.downstream.header, "authorization");
    assert_eq!(gh.scopes.read_methods, vec!["GET", "HEAD", "OPTIONS"]);
    assert!(
        matches!(&gh.jwks, JwksSource::Direct { authority, path, .. } if authority == "127.0.0.1:9000" && path == "/issuers/github/jwks.json")
    );
    let google = &cfg.tenants[1];
    assert!(
        matches!(&google.jwks, JwksSource::Discovery { path, .. } if path == "/issuers/google/.well-known/openid-configuration")
    );
    assert_eq!(google.vault.connect_required_errors.len(), 2);
}

#[test]
fn settings_default_when_absent() {
    let mut doc = example();
    doc.as_object_mut().map(|o| o.remove("settings"));
    // Resource paths and the connect pages need the gateway's public URL, and the connect
    // pages a sealing key: neither has a default.
    let refused = |doc: &Value| {
        parse_value(doc)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default()
    };
    assert!(
        refused(&doc).contains(
            "tenant 'github': field 'resources[0]': a path needs settings.public_base_url"
        ),
        "{}",
        refused(&doc)
    );
    doc["tenants"][0]["resources"] = json!(["https://gw.example.com/github/mcp"]);
    assert!(
        refused(&doc).contains("tenant 'github': field 'connect': needs settings.sealing_key_env"),
        "{}",
        refused(&doc)
    );
    doc["settings"] = json!({"sealing_key_env": "TVP_SEALING_KEY"});
    assert!(
        refused(&doc).contains("tenant 'github': field 'connect': needs settings.public_base_url"),
        "{}",
        refused(&doc)
    );
    doc.as_object_mut().map(|o| o.remove("settings"));
    doc["tenants"][0]
        .as_object_mut()
        .map(|o| o.remove("connect"));
    let cfg = parse_value(&doc).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(cfg.settings, Settings::default());
}

type Edit = Box<dyn FnOnce(&mut Value)>;

#[test]
fn every_rejection_names_tenant_and_field() {
    let cases: Vec<(Edit, &str)> = vec![
        (
            Box::new(|t| t["surprise"] = json!(1)),
            "tenant 'github': field 'surprise': unknown field `surprise`",
        ),
        (
            Box::new(|t| {
                t.as_object_mut().map(|o| o.remove("issuer"));
            }),
            "tenant 'github': field 'issuer': missing field `issuer`",
        ),
        (
            Box::new(|t| t["issuer"] = json!("not a url")),
            "tenant 'github': field 'issuer'",
        ),
        (
            Box::new(|t| t["issuer"] = json!("ftp://x/")),
            "tenant 'github': field 'issuer'",
        ),
        (
            Box::new(|t| t["jwks"]["url"] = json!("https://user@host/x")),
            "tenant 'github': field 'jwks.url'",
        ),
        (
            Box::new(|t| t["algorithms"] = json!([])),
            "tenant 'github': field 'algorithms'",
        ),
        (
            Box::new(|t| t["algorithms"] = json!(["HS256"])),
            "tenant 'github': field 'algorithms'",
        ),
        (
            Box::new(|t| t["algorithms"] = json!(["none"])),
            "tenant 'github': field 'algorithms'",
        ),
        (
            Box::new(|t| t["scopes"]["read"] = json!([])),
            "tenant 'github': field 'scopes.read'",
        ),
        (
            Box::new(|t| t["scopes"]["write"] = json!(["has space"])),
            "tenant 'github': field 'scopes.write'",
        ),
        (
            Box::new(|t| t["scopes"]["claims"] = json!(["roles"])),
            "tenant 'github': field 'scopes.claims'",
        ),
        (
            Box::new(|t| t["backend"] = json!("")),
            "tenant 'github': field 'backend'",
        ),
        (
            Box::new(|t| t["connect"]["login_url"] = json!("https://x.auth0.com/login")),
            "tenant 'github': field 'connect.login_url'",
        ),
        (
            Box::new(|t| t["connect"]["scopes"] = json!(["a b"])),
            "tenant 'github': field 'connect.scopes'",
        ),
        (
            // One Auth0 domain throughout (My Account API): the login origin is the vault's.
            Box::new(|t| t["connect"]["login_url"] = json!("https://login.example.com")),
            "tenant 'github': field 'connect.login_url': host 'login.example.com' is not vault.domain '127.0.0.1:9000'",
        ),
        (
            Box::new(|t| t["connect"]["login_url"] = json!("http://127.0.0.1:9443")),
            "tenant 'github': field 'connect.login_url': host '127.0.0.1:9443'",
        ),
        (
            Box::new(|t| t["connect"]["scopes"] = json!(["repo", "repo"])),
            "tenant 'github': field 'connect.scopes': 'repo' is listed twice",
        ),
        (
            Box::new(|t| t["connect"]["id_token_algorithms"] = json!(["HS256"])),
            "tenant 'github': field 'connect.id_token_algorithms': 'HS256' is not supported",
        ),
        (
            Box::new(|t| t["connect"]["id_token_algorithms"] = json!(["ES256"])),
            "tenant 'github': field 'connect.id_token_algorithms': 'ES256' is not supported",
        ),
        (
            Box::new(|t| t["connect"]["id_token_algorithms"] = json!([])),
            "tenant 'github': field 'connect.id_token_algorithms': must list",
        ),
        (
            Box::new(|t| {
                t["connect"]
                    .as_object_mut()
                    .map(|o| o.remove("client_secret"));
            }),
            "tenant 'github': field 'connect.client_secret'",
        ),
        (
            Box::new(|t| t["connect"]["client_id"] = json!(" ")),
            "tenant 'github': field 'connect.client_id'",
        ),
        (
            Box::new(|t| t["connect"]["redirect"] = json!("x")),
            "tenant 'github': field 'connect.redirect': unknown field `redirect`",
        ),
        (
            Box::new(|t| t["vault"]["type"] = json!("hashicorp")),
            "tenant 'github': field 'vault.type'",
        ),
        (
            Box::new(|t| t["vault"]["domain"] = json!("https://x.auth0.com")),
            "tenant 'github': field 'vault.domain'",
        ),
        (
            Box::new(|t| t["vault"]["client_secret"] = json!("x")),
            "tenant 'github': field 'vault.client_secret'",
        ),
        (
            Box::new(|t| t["vault"]["client_secret_env"] = json!("NOPE")),
            "tenant 'github': field 'vault.client_secret_env'",
        ),
        (
            Box::new(|t| t["vault"]["subject_token_type"] = json!("refresh_token")),
            "tenant 'github': field 'vault.subject_token_header'",
        ),
        (
            Box::new(|t| t["vault"]["extra"] = json!(true)),
            "tenant 'github': field 'vault.extra': unknown field `extra`",
        ),
        (
            Box::new(|t| t["downstream"]["format"] = json!("Bearer")),
            "tenant 'github': field 'downstream.format'",
        ),
        (
            Box::new(|t| t["downstream"]["header"] = json!("bad header")),
            "tenant 'github': field 'downstream.header'",
        ),
        (
            Box::new(|t| t["id"] = json!("health")),
            "tenant 'health': field 'id'",
        ),
        (
            Box::new(|t| t["id"] = json!("a/b")),
            "tenant 'a/b': field 'id'",
        ),
        (
            Box::new(|t| t["name"] = json!(" ")),
            "tenant 'github': field 'name'",
        ),
    ];
    for (edit, expected) in cases {
        let lines = error_for(edit);
        assert!(
            lines.contains(expected),
            "expected '{expected}' in: {lines}"
        );
        assert!(!lines.contains("s3cret"), "no secret in: {lines}");
    }
}

#[test]
fn resources_are_the_metadata_and_the_accepted_audiences() {
    let cfg = parse_value(&example()).unwrap_or_else(|e| panic!("{e}"));
    let gh = &cfg.tenants[0];
    assert_eq!(gh.resources, vec!["http://localhost:3000/github/mcp"]);
    assert_eq!(gh.audiences, gh.resources);
    let google = &cfg.tenants[1];
    assert!(google.resources.is_empty());
    assert_eq!(google.audiences, vec!["https://google.tvp.example"]);
    // An Auth0 Custom API Client is linked to one API, so an Auth0 tenant accepts one audience.
    assert_eq!(
        error_for(|t| t["audience"] = json!("https://github.tvp.example")),
        "invalid plugin configuration: tenant 'github': field 'audience': an Auth0 Custom API \
         Client is linked to one API: name its identifier once, in resources (the URL MCP \
         clients use) or in audience"
    );
    assert_eq!(
        error_for(|t| t["audience"] = json!("http://localhost:3000/github/mcp")),
        "accepted"
    );
    assert_eq!(
        error_for(|t| t["resources"] = json!([])),
        "invalid plugin configuration: tenant 'github': field 'resources': name the URL clients \
         use (resources) or the token audience (audience)"
    );
    assert!(error_for(|t| t["resources"] = json!(["/google/mcp"]))
        .contains("tenant 'github': field 'resources[0]': must be /github or below it"));
}

#[test]
fn an_auth0_tenant_exchanging_the_bearer_allows_an_algorithm_auth0_signs_with() {
    assert!(error_for(|t| t["algorithms"] = json!(["ES256", "EdDSA"]))
        .contains("tenant 'github': field 'algorithms': an auth0 tenant exchanging the agent's token must allow RS256 or PS256"));
    assert_eq!(
        error_for(|t| t["algorithms"] = json!(["PS256"])),
        "accepted"
    );
    // With the user's refresh token as the subject, agent tokens may come from anywhere.
    assert_eq!(
        error_for(|t| {
            t["algorithms"] = json!(["ES256"]);
            t["vault"]["subject_token_type"] = json!("refresh_token");
            t["vault"]["subject_token_header"] = json!("x-auth0-refresh-token");
        }),
        "accepted"
    );
}

#[test]
fn duplicate_ids_empty_tenants_and_bad_settings_are_rejected() {
    let mut doc = example();
    doc["tenants"][1]["id"] = json!("github");
    assert!(parse_value(&doc)
        .map_err(|e| e.to_string())
        .err()
        .unwrap_or_default()
        .contains("tenant 'github': field 'id': duplicate"));
    let mut doc = example();
    doc["tenants"] = json!([]);
    assert!(parse_value(&doc).is_err());
    let mut doc = example();
    doc["settings"]["max_token_bytes"] = json!(10);
    assert!(parse_value(&doc)
        .map_err(|e| e.to_string())
        .err()
        .unwrap_or_default()
        .contains("settings.max_token_bytes"));
    for hold in ["/github/x", "/.well-known/x", "relative", "/.x?y", "/.x y"] {
        let mut doc = example();
        doc["settings"]["mcp_hold_path"] = json!(hold);
        let e = parse_value(&doc).err().map(|e| e.to_string());
        assert!(
            e.is_some_and(|e| e.contains("settings.mcp_hold_path")),
            "{hold}"
        );
    }
    let mut doc = example();
    doc["settings"]["typo"] = json!(1);
    assert!(parse_value(&doc).is_err());
    assert!(parse(b"not json", &env).is_err());
    assert!(parse(b"", &env).is_err());
}

#[test]
fn settings_hosts_are_host_names_with_optional_ports() {
    let mut doc = example();
    doc["settings"]["hosts"] = json!(["agents.example.com", "localhost:3000"]);
    let cfg = parse_value(&doc).ok();
    let hosts = cfg.and_then(|c| c.settings.hosts);
    assert!(hosts.is_some_and(|h| h.allows("localhost:3000") && !h.allows("other-app")));
    for bad in [
        json!([]),
        json!(["https://agents.example.com"]),
        json!(["a:b"]),
    ] {
        doc["settings"]["hosts"] = bad.clone();
        let e = parse_value(&doc).err().map(|e| e.to_string());
        assert!(
            e.as_deref()
                .is_some_and(|e| e.contains("field 'settings.hosts': ")),
            "{bad}: {e:?}"
        );
    }
}

#[test]
fn strip_headers_add_to_the_built_in_credential_headers() {
    let mut doc = example();
    doc["settings"]["strip_headers"] = json!(["X-Api-Key", "proxy-authorization"]);
    let cfg = parse_value(&doc).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        cfg.settings.credential_headers,
        [
            "proxy-authorization",
            "x-forwarded-authorization",
            "x-api-key"
        ]
    );
    let too_many: Vec<String> = (0..33).map(|i| format!("x-h{i}")).collect();
    for (bad, field) in [
        (json!(["host"]), "settings.strip_headers[0]"),
        (
            json!(["x-ok", "Authorization"]),
            "settings.strip_headers[1]",
        ),
        (json!(["x a"]), "settings.strip_headers[0]"),
        (json!([":path"]), "settings.strip_headers[0]"),
        (json!([""]), "settings.strip_headers[0]"),
        (json!(too_many), "settings.strip_headers[32]"),
    ] {
        doc["settings"]["strip_headers"] = bad.clone();
        let e = parse_value(&doc).err().map(|e| e.to_string());
        assert!(
            e.as_deref()
                .is_some_and(|e| e.contains(&format!("field '{field}': "))),
            "{bad}: {e:?}"
        );
    }
}

#[test]
fn public_view_has_no_secrets() {
    let cfg = parse_value(&example()).unwrap_or_else(|e| panic!("{e}"));
    for t in &cfg.tenants {
        let text = public_view(t).to_string();
        assert!(
            !text.contains("s3cret")
                && !text.contains("google-demo-secret")
                && !text.contains("client"),
            "{text}"
        );
    }
}

#[test]
fn urls() {
    let u = Url::parse("https://a.example:8443/x/y?z=1").unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        (u.authority.as_str(), u.path_and_query.as_str()),
        ("a.example:8443", "/x/y?z=1")
    );
    assert_eq!(
        Url::parse("https://a.example").map(|u| u.path_and_query),
        Ok("/".to_string())
    );
    for bad in [
        "a.example/x",
        "https://",
        "https://a b/",
        "https://a/\n",
        "https://a:99999/",
        "https://a/#f",
    ] {
        assert!(Url::parse(bad).is_err(), "{bad}");
    }
}

/// Found by `make fuzz` (config target): a field name with a newline made the error two lines,
/// which could forge a log line.
#[test]
fn regression_control_characters_never_reach_the_error_line() {
    let input =
        include_bytes!("../../../fuzz/regressions/config-control-character-in-field-name.json");
    let one_line_each = |errors: &ConfigErrors| {
        !errors.is_empty() && errors.iter().all(|e| !e.to_string().contains('\n'))
    };
    let errors = parse(input, &env).err().unwrap_or_default();
    assert!(one_line_each(&errors), "{errors}");
    let mut doc = example();
    doc["tenants"][0]["bad\nfield"] = json!(1);
    doc["tenants"][0]["id"] = json!("evil\nid");
    let errors = parse_value(&doc).err().unwrap_or_default();
    assert!(one_line_each(&errors) && errors.len() == 2, "{errors}");
    assert_eq!(
        errors.0[0].to_string(),
        "invalid plugin configuration: tenant 'evil?id': field '[\"bad\\nfield\"]': unknown \
         field `bad?field`, expected one of `id`, `name`, `issuer`, `audience`, `resources`, \
         `jwks`, `algorithms`, `scopes`, `backend`, `vault`, `downstream`, `connect`, `token_typ`"
    );
}

/// A P-256 agent key (PKCS#8) for Okta tenants.
const PEM: &str = "-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwehRANCAAQeGFMv1HVMAvMEHZx1zrM7g//YGsfOT+iCzLHJi8WJbqRsMRxOL/QN2Wo2U+bkVEXTLf5Ibs7XXHqQxqGIgcCj
-----END PRIVATE KEY-----";

#[test]
fn the_whole_example_parses_with_all_three_vault_types() {
    let env = |name: &str| match name {
        "OKTA_AGENT_PRIVATE_KEY" => Some(PEM.to_string()),
        _ => Some("s3cret".to_string()),
    };
    let env = crate::testing::with_sealing_key(&env);
    let cfg = parse(include_bytes!("../../../tenants.example.json"), &env)
        .unwrap_or_else(|e| panic!("{e}"));
    let kinds: Vec<&str> = cfg
        .tenants
        .iter()
        .map(|t| match t.vault.backend {
            VaultBackend::Auth0 { .. } => "auth0",
            VaultBackend::OktaSts { .. } => "okta-sts",
            VaultBackend::IdJag { .. } => "id-jag",
        })
        .collect();
    assert_eq!(kinds, ["auth0", "auth0", "okta-sts", "id-jag"]);
}

#[test]
fn okta_backends_are_checked_field_by_field() {
    let sts = json!({
        "type": "okta-sts", "cluster": "okta",
        "token_url": "https://org.okta.example/oauth2/v1/token",
        "client_id": "agent", "private_key_env": "OKTA_KEY", "key_id": "k1",
        "resource": "https://slack.example/api", "connection": "slack",
    });
    let with_vault = |vault: &Value| {
        let mut doc = example();
        doc["tenants"][1]["vault"] = vault.clone();
        doc
    };
    let env = |name: &str| match name {
        "OKTA_KEY" => Some(PEM.to_string()),
        "BAD_KEY" => Some("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----".into()),
        _ => Some("s3cret".to_string()),
    };
    let env = crate::testing::with_sealing_key(&env);
    let parse_doc = |doc: &Value| parse(doc.to_string().as_bytes(), &env);
    let cfg = parse_doc(&with_vault(&sts)).unwrap_or_else(|e| panic!("{e}"));
    assert!(matches!(
        cfg.tenants[1].vault.backend,
        VaultBackend::OktaSts { .. }
    ));
    assert_eq!(cfg.tenants[1].vault.domain, "org.okta.example");
    let refusals: Vec<(Value, &str)> = vec![
        (
            json!({"client_secret": "x"}),
            "field 'vault.client_secret': is not used by vault type \"okta-sts\"",
        ),
        (
            json!({"audience": "https://x/"}),
            "field 'vault.audience': is not used",
        ),
        (
            json!({"private_key_env": "MISSING_KEY"}),
            "field 'vault.private_key_env'",
        ),
        (
            json!({"private_key_env": "BAD_KEY"}),
            "field 'vault.private_key_env'",
        ),
        (json!({"token_url": "not a url"}), "field 'vault.token_url'"),
        (json!({"resource": ""}), "field 'vault.resource'"),
        (
            json!({"subject_token_type": "refresh_token"}),
            "field 'vault.subject_token_type'",
        ),
        (json!({"type": "vault-9000"}), "field 'vault.type'"),
    ];
    let env_missing = |name: &str| (name != "MISSING_KEY").then(|| env(name)).flatten();
    for (patch, expected) in refusals {
        let mut vault = sts.clone();
        for (k, v) in patch.as_object().into_iter().flatten() {
            vault[k] = v.clone();
        }
        let doc = with_vault(&vault);
        let e = parse(doc.to_string().as_bytes(), &env_missing)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            e.contains("tenant 'google'") && e.contains(expected),
            "{patch}: {e}"
        );
    }
    // Auth0's own fields are refused on Okta backends and Okta's on Auth0.
    let mut doc = example();
    doc["tenants"][0]["vault"]["resource"] = json!("x");
    let e = parse_value(&doc)
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(
        e.contains("field 'vault.resource': is not used by vault type \"auth0\""),
        "{e}"
    );
    // Okta STS: the connect sign-in is at the org of vault.token_url, RS256, `openid` only.
    let okta_connect = json!({"client_id": "okta-web", "client_secret": "x"});
    let mut jag = sts.clone();
    if let Some(v) = jag.as_object_mut() {
        v.remove("resource");
    }
    jag["type"] = json!("id-jag");
    jag["audience"] = json!("https://resource-as.example");
    jag["resource_token_url"] = json!("https://resource-as.example/oauth2/v1/token");
    jag["resource_client_id"] = json!("rc");
    let mut doc = with_vault(&sts);
    doc["tenants"][1]["connect"] = okta_connect.clone();
    let cfg = parse_doc(&doc).unwrap_or_else(|e| panic!("{e}"));
    let connect = cfg.tenants[1]
        .connect
        .clone()
        .unwrap_or_else(|| panic!("connect"));
    assert_eq!(connect.login_url, "https://org.okta.example");
    assert_eq!(connect.id_token_algorithms, vec![Alg::Rs256]);
    assert_eq!(connect.user_claim, "sub");
    assert_eq!(
        connect.provider,
        crate::config::ConnectProvider::Okta {
            issuer: "https://org.okta.example".into(),
            token_path: "/oauth2/v1/token".into(),
            keys_path: "/oauth2/v1/keys".into(),
        }
    );
    let refused = [
        (
            json!({"login_url": "https://other.okta.example"}),
            &sts,
            "field 'connect.login_url': must be the Okta org of vault.token_url",
        ),
        (
            json!({"scopes": ["read"]}),
            &sts,
            "field 'connect.scopes': not used for vault type \"okta-sts\"",
        ),
        (
            json!({"id_token_algorithms": ["PS256"]}),
            &sts,
            "field 'connect.id_token_algorithms': 'PS256' is not supported",
        ),
        (
            json!({"user_claim": "aud"}),
            &sts,
            "field 'connect.user_claim': 'aud' does not name a user",
        ),
        (
            json!({}),
            &json!({
                "type": "okta-sts", "cluster": "okta",
                "token_url": "https://org.okta.example/oauth2/aus1/v1/token",
                "client_id": "agent", "private_key_env": "OKTA_KEY", "key_id": "k1",
                "resource": "https://slack.example/api", "connection": "slack",
            }),
            "field 'connect.login_url': the Okta sign-in needs vault.token_url to be the org",
        ),
        (
            json!({}),
            &jag,
            "field 'connect': only for vault types \"auth0\" and \"okta-sts\"",
        ),
    ];
    for (patch, vault, expected) in refused {
        let mut doc = with_vault(vault);
        let mut connect = okta_connect.clone();
        for (k, v) in patch.as_object().into_iter().flatten() {
            connect[k] = v.clone();
        }
        doc["tenants"][1]["connect"] = connect;
        let e = parse_doc(&doc)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(e.contains(expected), "{patch}: {e}");
    }
    // A claim other than `sub` is accepted for Okta (its access tokens name the user `uid`)
    // and refused for Auth0 (one `sub` throughout).
    let mut doc = with_vault(&sts);
    doc["tenants"][1]["connect"] =
        json!({"client_id": "w", "client_secret": "x", "user_claim": "uid"});
    assert!(parse_doc(&doc).is_ok());
    let mut doc = example();
    doc["tenants"][0]["connect"]["user_claim"] = json!("uid");
    let e = parse_doc(&doc)
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(
        e.contains("field 'connect.user_claim': must be \"sub\" for vault type \"auth0\""),
        "{e}"
    );
}

#[test]
fn rsa_client_keys_need_a_host_that_signs() {
    use base64::Engine;
    use rsa::pkcs8::EncodePrivateKey;
    let key =
        rsa::RsaPrivateKey::new(&mut rand_core::OsRng, 2048).unwrap_or_else(|e| panic!("{e}"));
    let der = key
        .to_pkcs8_der()
        .map(|d| d.as_bytes().to_vec())
        .unwrap_or_default();
    let pem = format!(
        "-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n",
        base64::engine::general_purpose::STANDARD.encode(der)
    );
    let mut doc = example();
    doc["tenants"][1]["vault"] = json!({
        "type": "okta-sts", "cluster": "okta",
        "token_url": "https://org.okta.example/oauth2/v1/token",
        "client_id": "agent", "private_key_env": "OKTA_KEY", "key_id": "k1",
        "resource": "https://slack.example/api", "connection": "slack",
    });
    let env = |name: &str| {
        Some(if name == "OKTA_KEY" {
            pem.clone()
        } else {
            "s3cret".into()
        })
    };
    let env = crate::testing::with_sealing_key(&env);
    let cfg = parse(doc.to_string().as_bytes(), &env).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(cfg.unsignable_tenant(true), None);
    assert_eq!(
        cfg.unsignable_tenant(false).map(|t| t.id.as_str()),
        Some("google")
    );
}

#[test]
fn downstream_value_fills_the_template() {
    for (format, want) in [
        ("Bearer {token}", "Bearer abc"),
        ("{token}", "abc"),
        ("token={token};v=1", "token=abc;v=1"),
    ] {
        let mut doc = example();
        doc["tenants"][0]["downstream"] = json!({"header": "x-api-key", "format": format});
        let cfg = parse_value(&doc).map_err(|e| e.to_string());
        let value = cfg.map(|c| c.tenants[0].downstream.value("abc"));
        assert_eq!(value.as_deref(), Ok(want), "{format}");
    }
}

#[test]
fn connect_id_token_algorithms_default_to_auth0s_and_login_url_may_spell_the_default_port() {
    let mut doc = example();
    let cfg = parse_value(&doc).unwrap_or_else(|e| panic!("{e}"));
    let connect = cfg.tenants[0]
        .connect
        .clone()
        .unwrap_or_else(|| panic!("connect"));
    assert_eq!(connect.id_token_algorithms, vec![Alg::Rs256, Alg::Ps256]);
    doc["tenants"][0]["connect"]["id_token_algorithms"] = json!(["PS256"]);
    doc["tenants"][0]["vault"]["domain"] = json!("Tenant.EU.auth0.com");
    doc["tenants"][0]["connect"]["login_url"] = json!("https://tenant.eu.auth0.com:443");
    let cfg = parse_value(&doc).unwrap_or_else(|e| panic!("{e}"));
    let connect = cfg.tenants[0]
        .connect
        .clone()
        .unwrap_or_else(|| panic!("connect"));
    assert_eq!(connect.id_token_algorithms, vec![Alg::Ps256]);
    assert_eq!(
        connect.provider,
        crate::config::ConnectProvider::Auth0 {
            my_account_audience: "https://Tenant.EU.auth0.com/me/".into()
        }
    );
}

#[test]
fn token_typ_is_at_jwt_or_absent() {
    let mut doc = example();
    doc["tenants"][0]["token_typ"] = json!("at+jwt");
    let cfg = parse_value(&doc).unwrap_or_else(|e| panic!("{e}"));
    assert!(cfg.tenants[0].require_at_jwt && !cfg.tenants[1].require_at_jwt);
    for bad in ["JWT", "application/at+jwt", ""] {
        let e = error_for(|t| t["token_typ"] = json!(bad));
        assert!(
            e.contains("tenant 'github': field 'token_typ': "),
            "{bad}: {e}"
        );
    }
    let e = error_for(|t| t["token_typ"] = json!(true));
    assert_eq!(
        e,
        "invalid plugin configuration: tenant 'github': field 'token_typ': invalid type: \
         boolean `true`, expected a string"
    );
}

#[test]
fn connect_pages_need_an_https_origin_without_a_path_unless_the_demo_flag_is_set() {
    let with = |base: &str, flag: Option<bool>| {
        let mut doc = example();
        doc["settings"]["public_base_url"] = json!(base);
        // Resource paths join the public URL at its root: named by audience here.
        doc["tenants"][0]
            .as_object_mut()
            .map(|t| t.remove("resources"));
        doc["tenants"][0]["audience"] = json!("https://api.example.com/github");
        match flag {
            Some(f) => doc["settings"]["allow_insecure_connect_cookies"] = json!(f),
            None => {
                doc["settings"]
                    .as_object_mut()
                    .map(|s| s.remove("allow_insecure_connect_cookies"));
            }
        }
        parse_value(&doc).map(|c| c.settings.allow_insecure_connect_cookies)
    };
    // Where the cookies cannot be `__Host-` cookies a sibling subdomain can plant them: refused,
    // naming the tenant with connect pages and what to do.
    for base in [
        "http://localhost:3000",
        "http://gw.example.com",
        "https://gw.example.com/gateway",
    ] {
        for flag in [None, Some(false)] {
            let e = with(base, flag)
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default();
            assert!(
                e.starts_with(
                    "invalid plugin configuration: tenant 'github': field 'connect': needs \
                     settings.public_base_url to be an https origin without a path"
                ),
                "{base}: {e}"
            );
            assert!(e.contains(base) && e.contains("__Host-"), "{e}");
            assert!(e.contains("settings.allow_insecure_connect_cookies"), "{e}");
        }
        // A demo says so.
        assert_eq!(with(base, Some(true)), Ok(true), "{base}");
    }
    // An https origin (a port, a trailing slash) needs no flag.
    for base in ["https://gw.example.com", "https://gw.example.com:8443/"] {
        assert_eq!(with(base, None), Ok(false), "{base}");
    }
    // Without connect pages nothing is asked.
    let mut doc = example();
    doc["settings"]
        .as_object_mut()
        .map(|s| s.remove("allow_insecure_connect_cookies"));
    doc["tenants"][0]
        .as_object_mut()
        .map(|t| t.remove("connect"));
    assert!(parse_value(&doc).is_ok());
    // The flag is a boolean.
    let mut doc = example();
    doc["settings"]["allow_insecure_connect_cookies"] = json!("yes");
    assert!(parse_value(&doc)
        .err()
        .is_some_and(|e| e.to_string().contains("expected a boolean")));
}

#[test]
fn host_cookie_origins() {
    for (base, ok) in [
        ("https://gw.example.com", true),
        ("https://gw.example.com:8443", true),
        ("https://gw.example.com/gw", false),
        ("https://gw.example.com/", false),
        ("http://gw.example.com", false),
        ("https://", false),
    ] {
        assert_eq!(host_cookie_origin(base), ok, "{base}");
    }
}

/// Every problem of a document is reported, each with its path and tenant: schema and semantic
/// problems in the settings and in two tenants, and across tenants.
#[test]
fn every_problem_is_reported_with_its_path() {
    let mut doc = example();
    doc["settings"]["clock_skew_seconds"] = json!(601);
    doc["settings"]["max_token_bytes"] = json!("big");
    doc["settings"]["colour"] = json!("blue");
    doc["settings"]["hosts"] = json!(["ok.example", "https://bad.example"]);
    let github = &mut doc["tenants"][0];
    github["issuer"] = json!("ftp://x");
    github["algorithms"] = json!(["HS256", "RS256", "none"]);
    github["vault"]["client_secret"] = json!("both");
    github["scopes"]["read"] = json!(["ok", 7]);
    let google = &mut doc["tenants"][1];
    google["jwks"]["extra"] = json!(1);
    google["vault"].as_object_mut().map(|v| v.remove("cluster"));
    google["backend"] = json!("localhost:9001");
    google["token_typ"] = json!(true);
    let mut again = doc["tenants"][1].clone();
    again["id"] = json!("github");
    again["token_typ"] = json!("at+jwt");
    if let Some(list) = doc["tenants"].as_array_mut() {
        list.push(json!("slack"));
        list.push(again);
    }
    let errors = parse_value(&doc).err().unwrap_or_default();
    let got: Vec<(Option<&str>, &str, &str)> = errors
        .iter()
        .map(|e| (e.tenant.as_deref(), e.path.as_str(), e.message.as_str()))
        .collect();
    let tenant = Some;
    let want: Vec<(Option<&str>, &str, &str)> = vec![
        (
            None,
            "settings.colour",
            "unknown field `colour`, expected one of",
        ),
        (
            None,
            "settings.max_token_bytes",
            "invalid type: string \"big\", expected usize",
        ),
        (None, "settings.clock_skew_seconds", "must be at most 600"),
        (
            None,
            "settings.hosts",
            "[1] is not a host name with an optional :port",
        ),
        (
            tenant("github"),
            "tenants[0].issuer",
            "must be an absolute http(s) URL",
        ),
        (
            tenant("github"),
            "tenants[0].algorithms",
            "'HS256' is not supported",
        ),
        (
            tenant("github"),
            "tenants[0].algorithms",
            "'none' is not supported",
        ),
        (
            tenant("github"),
            "tenants[0].scopes.read[1]",
            "invalid type: integer `7`, expected a string",
        ),
        (
            tenant("github"),
            "tenants[0].vault.client_secret",
            "give client_secret or client_secret_env, not both",
        ),
        (
            tenant("google"),
            "tenants[1].token_typ",
            "invalid type: boolean `true`, expected a string",
        ),
        (
            tenant("google"),
            "tenants[1].jwks.extra",
            "unknown field `extra`, expected `cluster` or `url`",
        ),
        (
            tenant("google"),
            "tenants[1].backend",
            "must be an absolute http(s) URL",
        ),
        (
            tenant("google"),
            "tenants[1].vault.cluster",
            "missing field `cluster`",
        ),
        (
            None,
            "tenants[2]",
            "invalid type: string \"slack\", expected an object",
        ),
        (
            tenant("github"),
            "tenants[3].jwks.extra",
            "unknown field `extra`",
        ),
        (
            tenant("github"),
            "tenants[3].backend",
            "must be an absolute http(s) URL",
        ),
        (
            tenant("github"),
            "tenants[3].vault.cluster",
            "missing field `cluster`",
        ),
        (
            tenant("github"),
            "tenants[3].id",
            "duplicate tenant id (also tenants[0].id)",
        ),
    ];
    assert_eq!(got.len(), want.len(), "{errors}");
    for (g, w) in got.iter().zip(&want) {
        assert!(
            g.0 == w.0 && g.1 == w.1 && g.2.starts_with(w.2),
            "got {g:?}, want {w:?}\n{errors}"
        );
    }
    // The lines name the tenant and the field inside it.
    let lines: Vec<String> = errors.iter().map(ToString::to_string).collect();
    for line in [
        "invalid plugin configuration: field 'settings.clock_skew_seconds': must be at most 600",
        "invalid plugin configuration: tenant 'google': field 'vault.cluster': missing field `cluster`",
        "invalid plugin configuration: tenant '#2': invalid type: string \"slack\", expected an object",
        "invalid plugin configuration: tenant 'github': field 'id': duplicate tenant id (also tenants[0].id)",
    ] {
        assert!(lines.iter().any(|l| l == line), "{line} not in {lines:#?}");
    }
}

/// A tenant is not blamed for a setting's problem: with `public_base_url` broken, resource
/// paths under it and connect pages are not reported again per tenant.
#[test]
fn a_broken_setting_is_reported_once() {
    let mut doc = example();
    doc["settings"]["public_base_url"] = json!("localhost:3000");
    let errors = parse_value(&doc).err().unwrap_or_default();
    assert_eq!(
        errors.to_string(),
        "invalid plugin configuration: field 'settings.public_base_url': must be an absolute \
         http(s) URL"
    );
    let mut doc = example();
    doc["settings"] = json!([60]);
    let errors = parse_value(&doc).err().unwrap_or_default();
    assert_eq!(errors.len(), 1, "{errors}");
    assert_eq!(errors.0[0].path, "settings");
}

#[test]
fn the_document_itself() {
    let errors = |text: &str| {
        parse(text.as_bytes(), &env)
            .err()
            .unwrap_or_default()
            .iter()
            .map(|e| format!("{} | {}", e.path, e.message))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        errors("{\"tenants\": []}"),
        ["tenants | must list at least one tenant"]
    );
    assert_eq!(errors("{}"), ["tenants | missing field `tenants`"]);
    assert_eq!(
        errors("{\"tenants\": null}"),
        ["tenants | invalid type: null, expected a sequence"]
    );
    assert_eq!(
        errors("[]"),
        [" | invalid type: sequence, expected an object"]
    );
    assert_eq!(
        errors("{\"tenants\": [[\"github\"]]}"),
        ["tenants[0] | invalid type: sequence, expected an object"]
    );
    assert_eq!(
        errors("{\"tenants\": [], \"tenants\": []}"),
        ["tenants | duplicate field `tenants`"]
    );
    let e = parse(b"{\"tenants\": [", &env).err().unwrap_or_default();
    assert!(
        e.to_string()
            .starts_with("invalid plugin configuration: not a valid configuration document: EOF"),
        "{e}"
    );
}

#[test]
fn a_loaded_configuration_names_its_upstreams_and_environment() {
    let env = |name: &str| match name {
        "OKTA_AGENT_PRIVATE_KEY" => Some(PEM.to_string()),
        _ => Some("s3cret".to_string()),
    };
    let env = crate::testing::with_sealing_key(&env);
    let cfg = parse(include_bytes!("../../../tenants.example.json"), &env)
        .unwrap_or_else(|e| panic!("{e}"));
    let sim = |field| Upstream {
        field,
        cluster: "sim_control".into(),
        tls: Some(false),
        authority: "127.0.0.1:9000".into(),
    };
    let auth0 = Upstream {
        tls: None,
        ..sim("vault.cluster")
    };
    assert_eq!(
        cfg.tenants[0].upstreams,
        [sim("jwks.cluster"), auth0.clone()]
    );
    assert_eq!(cfg.tenants[1].upstreams, [sim("jwks.cluster"), auth0]);
    assert_eq!(
        cfg.tenants[2].upstreams,
        [sim("jwks.cluster"), sim("vault.cluster")]
    );
    assert_eq!(cfg.tenants[3].upstreams.len(), 3);
    let names = |t: &Tenant| {
        t.env_vars
            .iter()
            .map(|e| format!("{}={}", e.field, e.name))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        names(&cfg.tenants[0]),
        ["vault.client_secret_env=GITHUB_VAULT_CLIENT_SECRET"]
    );
    assert!(names(&cfg.tenants[1]).is_empty());
    assert_eq!(
        names(&cfg.tenants[2]),
        ["vault.private_key_env=OKTA_AGENT_PRIVATE_KEY"]
    );
    assert_eq!(
        cfg.settings.sealing_key_env.as_deref(),
        Some("TVP_SEALING_KEY")
    );
}

#[test]
fn the_signature_failure_budget_is_bounded() {
    assert_eq!(
        parse_value(&example()).map(|c| c.settings.signature_failures_per_second),
        Ok(50)
    );
    for bad in [json!(0), json!(100_001)] {
        let mut doc = example();
        doc["settings"]["signature_failures_per_second"] = bad.clone();
        let e = parse_value(&doc).err().map(|e| e.to_string());
        assert!(
            e.as_deref()
                .is_some_and(|e| e.contains("signature_failures_per_second")),
            "{bad}: {e:?}"
        );
    }
    for bad in [json!(-1), json!("50"), json!(2.5)] {
        let mut doc = example();
        doc["settings"]["signature_failures_per_second"] = bad.clone();
        assert!(parse_value(&doc).is_err(), "{bad}");
    }
    let mut doc = example();
    doc["settings"]["signature_failures_per_second"] = json!(1);
    assert_eq!(
        parse_value(&doc).map(|c| c.settings.signature_failures_per_second),
        Ok(1)
    );
}
