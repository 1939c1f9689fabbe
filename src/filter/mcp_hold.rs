//! MCP requests refused for a missing account: held on the hold route until their body (the
//! JSON-RPC id) is in, then answered in JSON-RPC (see [`crate::mcp`]).

use std::cell::RefCell;
use std::rc::Rc;

use log::warn;

use super::http::{denial_reply, record_denial, Request};
use crate::cache::Principal;
use crate::config::Config;
use crate::flow::{Host, Worker};
use crate::host::{self, ProxyWasmHost};
use crate::mcp;
use crate::reply::{connect_message, Deny};

/// Send an MCP request refused for a missing account to the hold route, credentials removed,
/// to answer it in JSON-RPC once its body is in. False when it cannot be held (the caller
/// answers it plainly).
pub(super) fn hold_for_elicitation(
    worker: &Rc<RefCell<Worker>>,
    config: &Config,
    context_id: u32,
    tenant: usize,
    deny: &Deny,
    principal: Option<&Principal>,
    request: mcp::McpRequest,
) -> bool {
    let Some(hold_path) = &config.settings.mcp_hold_path else {
        return false;
    };
    let (fallback, answered) = denial_reply(config, Some(tenant), deny, principal);
    let Deny::ConnectRequired {
        connection,
        connect,
        missing_scopes,
        ..
    } = answered
    else {
        return false;
    };
    let t = &config.tenants[tenant];
    let mut held = host::remove_request_header("authorization");
    if let Some(h) = &t.vault.subject_token_header {
        held &= host::remove_request_header(h);
    }
    // Nothing of the original request may reach a backend: its path becomes the hold route's.
    held = held && host::set_request_header(":path", hold_path) && host::clear_route_cache();
    if !held {
        warn!(
            "#{context_id} tenant={} could not hold an MCP request for its body",
            t.id
        );
        return false;
    }
    record_denial(config, context_id, Some(tenant), deny, principal);
    let offer = mcp::ConnectOffer {
        message: connect_message(&connection, &missing_scopes),
        connection,
        link: connect.map(|l| *l),
    };
    worker.borrow_mut().mcp.insert(
        context_id,
        mcp::McpState::Held {
            tenant,
            request,
            offer,
            fallback,
        },
    );
    true
}

impl Request {
    pub(super) fn is_held(&self) -> bool {
        self.worker.as_ref().is_some_and(|w| {
            matches!(
                w.borrow().mcp.get(&self.id),
                Some(mcp::McpState::Held { .. })
            )
        })
    }

    /// The held MCP request's body is in (or too large): answer it.
    pub(super) fn answer_held(&mut self, size: usize) {
        let Some(worker) = &self.worker else { return };
        let state = worker.borrow_mut().mcp.remove(&self.id);
        let Some(mcp::McpState::Held {
            tenant,
            request,
            offer,
            fallback,
        }) = state
        else {
            return;
        };
        let answer = (size <= mcp::MAX_BODY_BYTES)
            .then(|| mcp::elicitation(&host::request_body(size), &request, &offer))
            .flatten();
        match answer {
            Some(reply) => {
                let config = Rc::clone(&worker.borrow().config);
                ProxyWasmHost.count(&config.tenants[tenant].id, "mcp.elicitation");
                host::send_reply(&reply);
            }
            None => {
                host::send_reply(&fallback);
            }
        }
    }
}
