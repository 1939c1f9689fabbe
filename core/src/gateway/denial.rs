//! Refusals as a client receives them: the challenge naming the metadata of the resource the
//! request was for and the scopes to ask for, the link where a user connects a missing account,
//! the counter and the decision record.

use super::outcome::{Effect, Outcome};
use super::public_url::public_base;
use super::RequestHead;
use crate::audit::{self, Decision};
use crate::cache::Principal;
use crate::config::{Config, Tenant};
use crate::connect;
use crate::endpoints;
use crate::host::Host;
use crate::metrics::Counter;
use crate::reply::{deny_reply, ConnectLink, Deny, Realm, Reply};

/// The realm of refusals that belong to no tenant.
pub const FILTER_REALM: &str = "token-vault-proxy";

/// The decision record effect. Every allowed request of one token has the same record: it is
/// built once and kept with the token's principal.
pub fn record(
    tenant: Option<&Tenant>,
    principal: Option<&Principal>,
    decision: Decision,
    reason: &str,
) -> Effect {
    let text = match (decision, principal) {
        (Decision::Allow, Some(p)) => p
            .allow_record
            .get_or_init(|| audit::record(tenant, Some(p), decision, reason).into())
            .clone(),
        _ => audit::record(tenant, principal, decision, reason).into(),
    };
    Effect::Record(text)
}

/// Count a refusal and make its record.
pub fn counted(
    host: &dyn Host,
    config: &Config,
    tenant: Option<usize>,
    deny: &Deny,
    principal: Option<&Principal>,
) -> Effect {
    let tenant_id = tenant.map_or(FILTER_REALM, |i| config.tenants[i].id.as_str());
    host.count(tenant_id, Counter::Deny(deny.metric()));
    record(
        tenant.map(|i| &config.tenants[i]),
        principal,
        Decision::Deny,
        deny.code(),
    )
}

/// A refusal, answered: counted, recorded, and the reply.
pub fn refuse(
    host: &dyn Host,
    config: &Config,
    head: &RequestHead,
    tenant: Option<usize>,
    deny: &Deny,
    principal: Option<&Principal>,
) -> Outcome {
    let recorded = counted(host, config, tenant, deny, principal);
    let (reply, _) = reply_for(host, config, head, tenant, deny, principal);
    Outcome {
        effects: vec![recorded, Effect::Reply(reply)],
        next: super::Next::Stop,
    }
}

/// The HTTP answer to a refusal, and the refusal as answered (with its connect link, if one
/// was made). Challenges name the metadata of the resource covering the requested path when
/// the public URL is known, and the scopes to ask for (MCP authorization: "SHOULD include
/// scope" on 401).
pub fn reply_for(
    host: &dyn Host,
    config: &Config,
    head: &RequestHead,
    tenant: Option<usize>,
    deny: &Deny,
    principal: Option<&Principal>,
) -> (Reply, Deny) {
    let tenant_id = tenant.map_or(FILTER_REALM, |i| config.tenants[i].id.as_str());
    let origin = public_base(&config.settings, head);
    let metadata = tenant.and_then(|i| {
        let path = head.path().split(['?', '#']).next().unwrap_or("");
        endpoints::covering_resource(&config.tenants[i], origin.as_deref(), path)
            .map(endpoints::metadata_url)
    });
    let scope = tenant
        .map(|i| endpoints::challenge_scope(&config.tenants[i], head.method(), metadata.is_some()));
    let realm = Realm {
        name: tenant_id,
        resource_metadata: metadata.as_deref(),
        scope: scope.as_deref(),
    };
    let deny = match (deny, tenant, principal, origin) {
        (Deny::ConnectRequired { .. }, Some(i), Some(p), Some(base)) => {
            with_connect_link(config, i, deny, p, &base, host.now_ms())
        }
        _ => deny.clone(),
    };
    (deny_reply(&deny, &realm), deny)
}

/// A "connect your account" refusal with the link where the user does so, when the filter
/// runs the Connected Accounts flow for the tenant.
fn with_connect_link(
    config: &Config,
    tenant: usize,
    deny: &Deny,
    principal: &Principal,
    base: &str,
    now_ms: u64,
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
        Some(keys),
    ) = (&mut deny, &t.connect, &config.settings.sealing_keys)
    {
        let user = connect_config.user_of(&principal.claims);
        *connect = connect::link_for(t, user, interaction_uri.as_deref())
            .and_then(|user| {
                connect::offer(
                    keys,
                    t,
                    base,
                    user,
                    &principal.downstream_key,
                    interaction_uri.as_deref(),
                    now_ms,
                )
            })
            .map(|(id, url)| Box::new(ConnectLink { id, url }));
    }
    deny
}
