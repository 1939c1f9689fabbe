//! A browser stand-in for redirect flows: follows `Location`, keeps cookies per origin and
//! path, submits forms. Enough to walk the connect flow between Envoy and the sim.

use std::collections::BTreeMap;

use super::{http, Response};

#[derive(Default)]
pub struct Browser {
    /// (host:port, path, name) -> value
    cookies: BTreeMap<(String, String, String), String>,
    /// Every URL visited, in order.
    pub visited: Vec<String>,
}

/// Split `http://host:port/path?q` into (authority, port, path-and-query).
pub fn split_url(url: &str) -> (String, u16, String) {
    let rest = url.strip_prefix("http://").expect("http URL");
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let port = authority
        .rsplit_once(':')
        .and_then(|(_, p)| p.parse().ok())
        .unwrap_or(80);
    (authority.to_string(), port, path.to_string())
}

impl Browser {
    pub fn new() -> Self {
        Self::default()
    }

    fn cookie_header(&self, authority: &str, path: &str) -> Option<String> {
        let pairs: Vec<String> = self
            .cookies
            .iter()
            .filter(|((a, p, _), _)| a == authority && path.starts_with(p.as_str()))
            .map(|((_, _, n), v)| format!("{n}={v}"))
            .collect();
        (!pairs.is_empty()).then(|| pairs.join("; "))
    }

    fn remember(&mut self, authority: &str, response: &Response) {
        for (name, value) in &response.headers {
            if !name.eq_ignore_ascii_case("set-cookie") {
                continue;
            }
            let mut parts = value.split(';').map(str::trim);
            let Some((n, v)) = parts.next().and_then(|p| p.split_once('=')) else {
                continue;
            };
            let mut path = "/".to_string();
            let mut delete = v.is_empty();
            for attr in parts {
                let (k, val) = attr.split_once('=').unwrap_or((attr, ""));
                if k.eq_ignore_ascii_case("path") {
                    path = val.to_string();
                }
                if k.eq_ignore_ascii_case("max-age") && val == "0" {
                    delete = true;
                }
            }
            let key = (authority.to_string(), path, n.to_string());
            if delete {
                self.cookies.remove(&key);
            } else {
                self.cookies.insert(key, v.to_string());
            }
        }
    }

    /// One request, cookies sent and stored; redirects are not followed.
    pub fn send(&mut self, method: &str, url: &str, form: Option<&str>) -> Response {
        let (authority, port, path) = split_url(url);
        self.visited.push(url.to_string());
        let cookie = self.cookie_header(&authority, path.split('?').next().unwrap_or("/"));
        let mut headers: Vec<(&str, &str)> = Vec::new();
        if let Some(c) = &cookie {
            headers.push(("cookie", c));
        }
        if form.is_some_and(|f| !f.is_empty()) {
            headers.push(("content-type", "application/x-www-form-urlencoded"));
        }
        let response = http(
            port,
            method,
            &path,
            &headers,
            form.map(str::as_bytes).unwrap_or(b""),
        )
        .unwrap_or_else(|e| panic!("{method} {url}: {e}"));
        self.remember(&authority, &response);
        response
    }

    /// GET `url` and follow redirects; returns the last URL and its answer.
    pub fn open(&mut self, url: &str) -> (String, Response) {
        let r = self.send("GET", url, None);
        self.follow(r, url)
    }

    /// POST a form and follow redirects.
    pub fn submit(&mut self, url: &str, form: &str) -> (String, Response) {
        let r = self.send("POST", url, Some(form));
        self.follow(r, url)
    }

    fn follow(&mut self, mut response: Response, url: &str) -> (String, Response) {
        let mut current = url.to_string();
        for _ in 0..20 {
            if !matches!(response.status, 301 | 302 | 303 | 307) {
                return (current, response);
            }
            let location = response.header("location").expect("Location").to_string();
            current = if location.starts_with('/') {
                let (authority, _, _) = split_url(&current);
                format!("http://{authority}{location}")
            } else {
                location
            };
            response = self.send("GET", &current, None);
        }
        panic!("too many redirects from {url}");
    }

    /// The value of a hidden form field named `name` in an HTML page.
    pub fn field(html: &str, name: &str) -> Option<String> {
        let marker = format!("name=\"{name}\" value=\"");
        let start = html.find(&marker)? + marker.len();
        let end = html[start..].find('"')? + start;
        Some(
            html[start..end]
                .replace("&amp;", "&")
                .replace("&quot;", "\""),
        )
    }

    /// The `action` of the first POST form in a page, unescaped.
    pub fn form_action(html: &str) -> Option<String> {
        let marker = "<form method=\"post\" action=\"";
        let start = html.find(marker)? + marker.len();
        let end = html[start..].find('"')? + start;
        Some(html[start..end].replace("&amp;", "&"))
    }

    /// The `Cookie` header this browser sends with a request to `url`.
    pub fn cookies_for(&self, url: &str) -> Option<String> {
        let (authority, _, path) = split_url(url);
        self.cookie_header(&authority, path.split('?').next().unwrap_or("/"))
    }

    pub fn has_cookie(&self, name: &str) -> bool {
        self.cookies.keys().any(|(_, _, n)| n == name)
    }

    /// Walk a connect link as `user` with no sim session yet: sign in at the sim's login form,
    /// allow at the provider's consent page. Returns the last page (the filter's "connected").
    pub fn connect_from_link(&mut self, sim_port: u16, url: &str, user: &str) -> Response {
        let (_, login) = self.open(url);
        let q = Browser::field(&login.text(), "q").expect("login form");
        let sign_in = format!("http://127.0.0.1:{sim_port}/authorize/login");
        let (_, consent) = self.submit(&sign_in, &format!("q={}&username={user}", enc(&q)));
        let ticket = Browser::field(&consent.text(), "ticket").expect("consent form");
        let approve = format!("http://127.0.0.1:{sim_port}/connected-accounts/approve");
        self.submit(&approve, &format!("ticket={}&decision=allow", enc(&ticket)))
            .1
    }
}

pub use sim::web::encode as enc;
