//! The few HTML pages the connect flow shows a browser. Every dynamic value is escaped; the
//! pages load nothing and run no script except the one fixed fragment reader.

use crate::reply::Reply;
use crate::secret::sha256;
use crate::urlencoded;
use base64::engine::general_purpose::STANDARD;
use base64::Engine;

/// Escape text for HTML element content and double-quoted attributes.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c if c.is_control() => {}
            c => out.push(c),
        }
    }
    out
}

const STYLE: &str = "body{font-family:system-ui,sans-serif;max-width:40rem;margin:3rem auto;padding:0 1rem;color:#1b1b1b}\
h1{font-size:1.4rem}.ok{color:#116329}.fail{color:#a40e26}table{border-collapse:collapse;width:100%}\
td,th{border-bottom:1px solid #ddd;padding:.4rem;text-align:left}button{padding:.3rem .8rem}";

/// A complete page; `body_html` must already be escaped.
fn page(status: u32, title: &str, body_html: &str, script: Option<&str>) -> Reply {
    let script_src = script.map_or("'none'".to_string(), |s| {
        format!("'sha256-{}'", STANDARD.encode(sha256(s.as_bytes())))
    });
    let html = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">\
         <title>{title}</title><style>{STYLE}</style></head><body>{body_html}{script_tag}</body></html>",
        title = escape(title),
        script_tag = script.map_or(String::new(), |s| format!("<script>{s}</script>")),
    );
    Reply {
        status,
        headers: vec![
            ("content-type", "text/html; charset=utf-8".into()),
            ("cache-control", "no-store".into()),
            // The URLs of this flow carry codes and state: never leak them to another site.
            ("referrer-policy", "no-referrer".into()),
            ("x-frame-options", "DENY".into()),
            ("x-content-type-options", "nosniff".into()),
            (
                "content-security-policy",
                format!(
                    "default-src 'none'; style-src 'unsafe-inline'; script-src {script_src}; \
                     form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
                ),
            ),
        ],
        body: html.into_bytes(),
    }
}

/// The account is connected: the user goes back to the agent, which retries.
pub fn connected(tenant_name: &str, connection: &str) -> Reply {
    page(
        200,
        "Account connected",
        &format!(
            "<h1 class=\"ok\">Your {c} account is connected</h1>\
             <p>{t} can now act for you with it. You can close this page and return to your agent; \
             it can retry its request.</p>",
            c = escape(connection),
            t = escape(tenant_name),
        ),
        None,
    )
}

/// Something went wrong; `why` is a fixed sentence of ours, never text from the request.
pub fn failed(status: u32, title: &str, why: &str) -> Reply {
    page(
        status,
        title,
        &format!(
            "<h1 class=\"fail\">{}</h1><p>{}</p>",
            escape(title),
            escape(why)
        ),
        None,
    )
}

/// The link was made for another user than the one signed in.
pub fn wrong_user(sign_in_again: &str) -> Reply {
    page(
        403,
        "You are signed in as a different user",
        &format!(
            "<h1 class=\"fail\">You are signed in as a different user</h1>\
             <p>This link was made for another account. Sign in with the account your agent acts \
             for.</p><p><a href=\"{}\">Sign in with another account</a></p>",
            escape(sign_in_again)
        ),
        None,
    )
}

/// The connected accounts of one connection, each with a disconnect button.
pub fn accounts(
    tenant_name: &str,
    connection: &str,
    accounts: &[(String, String)],
    delete_action: &str,
    connect_href: &str,
    csrf: &str,
) -> Reply {
    let rows: String = accounts
        .iter()
        .map(|(id, created)| {
            format!(
                "<tr><td>{c}</td><td>{created}</td><td>\
                 <form method=\"post\" action=\"{a}?id={id}&amp;csrf={csrf}\">\
                 <button type=\"submit\">Disconnect</button></form></td></tr>",
                c = escape(connection),
                created = escape(created),
                a = escape(delete_action),
                id = escape(&urlencoded::encode(id)),
                csrf = escape(&urlencoded::encode(csrf)),
            )
        })
        .collect();
    let body = if accounts.is_empty() {
        format!(
            "<p>No {c} account is connected.</p><form method=\"post\" action=\"{h}\">\
             <button type=\"submit\">Connect your {c} account</button></form>",
            c = escape(connection),
            h = escape(connect_href)
        )
    } else {
        format!("<table><tr><th>Account</th><th>Connected</th><th></th></tr>{rows}</table>")
    };
    page(
        200,
        "Connected accounts",
        &format!(
            "<h1>Connected accounts for {}</h1>{body}",
            escape(tenant_name)
        ),
        None,
    )
}

/// Auth0 may return `connect_code` in the fragment, which never reaches a server: move it to
/// the query and load the page again.
pub fn fragment_reader() -> Reply {
    const SCRIPT: &str = "var h=location.hash.slice(1);if(h){location.replace(location.pathname+'?'+h)}\
else{document.getElementById('m').textContent='The connection was not completed: no code came back.'}";
    page(
        200,
        "Connecting",
        "<h1>Finishing the connection</h1><p id=\"m\">One moment.</p>",
        Some(SCRIPT),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_everything_dynamic() {
        assert_eq!(
            escape("<script>\"x\"&'y'\r\n"),
            "&lt;script&gt;&quot;x&quot;&amp;&#39;y&#39;"
        );
        let r = accounts(
            "T<",
            "gh\"",
            &[("id\"><script>".into(), "now".into())],
            "/connect/t/accounts/delete",
            "/connect/t/start",
            "c",
        );
        let html = String::from_utf8(r.body).unwrap_or_default();
        assert!(!html.contains("<script>"), "{html}");
        assert!(
            html.contains("id=id%22%3E%3Cscript%3E&amp;csrf=c"),
            "{html}"
        );
    }

    fn csp(r: &Reply) -> String {
        r.headers
            .iter()
            .find(|(n, _)| *n == "content-security-policy")
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    }

    #[test]
    fn script_is_allowed_by_its_hash_only() {
        let with_script = csp(&fragment_reader());
        assert!(with_script.contains("script-src 'sha256-"), "{with_script}");
        let without = csp(&connected("T", "github"));
        assert!(without.contains("script-src 'none'"), "{without}");
    }
}
