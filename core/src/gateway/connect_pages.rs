//! The connect pages of a request: run the sans-IO flow of [`crate::connect`], make its
//! call-outs and answer with its pages.

use log::{info, warn};

use super::outcome::Outcome;
use super::{Gateway, Live};
use crate::callout::CalloutResponse;
use crate::config::Config;
use crate::connect;
use crate::host::Host;
use crate::urlencoded;

/// A connect page's inputs, kept while its call-out is awaited.
pub(super) struct ConnectInput {
    tenant: usize,
    base: String,
    page: String,
    query: String,
}

/// A connect page waiting for its call-out.
pub(super) struct ConnectCall {
    pub(super) token: u32,
    input: ConnectInput,
    pending: Box<connect::Pending>,
}

impl Gateway {
    /// `GET|POST /connect/{tenant}{page}`.
    pub(super) fn connect_page(
        &mut self,
        host: &dyn Host,
        ctx: u32,
        tenant: usize,
        page: &str,
    ) -> Outcome {
        let config = std::rc::Rc::clone(&self.config);
        let Some(live) = self.live.get(&ctx) else {
            return Outcome::stop();
        };
        let base = super::public_url::public_base(&config.settings, &live.head);
        let (Some(base), Some(_)) = (base, &config.tenants[tenant].connect) else {
            return Outcome::reply(connect::pages::failed(
                404,
                "Not found",
                "This gateway does not connect accounts for this tenant.",
            ));
        };
        let input = ConnectInput {
            tenant,
            base,
            page: page.to_string(),
            query: urlencoded::query_of(live.head.path()).to_string(),
        };
        let outcome = {
            let Some(cx) = context(host, &config, &input) else {
                return Outcome::stop();
            };
            let cookies = live.head.all("cookie");
            let incoming = connect::Incoming {
                method: live.head.method(),
                page: &input.page,
                query: &input.query,
                cookies: &cookies,
                fetch_site: live.head.get_str("sec-fetch-site"),
                origin: live.head.get_str("origin"),
            };
            connect::handle(&cx, &incoming)
        };
        self.connect_step(host, ctx, input, outcome)
    }

    /// Answer with the flow's page, or make its call-out.
    fn connect_step(
        &mut self,
        host: &dyn Host,
        ctx: u32,
        input: ConnectInput,
        outcome: connect::Outcome,
    ) -> Outcome {
        let config = std::rc::Rc::clone(&self.config);
        match outcome {
            connect::Outcome::Reply(reply) => {
                // The page and status only: the query carries codes and state.
                let method = self.live.get(&ctx).map_or("", |l| l.head.method());
                info!(
                    "#{ctx} tenant={} connect {method} {} -> {}",
                    config.tenants[input.tenant].id, input.page, reply.status
                );
                Outcome::reply(reply)
            }
            connect::Outcome::Call(request, pending) => {
                match host.dispatch(ctx, &request, config.settings.callout_timeout_ms) {
                    Some(token) => {
                        if let Some(live) = self.live.get_mut(&ctx) {
                            live.connect_call = Some(ConnectCall {
                                token,
                                input,
                                pending,
                            });
                        }
                        Outcome::stop()
                    }
                    None => {
                        warn!(
                            "#{ctx} connect call-out to cluster '{}' failed to start",
                            request.cluster
                        );
                        Outcome::reply(connect::pages::failed(
                            503,
                            "Something went wrong",
                            "The identity provider could not be reached. Please try again later.",
                        ))
                    }
                }
            }
        }
    }

    /// The answer to a connect page's call-out, if `token` is the call-out of `ctx`'s page.
    pub(super) fn connect_answered(
        &mut self,
        host: &dyn Host,
        ctx: u32,
        token: u32,
        response: &CalloutResponse,
    ) -> Option<Outcome> {
        let live: &mut Live = self.live.get_mut(&ctx)?;
        if live.connect_call.as_ref()?.token != token {
            return None;
        }
        let call = live.connect_call.take()?;
        let config = std::rc::Rc::clone(&self.config);
        let Some(cx) = context(host, &config, &call.input) else {
            return Some(Outcome::stop());
        };
        let index = call.input.tenant;
        let worker = &mut self.worker;
        let mut verify = |id_token: &str, org_keys: Option<&[u8]>| {
            worker.verify_id_token(host, index, id_token, org_keys)
        };
        let outcome = connect::resume(&cx, *call.pending, response, &mut verify);
        Some(self.connect_step(host, ctx, call.input, outcome))
    }
}

/// The flow's context for a tenant with connect pages (configuration guarantees the sealing
/// keys wherever there are some).
fn context<'a>(
    host: &'a dyn Host,
    config: &'a Config,
    input: &'a ConnectInput,
) -> Option<connect::Ctx<'a>> {
    let tenant = &config.tenants[input.tenant];
    Some(connect::Ctx {
        host,
        tenant,
        connect: tenant.connect.as_ref()?,
        keys: config.settings.sealing_keys.as_ref()?,
        base: &input.base,
        allow_insecure_cookies: config.settings.allow_insecure_connect_cookies,
        now_ms: host.now_ms(),
    })
}
