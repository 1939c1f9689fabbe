//! An Okta STS tenant's connect pages: the link leads to a sign-in at the Okta org (OIDC,
//! authorization code + PKCE), and only once the signed-in user is the link's user does the
//! browser go on to Okta's own consent page, the `interaction_uri` the link remembers
//! (MCP URL elicitation: the connect route confirms the browser user is the elicitation's).

use base64::engine::general_purpose::STANDARD;
use base64::Engine;

use super::{expired, login_callback, not_found, redirect, starter, Ctx};
use super::{Incoming, Outcome, Starter};
use crate::config::ConnectConfig;
use crate::metrics::Counter;
use crate::urlencoded;

/// The org authorization server's authorization endpoint, under the org's base URL
/// (https://developer.okta.com/docs/guides/implement-grant-type/authcodepkce/main/).
pub const AUTHORIZE_PATH: &str = "/oauth2/v1/authorize";

pub fn handle(ctx: &Ctx<'_>, inc: &Incoming<'_>) -> Outcome {
    match (inc.method, inc.page) {
        ("GET", "/start") if urlencoded::param(inc.query, "id").is_some() => interact(ctx, inc),
        ("GET", "/login/callback") => login_callback(ctx, inc),
        // No accounts page: Okta keeps the user's consents itself.
        _ => not_found(),
    }
}

/// The link's user is signed in: send the browser on to Okta's consent. The link stays valid
/// until it expires, but only for its own user: a replay can only show that user Okta's
/// consent again.
fn interact(ctx: &Ctx<'_>, inc: &Incoming<'_>) -> Outcome {
    let Starter { link, .. } = match starter(ctx, inc) {
        Ok(s) => s,
        Err(outcome) => return *outcome,
    };
    let Some(link) = link else {
        return expired();
    };
    let Some(uri) = link
        .interaction_uri
        .filter(|u| u.starts_with(&format!("{}/", ctx.connect.login_url)))
    else {
        return expired();
    };
    // The filter cannot see the consent finish: the agent's next request asks Okta again
    // instead of the cached "not connected".
    crate::flow::evict_downstream(ctx.host, &link.downstream_key);
    ctx.count(Counter::ConnectOktaInteraction);
    redirect(&uri, Vec::new())
}

/// `client_secret_basic`, the default of an Okta web app's token endpoint authentication
/// (both parts form-encoded first, RFC 6749 section 2.3.1).
pub fn basic_auth(connect: &ConnectConfig) -> String {
    let pair = format!(
        "{}:{}",
        urlencoded::encode(&connect.client_id),
        urlencoded::encode(connect.client_secret.expose())
    );
    format!("Basic {}", STANDARD.encode(pair))
}
