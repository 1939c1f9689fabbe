//! `tvp`: one source of truth for deploying token-vault-proxy. The tenants file (the filter's
//! plugin configuration) is validated by the filter's own code and rendered, with a small
//! deployment description, into an Envoy bootstrap, Istio resources or the docker-compose
//! demo's Envoy configuration.

pub mod doc;
pub mod tenants;
pub mod upstream;
