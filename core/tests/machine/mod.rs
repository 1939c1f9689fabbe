//! The whole per-worker state machine (the core's `Gateway`: request records, the pipeline,
//! single flight, keys, the vault) driven by a sequence of events read from bytes: new requests
//! with tokens good and bad, call-out answers of every kind (late, failed, timed out,
//! oversized), dispatch failures, header edits the host refuses, contexts going away, clock
//! ticks with background refresh and orphan redispatch, backend 401s, disconnects and other
//! workers' writes. Two workers share one store and their users' exchanges (as both hosts run
//! them): a request waiting for the other worker's exchange is woken when the lease record it
//! watches is written, or at its deadline, as the hosts promise.
//!
//! The driver is a host: it applies outcomes as a host does (and as Envoy does: a context
//! going away cancels the call-outs it sent) and checks, after every event:
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
use tvp_core::flow::{self, Worker};
use tvp_core::gateway::{Effect, Gateway, Next, Outcome, RequestHead, Resolved};
use tvp_core::host::{Host, SharedWriteError};

/// The clock starts here (seconds); tokens are minted relative to it.
const NOW_S: i64 = 1_800_000_000;
const SKEW_S: i64 = 60;
/// The root context of each worker: it dispatches background refreshes and never goes away.
const ROOT: u32 = 1;
/// Workers sharing the store, each with its own gateway.
const WORKERS: usize = 2;
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
    /// The next call-out fails to start.
    refuse_next_dispatch: Cell<bool>,
    /// Call-outs started and not yet collected by the driver: token, worker, owner, request.
    started: RefCell<Vec<(u32, usize, u32, CalloutRequest)>>,
    next_token: Cell<u32>,
    /// The worker whose gateway is running (call-outs are answered on it).
    worker: Cell<usize>,
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
    fn shared_set(
        &self,
        key: &str,
        value: &[u8],
        cas: Option<u32>,
    ) -> Result<(), SharedWriteError> {
        if self.refuse_next_write.replace(false) {
            return Err(SharedWriteError::Refused);
        }
        let mut map = self.entries.borrow_mut();
        let current = map.get(key).map(|(_, c)| *c);
        if cas.is_some() && cas != current {
            return Err(SharedWriteError::CasMismatch);
        }
        map.insert(key.to_string(), (value.to_vec(), current.unwrap_or(0) + 1));
        Ok(())
    }
    fn dispatch(&self, owner: u32, request: &CalloutRequest, _timeout_ms: u64) -> Option<u32> {
        if self.refuse_next_dispatch.replace(false) {
            return None;
        }
        let token = self.next_token.get() + 1;
        self.next_token.set(token);
        self.started
            .borrow_mut()
            .push((token, self.worker.get(), owner, request.clone()));
        Some(token)
    }
}

impl SharedData {
    fn version(&self, key: &str) -> Option<u32> {
        self.entries.borrow().get(key).map(|(_, cas)| *cas)
    }

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
    worker: usize,
    agent: usize,
    method: &'static str,
    /// The event number it began at, and the clock then.
    began: usize,
    began_s: i64,
    fate: Fate,
}

struct Outstanding {
    worker: usize,
    owner: u32,
    request: CalloutRequest,
}

/// A request waiting for the other worker's exchange: woken when `key` is no longer at
/// version `seen`, or at `by_ms`.
struct Watch {
    worker: usize,
    ctx: u32,
    key: String,
    by_ms: u64,
    seen: Option<u32>,
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
    pub waited_elsewhere: usize,
}

impl std::ops::AddAssign for Stats {
    fn add_assign(&mut self, o: Stats) {
        self.forwarded += o.forwarded;
        self.denied += o.denied;
        self.vault_answers += o.vault_answers;
        self.key_answers += o.key_answers;
        self.went_away += o.went_away;
        self.disconnects += o.disconnects;
        self.waited_elsewhere += o.waited_elsewhere;
    }
}

pub struct Machine {
    stats: Stats,
    host: SharedData,
    gateways: Vec<Gateway>,
    watches: Vec<Watch>,
    contexts: BTreeMap<u32, Context>,
    /// Call-outs in flight by token; Envoy answers each once, unless its owner went away.
    outstanding: BTreeMap<u32, Outstanding>,
    issued: HashMap<String, Issued>,
    /// The event number of each user's latest disconnect.
    disconnected: HashMap<&'static str, usize>,
    /// The host fails the next request-header edit it is asked for.
    refuse_next_edit: bool,
    next_context: u32,
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
        let config = Rc::new(f.config.clone());
        let gateways = (0..WORKERS)
            .map(|_| {
                let worker = Worker::new(Rc::clone(&config), Box::new(PureRustVerifier));
                Gateway::new(worker.with_shared_flights())
            })
            .collect();
        Machine {
            stats: Stats::default(),
            host,
            gateways,
            watches: Vec::new(),
            contexts: BTreeMap::new(),
            outstanding: BTreeMap::new(),
            issued: HashMap::new(),
            disconnected: HashMap::new(),
            refuse_next_edit: false,
            next_context: ROOT + 1,
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
            m.wake();
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
            8 => match arg % 5 {
                0 => self.host.refuse_next_dispatch.set(true),
                1 => self.host.refuse_next_write.set(true),
                2 => self.host.bump(usize::from(arg / 5)),
                3 => self.refuse_next_edit = true,
                _ => self.disconnect(arg / 5),
            },
            _ => self.backend_answered(arg),
        }
    }

    fn begin(&mut self, arg: u8) {
        let f = fixture();
        let agent = usize::from(arg) % f.agents.len();
        let worker = usize::from(arg / 8) % WORKERS;
        let method = ["GET", "POST", "DELETE"][usize::from(arg / 16) % 3];
        let ctx = self.next_context;
        self.next_context += 1;
        self.contexts.insert(
            ctx,
            Context {
                worker,
                agent,
                method,
                began: self.event,
                began_s: (self.host.now_ms() / 1000) as i64,
                fate: Fate::Waiting,
            },
        );
        let head = RequestHead::new(
            [
                (":method", method.to_string()),
                (":path", "/github/user".to_string()),
                (":authority", "localhost:3000".to_string()),
                ("authorization", format!("Bearer {}", f.agents[agent].token)),
            ]
            .into_iter()
            .map(|(n, v)| (n.to_string(), v.into_bytes()))
            .collect(),
        );
        self.host.worker.set(worker);
        let resolved = self.gateways[worker].on_request_headers(&self.host, ctx, head, true);
        self.apply(worker, resolved);
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
        self.host.worker.set(call.worker);
        let resolved = self.gateways[call.worker]
            .on_callout_response(&self.host, token, &response, call.owner);
        self.apply(call.worker, resolved);
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

    /// The clock moves on; each worker's root refreshes keys and resends what lost its owner.
    fn tick(&mut self, ms: u64) {
        self.host.now_ms.set(self.host.now_ms() + ms);
        for worker in 0..WORKERS {
            self.host.worker.set(worker);
            let resolved = self.gateways[worker].on_tick(&self.host, ROOT);
            self.apply(worker, resolved);
        }
    }

    /// Wake, as the hosts do, every request whose watched record was written or whose
    /// deadline passed, until none is due.
    fn wake(&mut self) {
        for _ in 0..10_000 {
            let now = self.host.now_ms();
            let Some(i) = self
                .watches
                .iter()
                .position(|w| self.host.version(&w.key) != w.seen || w.by_ms <= now)
            else {
                return;
            };
            let w = self.watches.remove(i);
            self.host.worker.set(w.worker);
            let resolved = self.gateways[w.worker].on_wake(&self.host, w.ctx);
            self.apply(w.worker, resolved);
        }
        panic!("wake-ups never settle: requests keep waking each other");
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
        let Some(worker) = self.contexts.get(&ctx).map(|c| c.worker) else {
            return;
        };
        self.outstanding
            .retain(|_, call| !(call.worker == worker && call.owner == ctx));
        self.watches.retain(|w| w.ctx != ctx);
        self.host.worker.set(worker);
        self.gateways[worker].forget(&self.host, ctx);
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
            let worker = self.contexts[&ctx].worker;
            self.host.worker.set(worker);
            let effects = self.gateways[worker].on_response_headers(
                &self.host,
                ctx,
                &|| Some(status),
                &|_| None,
            );
            assert!(
                effects.is_empty(),
                "a plain response was changed: {effects:?}"
            );
            self.gone(ctx);
        }
    }

    /// Apply outcomes as a host does, checking each decision; then collect the call-outs the
    /// gateway started (Envoy answers them later, unless their owner goes away).
    fn apply(&mut self, worker: usize, resolved: Resolved) {
        for (ctx, outcome) in resolved {
            if ctx != ROOT {
                let owner = self.contexts.get(&ctx).map(|c| c.worker);
                assert_eq!(owner, Some(worker), "worker {worker} decided context {ctx}");
            }
            self.outcome(worker, ctx, outcome);
        }
        let started: Vec<_> = self.host.started.borrow_mut().drain(..).collect();
        for (token, worker, owner, request) in started {
            let cancelled = self
                .contexts
                .get(&owner)
                .is_some_and(|c| c.fate == Fate::Gone);
            if !cancelled {
                self.outstanding.insert(
                    token,
                    Outstanding {
                        worker,
                        owner,
                        request,
                    },
                );
            }
        }
    }

    fn outcome(&mut self, worker: usize, ctx: u32, outcome: Outcome) {
        let answered = outcome.reply_of().is_some();
        for effect in &outcome.effects {
            if let Effect::WakeOnWrite { key, by_ms, seen } = effect {
                assert_eq!(outcome.next, Next::Stop, "went on while waiting elsewhere");
                self.stats.waited_elsewhere += 1;
                self.watches.retain(|w| !(w.ctx == ctx && w.key == *key));
                self.watches.push(Watch {
                    worker,
                    ctx,
                    key: key.clone(),
                    by_ms: *by_ms,
                    seen: *seen,
                });
            }
        }
        match outcome.next {
            Next::Continue => {
                if std::mem::take(&mut self.refuse_next_edit) {
                    // The host could not rewrite the request: it must be refused instead.
                    let refusal = self.gateways[worker].edit_failed(&self.host, ctx);
                    assert!(
                        refusal.next == Next::Stop && refusal.reply_of().is_some(),
                        "a request whose headers could not be rewritten was not refused"
                    );
                    self.decided(ctx);
                    self.stats.denied += 1;
                    return;
                }
                let value = outcome.effects.iter().find_map(|e| match e {
                    Effect::SetHeader(name, value) if name == "authorization" => {
                        Some(value.clone())
                    }
                    _ => None,
                });
                let strips = outcome
                    .effects
                    .iter()
                    .any(|e| matches!(e, Effect::RemoveHeader(h) if h == "proxy-authorization"));
                assert!(
                    strips,
                    "forwarded without removing the client's other credentials"
                );
                let value = value.unwrap_or_else(|| panic!("went on without a credential"));
                self.check_forward(ctx, &value);
            }
            Next::Stop if answered => {
                self.decided(ctx);
                self.stats.denied += 1;
            }
            // Still waiting.
            Next::Stop => {}
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
                self.wake();
            }
            let waiting = self.contexts.values().any(|c| c.fate == Fate::Waiting);
            if !waiting {
                break;
            }
            self.tick(1_000);
            self.wake();
        }
        for (id, c) in &self.contexts {
            assert!(c.fate != Fate::Waiting, "context {id} was never decided");
        }
    }
}
