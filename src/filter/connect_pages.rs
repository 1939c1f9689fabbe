//! The connect pages inside an HTTP context: read the browser request, run the sans-IO
//! flow of [`crate::connect`], make its call-outs and send its pages.

use std::cell::RefCell;
use std::rc::Rc;

use log::{info, warn};
use proxy_wasm::types::Action;

use super::http::{public_base, Request};
use crate::cache::Principal;
use crate::config::Config;
use crate::connect;
use crate::flow::{Host, Worker};
use crate::host::{self, ProxyWasmHost};
use crate::reply::{ConnectLink, Deny};

/// A connect page's inputs, kept while its call-out is awaited.
pub(super) struct ConnectInput {
    tenant: usize,
    base: String,
    method: String,
    page: String,
    query: String,
    cookies: Vec<Vec<u8>>,
    fetch_site: Option<String>,
    origin: Option<String>,
}

pub(super) struct ConnectCall {
    input: ConnectInput,
    pending: Box<connect::Pending>,
}

impl Request {
    #[allow(clippy::too_many_arguments)]
    pub(super) fn connect_page(
        &mut self,
        worker: &Rc<RefCell<Worker>>,
        config: &Config,
        tenant_id: &str,
        page: &str,
        method: &str,
        path: &str,
        headers: &host::RequestHeaders,
    ) -> Action {
        let Some(tenant) = config.tenants.iter().position(|t| t.id == tenant_id) else {
            return self.deny(None, &Deny::UnknownTenant);
        };
        let base = public_base(config);
        let (Some(base), Some(_)) = (base, &config.tenants[tenant].connect) else {
            return self.reply(&connect::pages::failed(
                404,
                "Not found",
                "This gateway does not connect accounts for this tenant.",
            ));
        };
        let input = ConnectInput {
            tenant,
            base,
            method: method.to_string(),
            page: page.to_string(),
            query: connect::form::query_of(path).to_string(),
            cookies: headers
                .all("cookie")
                .into_iter()
                .map(<[u8]>::to_vec)
                .collect(),
            fetch_site: headers.get("sec-fetch-site"),
            origin: headers.get("origin"),
        };
        self.run_connect(worker, input)
    }

    fn run_connect(&mut self, worker: &Rc<RefCell<Worker>>, input: ConnectInput) -> Action {
        let config = Rc::clone(&worker.borrow().config);
        let tenant = &config.tenants[input.tenant];
        let Some(connect_config) = &tenant.connect else {
            return Action::Pause;
        };
        // Configuration guarantees the keys wherever there are connect pages.
        let Some(keys) = &config.settings.sealing_keys else {
            return Action::Pause;
        };
        let ctx = connect::Ctx {
            host: &ProxyWasmHost,
            tenant,
            connect: connect_config,
            keys,
            base: &input.base,
            allow_insecure_cookies: config.settings.allow_insecure_connect_cookies,
            now_ms: ProxyWasmHost.now_ms(),
        };
        let cookies: Vec<&[u8]> = input.cookies.iter().map(Vec::as_slice).collect();
        let incoming = connect::Incoming {
            method: &input.method,
            page: &input.page,
            query: &input.query,
            cookies: &cookies,
            fetch_site: input.fetch_site.as_deref(),
            origin: input.origin.as_deref(),
        };
        let outcome = connect::handle(&ctx, &incoming);
        self.apply_connect(&config, input, outcome);
        Action::Pause
    }

    fn apply_connect(&mut self, config: &Config, input: ConnectInput, outcome: connect::Outcome) {
        match outcome {
            connect::Outcome::Reply(reply) => {
                // The page and status only: the query carries codes and state.
                info!(
                    "#{} tenant={} connect {} {} -> {}",
                    self.id,
                    config.tenants[input.tenant].id,
                    input.method,
                    input.page,
                    reply.status
                );
                host::send_reply(&reply);
            }
            connect::Outcome::Call(request, pending) => {
                match host::dispatch(&request, config.settings.callout_timeout_ms) {
                    Ok(token) => self.connect_call = Some((token, ConnectCall { input, pending })),
                    Err(status) => {
                        warn!(
                            "#{} connect call-out to cluster '{}' failed to start: {status:?}",
                            self.id, request.cluster
                        );
                        host::send_reply(&connect::pages::failed(
                            503,
                            "Something went wrong",
                            "The identity provider could not be reached. Please try again later.",
                        ));
                    }
                }
            }
        }
    }

    /// The answer to a connect page's call-out.
    pub(super) fn connect_answered(
        &mut self,
        worker: &Rc<RefCell<Worker>>,
        call: ConnectCall,
        body_size: usize,
    ) {
        let config = Rc::clone(&worker.borrow().config);
        let response =
            host::callout_response(body_size, config.settings.max_callout_response_bytes);
        let tenant = &config.tenants[call.input.tenant];
        let (Some(connect_config), Some(keys)) = (&tenant.connect, &config.settings.sealing_keys)
        else {
            return;
        };
        let ctx = connect::Ctx {
            host: &ProxyWasmHost,
            tenant,
            connect: connect_config,
            keys,
            base: &call.input.base,
            allow_insecure_cookies: config.settings.allow_insecure_connect_cookies,
            now_ms: ProxyWasmHost.now_ms(),
        };
        let index = call.input.tenant;
        let mut verify = |id_token: &str, org_keys: Option<&[u8]>| {
            worker
                .borrow_mut()
                .verify_id_token(&ProxyWasmHost, index, id_token, org_keys)
        };
        let outcome = connect::resume(&ctx, *call.pending, &response, &mut verify);
        self.apply_connect(&config, call.input, outcome);
    }
}

/// A "connect your account" refusal with the link where the user does so, when the filter
/// runs the Connected Accounts flow for the tenant.
pub(super) fn with_connect_link(
    config: &Config,
    tenant: usize,
    deny: &Deny,
    principal: &Principal,
) -> Deny {
    let mut deny = deny.clone();
    let t = &config.tenants[tenant];
    if let (
        Deny::ConnectRequired {
            connect: connect @ None,
            interaction_uri,
            ..
        },
        Some(connect_config),
        Some(base),
        Some(keys),
    ) = (
        &mut deny,
        &t.connect,
        public_base(config),
        &config.settings.sealing_keys,
    ) {
        let user = connect_config.user_of(&principal.claims);
        *connect = connect::link_for(t, user, interaction_uri.as_deref())
            .and_then(|user| {
                connect::offer(
                    keys,
                    t,
                    &base,
                    user,
                    &principal.downstream_key,
                    interaction_uri.as_deref(),
                    ProxyWasmHost.now_ms(),
                )
            })
            .map(|(id, url)| Box::new(ConnectLink { id, url }));
    }
    deny
}
