//! MCP requests of a user without the account: relayed without any credential (lifecycle and
//! listing) or answered in JSON-RPC, as [`crate::mcp`] decides.

use std::cell::RefCell;
use std::rc::Rc;

use log::warn;

use super::http::{audit, denial_reply, record_denial};
use crate::audit::Decision;
use crate::cache::Principal;
use crate::config::Config;
use crate::flow::{Host, Worker};
use crate::host::{self, ProxyWasmHost};
use crate::mcp;
use crate::reply::Deny;

/// Finish an MCP request refused because the account is missing. `None` when the request is
/// not MCP (the caller answers it plainly); otherwise whether it continues down the chain
/// (relayed, or sent to the hold route to have its body read).
pub(super) fn unconnected(
    worker: &Rc<RefCell<Worker>>,
    config: &Config,
    context_id: u32,
    tenant: usize,
    deny: &Deny,
    principal: Option<Rc<Principal>>,
) -> Option<bool> {
    let inflight = worker.borrow().mcp.get(&context_id).cloned()?;
    let t = &config.tenants[tenant];
    // The JSON-RPC body decides (and must agree with the headers); Envoy shows it only to a
    // filter that let the headers go on, so the request waits on the hold route. Without
    // one, only the headers can tell.
    let hold_path = match config.settings.mcp_hold_path.as_deref() {
        Some(path) if inflight.request.kind == mcp::Kind::Message => path,
        _ if mcp::relays_by_headers(&inflight.request) => {
            let principal = principal.as_deref();
            return Some(relay(worker, config, context_id, tenant, principal));
        }
        _ => return None,
    };
    let (fallback, answered) = denial_reply(config, Some(tenant), deny, principal.as_deref());
    // `/{tenant}/rest` waits on `{hold}/{tenant}/rest`, which leads to the same backend.
    let path = host::request_header(":path").unwrap_or_default();
    let held_path = path
        .strip_prefix('/')
        .and_then(|p| p.strip_prefix(t.id.as_str()))
        .filter(|rest| rest.starts_with('/'))
        .map(|rest| format!("{hold_path}/{}{rest}", t.id))?;
    if !strip_credentials(t)
        || !host::set_request_header(":path", &held_path)
        || !host::clear_route_cache()
    {
        warn!(
            "#{context_id} tenant={} could not hold an MCP request for its body",
            t.id
        );
        return None;
    }
    let session_declared_url = match (&inflight.request.session, principal.as_deref()) {
        (Some(session), Some(p)) => {
            mcp::session_remembered(&ProxyWasmHost, &t.id, &p.claims.sub, session)
        }
        _ => false,
    };
    let held = mcp::Held {
        principal,
        deny: answered,
        fallback,
        session_declared_url,
    };
    if let Some(entry) = worker.borrow_mut().mcp.get_mut(&context_id) {
        entry.held = Some(held);
    }
    Some(true)
}

/// A request was brokered: if it may be an `initialize`, watch its body go by.
pub(super) fn brokered(worker: &Rc<RefCell<Worker>>, context_id: u32, sub: &str) {
    if let Some(entry) = worker.borrow_mut().mcp.get_mut(&context_id) {
        if entry.may_open_session() {
            entry.watched_for = Some(sub.to_string());
        }
    }
}

/// Whether a brokered request's body is being watched.
pub(super) fn is_watched(worker: &Rc<RefCell<Worker>>, context_id: u32) -> bool {
    worker
        .borrow()
        .mcp
        .get(&context_id)
        .is_some_and(|e| e.watched_for.is_some())
}

/// A watched body is in (or too large to read): an `initialize` declaring URL elicitation
/// makes its user the owner of the session the answer names.
pub(super) fn watched_body_in(worker: &Rc<RefCell<Worker>>, context_id: u32, size: usize) {
    let message = (size <= mcp::MAX_BODY_BYTES)
        .then(|| mcp::parse(&host::request_body(size)))
        .flatten();
    if let Some(entry) = worker.borrow_mut().mcp.get_mut(&context_id) {
        let sub = entry.watched_for.take();
        entry.message = message;
        if entry.opens_url_capable_session() {
            entry.session_owner = sub;
        }
    }
}

/// Whether the request is on the hold route, its body awaited.
pub(super) fn is_held(worker: &Rc<RefCell<Worker>>, context_id: u32) -> bool {
    worker
        .borrow()
        .mcp
        .get(&context_id)
        .is_some_and(|e| e.held.is_some())
}

/// The held request's body is in (or too large to read): relay it or answer it. True when it
/// continues down the chain.
pub(super) fn held_body_in(worker: &Rc<RefCell<Worker>>, context_id: u32, size: usize) -> bool {
    let Some(mut entry) = worker.borrow_mut().mcp.remove(&context_id) else {
        return false;
    };
    let Some(held) = entry.held.take() else {
        return false;
    };
    let config = Rc::clone(&worker.borrow().config);
    let tenant = entry.tenant;
    let t = &config.tenants[tenant];
    let principal = held.principal.as_deref();
    entry.message = (size <= mcp::MAX_BODY_BYTES)
        .then(|| mcp::parse(&host::request_body(size)))
        .flatten();
    let agree = entry
        .message
        .as_ref()
        .is_none_or(|m| mcp::headers_agree(&entry.request, m));
    if !agree {
        let mismatch = Deny::InvalidRequest("The MCP headers do not match the request body.");
        super::http::send_denial(&config, context_id, Some(tenant), &mismatch, principal);
        return false;
    }
    if mcp::relays(&entry.request, entry.message.as_ref()) {
        // The hold route leads to the tenant's backend: letting it go on relays it, still
        // without any credential.
        let opens_session = entry.opens_url_capable_session();
        worker.borrow_mut().mcp.insert(context_id, entry);
        mark_relayed(
            worker,
            &config,
            context_id,
            tenant,
            principal,
            opens_session,
        );
        return true;
    }
    record_denial(&config, context_id, Some(tenant), &held.deny, principal);
    let answer = mcp::ConnectOffer::for_refusal(&held.deny).and_then(|offer| {
        mcp::answer(
            &entry.request,
            entry.message.as_ref(),
            held.session_declared_url,
            &offer,
        )
    });
    match answer {
        Some(reply) => {
            ProxyWasmHost.count(&t.id, "mcp.elicitation");
            host::send_reply(&reply);
        }
        None => {
            host::send_reply(&held.fallback);
        }
    }
    false
}

/// Remove every credential: the agent's token, the refresh-token header and any
/// client-supplied copy of the downstream header.
fn strip_credentials(t: &crate::config::Tenant) -> bool {
    let mut stripped = host::remove_request_header("authorization");
    for h in crate::auth::OTHER_CREDENTIAL_HEADERS {
        stripped &= host::remove_request_header(h);
    }
    stripped &= host::remove_request_header(&t.downstream.header);
    if let Some(h) = &t.vault.subject_token_header {
        stripped &= host::remove_request_header(h);
    }
    stripped
}

/// Send a lifecycle or listing request on with no credential. Fails closed.
fn relay(
    worker: &Rc<RefCell<Worker>>,
    config: &Config,
    context_id: u32,
    tenant: usize,
    principal: Option<&Principal>,
) -> bool {
    let t = &config.tenants[tenant];
    if !strip_credentials(t) {
        warn!(
            "#{context_id} tenant={} could not strip credentials to relay an MCP request",
            t.id
        );
        let failure = Deny::VaultFailed(crate::callout::DependencyFailure::BadAnswer);
        super::http::send_denial(config, context_id, Some(tenant), &failure, principal);
        return false;
    }
    mark_relayed(worker, config, context_id, tenant, principal, false);
    true
}

/// Record a relay; remember the user of an `initialize` declaring URL elicitation.
fn mark_relayed(
    worker: &Rc<RefCell<Worker>>,
    config: &Config,
    context_id: u32,
    tenant: usize,
    principal: Option<&Principal>,
    opens_session: bool,
) {
    let t = &config.tenants[tenant];
    if let Some(entry) = worker.borrow_mut().mcp.get_mut(&context_id) {
        entry.relayed = true;
        entry.session_owner = principal
            .filter(|_| opens_session)
            .map(|p| p.claims.sub.clone());
    }
    ProxyWasmHost.count(&t.id, "mcp.relayed");
    audit(
        context_id,
        Some(t),
        principal,
        Decision::Relay,
        "connect_required",
    );
}

/// The backend answered an MCP request: remember a URL-capable session; keep a relayed
/// request's answer from challenging the client (a 401 there is about the missing
/// downstream credential, which no new agent token fixes; the backend's challenge would send
/// the client to the backend's own authorization server).
pub(super) fn answered(worker: &Rc<RefCell<Worker>>, context_id: u32) {
    let (relayed, owner) = {
        let w = worker.borrow();
        let Some(entry) = w.mcp.get(&context_id) else {
            return;
        };
        let owner = entry
            .session_owner
            .as_ref()
            .zip(w.config.tenants.get(entry.tenant))
            .map(|(sub, t)| (t.id.clone(), sub.clone()));
        (entry.relayed, owner)
    };
    if relayed {
        host::remove_response_header("www-authenticate");
        if host::response_status() == Some(401) {
            host::set_response_header(":status", "403");
        }
    }
    if let (Some((tenant, sub)), Some(session)) = (owner, host::response_header("mcp-session-id")) {
        mcp::remember_session(&ProxyWasmHost, &tenant, &sub, &session);
    }
}
