//! tvp-core: every decision of token-vault-proxy, with no proxy-wasm dependency. It validates an
//! AI agent's bearer JWT per tenant, enforces scopes by method, exchanges it at the Auth0 Token
//! Vault or Okta for the user's downstream token, runs the Connected Accounts flow and answers
//! MCP clients. Hosts (the proxy-wasm filter) read requests, call in here and apply the result.

#![forbid(unsafe_code)]

pub mod audit;
pub mod auth;
pub mod cache;
pub mod callout;
pub mod config;
pub mod connect;
pub mod crypto;
pub mod endpoints;
pub mod flow;
pub mod gateway;
pub mod generation;
pub mod host;
pub mod jose;
pub mod jwks;
pub mod jwt;
pub mod mcp;
pub mod metrics;
pub mod policy;
pub mod reply;
pub mod secret;
pub mod urlencoded;
pub mod vault;
pub mod wake_list;

#[cfg(test)]
mod testing;
