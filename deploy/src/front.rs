//! `tvp render front`: the Envoy in front of the gateway's replicas. Round robin spreads load;
//! `balance=credential` hashes the agent's `Authorization` (Envoy's ring hash), so one agent
//! credential reaches one replica: its downstream token is exchanged and cached once instead
//! of once per replica, and an MCP session stays with the replica that knows it. A replica
//! that goes away moves only its share of the credentials (consistent hashing).

use std::fmt::Write as _;

/// How the front spreads requests over the replicas.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Balance {
    RoundRobin,
    ByCredential,
}

/// What the front needs: where it listens, and the replicas.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Front {
    pub listen_address: String,
    pub listen_port: u16,
    pub admin_port: u16,
    /// `host:port` of each replica's listener.
    pub replicas: Vec<(String, u16)>,
    pub balance: Balance,
}

impl Front {
    /// From `--set KEY=VALUE` pairs: `replicas=HOST:PORT,...` (required), `balance=round-robin|
    /// credential` (default credential), `listen_address`, `listen_port` (3000), `admin_port`
    /// (9902).
    pub fn from_sets(sets: &[String]) -> Result<Front, String> {
        let mut front = Front {
            listen_address: "0.0.0.0".into(),
            listen_port: 3000,
            admin_port: 9902,
            replicas: Vec::new(),
            balance: Balance::ByCredential,
        };
        for set in sets {
            let (key, value) = set
                .split_once('=')
                .ok_or_else(|| format!("--set {set}: expected KEY=VALUE"))?;
            let port = |v: &str| {
                v.parse::<u16>()
                    .ok()
                    .filter(|p| *p > 0)
                    .ok_or_else(|| format!("{key}: not a port"))
            };
            match key {
                "replicas" => front.replicas = parse_replicas(value)?,
                "balance" => {
                    front.balance = match value {
                        "round-robin" => Balance::RoundRobin,
                        "credential" => Balance::ByCredential,
                        _ => return Err("balance: round-robin or credential".into()),
                    }
                }
                "listen_address" if is_address(value) => front.listen_address = value.into(),
                "listen_address" => return Err("listen_address: not an IP address".into()),
                "listen_port" => front.listen_port = port(value)?,
                "admin_port" => front.admin_port = port(value)?,
                _ => return Err(format!("{key}: not a setting of the front")),
            }
        }
        if front.replicas.is_empty() {
            return Err("replicas: name the replicas' listeners (HOST:PORT,...)".into());
        }
        if front.admin_port == front.listen_port {
            return Err("admin_port: must differ from listen_port".into());
        }
        Ok(front)
    }
}

fn is_address(s: &str) -> bool {
    s.parse::<std::net::IpAddr>().is_ok()
}

/// `HOST:PORT,...`; hosts are IP addresses or DNS names.
fn parse_replicas(value: &str) -> Result<Vec<(String, u16)>, String> {
    value
        .split(',')
        .map(|r| {
            let (host, port) = r
                .rsplit_once(':')
                .ok_or_else(|| format!("replicas: '{r}' is not HOST:PORT"))?;
            let port = port
                .parse::<u16>()
                .ok()
                .filter(|p| *p > 0)
                .ok_or_else(|| format!("replicas: '{r}' has no port"))?;
            let host_ok = !host.is_empty()
                && host
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-.".contains(&b));
            if !host_ok {
                return Err(format!("replicas: '{r}' has no usable host"));
            }
            Ok((host.to_string(), port))
        })
        .collect()
}

/// The front's Envoy bootstrap. A request that cannot reach a replica (one restarting) is
/// retried on another; replicas are found by DNS when named (STRICT_DNS), else statically.
pub fn render(front: &Front) -> String {
    let (lb_policy, hash) = match front.balance {
        Balance::RoundRobin => ("ROUND_ROBIN", String::new()),
        Balance::ByCredential => (
            "RING_HASH",
            "\n                  hash_policy: [{header: {header_name: authorization}}]".to_string(),
        ),
    };
    let all_ips = front.replicas.iter().all(|(h, _)| is_address(h));
    let discovery = if all_ips { "STATIC" } else { "STRICT_DNS" };
    let mut endpoints = String::new();
    for (host, port) in &front.replicas {
        let _ = write!(
            endpoints,
            "\n        - endpoint: {{address: {{socket_address: {{address: {host}, port_value: {port}}}}}}}"
        );
    }
    format!(
        r#"# The front of token-vault-proxy's replicas (tvp render front).
admin:
  address: {{socket_address: {{address: 127.0.0.1, port_value: {admin}}}}}
static_resources:
  listeners:
  - name: front
    address: {{socket_address: {{address: {address}, port_value: {port}}}}}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: front
          route_config:
            virtual_hosts:
            - name: all
              domains: ["*"]
              routes:
              - match: {{prefix: "/"}}
                route:
                  cluster: replicas
                  timeout: 30s
                  retry_policy: {{retry_on: "connect-failure,reset", num_retries: 3}}{hash}
          http_filters:
          - name: envoy.filters.http.router
            typed_config: {{"@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router}}
  clusters:
  - name: replicas
    type: {discovery}
    lb_policy: {lb_policy}
    connect_timeout: 1s
    load_assignment:
      cluster_name: replicas
      endpoints:
      - lb_endpoints:{endpoints}
"#,
        admin = front.admin_port,
        address = front.listen_address,
        port = front.listen_port,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sets(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn the_front_hashes_the_credential_unless_told_otherwise() {
        let f = Front::from_sets(&sets(&["replicas=10.0.0.1:3000,10.0.0.2:3000"])).unwrap();
        assert_eq!(f.balance, Balance::ByCredential);
        let yaml = render(&f);
        assert!(yaml.contains("lb_policy: RING_HASH"));
        assert!(yaml.contains("hash_policy: [{header: {header_name: authorization}}]"));
        assert!(
            yaml.contains("type: STATIC") && yaml.contains("address: 10.0.0.2, port_value: 3000")
        );
        let rr =
            Front::from_sets(&sets(&["replicas=gw-0.gw:3000", "balance=round-robin"])).unwrap();
        let yaml = render(&rr);
        assert!(yaml.contains("lb_policy: ROUND_ROBIN") && !yaml.contains("hash_policy"));
        assert!(yaml.contains("type: STRICT_DNS"));
    }

    #[test]
    fn what_cannot_work_is_refused() {
        for (bad, why) in [
            (vec![], "replicas: name"),
            (vec!["replicas=gw"], "not HOST:PORT"),
            (vec!["replicas=gw:0"], "has no port"),
            (vec!["replicas=g w:1"], "no usable host"),
            (vec!["replicas=gw:1", "balance=random"], "balance"),
            (vec!["replicas=gw:1", "colour=red"], "not a setting"),
            (vec!["replicas=gw:1", "admin_port=3000"], "must differ"),
            (vec!["replicas=gw:1", "listen_address=gw"], "not an IP"),
        ] {
            let e = Front::from_sets(&sets(&bad)).unwrap_err();
            assert!(e.contains(why), "{bad:?}: {e}");
        }
    }
}
