//! MCP clients (JSON-RPC over Streamable HTTP) whose user has not connected the account get an
//! answer their SDK acts on, in the form their protocol revision defines.
//!
//! What the filter does with an MCP request it cannot broker (the vault said "connect"):
//!
//! - **Lifecycle and listing requests are relayed without a credential**: `initialize`,
//!   `server/discover`, `ping`, the `*/list` methods, notifications, the client's responses to
//!   server requests, and the session's `GET` stream and `DELETE`. They carry no user data and
//!   need no provider access, and the SDKs fail the whole session when they are refused (the
//!   official Python SDK raises out of `initialize`; in 2026-07-28 mode a refused
//!   `server/discover` makes it fall back to the older revision). The agent's token is removed
//!   and no downstream token is set, so the backend sees no credential at all; a backend that
//!   answers 401 to that gets its challenge removed (see `filter/`), so the client is never
//!   sent to the backend's own authorization server. Relaying keeps the backend's session:
//!   after the user connects, the retry continues in the same session.
//! - **Requests that need the account** (`tools/call`, `prompts/get`, `resources/read`, and
//!   anything else) get the consent answer:
//!   - 2026-07-28 and later: on `tools/call`, `prompts/get`, `resources/read` only, and only
//!     when the request's `_meta` capabilities declare URL elicitation, an `input_required`
//!     result with a URL elicitation (MCP 2026-07-28, basic/patterns/mrtr: "Servers MUST NOT
//!     send InputRequiredResult responses on any other client requests"; client/elicitation:
//!     "Servers MUST NOT send elicitation requests with modes that are not supported by the
//!     client"). It carries no `requestState`: the filter keeps nothing for the client to echo,
//!     the link's id is in its URL. Every result carries `resultType` (basic/index: "The
//!     result MUST include a resultType field").
//!   - 2025-11-25: the `-32042` URL elicitation required error, only when the session declared
//!     `elicitation.url` at `initialize` (remembered per `Mcp-Session-Id`, the
//!     user's most recent 16).
//!   - Otherwise, a `tools/call` gets a tool result with `isError: true` naming the link (the
//!     model reads it and tells the user); any other request a JSON-RPC error whose message
//!     and `data.connect_uri` carry it.

use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{json, Map, Value};

use crate::host::Host;
use crate::reply::{connect_message, ConnectLink, Deny, Reply};
use crate::secret::{hex, sha256};

/// Largest JSON-RPC request body read (larger ones are judged without it).
pub const MAX_BODY_BYTES: usize = 64 * 1024;

const URL_ELICITATION_SINCE: &str = "2025-11-25";
const INPUT_REQUIRED_SINCE: &str = "2026-07-28";
const CLIENT_CAPABILITIES: &str = "io.modelcontextprotocol/clientCapabilities";
/// JSON-RPC server error (implementation-defined range) for "connect the account first" where
/// no URL elicitation applies: `-32042` is reserved for URL elicitations.
const CONNECT_REQUIRED_CODE: i64 = -32000;

/// Methods that need no provider access: relayed without a credential when the account is
/// missing. `ping` exists up to 2025-11-25, `server/discover` from 2026-07-28.
const RELAYED_METHODS: &[&str] = &[
    "initialize",
    "server/discover",
    "ping",
    "tools/list",
    "prompts/list",
    "resources/list",
    "resources/templates/list",
];

/// Methods on which 2026-07-28 allows an `InputRequiredResult`.
const INPUT_REQUIRED_METHODS: &[&str] = &["tools/call", "prompts/get", "resources/read"];

/// An HTTP request of MCP's Streamable HTTP transport, as its headers show it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct McpRequest {
    pub kind: Kind,
    /// `MCP-Protocol-Version`, when it is a well-formed revision date.
    pub protocol_version: Option<String>,
    /// `Mcp-Method` (2026-07-28).
    pub method_header: Option<String>,
    /// `Mcp-Name` (2026-07-28: the tool, prompt or resource).
    pub name_header: Option<String>,
    /// `Mcp-Session-Id` (up to 2025-11-25).
    pub session: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A JSON-RPC message in a JSON `POST`.
    Message,
    /// The session's server-to-client stream (`GET`) or its end (`DELETE`): no body.
    Session,
}

/// MCP clients POST JSON and accept an event stream; a protocol-version header is proof enough
/// on its own. A `GET` or `DELETE` is MCP's only when it names its session. `header` looks up
/// a request header (lower-case name); only what the method needs is looked up.
pub fn recognise<'a>(method: &str, header: &dyn Fn(&str) -> Option<&'a str>) -> Option<McpRequest> {
    let session = || header("mcp-session-id");
    let streamable = || header("accept").is_some_and(|a| a.contains("text/event-stream"));
    let kind = match method {
        "POST" => {
            let json = header("content-type").is_some_and(|c| {
                c.split(';')
                    .next()
                    .is_some_and(|m| m.trim().eq_ignore_ascii_case("application/json"))
            });
            let versioned = header("mcp-protocol-version").is_some();
            (json && (streamable() || versioned)).then_some(Kind::Message)?
        }
        "GET" if streamable() && session().is_some() => Kind::Session,
        "DELETE" if session().is_some() => Kind::Session,
        _ => return None,
    };
    Some(McpRequest {
        kind,
        protocol_version: header("mcp-protocol-version")
            .filter(|v| is_revision(v))
            .map(str::to_string),
        method_header: header("mcp-method").map(str::to_string),
        name_header: header("mcp-name").map(str::to_string),
        session: session()
            .filter(|s| is_visible_ascii(s))
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

/// Session ids are visible ASCII (Streamable HTTP transport, "Session Management").
fn is_visible_ascii(s: &str) -> bool {
    !s.is_empty() && s.len() <= 256 && s.bytes().all(|b| (0x21..=0x7e).contains(&b))
}

/// One JSON-RPC message read from a request body.
#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    /// The id exactly as the client wrote it (a JSON string or number), echoed byte for byte:
    /// `1.0` or `1e3` must not come back as another number. `None` for notifications.
    pub id: Option<String>,
    /// `None` for the client's responses to server requests.
    pub method: Option<String>,
    /// `params.name` (tools, prompts) or `params.uri` (resources).
    pub name: Option<String>,
    /// Whether the message itself declares URL elicitation: in `initialize`'s capabilities,
    /// or (2026-07-28) in its `_meta` client capabilities.
    pub declares_url_elicitation: bool,
    /// Whether the message lists its client capabilities in `_meta` at all (2026-07-28).
    pub lists_capabilities: bool,
}

#[derive(Deserialize)]
struct Raw {
    jsonrpc: String,
    #[serde(default, deserialize_with = "present")]
    id: Option<Box<RawValue>>,
    #[serde(default)]
    method: Option<String>,
    #[serde(default)]
    params: Option<Map<String, Value>>,
    #[serde(default)]
    result: Option<Value>,
    #[serde(default)]
    error: Option<Value>,
}

/// A member that is present, even as `null` (serde's `Option` would make `null` absent).
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Box<RawValue>>, D::Error> {
    Box::<RawValue>::deserialize(d).map(Some)
}

/// Read one JSON-RPC message; `None` for anything else (batches, other JSON, garbage).
pub fn parse(body: &[u8]) -> Option<Message> {
    let raw: Raw = serde_json::from_slice(body).ok()?;
    if raw.jsonrpc != "2.0" {
        return None;
    }
    let id = match raw.id.as_deref().map(RawValue::get) {
        // A string or a number, kept as written.
        Some(text)
            if text.starts_with(['"', '-']) || text.starts_with(|c: char| c.is_ascii_digit()) =>
        {
            Some(text.to_string())
        }
        None => None,
        // `null` or structured ids are not JSON-RPC 2.0 request ids.
        Some(_) => return None,
    };
    match (&raw.method, &raw.result, &raw.error) {
        (Some(_), None, None) => {}
        // A response to a server request: it has an id and a result or an error.
        (None, Some(_), None) | (None, None, Some(_)) if id.is_some() => {}
        _ => return None,
    }
    let params = raw.params.unwrap_or_default();
    let name = ["name", "uri"]
        .iter()
        .find_map(|k| params.get(*k).and_then(Value::as_str))
        .map(str::to_string);
    let meta_capabilities = params.get("_meta").and_then(|m| m.get(CLIENT_CAPABILITIES));
    let declared = |capabilities: Option<&Value>| {
        capabilities
            .and_then(|c| c.get("elicitation"))
            .and_then(|e| e.get("url"))
            .is_some_and(|u| !u.is_null())
    };
    let declares_url_elicitation = declared(meta_capabilities)
        || (raw.method.as_deref() == Some("initialize") && declared(params.get("capabilities")));
    Some(Message {
        id,
        method: raw.method,
        name,
        declares_url_elicitation,
        lists_capabilities: meta_capabilities.is_some(),
    })
}

/// 2026-07-28 clients name the method (and the tool) in headers as well; an intermediary must
/// refuse a request whose headers and body disagree (transports/streamable-http, "Validation":
/// "Intermediaries MUST return an appropriate HTTP error status"), or a policy reading one and
/// a server reading the other would judge different requests.
pub fn headers_agree(request: &McpRequest, message: &Message) -> bool {
    let method_ok = match (&request.method_header, &message.method) {
        (Some(header), Some(method)) => header == method,
        (Some(_), None) => false,
        (None, _) => true,
    };
    let name_ok = match (&request.name_header, &message.name) {
        // Names that are not safe ASCII travel base64-encoded (`=?base64?...?=`): leave them.
        (Some(header), _) if header.starts_with("=?base64?") => true,
        (Some(header), Some(name)) => header == name,
        (Some(_), None) => false,
        (None, _) => true,
    };
    method_ok && name_ok
}

/// An MCP request the filter is deciding: what its headers and body said.
#[derive(Debug, Clone)]
pub struct InFlight {
    /// Index of the tenant in the configuration.
    pub tenant: usize,
    pub request: McpRequest,
    /// `None` until the body is read, or when it is not one JSON-RPC message.
    pub message: Option<Message>,
    /// Relayed without a credential: the backend's answer must not challenge the client.
    pub relayed: bool,
    /// The user (`sub`) whose URL-capable session this request opens, once it went on.
    pub session_owner: Option<String>,
    /// Sent to the hold route until its body is in.
    pub held: Option<Held>,
    /// Brokered, and possibly an `initialize` (a message outside any session): its body is
    /// read as it passes, for this user (`sub`), so a URL-capable session is remembered even
    /// when it opened while the account was connected.
    pub watched_for: Option<String>,
}

/// A request of a user without the account, waiting on the hold route for its body: what is
/// needed to relay or answer it then.
#[derive(Debug, Clone)]
pub struct Held {
    pub principal: Option<std::rc::Rc<crate::cache::Principal>>,
    /// The refusal as answered (with its connect link): what the consent answer says.
    pub deny: Deny,
    /// The plain HTTP refusal.
    pub fallback: Reply,
    pub session_declared_url: bool,
}

impl InFlight {
    pub fn new(tenant: usize, request: McpRequest) -> Self {
        InFlight {
            tenant,
            request,
            message: None,
            relayed: false,
            session_owner: None,
            held: None,
            watched_for: None,
        }
    }

    /// Whether this request may open a session (only `initialize` comes without one).
    pub fn may_open_session(&self) -> bool {
        self.request.kind == Kind::Message && self.request.session.is_none()
    }
}

impl InFlight {
    /// An `initialize` that declares URL elicitation: its session (from the answer's
    /// `Mcp-Session-Id`) is remembered as able to take `-32042`.
    pub fn opens_url_capable_session(&self) -> bool {
        self.message.as_ref().is_some_and(|m| {
            m.method.as_deref() == Some("initialize") && m.declares_url_elicitation
        })
    }
}

/// How long a session's declared URL elicitation is remembered.
pub const SESSION_TTL_MS: u64 = 24 * 3600 * 1000;
/// Sessions remembered per user: the most recent ones. Shared data has no delete, so one
/// record per user holds them all; an entry per session would let a user grow Envoy's memory
/// by opening sessions. A session beyond these gets the tool error (with the link) instead of
/// `-32042`.
pub const MAX_SESSIONS_PER_USER: usize = 16;
/// One remembered session: its digest and when it lapses.
const SESSION_ENTRY: usize = 16 + 8;

/// Shared-data key of the sessions a user opened that declared URL elicitation: a digest of
/// tenant and user, one key per user whatever number of sessions they open.
pub fn sessions_key(tenant: &str, sub: &str) -> String {
    format!(
        "tvp/v1/mcp-sessions/{}",
        hex(&delimited_digest(&[tenant, sub]))
    )
}

/// A session as remembered: a digest of tenant, user and session id (the id is the backend's
/// bearer-like secret: never stored).
pub fn session_digest(tenant: &str, sub: &str, session: &str) -> [u8; 16] {
    delimited_digest(&[tenant, sub, session])
}

fn delimited_digest(parts: &[&str]) -> [u8; 16] {
    let mut input = Vec::new();
    for part in parts {
        input.extend_from_slice(part.as_bytes());
        input.push(0);
    }
    let mut d = [0u8; 16];
    d.copy_from_slice(&sha256(&input)[..16]);
    d
}

/// The remembered sessions of a record, oldest first: (digest, lapses at).
fn decode_sessions(bytes: &[u8]) -> Vec<([u8; 16], u64)> {
    if bytes.len() % SESSION_ENTRY != 0 {
        return Vec::new();
    }
    bytes
        .chunks_exact(SESSION_ENTRY)
        .filter_map(|c| {
            let digest = c[..16].try_into().ok()?;
            let expires = u64::from_be_bytes(c[16..].try_into().ok()?);
            Some((digest, expires))
        })
        .collect()
}

fn encode_sessions(sessions: &[([u8; 16], u64)]) -> Vec<u8> {
    let mut out = Vec::with_capacity(sessions.len() * SESSION_ENTRY);
    for (digest, expires) in sessions {
        out.extend_from_slice(digest);
        out.extend_from_slice(&expires.to_be_bytes());
    }
    out
}

/// Remember that `session` of `sub` declared URL elicitation: the user's record keeps its
/// live sessions, the most recent [`MAX_SESSIONS_PER_USER`].
pub fn remember_session(host: &dyn Host, tenant: &str, sub: &str, session: &str) {
    let key = sessions_key(tenant, sub);
    let digest = session_digest(tenant, sub, session);
    let now = host.now_ms();
    for _ in 0..4 {
        let (value, cas) = host.shared_get(&key);
        let mut sessions = value.as_deref().map(decode_sessions).unwrap_or_default();
        sessions.retain(|(d, expires)| *d != digest && *expires > now);
        sessions.push((digest, now.saturating_add(SESSION_TTL_MS)));
        let excess = sessions.len().saturating_sub(MAX_SESSIONS_PER_USER);
        sessions.drain(..excess);
        if host.shared_set(&key, &encode_sessions(&sessions), cas) {
            return;
        }
    }
}

/// Whether `session` of `sub` is remembered as having declared URL elicitation.
pub fn session_remembered(host: &dyn Host, tenant: &str, sub: &str, session: &str) -> bool {
    let digest = session_digest(tenant, sub, session);
    let now = host.now_ms();
    host.shared_get(&sessions_key(tenant, sub))
        .0
        .is_some_and(|v| {
            decode_sessions(&v)
                .iter()
                .any(|(d, expires)| *d == digest && *expires > now)
        })
}

/// What the user must do, as the MCP answer says it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectOffer {
    pub connection: String,
    pub message: String,
    pub link: Option<ConnectLink>,
}

impl ConnectOffer {
    /// The offer a "connect your account" refusal makes; `None` for any other refusal.
    pub fn for_refusal(deny: &Deny) -> Option<Self> {
        let Deny::ConnectRequired {
            connection,
            missing_scopes,
            connect,
            ..
        } = deny
        else {
            return None;
        };
        Some(ConnectOffer {
            connection: connection.clone(),
            message: connect_message(connection, missing_scopes),
            link: connect.as_deref().cloned(),
        })
    }
}

/// Whether the headers alone show a request of a user without the account is relayed: the
/// session's stream or end, or (2026-07-28) an `Mcp-Method` naming a lifecycle or listing
/// method or a notification. `false` when the body must be read to know.
pub fn relays_by_headers(request: &McpRequest) -> bool {
    request.kind == Kind::Session
        || request
            .method_header
            .as_deref()
            .is_some_and(|m| RELAYED_METHODS.contains(&m) || m.starts_with("notifications/"))
}

/// Whether a request of a user without the account is relayed without any credential
/// (lifecycle and listing) rather than answered. `message` is its JSON-RPC body (`None` when
/// there is none or it is not one message).
pub fn relays(request: &McpRequest, message: Option<&Message>) -> bool {
    if request.kind == Kind::Session {
        return true;
    }
    match message {
        // The client answering a request of the server's, or a notification: they need
        // nothing of the account and get no answer.
        Some(Message { method: None, .. }) | Some(Message { id: None, .. }) => true,
        Some(Message {
            method: Some(method),
            ..
        }) => RELAYED_METHODS.contains(&method.as_str()),
        None => false,
    }
}

/// The JSON-RPC consent answer to a request that needs the account; `None` when nothing
/// MCP-shaped applies (no single request to answer): the plain HTTP refusal then.
/// `session_declared_url`: the request's session declared URL elicitation at `initialize`.
pub fn answer(
    request: &McpRequest,
    message: Option<&Message>,
    session_declared_url: bool,
    offer: &ConnectOffer,
) -> Option<Reply> {
    let message = message?;
    let method = message.method.as_deref()?;
    let id = message.id.as_ref()?;
    let version = request.protocol_version.as_deref().unwrap_or("");
    let modern = version >= INPUT_REQUIRED_SINCE || message.lists_capabilities;
    let result = match &offer.link {
        Some(link)
            if modern
                && INPUT_REQUIRED_METHODS.contains(&method)
                && message.declares_url_elicitation =>
        {
            json!({"result": input_required(offer, link)})
        }
        Some(link)
            if !modern
                && session_declared_url
                && (URL_ELICITATION_SINCE..INPUT_REQUIRED_SINCE).contains(&version) =>
        {
            json!({"error": url_elicitation_required(offer, link)})
        }
        _ if method == "tools/call" => {
            let mut result = tool_error(offer);
            if modern {
                result["resultType"] = json!("complete");
            }
            json!({ "result": result })
        }
        _ => json!({"error": connect_error(offer)}),
    };
    let mut answer = result;
    answer["jsonrpc"] = json!("2.0");
    Some(Reply::json_with_raw_id(200, &answer, id))
}

/// 2026-07-28 `InputRequiredResult` with one URL elicitation (no `requestState`: nothing to
/// echo; URL-mode params have no `elicitationId` in this revision).
fn input_required(offer: &ConnectOffer, link: &ConnectLink) -> Value {
    json!({
        "resultType": "input_required",
        "inputRequests": {
            format!("connect_{}", offer.connection): {
                "method": "elicitation/create",
                "params": {"mode": "url", "url": link.url, "message": offer.message},
            }
        },
    })
}

/// 2025-11-25 `URLElicitationRequiredError`.
fn url_elicitation_required(offer: &ConnectOffer, link: &ConnectLink) -> Value {
    json!({
        "code": -32042,
        "message": "This request requires more information.",
        "data": {"elicitations": [{
            "mode": "url",
            "elicitationId": link.id,
            "url": link.url,
            "message": offer.message,
        }]},
    })
}

/// A `CallToolResult` the model reads: what is missing and where the user fixes it.
fn tool_error(offer: &ConnectOffer) -> Value {
    let text = match &offer.link {
        Some(link) => format!(
            "{} Ask the user to open {} to connect it, then try again.",
            offer.message, link.url
        ),
        None => format!("{} The user must connect it first.", offer.message),
    };
    json!({"content": [{"type": "text", "text": text}], "isError": true})
}

/// A JSON-RPC error the client shows, with the link to act on.
fn connect_error(offer: &ConnectOffer) -> Value {
    let (text, uri) = match &offer.link {
        Some(link) => (
            format!("{} Connect it at {}", offer.message, link.url),
            json!(link.url),
        ),
        None => (offer.message.clone(), Value::Null),
    };
    json!({
        "code": CONNECT_REQUIRED_CODE,
        "message": text,
        "data": {"error": "connected_account_required", "connection": offer.connection,
                 "connect_uri": uri},
    })
}

#[cfg(test)]
mod tests;
