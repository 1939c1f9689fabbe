//! MCP clients (JSON-RPC over Streamable HTTP) are told "connect your account" in their own
//! protocol: a URL-mode elicitation carrying the request's JSON-RPC id.
//!
//! - 2025-11-25: the `-32042` URL elicitation required error;
//! - 2026-07-28 and later: an `input_required` result whose input request is a URL elicitation
//!   (`requestState` is the connect link's id: opaque, unguessable, kept server-side);
//! - older revisions have no URL elicitation: a `tools/call` gets a tool error naming the
//!   link, any other request (`initialize` first of all: a user without the account is refused
//!   from the first message on) a JSON-RPC error carrying the link.

use serde_json::{json, Value};

use crate::reply::{ConnectLink, Reply};

/// Largest JSON-RPC request body read to answer with an elicitation.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

const URL_ELICITATION_SINCE: &str = "2025-11-25";
const INPUT_REQUIRED_SINCE: &str = "2026-07-28";
const CLIENT_CAPABILITIES: &str = "io.modelcontextprotocol/clientCapabilities";
/// JSON-RPC server error (implementation-defined range) for "connect the account first" where
/// no URL elicitation applies: `-32042` is reserved for URL elicitations.
const CONNECT_REQUIRED_CODE: i64 = -32000;

/// A request that looks like MCP's Streamable HTTP transport carrying a JSON-RPC message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct McpRequest {
    /// `MCP-Protocol-Version`, when it is a well-formed revision date.
    pub protocol_version: Option<String>,
}

/// MCP clients POST JSON and accept an event stream; a protocol-version header is proof
/// enough on its own.
pub fn recognise(
    method: &str,
    content_type: Option<&str>,
    protocol_version: Option<&str>,
    accept: Option<&str>,
) -> Option<McpRequest> {
    let json = content_type.is_some_and(|c| {
        c.split(';')
            .next()
            .is_some_and(|m| m.trim().eq_ignore_ascii_case("application/json"))
    });
    let streamable = accept.is_some_and(|a| a.contains("text/event-stream"));
    if method != "POST" || !json || !(streamable || protocol_version.is_some()) {
        return None;
    }
    Some(McpRequest {
        protocol_version: protocol_version
            .filter(|v| is_revision(v))
            .map(str::to_string),
    })
}

/// `YYYY-MM-DD`: such revisions order correctly as strings.
fn is_revision(v: &str) -> bool {
    v.len() == 10
        && v.bytes().enumerate().all(|(i, b)| {
            if i == 4 || i == 7 {
                b == b'-'
            } else {
                b.is_ascii_digit()
            }
        })
}

/// Where an MCP request is on its way to an elicitation answer.
#[derive(Debug, Clone)]
pub enum McpState {
    /// Recognised at its headers; its body has not been read.
    Candidate(McpRequest),
    /// Refused for a missing account and sent to the hold route: answered once its body (the
    /// JSON-RPC id) is in. `fallback` is the plain HTTP refusal.
    Held {
        /// Index of the tenant in the configuration.
        tenant: usize,
        request: McpRequest,
        offer: ConnectOffer,
        fallback: Reply,
    },
}

/// What the user must do, as the MCP answer says it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectOffer {
    pub connection: String,
    pub message: String,
    pub link: Option<ConnectLink>,
}

/// The JSON-RPC answer to `body` telling the client to have the account connected; `None`
/// when the body is not a single JSON-RPC request this can answer (the caller then sends the
/// plain HTTP refusal).
pub fn elicitation(body: &[u8], request: &McpRequest, offer: &ConnectOffer) -> Option<Reply> {
    let message: Value = serde_json::from_slice(body).ok()?;
    if message["jsonrpc"] != "2.0" || !message["method"].is_string() {
        return None;
    }
    let id = match &message["id"] {
        id @ (Value::String(_) | Value::Number(_)) => id.clone(),
        // A notification gets no answer; nothing to correlate an error with.
        _ => return None,
    };
    // `initialize` carries its revision and capabilities in its params, not in headers.
    let initialize = message["method"] == "initialize";
    let proposed = message["params"]["protocolVersion"]
        .as_str()
        .filter(|v| is_revision(v));
    let version = match (initialize, proposed) {
        (true, Some(v)) => v,
        _ => request.protocol_version.as_deref().unwrap_or(""),
    };
    let url_capable =
        !initialize || !message["params"]["capabilities"]["elicitation"]["url"].is_null();
    let answer = match &offer.link {
        Some(link) if version >= INPUT_REQUIRED_SINCE && declares_url_elicitation(&message) => {
            json!({"result": {
                "resultType": "input_required",
                "inputRequests": {
                    format!("connect_{}", offer.connection): {
                        "method": "elicitation/create",
                        "params": {"mode": "url", "url": link.url, "message": offer.message},
                    }
                },
                "requestState": link.id,
            }})
        }
        Some(link)
            if url_capable && (URL_ELICITATION_SINCE..INPUT_REQUIRED_SINCE).contains(&version) =>
        {
            json!({"error": {
                "code": -32042,
                "message": "This request requires more information.",
                "data": {"elicitations": [{
                    "mode": "url",
                    "elicitationId": link.id,
                    "url": link.url,
                    "message": offer.message,
                }]},
            }})
        }
        _ if message["method"] == "tools/call" => {
            let text = match &offer.link {
                Some(link) => format!(
                    "{} Ask the user to open {} to connect it, then try again.",
                    offer.message, link.url
                ),
                None => format!("{} The user must connect it first.", offer.message),
            };
            json!({"result": {"content": [{"type": "text", "text": text}], "isError": true}})
        }
        // Any other request: a server error the client shows, with the link to act on.
        _ => {
            let (text, uri) = match &offer.link {
                Some(link) => (
                    format!("{} Connect it at {}", offer.message, link.url),
                    json!(link.url),
                ),
                None => (offer.message.clone(), Value::Null),
            };
            json!({"error": {
                "code": CONNECT_REQUIRED_CODE,
                "message": text,
                "data": {"error": "connected_account_required", "connection": offer.connection,
                         "connect_uri": uri},
            }})
        }
    };
    let mut answer = answer;
    answer["jsonrpc"] = json!("2.0");
    answer["id"] = id;
    Some(Reply::json(200, &answer))
}

/// From 2026-07-28 capabilities travel with each request; a client that lists them without
/// URL elicitation must not get one. Absent capabilities are not held against it.
fn declares_url_elicitation(message: &Value) -> bool {
    let capabilities = &message["params"]["_meta"][CLIENT_CAPABILITIES];
    capabilities.is_null() || !capabilities["elicitation"]["url"].is_null()
}

#[cfg(test)]
mod tests {
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

    fn answer(body: Value, version: Option<&str>, link: bool) -> Option<Value> {
        let request = McpRequest {
            protocol_version: version.map(str::to_string),
        };
        elicitation(body.to_string().as_bytes(), &request, &offer(link))
            .map(|r| serde_json::from_slice(&r.body).unwrap_or_default())
    }

    fn call(id: Value) -> Value {
        json!({"jsonrpc": "2.0", "id": id, "method": "tools/call", "params": {"name": "x"}})
    }

    #[test]
    fn recognises_streamable_http_posts_only() {
        let sse = Some("application/json, text/event-stream");
        assert!(recognise("POST", Some("application/json"), None, sse).is_some());
        assert!(recognise(
            "POST",
            Some("application/json; charset=utf-8"),
            Some("2025-11-25"),
            None
        )
        .is_some());
        assert!(recognise("GET", Some("application/json"), Some("2025-11-25"), sse).is_none());
        assert!(recognise("POST", Some("text/plain"), Some("2025-11-25"), sse).is_none());
        assert!(recognise("POST", Some("application/json"), None, Some("*/*")).is_none());
        let r = recognise(
            "POST",
            Some("application/json"),
            Some("2025-11-25\r\nx"),
            sse,
        );
        assert_eq!(r.map(|r| r.protocol_version), Some(None));
    }

    #[test]
    fn url_elicitation_error_echoes_the_id() {
        for id in [json!(7), json!("req-7")] {
            let a = answer(call(id.clone()), Some("2025-11-25"), true).unwrap_or_default();
            assert_eq!(a["id"], id);
            assert_eq!(a["error"]["code"], -32042);
            let e = &a["error"]["data"]["elicitations"][0];
            assert_eq!(e["mode"], "url");
            assert_eq!(e["elicitationId"], "L1");
            assert_eq!(e["url"], "https://gw/connect/github/start?id=L1");
        }
    }

    #[test]
    fn newer_revision_gets_input_required() {
        let a = answer(call(json!(3)), Some("2026-07-28"), true).unwrap_or_default();
        assert_eq!(a["result"]["resultType"], "input_required");
        let input = &a["result"]["inputRequests"]["connect_github"];
        assert_eq!(input["method"], "elicitation/create");
        assert_eq!(input["params"]["mode"], "url");
        assert_eq!(a["result"]["requestState"], "L1");
        assert_eq!(a["id"], 3);
        // A client that lists its capabilities without URL elicitation gets a tool error.
        let mut body = call(json!(4));
        body["params"]["_meta"] = json!({CLIENT_CAPABILITIES: {"elicitation": {"form": {}}}});
        let a = answer(body, Some("2026-07-28"), true).unwrap_or_default();
        assert_eq!(a["result"]["isError"], true);
    }

    #[test]
    fn older_revisions_get_a_tool_error_or_nothing() {
        let a = answer(call(json!(1)), Some("2025-06-18"), true).unwrap_or_default();
        assert_eq!(a["result"]["isError"], true);
        let text = a["result"]["content"][0]["text"]
            .as_str()
            .unwrap_or_default();
        assert!(
            text.contains("https://gw/connect/github/start?id=L1"),
            "{text}"
        );
        let list = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list"});
        let a = answer(list, Some("2025-06-18"), true).unwrap_or_default();
        assert_eq!(a["error"]["code"], -32000);
        assert_eq!(
            a["error"]["data"]["connect_uri"],
            "https://gw/connect/github/start?id=L1"
        );
        // Without a link a URL elicitation is impossible.
        let a = answer(call(json!(1)), Some("2025-11-25"), false).unwrap_or_default();
        assert_eq!(a["result"]["isError"], true);
    }

    #[test]
    fn initialize_is_answered_by_what_it_declares() {
        let init = |caps: Value| {
            json!({"jsonrpc": "2.0", "id": 0, "method": "initialize",
                   "params": {"protocolVersion": "2025-11-25", "capabilities": caps,
                              "clientInfo": {"name": "c", "version": "1"}}})
        };
        // No header yet: the revision comes from the params.
        let a = answer(init(json!({"elicitation": {"url": {}}})), None, true).unwrap_or_default();
        assert_eq!(a["error"]["code"], -32042);
        assert_eq!(a["id"], 0);
        // A client that did not declare URL elicitation gets the plain server error.
        let a = answer(init(json!({"elicitation": {}})), None, true).unwrap_or_default();
        assert_eq!(a["error"]["code"], -32000);
        assert!(a["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("https://gw/connect/github/start?id=L1"));
    }

    #[test]
    fn only_single_requests_are_answered() {
        for body in [
            json!([call(json!(1))]),
            json!({"jsonrpc": "2.0", "method": "notifications/initialized"}),
            json!({"jsonrpc": "2.0", "id": null, "method": "tools/call"}),
            json!({"jsonrpc": "1.0", "id": 1, "method": "tools/call"}),
            json!("text"),
        ] {
            assert_eq!(answer(body, Some("2025-11-25"), true), None);
        }
        let request = McpRequest {
            protocol_version: None,
        };
        assert!(elicitation(b"{not json", &request, &offer(true)).is_none());
    }
}
