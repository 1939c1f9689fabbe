//! Several Envoy replicas with the filter, all on one configuration, behind the front Envoy
//! `tvp render front` makes: what a production gateway looks like (an ingress deployment with
//! replicas behind a load balancer). The sim plays the outside parties for all of them.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde_json::Value;
use sim::Sim;

use super::{
    assert_log_clean, assert_no_agent_token, free_port, http, plugin_config, public_base_is,
    render, root, spawn_envoy, start_sim, test_settings, Process, Response,
};

pub use deploy::front::Balance;

struct Replica {
    port: u16,
    admin: u16,
    config: PathBuf,
    /// One log per run of the process (a restart starts another).
    logs: Vec<PathBuf>,
    envoy: Option<Process>,
}

pub struct Fleet {
    pub sim: Sim,
    /// The front's port: the gateway's public URL is `http://127.0.0.1:{port}`.
    pub port: u16,
    replicas: Vec<Replica>,
    front: Process,
    dir: PathBuf,
}

impl Fleet {
    /// `replicas` Envoys with the filter on the example's tenants (with `settings` merged),
    /// behind a front balancing as `balance` says.
    pub fn start(replicas: usize, balance: Balance, settings: Value) -> Fleet {
        let sim = start_sim(&[]);
        let (port, front_admin) = (free_port(), free_port());
        let mut overlay = test_settings();
        if let (Some(o), Some(extra)) = (overlay.as_object_mut(), settings.as_object()) {
            o.extend(extra.clone());
        }
        let mut config = plugin_config(&sim, overlay);
        public_base_is(&sim, &mut config, &format!("http://127.0.0.1:{port}"));
        let dir = root().join("target/e2e").join(format!("fleet-{port}"));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("mkdir");
        let replicas: Vec<Replica> = (0..replicas)
            .map(|i| {
                let (listen, admin) = (free_port(), free_port());
                let config_path = dir.join(format!("replica-{i}.yaml"));
                std::fs::write(&config_path, render(listen, admin, &config)).expect("write");
                Replica {
                    port: listen,
                    admin,
                    config: config_path,
                    logs: Vec::new(),
                    envoy: None,
                }
            })
            .collect();
        let ports: Vec<u16> = replicas.iter().map(|r| r.port).collect();
        let front_config = dir.join("front.yaml");
        let yaml = deploy::front::render(&deploy::front::Front {
            listen_address: "127.0.0.1".into(),
            listen_port: port,
            admin_port: front_admin,
            replicas: ports
                .iter()
                .map(|p| ("127.0.0.1".to_string(), *p))
                .collect(),
            balance,
        });
        std::fs::write(&front_config, yaml).expect("write front.yaml");
        let front = spawn_envoy(&front_config, &dir.join("front.log"), 1);
        let mut fleet = Fleet {
            sim,
            port,
            replicas,
            front,
            dir,
        };
        for i in 0..fleet.replicas.len() {
            fleet.launch(i);
        }
        fleet
    }

    pub fn replicas(&self) -> usize {
        self.replicas.len()
    }

    /// Start replica `i` and wait until it serves with every tenant's keys loaded.
    fn launch(&mut self, i: usize) {
        let r = &mut self.replicas[i];
        let log = self
            .dir
            .join(format!("replica-{i}-run-{}.log", r.logs.len()));
        r.envoy = Some(spawn_envoy(&r.config, &log, 1));
        r.logs.push(log);
        let (port, admin) = (r.port, r.admin);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let ready = testkit::ready::envoy_ready(admin)
                && http(port, "GET", "/health", &[], b"")
                    .is_ok_and(|h| h.status == 200 && h.text().contains("\"status\":\"ok\""));
            if ready {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "replica {i} did not become ready"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Stop replica `i` (its process and all it held in memory) and start it again.
    pub fn restart(&mut self, i: usize) {
        // Dropping the handle stops the process.
        self.replicas[i].envoy = None;
        self.launch(i);
    }

    /// A request to `port` (the front or a replica), checked for leaked agent tokens.
    fn send(
        &self,
        port: u16,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Response {
        let r = http(port, method, path, headers, body).expect("the gateway answers");
        assert_no_agent_token(&self.sim, &r, method, path);
        r
    }

    /// A request through the front.
    pub fn request(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Response {
        self.send(self.port, method, path, headers, body)
    }

    pub fn call(&self, method: &str, path: &str, token: &str) -> Response {
        let auth = format!("Bearer {token}");
        self.request(method, path, &[("authorization", &auth)], b"")
    }

    /// A request to replica `i` directly, bypassing the front.
    pub fn call_replica(&self, i: usize, method: &str, path: &str, token: &str) -> Response {
        let auth = format!("Bearer {token}");
        let headers = [("authorization", auth.as_str())];
        self.send(self.replicas[i].port, method, path, &headers, b"")
    }

    pub fn token(&self, tenant: &str, sub: &str) -> String {
        self.sim
            .mint(&sim::Mint {
                tenant: tenant.into(),
                sub: sub.into(),
                ..sim::Mint::default()
            })
            .expect("mint")
    }

    /// What replica `i` logged so far, over all its runs.
    pub fn log(&self, i: usize) -> String {
        self.replicas[i]
            .logs
            .iter()
            .map(|l| std::fs::read_to_string(l).unwrap_or_default())
            .collect()
    }
}

impl Drop for Fleet {
    fn drop(&mut self) {
        self.front.stop();
        for r in &mut self.replicas {
            r.envoy = None;
        }
        for i in 0..self.replicas.len() {
            assert_log_clean(&self.sim, &self.log(i));
        }
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}
