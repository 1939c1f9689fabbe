//! MCP requests of a user without the account: relayed without any credential (lifecycle and
//! listing) or held for their body and answered in JSON-RPC, as [`crate::mcp`] decides; and
//! the sessions that declared URL elicitation, remembered from their `initialize`.

use std::rc::Rc;

use super::denial;
use super::outcome::{Effect, Next, Outcome};
use super::{Failure, Gateway};
use crate::audit::Decision;
use crate::cache::Principal;
use crate::callout::DependencyFailure;
use crate::config::Config;
use crate::host::Host;
use crate::mcp;
use crate::metrics::Counter;
use crate::reply::Deny;

/// Remove every credential: the agent's token, the client's other credential headers, the
/// refresh-token header and any client-supplied copy of the downstream header.
fn strip_credentials(config: &Config, tenant: usize) -> Vec<Effect> {
    let t = &config.tenants[tenant];
    let mut names = vec!["authorization".to_string()];
    names.extend(config.settings.credential_headers.iter().cloned());
    names.push(t.downstream.header.clone());
    names.extend(t.vault.subject_token_header.iter().cloned());
    names.into_iter().map(Effect::RemoveHeader).collect()
}

/// A body its `content-length` says is too large to read is answered plainly now: held, it
/// would only end in the hold route's 413 (or ours, whichever limit a chunk crosses first).
/// A chunked body has no length yet and is judged by the size that arrives.
fn declared_too_large(head: &super::head::RequestHead) -> bool {
    head.get_str("content-length")
        .and_then(|v| v.trim().parse::<u64>().ok())
        .is_some_and(|n| n > mcp::MAX_BODY_BYTES as u64)
}

impl Gateway {
    /// Finish an MCP request refused because the account is missing. `None` when the request
    /// is not MCP (answered plainly by the caller); otherwise relayed, or sent to the hold
    /// route to have its body read.
    pub(super) fn unconnected(
        &mut self,
        host: &dyn Host,
        ctx: u32,
        tenant: usize,
        deny: &Deny,
        principal: Option<Rc<Principal>>,
    ) -> Option<Outcome> {
        let config = Rc::clone(&self.config);
        let live = self.live.get(&ctx)?;
        let inflight = live.mcp.as_ref()?;
        let t = &config.tenants[tenant];
        // The JSON-RPC body decides (and must agree with the headers); Envoy shows it only to
        // a filter that let the headers go on, so the request waits on the hold route.
        // Without one, only the headers can tell.
        let hold_path = match config.settings.mcp_hold_path.as_deref() {
            Some(path)
                if inflight.request.kind == mcp::Kind::Message
                    && !declared_too_large(&live.head) =>
            {
                path
            }
            _ if mcp::relays_by_headers(&inflight.request) => {
                return Some(self.relay(host, ctx, tenant, principal));
            }
            _ => return None,
        };
        // `/{tenant}/rest` waits on `{hold}/{tenant}/rest`, which leads to the same backend.
        let held_path = live
            .head
            .path()
            .strip_prefix('/')
            .and_then(|p| p.strip_prefix(t.id.as_str()))
            .filter(|rest| rest.starts_with('/'))
            .map(|rest| format!("{hold_path}/{}{rest}", t.id))?;
        let (fallback, answered) = denial::reply_for(
            host,
            &config,
            &live.head,
            Some(tenant),
            deny,
            principal.as_deref(),
        );
        let session_declared_url = match (&inflight.request.session, principal.as_deref()) {
            (Some(session), Some(p)) => {
                mcp::session_remembered(host, &t.id, &p.claims.sub, session)
            }
            _ => false,
        };
        let mut effects = strip_credentials(&config, tenant);
        effects.push(Effect::SetHeader(":path".into(), held_path));
        effects.push(Effect::ClearRouteCache);
        let live = self.live.get_mut(&ctx)?;
        // Held unless the request cannot be rerouted: then it is answered plainly.
        live.if_edits_fail = Some(Failure {
            tenant,
            deny: deny.clone(),
            principal: principal.clone(),
        });
        if let Some(entry) = live.mcp.as_mut() {
            entry.held = Some(mcp::Held {
                principal,
                deny: answered,
                fallback,
                session_declared_url,
            });
        }
        Some(Outcome {
            effects,
            next: Next::Continue,
        })
    }

    /// Send a lifecycle or listing request on with no credential. Fails closed.
    fn relay(
        &mut self,
        host: &dyn Host,
        ctx: u32,
        tenant: usize,
        principal: Option<Rc<Principal>>,
    ) -> Outcome {
        let config = Rc::clone(&self.config);
        let mut effects = strip_credentials(&config, tenant);
        if let Some(live) = self.live.get_mut(&ctx) {
            live.if_edits_fail = Some(Failure {
                tenant,
                deny: Deny::VaultFailed(DependencyFailure::BadAnswer),
                principal: principal.clone(),
            });
        }
        effects.push(self.mark_relayed(host, ctx, tenant, principal.as_deref(), false));
        Outcome {
            effects,
            next: Next::Continue,
        }
    }

    /// Record a relay; remember the user of an `initialize` declaring URL elicitation.
    fn mark_relayed(
        &mut self,
        host: &dyn Host,
        ctx: u32,
        tenant: usize,
        principal: Option<&Principal>,
        opens_session: bool,
    ) -> Effect {
        let t = &self.config.tenants[tenant];
        if let Some(entry) = self.live.get_mut(&ctx).and_then(|l| l.mcp.as_mut()) {
            entry.relayed = true;
            entry.session_owner = principal
                .filter(|_| opens_session)
                .map(|p| p.claims.sub.clone());
        }
        host.count(&t.id, Counter::McpRelayed);
        denial::record(Some(t), principal, Decision::Relay, "connect_required")
    }

    /// A request was brokered: if it may be an `initialize`, watch its body go by.
    pub(super) fn brokered(&mut self, ctx: u32, sub: &str) {
        if let Some(entry) = self.live.get_mut(&ctx).and_then(|l| l.mcp.as_mut()) {
            if entry.may_open_session() {
                entry.watched_for = Some(sub.to_string());
            }
        }
    }

    pub(super) fn is_watched(&self, ctx: u32) -> bool {
        self.live
            .get(&ctx)
            .and_then(|l| l.mcp.as_ref())
            .is_some_and(|e| e.watched_for.is_some())
    }

    pub(super) fn is_held(&self, ctx: u32) -> bool {
        self.live
            .get(&ctx)
            .and_then(|l| l.mcp.as_ref())
            .is_some_and(|e| e.held.is_some())
    }

    /// A watched body is in (or too large to read): an `initialize` declaring URL elicitation
    /// makes its user the owner of the session the answer names.
    pub(super) fn watched_body_in(&mut self, ctx: u32, body: Option<Vec<u8>>) {
        let message = body.and_then(|b| mcp::parse(&b));
        if let Some(entry) = self.live.get_mut(&ctx).and_then(|l| l.mcp.as_mut()) {
            let sub = entry.watched_for.take();
            entry.message = message;
            if entry.opens_url_capable_session() {
                entry.session_owner = sub;
            }
        }
    }

    /// The held request's body is in (`None`: too large to read): relay it or answer it.
    pub(super) fn held_body_in(
        &mut self,
        host: &dyn Host,
        ctx: u32,
        body: Option<Vec<u8>>,
    ) -> Outcome {
        let config = Rc::clone(&self.config);
        let Some(live) = self.live.get_mut(&ctx) else {
            return Outcome::stop();
        };
        let Some(mut entry) = live.mcp.take() else {
            return Outcome::stop();
        };
        let Some(held) = entry.held.take() else {
            return Outcome::stop();
        };
        let tenant = entry.tenant;
        let principal = held.principal.as_deref();
        entry.message = body.and_then(|b| mcp::parse(&b));
        let agree = entry
            .message
            .as_ref()
            .is_none_or(|m| mcp::headers_agree(&entry.request, m));
        if !agree {
            let mismatch = Deny::InvalidRequest("The MCP headers do not match the request body.");
            return denial::refuse(
                host,
                &config,
                &live.head,
                Some(tenant),
                &mismatch,
                principal,
            );
        }
        if mcp::relays(&entry.request, entry.message.as_ref()) {
            // The hold route leads to the tenant's backend: letting it go on relays it, still
            // without any credential.
            let opens_session = entry.opens_url_capable_session();
            live.mcp = Some(entry);
            let principal = held.principal.clone();
            let record = self.mark_relayed(host, ctx, tenant, principal.as_deref(), opens_session);
            return Outcome {
                effects: vec![record],
                next: Next::Continue,
            };
        }
        let record = denial::counted(host, &config, Some(tenant), &held.deny, principal);
        let answer = mcp::ConnectOffer::for_refusal(&held.deny).and_then(|offer| {
            mcp::answer(
                &entry.request,
                entry.message.as_ref(),
                held.session_declared_url,
                &offer,
            )
        });
        let reply = match answer {
            Some(reply) => {
                host.count(&config.tenants[tenant].id, Counter::McpElicitation);
                reply
            }
            None => held.fallback,
        };
        Outcome {
            effects: vec![record, Effect::Reply(reply)],
            next: Next::Stop,
        }
    }

    /// The backend answered an MCP request: remember a URL-capable session; keep a relayed
    /// request's answer from challenging the client (a 401 there is about the missing
    /// downstream credential, which no new agent token fixes; the backend's challenge would
    /// send the client to the backend's own authorization server).
    pub(super) fn mcp_answered(
        &mut self,
        host: &dyn Host,
        ctx: u32,
        status: &dyn Fn() -> Option<u16>,
        header: &dyn Fn(&str) -> Option<String>,
    ) -> Vec<Effect> {
        let Some(entry) = self.live.get(&ctx).and_then(|l| l.mcp.as_ref()) else {
            return Vec::new();
        };
        let mut effects = Vec::new();
        if entry.relayed {
            effects.push(Effect::RemoveResponseHeader("www-authenticate".into()));
            if status() == Some(401) {
                effects.push(Effect::SetResponseHeader(":status".into(), "403".into()));
            }
        }
        let owner = entry
            .session_owner
            .as_ref()
            .zip(self.config.tenants.get(entry.tenant));
        if let (Some((sub, t)), Some(session)) = (owner, header("mcp-session-id")) {
            mcp::remember_session(host, &t.id, sub, &session);
        }
        effects
    }
}
