//! Challenge and reply building from arbitrary text: never a CR, LF or unescaped quote in a
//! header value, always valid JSON in the body.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tvp_core::reply::{self, Deny, Realm};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let mut parts = text.splitn(3, '\u{0}');
    let (realm, a, b) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let realm = Realm { name: realm, resource_metadata: Some(b), scope: Some(a) };
    let header = reply::challenge(&realm, Some(("invalid_token", a, Some(b))));
    assert!(!reply::challenge(&realm, None).contains(['\r', '\n']));
    assert!(!header.contains('\r') && !header.contains('\n'));
    // Every quote inside the value is escaped: unescaped quotes are exactly the delimiters.
    let (mut delimiters, mut escaped) = (0, false);
    for b in header.bytes() {
        match (escaped, b) {
            (true, _) => escaped = false,
            (false, b'\\') => escaped = true,
            (false, b'"') => delimiters += 1,
            _ => {}
        }
    }
    assert_eq!(delimiters % 2, 0, "{header}");
    let deny = Deny::ConnectRequired {
        connection: a.to_string(),
        tenant_name: b.to_string(),
        scopes: vec![b.to_string()],
        missing_scopes: vec![a.to_string()],
        connect: Some(Box::new(reply::ConnectLink { id: a.to_string(), url: b.to_string() })),
        interaction_uri: Some(a.into()),
    };
    let r = reply::deny_reply(&deny, &realm);
    assert!(serde_json::from_slice::<serde_json::Value>(&r.body).is_ok());
    for (_, v) in &r.headers {
        assert!(!v.contains('\r') && !v.contains('\n'));
    }
});
