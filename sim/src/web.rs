//! What the sim's browser pages and OAuth endpoints share: form encoding, HTML escaping, small
//! pages and OAuth error bodies.

use std::collections::HashMap;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use serde_json::json;

use crate::http::{Request, Response};

/// `application/x-www-form-urlencoded` pairs (also a query); a pair that does not decode is
/// dropped.
pub fn parse_form(text: &str) -> HashMap<String, String> {
    text.split('&')
        .filter(|pair| !pair.is_empty())
        .filter_map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            Some((decode(k)?, decode(v)?))
        })
        .collect()
}

/// Percent-decode (`+` is a space); `None` for a broken escape or non-UTF-8.
pub fn decode(s: &str) -> Option<String> {
    let mut out = Vec::with_capacity(s.len());
    let mut bytes = s.bytes();
    while let Some(b) = bytes.next() {
        out.push(match b {
            b'+' => b' ',
            b'%' => {
                let hi = char::from(bytes.next()?).to_digit(16)?;
                let lo = char::from(bytes.next()?).to_digit(16)?;
                (hi * 16 + lo) as u8
            }
            b => b,
        });
    }
    String::from_utf8(out).ok()
}

/// Percent-encode a query or form value (the tests' browser uses it too).
pub fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

pub fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// A bare HTML page; `body` must already be escaped.
pub fn html(status: u16, body: &str) -> Response {
    Response::raw(
        status,
        "text/html; charset=utf-8",
        format!("<!doctype html><html><body>{body}</body></html>").into_bytes(),
    )
}

/// A consent page: `heading` (already escaped), then Allow and Deny buttons posting `hidden`
/// (name, raw value) to `action`. With `auto_submit` a script submits the form at once: a
/// headless browser cannot click, and a submission without a button means "allow".
pub fn consent_page(
    heading: &str,
    action: &str,
    hidden: (&str, &str),
    auto_submit: bool,
) -> Response {
    let auto = if auto_submit {
        "<script>document.forms[0].submit()</script>"
    } else {
        ""
    };
    html(
        200,
        &format!(
            "{heading}<form method=\"post\" action=\"{action}\">\
             <input type=\"hidden\" name=\"{name}\" value=\"{value}\">\
             <button name=\"decision\" value=\"allow\">Allow</button>\
             <button name=\"decision\" value=\"deny\">Deny</button></form>{auto}",
            name = hidden.0,
            value = escape(hidden.1),
        ),
    )
}

/// An OAuth 2.0 error answer.
pub fn oauth_error(status: u16, error: &str, description: &str) -> Response {
    Response::json(
        status,
        &json!({"error": error, "error_description": description}),
    )
}

/// The credentials of an HTTP Basic `authorization` header (`client_secret_basic`): both
/// parts form-encoded first (RFC 6749 section 2.3.1).
pub fn basic_credentials(r: &Request) -> Option<(String, String)> {
    let raw = r
        .header("authorization")?
        .strip_prefix("Basic ")
        .and_then(|b| STANDARD.decode(b).ok())
        .and_then(|b| String::from_utf8(b).ok())?;
    let (id, secret) = raw.split_once(':')?;
    Some((decode(id)?, decode(secret)?))
}

/// An authorization request and who is signed in: the login form's POST (the carried query
/// `q`, and `username`), or a GET's query and the sim's sign-in cookie `cookie`.
pub fn sign_in_request(r: &Request, cookie: &str) -> (String, Option<String>) {
    if r.method == "POST" {
        let f = parse_form(&String::from_utf8_lossy(&r.body));
        (
            f.get("q").cloned().unwrap_or_default(),
            f.get("username").cloned().filter(|u| !u.is_empty()),
        )
    } else {
        let user = r.header("cookie").and_then(|c| {
            c.split(';')
                .filter_map(|p| p.trim().split_once('='))
                .find(|(k, _)| *k == cookie)
                .map(|(_, v)| v.to_string())
        });
        (r.query.clone(), user)
    }
}

/// The login form of `who` (raw), posting the authorization request `query` along to `action`.
pub fn login_form(who: &str, action: &str, query: &str) -> Response {
    html(
        200,
        &format!(
            "<h1>Sign in to {}</h1><form method=\"post\" action=\"{}\">\
             <input type=\"hidden\" name=\"q\" value=\"{}\">\
             <label>Username <input name=\"username\" autofocus></label>\
             <button type=\"submit\">Sign in</button></form>",
            escape(who),
            escape(action),
            escape(query)
        ),
    )
}

/// A redirect, setting `cookie` if given.
pub fn redirect(location: &str, cookie: Option<String>) -> Response {
    let mut headers = vec![("location".to_string(), location.to_string())];
    headers.extend(cookie.map(|c| ("set-cookie".to_string(), c)));
    Response::Full {
        status: 302,
        headers,
        body: Vec::new(),
    }
}

/// `uri` with `params` added to its query.
pub fn with_params(uri: &str, params: &[(&str, &str)]) -> String {
    let sep = if uri.contains('?') { '&' } else { '?' };
    let q: Vec<String> = params
        .iter()
        .map(|(k, v)| format!("{k}={}", encode(v)))
        .collect();
    format!("{uri}{sep}{}", q.join("&"))
}

/// The PKCE S256 challenge of a verifier (RFC 7636 section 4.2).
pub fn s256(verifier: &str) -> String {
    use base64::Engine;
    use sha2::Digest;
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(sha2::Sha256::digest(verifier.as_bytes()))
}
