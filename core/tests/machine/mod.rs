//! The whole per-worker state machine driven by a sequence of events read from bytes: new
//! requests with tokens good and bad, call-out answers of every kind (late, failed, timed
//! out, oversized), dispatch failures, contexts going away, clock ticks with background
//! refresh and orphan redispatch, backend 401s, disconnects and other workers' writes.
//!
//! The driver plays the glue exactly as `filter/` does (who owns a call-out, what a context
//! going away cancels) and checks, after every event:
//! - nothing is forwarded unless the token verifies, is for this tenant, unexpired, and has
//!   the method's scope; nothing unverified reaches the vault;
//! - a forwarded credential is one the vault issued for that same user, and never one issued
//!   before the user disconnected to a request that began after it;
//! - each request gets at most one decision, and at the end, once every call-out has been
//!   answered, no request is left waiting.
//!
//! Shared by `tests/state_machine.rs` (seeded random sequences in `make test`) and the
//! `state_machine` cargo-fuzz target.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, HashMap};
use std::rc::Rc;
use std::sync::OnceLock;

use serde_json::{json, Value};
use sim::keys::{b64, IssuerKeys};
use tvp_core::callout::{CalloutRequest, CalloutResponse};
use tvp_core::config::{self, Config};
use tvp_core::crypto::PureRustVerifier;
use tvp_core::flow::{self, Host, RequestInput, Resolution, Step, Worker};

/// The clock starts here (seconds); tokens are minted relative to it.
const NOW_S: i64 = 1_800_000_000;
const SKEW_S: i64 = 60;
/// The root context: it dispatches background refreshes and never goes away.
const ROOT: u32 = 1;
const SEALING_KEY: &str = "state-machine-sealing-key-state-machine-key";

/// An agent token of the pool, with what an honest checker would conclude about it.
struct Agent {
    token: String,
    sub: &'static str,
    /// Signed by a key of the tenant's JWKS, for the tenant's audience.
    genuine: bool,
    exp: i64,
    read: bool,
    write: bool,
}

impl Agent {
    fn may(&self, method: &str, now_s: i64) -> bool {
        let scoped = if method == "GET" {
            self.read
        } else {
            self.write
        };
        self.genuine && now_s < self.exp + SKEW_S && scoped
    }
}

struct Fixture {
    config: Config,
    jwks: Vec<u8>,
    agents: Vec<Agent>,
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let mut doc: Value =
            serde_json::from_str(include_str!("../../../tenants.example.json")).unwrap_or_default();
        if let Some(list) = doc["tenants"].as_array_mut() {
            list.retain(|t| t["id"] == "github");
        }
        let env = |name: &str| match name {
            "TVP_SEALING_KEY" => Some(SEALING_KEY.to_string()),
            _ => Some("vault-client-secret".to_string()),
        };
        let config = config::parse(doc.to_string().as_bytes(), &env)
            .unwrap_or_else(|e| panic!("the example tenant does not parse: {e}"));
        let tenant = &config.tenants[0];
        let keys = IssuerKeys::generate("github");
        let mint = |sub: &str, alg: &str, kid: &str, scope: &str, aud: &str, exp: i64| {
            let claims = json!({"iss": tenant.issuer, "aud": aud, "sub": sub, "exp": exp,
                "iat": NOW_S, "scope": scope});
            keys.sign(alg, "current", &json!({"alg": alg, "kid": kid}), &claims)
                .unwrap_or_else(|e| panic!("{e}"))
        };
        let aud = tenant.audiences[0].clone();
        let (ec, rsa) = (
            keys.ec_kid.clone(),
            keys.kid_for("RS256", "current").unwrap_or_default(),
        );
        let rw = "github:read github:write";
        let later = NOW_S + 3600;
        let agent = |token, sub, genuine, exp, read, write| Agent {
            token,
            sub,
            genuine,
            exp,
            read,
            write,
        };
        let forged = {
            let good = mint("alice", "ES256", &ec, rw, &aud, later);
            let (input, _) = good.rsplit_once('.').unwrap_or_default();
            format!("{input}.{}", b64(&[7u8; 64]))
        };
        let agents = vec![
            agent(
                mint("alice", "ES256", &ec, rw, &aud, later),
                "alice",
                true,
                later,
                true,
                true,
            ),
            agent(
                mint("bob", "ES256", &ec, "github:read", &aud, later),
                "bob",
                true,
                later,
                true,
                false,
            ),
            agent(
                mint("carol", "RS256", &rsa, rw, &aud, later),
                "carol",
                true,
                later,
                true,
                true,
            ),
            // Expires within the first minutes of a sequence.
            agent(
                mint("erin", "ES256", &ec, rw, &aud, NOW_S + 30),
                "erin",
                true,
                NOW_S + 30,
                true,
                true,
            ),
            agent(forged, "alice", false, later, true, true),
            agent(
                mint("alice", "ES256", &ec, rw, "https://other.example", later),
                "alice",
                false,
                later,
                true,
                true,
            ),
            agent(
                mint("alice", "ES256", "github-ec-9", rw, &aud, later),
                "alice",
                false,
                later,
                true,
                true,
            ),
            agent("a.b.c".into(), "nobody", false, later, true, true),
        ];
        Fixture {
            config,
            jwks: keys.jwks().to_string().into_bytes(),
            agents,
        }
    })
}

/// Shared data as Envoy keeps it, plus what other workers do to it.
#[derive(Default)]
struct SharedData {
    now_ms: Cell<u64>,
    entries: RefCell<HashMap<String, (Vec<u8>, u32)>>,
    /// The next write is refused (the host is out of room, or a race lost).
    refuse_next_write: Cell<bool>,
}

impl Host for SharedData {
    fn now_ms(&self) -> u64 {
        self.now_ms.get()
    }
    fn shared_get(&self, key: &str) -> (Option<Vec<u8>>, Option<u32>) {
        match self.entries.borrow().get(key) {
            Some((v, cas)) => (Some(v.clone()), Some(*cas)),
            None => (None, None),
        }
    }
    fn shared_set(&self, key: &str, value: &[u8], cas: Option<u32>) -> bool {
        if self.refuse_next_write.replace(false) {
            return false;
        }
        let mut map = self.entries.borrow_mut();
        let current = map.get(key).map(|(_, c)| *c);
        if cas.is_some() && cas != current {
            return false;
        }
        map.insert(key.to_string(), (value.to_vec(), current.unwrap_or(0) + 1));
        true
    }
}

impl SharedData {
    /// Another worker rewrote an entry with the same value: every CAS held on it fails.
    fn bump(&self, pick: usize) {
        let mut map = self.entries.borrow_mut();
        let mut keys: Vec<&String> = map.keys().collect();
        keys.sort();
        if let Some(key) = keys.get(pick % keys.len().max(1)).map(|k| k.to_string()) {
            if let Some(entry) = map.get_mut(&key) {
                entry.1 += 1;
            }
        }
    }
}

#[derive(Debug, PartialEq)]
enum Fate {
    Waiting,
    Decided,
    Gone,
}

struct Context {
    agent: usize,
    method: &'static str,
    /// The event number it began at, and the clock then.
    began: usize,
    began_s: i64,
    fate: Fate,
}

struct Outstanding {
    owner: u32,
    request: CalloutRequest,
}

/// A downstream token the vault handed out.
struct Issued {
    sub: &'static str,
    at_event: usize,
}

/// What a run did, so a test can show its sequences reach every path.
#[derive(Debug, Default, Clone, Copy)]
pub struct Stats {
    pub forwarded: usize,
    pub denied: usize,
    pub vault_answers: usize,
    pub key_answers: usize,
    pub went_away: usize,
    pub disconnects: usize,
}

impl std::ops::AddAssign for Stats {
    fn add_assign(&mut self, o: Stats) {
        self.forwarded += o.forwarded;
        self.denied += o.denied;
        self.vault_answers += o.vault_answers;
        self.key_answers += o.key_answers;
        self.went_away += o.went_away;
        self.disconnects += o.disconnects;
    }
}

pub struct Machine {
    stats: Stats,
    host: SharedData,
    worker: Worker,
    contexts: BTreeMap<u32, Context>,
    /// Call-outs in flight by token; Envoy answers each once, unless its owner went away.
    outstanding: BTreeMap<u32, Outstanding>,
    issued: HashMap<String, Issued>,
    /// The event number of each user's latest disconnect.
    disconnected: HashMap<&'static str, usize>,
    fail_next_dispatch: bool,
    next_context: u32,
    next_token: u32,
    event: usize,
}

impl Default for Machine {
    fn default() -> Self {
        Machine::new()
    }
}

impl Machine {
    pub fn new() -> Machine {
        let f = fixture();
        let host = SharedData::default();
        host.now_ms.set(NOW_S as u64 * 1000);
        Machine {
            stats: Stats::default(),
            host,
            worker: Worker::new(Rc::new(f.config.clone()), Box::new(PureRustVerifier)),
            contexts: BTreeMap::new(),
            outstanding: BTreeMap::new(),
            issued: HashMap::new(),
            disconnected: HashMap::new(),
            fail_next_dispatch: false,
            next_context: ROOT + 1,
            next_token: 1,
            event: 0,
        }
    }

    /// Run the events `data` spells (two bytes each), then answer everything until no
    /// request waits.
    pub fn run(data: &[u8]) -> Stats {
        let mut m = Machine::new();
        for pair in data.chunks(2).take(400) {
            let (op, arg) = (pair[0], pair.get(1).copied().unwrap_or(0));
            m.step(op, arg);
        }
        m.drain();
        m.stats
    }

    fn step(&mut self, op: u8, arg: u8) {
        self.event += 1;
        match op % 10 {
            0..=2 => self.begin(arg),
            3..=5 => self.answer(arg),
            6 => self.tick(u64::from(arg) * 250),
            7 => self.teardown(arg),
            8 => match arg % 4 {
                0 => self.fail_next_dispatch = true,
                1 => self.host.refuse_next_write.set(true),
                2 => self.host.bump(usize::from(arg / 4)),
                _ => self.disconnect(arg / 4),
            },
            _ => self.backend_answered(arg),
        }
    }

    fn now_s(&self) -> i64 {
        (self.host.now_ms() / 1000) as i64
    }

    fn begin(&mut self, arg: u8) {
        let f = fixture();
        let agent = usize::from(arg) % f.agents.len();
        let method = ["GET", "POST", "DELETE"][usize::from(arg / 16) % 3];
        let ctx = self.next_context;
        self.next_context += 1;
        self.contexts.insert(
            ctx,
            Context {
                agent,
                method,
                began: self.event,
                began_s: self.now_s(),
                fate: Fate::Waiting,
            },
        );
        let input = RequestInput {
            tenant: 0,
            method: method.into(),
            token: f.agents[agent].token.clone(),
            subject_token: None,
        };
        let step = self.worker.begin(&self.host, ctx, input);
        self.apply(vec![(ctx, step)], ctx);
    }

    /// Answer the call-out `arg` picks, in the way `arg` picks.
    fn answer(&mut self, arg: u8) {
        let Some(&token) = self
            .outstanding
            .keys()
            .nth(usize::from(arg % 8) % self.outstanding.len().max(1))
        else {
            return;
        };
        self.answer_one(token, arg / 8);
    }

    fn answer_one(&mut self, token: u32, kind: u8) {
        let Some(call) = self.outstanding.remove(&token) else {
            return;
        };
        let response = self.response_to(&call.request, kind);
        let resolved = self.worker.on_response(&self.host, token, &response);
        self.apply(resolved, call.owner);
        self.dispatch_orphans(call.owner);
    }

    /// What the IdP or the vault says; kind 0 (and most kinds) is a proper answer.
    fn response_to(&mut self, request: &CalloutRequest, kind: u8) -> CalloutResponse {
        let answer = |status: Option<u16>, body: Option<&[u8]>| CalloutResponse {
            status,
            retry_after: (status == Some(429)).then(|| "2".to_string()),
            rate_limit_reset: None,
            body: body.map(<[u8]>::to_vec),
        };
        let is_vault = request.path.ends_with("/oauth/token");
        if is_vault {
            self.stats.vault_answers += 1;
        } else {
            self.stats.key_answers += 1;
        }
        match kind % 12 {
            // Status 0: a reset; no body: larger than allowed.
            8 => answer(None, Some(b"")),
            9 => answer(Some(200), None),
            10 => answer(Some(500), Some(b"<html>oops</html>")),
            11 if is_vault => answer(
                Some(401),
                Some(br#"{"error":"federated_connection_refresh_token_not_found","error_description":"connect"}"#),
            ),
            11 => answer(Some(200), Some(br#"{"keys":[]}"#)),
            7 if is_vault => answer(Some(429), Some(br#"{"error":"too_many_requests"}"#)),
            7 => answer(Some(200), Some(b"{not json")),
            _ if is_vault => {
                let sub = self.vault_subject(request);
                let access_token = format!("ds-{sub}-{}", self.issued.len());
                self.issued.insert(
                    access_token.clone(),
                    Issued {
                        sub,
                        at_event: self.event,
                    },
                );
                let body = json!({"access_token": access_token, "expires_in": 60 + u64::from(kind) * 300,
                    "token_type": "Bearer", "scope": "repo"});
                answer(Some(200), Some(body.to_string().as_bytes()))
            }
            _ => answer(Some(200), Some(&fixture().jwks)),
        }
    }

    /// The user whose token a vault call exchanges: only a genuine token may get there.
    fn vault_subject(&self, request: &CalloutRequest) -> &'static str {
        let body: Value = serde_json::from_slice(request.body.as_deref().unwrap_or_default())
            .unwrap_or_else(|e| panic!("a vault call with a body that is no JSON: {e}"));
        let subject = body["subject_token"].as_str().unwrap_or_default();
        match fixture().agents.iter().find(|a| a.token == subject) {
            Some(a) if a.genuine => a.sub,
            _ => panic!("a token that does not verify reached the vault"),
        }
    }

    /// The clock moves on; the root refreshes keys and resends what lost its owner.
    fn tick(&mut self, ms: u64) {
        self.host.now_ms.set(self.host.now_ms() + ms);
        let due = self.worker.refresh_due(&self.host);
        for (flight, request) in due {
            self.send(&flight, request, ROOT);
        }
        self.dispatch_orphans(ROOT);
    }

    fn dispatch_orphans(&mut self, owner: u32) {
        let now = self.host.now_ms();
        for (flight, request) in self.worker.take_orphans(now) {
            self.send(&flight, request, owner);
        }
    }

    /// The client went away: Envoy cancels the call-outs this context sent.
    fn teardown(&mut self, arg: u8) {
        let live: Vec<u32> = self
            .contexts
            .iter()
            .filter(|(_, c)| c.fate != Fate::Gone)
            .map(|(id, _)| *id)
            .collect();
        let Some(&ctx) = live.get(usize::from(arg) % live.len().max(1)) else {
            return;
        };
        self.gone(ctx);
    }

    fn gone(&mut self, ctx: u32) {
        self.stats.went_away += 1;
        if let Some(c) = self.contexts.get_mut(&ctx) {
            c.fate = Fate::Gone;
        }
        self.outstanding.retain(|_, call| call.owner != ctx);
        self.worker.forget(ctx);
    }

    fn disconnect(&mut self, arg: u8) {
        let f = fixture();
        let Some(agent) = f
            .agents
            .iter()
            .filter(|a| a.genuine)
            .nth(usize::from(arg) % 4)
        else {
            return;
        };
        let Ok(jwt) = tvp_core::jwt::parse(&agent.token, 8192, None) else {
            return;
        };
        let principal = tvp_core::cache::Principal::new(&f.config.tenants[0], jwt.claims);
        flow::evict_user(&self.host, &principal.user_key, self.host.now_ms());
        self.disconnected.insert(agent.sub, self.event);
        self.stats.disconnects += 1;
    }

    /// The backend answered a forwarded request: 401 (the downstream token was refused) or 200.
    fn backend_answered(&mut self, arg: u8) {
        let decided: Vec<u32> = self
            .contexts
            .iter()
            .filter(|(_, c)| c.fate == Fate::Decided)
            .map(|(id, _)| *id)
            .collect();
        if let Some(&ctx) = decided.get(usize::from(arg / 2) % decided.len().max(1)) {
            let status = if arg % 2 == 0 { 401 } else { 200 };
            self.worker
                .backend_answered(&self.host, ctx, || Some(status));
            self.gone(ctx);
        }
    }

    fn send(&mut self, flight: &str, request: CalloutRequest, owner: u32) {
        if std::mem::take(&mut self.fail_next_dispatch) {
            let resolved = self.worker.dispatch_failed(&self.host, flight);
            self.apply(resolved, owner);
            return;
        }
        let token = self.next_token;
        self.next_token += 1;
        self.worker
            .dispatched(flight, token, owner, self.host.now_ms());
        self.outstanding
            .insert(token, Outstanding { owner, request });
    }

    /// Act on decided requests as the glue does, checking each decision.
    fn apply(&mut self, resolved: Vec<Resolution>, current: u32) {
        for (ctx, step) in resolved {
            match step {
                Step::Wait {
                    flight,
                    start: Some(request),
                } => self.send(&flight, request, current),
                Step::Wait { start: None, .. } => {}
                Step::Forward(forward) => {
                    self.check_forward(ctx, &forward.value);
                    self.worker.forwarded(ctx, &forward);
                }
                Step::Deny { .. } => {
                    self.decided(ctx);
                    self.stats.denied += 1;
                }
            }
        }
    }

    fn decided(&mut self, ctx: u32) {
        let c = self
            .contexts
            .get_mut(&ctx)
            .unwrap_or_else(|| panic!("a decision for context {ctx}, which never began"));
        assert_eq!(
            c.fate,
            Fate::Waiting,
            "context {ctx} decided twice, or after it went away"
        );
        c.fate = Fate::Decided;
    }

    fn check_forward(&mut self, ctx: u32, value: &str) {
        self.decided(ctx);
        self.stats.forwarded += 1;
        let c = &self.contexts[&ctx];
        let agent = &fixture().agents[c.agent];
        // A token valid when presented may expire while its exchange is in flight.
        assert!(
            agent.may(c.method, c.began_s),
            "forwarded {} for {} with a token that must be refused (event {})",
            c.method,
            agent.sub,
            self.event
        );
        let token = value.strip_prefix("Bearer ").unwrap_or(value);
        let issued = self
            .issued
            .get(token)
            .unwrap_or_else(|| panic!("forwarded a credential the vault never issued"));
        assert_eq!(
            issued.sub, agent.sub,
            "{}'s request forwarded with {}'s credential",
            agent.sub, issued.sub
        );
        if let Some(&at) = self.disconnected.get(agent.sub) {
            assert!(
                issued.at_event > at || c.began < at,
                "{}'s credential from before the disconnect served a later request",
                agent.sub
            );
        }
    }

    /// Answer every call-out properly and let time pass until nothing is in flight; then no
    /// request may still be waiting.
    fn drain(&mut self) {
        for _ in 0..50 {
            while let Some(&token) = self.outstanding.keys().next() {
                self.answer_one(token, 0);
            }
            let waiting = self.contexts.values().any(|c| c.fate == Fate::Waiting);
            if !waiting {
                break;
            }
            self.tick(1_000);
        }
        for (id, c) in &self.contexts {
            assert!(
                c.fate != Fate::Waiting && !self.worker.is_waiting(*id),
                "context {id} was never decided"
            );
        }
    }
}
