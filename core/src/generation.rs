//! Which plugin configuration is the current one, so that a superseded one stops serving.
//!
//! Envoy applies a new listener (or filter) configuration to new connections only: a
//! keep-alive connection accepted before the push keeps its filter chain, so its requests
//! still reach the root context of the old configuration until Envoy's drain time ends (600 s
//! by default). A tenant removed or a scope tightened would keep working there. Every root
//! context therefore takes part in one record in shared data (per plugin name; shared data is
//! per `vm_id`, which a push keeps) saying which configuration is current, and each request
//! checks it first: a request of any other configuration is refused.
//!
//! Who is current:
//! - A root whose configuration is new (neither current nor recently superseded) makes it
//!   current when it starts serving (its first tick or request; Envoy's configuration canary
//!   never does either, so a push Envoy refuses claims nothing). The other workers' roots of
//!   the same push find their digest current and adopt it.
//! - A root of a recently superseded configuration does not claim when it starts: that is a
//!   VM reloaded after a trap (`FAIL_RELOAD`) while old connections drain, or a rollback after
//!   Envoy dropped the old contexts (connections decide that one, as below).
//! - Rolling back to byte-identical configuration needs no configure at all: Envoy reuses the
//!   old root context (same plugin key) if it is still draining. Only connections tell the two
//!   apart: Envoy numbers connections in the order it accepts them (`connection.id`, one
//!   counter per process), and after a push new connections go to the new configuration
//!   only. So a superseded configuration becomes current again when it serves a connection
//!   newer than any the current one is known to have served, once `GRACE_MS` has passed since
//!   the current one took over (a worker may switch a few milliseconds after another).
//!   The current roots publish the newest connection they served about once a second.
//!
//! Pure: the host is reached through [`Host`], so all of it runs in unit tests.

use crate::host::{Host, SharedWriteError};
use crate::reply::Reply;
use crate::secret::{hex, sha256};

/// SHA-256 of the configuration bytes, truncated.
pub type Digest = [u8; 16];

/// How long a configuration that just became current cannot be displaced by connections.
pub const GRACE_MS: u64 = 5_000;
/// Superseded configurations remembered (most recent first).
pub const HISTORY: usize = 8;
/// How long a root trusts its last "current" reading before reading the record again. A
/// configuration replaced by a push stops serving within this bound, and a request costs no
/// shared-data read (in wasm a host call that allocates in the VM) in between.
pub const RECHECK_MS: u64 = 100;

const VERSION: u8 = 1;
/// version, number, claimed_ms, max_conn, digest, history length.
const HEAD: usize = 1 + 8 + 8 + 8 + 16 + 1;
/// Read-modify-write attempts before giving up on a contended record.
const ATTEMPTS: usize = 4;

pub fn digest(configuration: &[u8]) -> Digest {
    let mut d = [0u8; 16];
    d.copy_from_slice(&sha256(configuration)[..16]);
    d
}

/// Shared-data key of the record of plugin `name` (Envoy's `plugin_name`).
pub fn key(name: &str) -> String {
    format!("tvp/v1/generation/{name}")
}

/// A digest as logs show it.
pub fn label(d: &Digest) -> String {
    hex(&d[..6])
}

/// The answer to a request of a superseded configuration: 503 and `Connection: close`, so an
/// HTTP/1.1 client retries on a new connection, which Envoy gives the current configuration.
pub fn superseded_reply() -> Reply {
    let mut reply = Reply::json(
        503,
        &serde_json::json!({
            "error": "temporarily_unavailable",
            "error_description": "The gateway's configuration changed. Retry on a new connection.",
        }),
    );
    reply.headers.push(("connection", "close".into()));
    reply.headers.push(("retry-after", "0".into()));
    reply
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// Grows by one whenever another configuration becomes current (for logs).
    pub number: u64,
    pub digest: Digest,
    /// When it became current.
    pub claimed_ms: u64,
    /// The newest connection the current configuration is known to have served (from a claim
    /// on, at least the mark of the configuration it superseded).
    pub max_conn: u64,
    /// Configurations it superseded, most recent first, at most [`HISTORY`].
    pub superseded: Vec<Digest>,
}

impl Record {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(HEAD + 16 * self.superseded.len());
        out.push(VERSION);
        out.extend_from_slice(&self.number.to_be_bytes());
        out.extend_from_slice(&self.claimed_ms.to_be_bytes());
        out.extend_from_slice(&self.max_conn.to_be_bytes());
        out.extend_from_slice(&self.digest);
        let n = self.superseded.len().min(HISTORY);
        out.push(n as u8);
        for d in &self.superseded[..n] {
            out.extend_from_slice(d);
        }
        out
    }

    pub fn decode(bytes: &[u8]) -> Option<Record> {
        if bytes.len() < HEAD || bytes[0] != VERSION {
            return None;
        }
        let u64_at = |i: usize| bytes[i..i + 8].try_into().ok().map(u64::from_be_bytes);
        let digest: Digest = bytes[25..41].try_into().ok()?;
        let n = bytes[41] as usize;
        let rest = &bytes[HEAD..];
        if n > HISTORY || rest.len() != 16 * n {
            return None;
        }
        let superseded = rest
            .chunks_exact(16)
            .filter_map(|c| c.try_into().ok())
            .collect();
        Some(Record {
            number: u64_at(1)?,
            claimed_ms: u64_at(9)?,
            max_conn: u64_at(17)?,
            digest,
            superseded,
        })
    }

    /// `mine` made current now, after this record, on connection `conn` (0: none yet).
    fn taken_over(&self, mine: &Digest, now_ms: u64, conn: u64) -> Record {
        let mut superseded = vec![self.digest];
        superseded.extend(
            self.superseded
                .iter()
                .filter(|d| *d != mine && **d != self.digest),
        );
        superseded.truncate(HISTORY);
        Record {
            number: self.number.saturating_add(1),
            digest: *mine,
            claimed_ms: now_ms,
            max_conn: self.max_conn.max(conn),
            superseded,
        }
    }
}

fn first(mine: &Digest, now_ms: u64) -> Record {
    Record {
        number: 1,
        digest: *mine,
        claimed_ms: now_ms,
        max_conn: 0,
        superseded: Vec::new(),
    }
}

/// Where a root stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Standing {
    /// Its configuration is current, as generation `number`.
    Current { number: u64, claimed: bool },
    /// Another configuration is current.
    Superseded { by: Digest, number: u64 },
    /// The record could not be read or written: serve (nothing says otherwise).
    Unknown,
}

/// Read-modify-write of the record under CAS. `change` sees the record (`None`: absent or
/// unreadable) and returns the record to write, or `None` to leave it. Returns the record as
/// it stands afterwards and whether this call wrote it.
fn update(
    host: &dyn Host,
    key: &str,
    mut change: impl FnMut(Option<&Record>) -> Option<Record>,
) -> Option<(Record, bool)> {
    for _ in 0..ATTEMPTS {
        let (bytes, cas) = host.shared_get(key);
        let current = bytes.as_deref().and_then(Record::decode);
        let Some(next) = change(current.as_ref()) else {
            return current.map(|r| (r, false));
        };
        match host.shared_set(key, &next.encode(), cas) {
            Ok(()) => return Some((next, true)),
            Err(SharedWriteError::CasMismatch) => continue,
            Err(SharedWriteError::Refused) => return None,
        }
    }
    None
}

/// The record's generation number when it names `mine` as current, without decoding the rest.
fn current_number(bytes: &[u8], mine: &Digest) -> Option<u64> {
    let well_formed = bytes.len() >= HEAD && bytes[0] == VERSION;
    (well_formed && bytes[25..41] == mine[..])
        .then(|| bytes[1..9].try_into().ok().map(u64::from_be_bytes))
        .flatten()
}

/// A root starts serving configuration `mine` (on its first tick or request): a new
/// configuration becomes current; one that is current or was recently superseded does not
/// claim (see the module documentation).
pub fn start(host: &dyn Host, key: &str, mine: &Digest) -> Standing {
    let now = host.now_ms();
    let outcome = update(host, key, |current| match current {
        None => Some(first(mine, now)),
        Some(r) if r.digest == *mine || r.superseded.contains(mine) => None,
        Some(r) => Some(r.taken_over(mine, now, 0)),
    });
    match outcome {
        Some((r, claimed)) if r.digest == *mine => Standing::Current {
            number: r.number,
            claimed,
        },
        Some((r, _)) => Standing::Superseded {
            by: r.digest,
            number: r.number,
        },
        None => Standing::Unknown,
    }
}

/// A request of configuration `mine` starts; `conn` reads its connection id (called only
/// when the answer depends on it). `Current` serves; `Superseded` refuses.
pub fn check(
    host: &dyn Host,
    key: &str,
    mine: &Digest,
    conn: impl FnOnce() -> Option<u64>,
) -> Standing {
    let (bytes, _) = host.shared_get(key);
    // The usual answer, on every request: this configuration is current. Read in place.
    if let Some(number) = bytes.as_deref().and_then(|b| current_number(b, mine)) {
        return Standing::Current {
            number,
            claimed: false,
        };
    }
    let Some(current) = bytes.as_deref().and_then(Record::decode) else {
        return Standing::Unknown;
    };
    if current.digest == *mine {
        return Standing::Current {
            number: current.number,
            claimed: false,
        };
    }
    let superseded = Standing::Superseded {
        by: current.digest,
        number: current.number,
    };
    let now = host.now_ms();
    if now < current.claimed_ms.saturating_add(GRACE_MS) {
        return superseded;
    }
    let Some(c) = conn().filter(|c| *c > current.max_conn) else {
        return superseded;
    };
    // A connection newer than any the current configuration served: new connections come
    // here, so this configuration is Envoy's current one again (a rollback).
    let outcome = update(host, key, |r| match r {
        Some(r) if r.digest == *mine => None,
        Some(r) if now >= r.claimed_ms.saturating_add(GRACE_MS) && c > r.max_conn => {
            Some(r.taken_over(mine, now, c))
        }
        _ => None,
    });
    match outcome {
        Some((r, _)) if r.digest == *mine => Standing::Current {
            number: r.number,
            claimed: true,
        },
        Some((r, _)) => Standing::Superseded {
            by: r.digest,
            number: r.number,
        },
        None => superseded,
    }
}

/// The current configuration `mine` served connection `conn`: raise the record's mark.
pub fn served(host: &dyn Host, key: &str, mine: &Digest, conn: u64) {
    update(host, key, |r| match r {
        Some(r) if r.digest == *mine && conn > r.max_conn => Some(Record {
            max_conn: conn,
            ..r.clone()
        }),
        _ => None,
    });
}

/// One configuration's part (one per root context, that is per gateway): it starts (claims or
/// adopts) on its first tick or request, publishes the newest connection it served about once
/// a second, and refuses every request once superseded.
#[derive(Debug)]
pub struct Generation {
    key: String,
    digest: Digest,
    started: bool,
    /// Read the connection id of the next request (set on every tick).
    sample: bool,
    /// The newest connection served, and the one last published.
    newest: u64,
    published: u64,
    /// When the last reading ("current") was taken, and until when it stands without reading
    /// the record again.
    current_since_ms: u64,
    current_until_ms: u64,
}

impl Generation {
    /// The part of `configuration` (its bytes) in the record of plugin `plugin_name`.
    pub fn new(plugin_name: &str, configuration: &[u8]) -> Self {
        Generation {
            key: key(plugin_name),
            digest: digest(configuration),
            started: false,
            sample: true,
            newest: 0,
            published: 0,
            current_since_ms: 0,
            current_until_ms: 0,
        }
    }

    fn start(&mut self, host: &dyn Host) {
        if std::mem::replace(&mut self.started, true) {
            return;
        }
        let me = label(&self.digest);
        match start(host, &self.key, &self.digest) {
            Standing::Current { number, claimed } => log::info!(
                "configuration {me} is current (generation {number}{})",
                if claimed { ", new" } else { "" }
            ),
            Standing::Superseded { by, number } => log::warn!(
                "configuration {me} was superseded by {} (generation {number}): its requests are refused",
                label(&by)
            ),
            Standing::Unknown => {
                log::warn!("configuration {me}: the generation record is unavailable")
            }
        }
    }

    /// The root's tick: start if not yet, publish the newest connection served.
    pub fn tick(&mut self, host: &dyn Host) {
        self.start(host);
        self.sample = true;
        if self.newest > self.published {
            served(host, &self.key, &self.digest, self.newest);
            self.published = self.newest;
        }
    }

    /// At the start of request `ctx`, at `now_ms`: whether its configuration was superseded
    /// (then it is refused). `conn` reads the request's connection id, only when needed. A
    /// "current" reading stands for [`RECHECK_MS`], except for the request after a tick,
    /// which samples its connection id.
    pub fn superseded(
        &mut self,
        host: &dyn Host,
        ctx: u32,
        now_ms: u64,
        conn: &dyn Fn() -> Option<u64>,
    ) -> bool {
        self.start(host);
        // A clock that stepped back since the reading does not stretch it.
        let fresh = (self.current_since_ms..self.current_until_ms).contains(&now_ms);
        if !self.sample && fresh {
            return false;
        }
        self.current_until_ms = 0;
        let mut read = None;
        let standing = check(host, &self.key, &self.digest, || {
            let c = conn();
            read = Some(c);
            c
        });
        match standing {
            Standing::Current { number, claimed } => {
                if claimed {
                    log::info!(
                        "#{ctx} configuration {} is current again (generation {number}): it \
                         serves the newest connections",
                        label(&self.digest)
                    );
                }
                if std::mem::take(&mut self.sample) {
                    if let Some(c) = read.unwrap_or_else(conn) {
                        self.newest = self.newest.max(c);
                    }
                }
                self.current_since_ms = now_ms;
                self.current_until_ms = now_ms.saturating_add(RECHECK_MS);
                false
            }
            Standing::Unknown => false,
            Standing::Superseded { by, number } => {
                log::info!(
                    "#{ctx} configuration {} was superseded by {} (generation {number}): refused",
                    label(&self.digest),
                    label(&by)
                );
                true
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::FakeHost;

    const KEY: &str = "tvp/v1/generation/token-vault-proxy";

    fn d(n: u8) -> Digest {
        digest(&[n])
    }

    fn record(host: &FakeHost) -> Record {
        Record::decode(&host.shared_get(KEY).0.unwrap()).unwrap()
    }

    fn host_at(ms: u64) -> FakeHost {
        let host = FakeHost::default();
        host.now.set(ms);
        host
    }

    #[test]
    fn the_refusal_closes_the_connection() {
        let r = superseded_reply();
        assert_eq!(r.status, 503);
        let header = |n: &str| {
            r.headers
                .iter()
                .find(|(h, _)| *h == n)
                .map(|(_, v)| v.as_str())
        };
        assert_eq!(header("connection"), Some("close"));
        assert_eq!(header("cache-control"), Some("no-store"));
        let body: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(body["error"], "temporarily_unavailable");
    }

    #[test]
    fn a_current_reading_stands_for_the_recheck_interval_then_the_record_is_read_again() {
        let host = host_at(1_000);
        let mut old = Generation::new("token-vault-proxy", b"old");
        let no_conn = || None;
        assert!(!old.superseded(&host, 1, 1_000, &no_conn));
        let reads = host.shared_reads();
        // Within the interval: no shared-data read at all.
        assert!(!old.superseded(&host, 2, 1_000 + RECHECK_MS - 1, &no_conn));
        assert_eq!(host.shared_reads(), reads);
        // A push claims the record; the old configuration refuses once its reading expires.
        let mut new = Generation::new("token-vault-proxy", b"new");
        new.tick(&host);
        assert!(!old.superseded(&host, 3, 1_000 + RECHECK_MS - 1, &no_conn));
        assert!(old.superseded(&host, 4, 1_000 + RECHECK_MS, &no_conn));
        // A refusal is never remembered as a reading: every request reads again.
        let reads = host.shared_reads();
        assert!(old.superseded(&host, 5, 1_000 + RECHECK_MS, &no_conn));
        assert!(host.shared_reads() > reads);
    }

    #[test]
    fn a_clock_stepped_back_does_not_stretch_a_reading() {
        let host = host_at(1_000);
        let mut g = Generation::new("token-vault-proxy", b"only");
        assert!(!g.superseded(&host, 1, 1_000, &|| None));
        let reads = host.shared_reads();
        assert!(!g.superseded(&host, 2, 999, &|| None));
        assert!(host.shared_reads() > reads);
    }

    #[test]
    fn the_request_after_a_tick_reads_the_record_and_samples_its_connection() {
        let host = host_at(1_000);
        let mut g = Generation::new("token-vault-proxy", b"only");
        g.tick(&host);
        assert!(!g.superseded(&host, 1, 1_000, &|| Some(42)));
        g.tick(&host);
        assert_eq!(record(&host).max_conn, 42);
        assert!(!g.superseded(&host, 2, 1_001, &|| Some(43)));
        // Not sampled again until the next tick, and no read in between.
        let reads = host.shared_reads();
        assert!(!g.superseded(&host, 3, 1_002, &|| panic!("not sampled")));
        assert_eq!(host.shared_reads(), reads);
        g.tick(&host);
        assert_eq!(record(&host).max_conn, 43);
    }

    #[test]
    fn records_round_trip_and_garbage_is_refused() {
        let r = Record {
            number: 7,
            digest: d(1),
            claimed_ms: 1_234,
            max_conn: 99,
            superseded: vec![d(2), d(3)],
        };
        assert_eq!(Record::decode(&r.encode()), Some(r.clone()));
        let bytes = r.encode();
        assert_eq!(Record::decode(&bytes[..bytes.len() - 1]), None);
        assert_eq!(Record::decode(&[]), None);
        let mut other_version = bytes.clone();
        other_version[0] = 2;
        assert_eq!(Record::decode(&other_version), None);
        let mut too_long = bytes;
        too_long[41] = (HISTORY + 1) as u8;
        assert_eq!(Record::decode(&too_long), None);
    }

    #[test]
    fn the_first_configuration_is_current_and_every_worker_adopts_it() {
        let host = host_at(1_000);
        assert_eq!(
            start(&host, KEY, &d(1)),
            Standing::Current {
                number: 1,
                claimed: true
            }
        );
        // The other workers (and the main thread) of the same push.
        for _ in 0..3 {
            assert_eq!(
                start(&host, KEY, &d(1)),
                Standing::Current {
                    number: 1,
                    claimed: false
                }
            );
        }
        assert!(matches!(
            check(&host, KEY, &d(1), || panic!("no connection id needed")),
            Standing::Current { number: 1, .. }
        ));
    }

    #[test]
    fn a_push_supersedes_the_old_configuration_at_its_next_request() {
        let host = host_at(1_000);
        start(&host, KEY, &d(1));
        served(&host, KEY, &d(1), 10);
        host.now.set(60_000);
        assert!(matches!(
            start(&host, KEY, &d(2)),
            Standing::Current {
                number: 2,
                claimed: true
            }
        ));
        let r = record(&host);
        assert_eq!(
            (r.digest, r.max_conn, r.superseded.clone()),
            (d(2), 10, vec![d(1)])
        );
        // A keep-alive connection of the old configuration: refused at once, whatever its id.
        for conn in [3, 10, 11] {
            assert_eq!(
                check(&host, KEY, &d(1), || Some(conn)),
                Standing::Superseded {
                    by: d(2),
                    number: 2
                }
            );
        }
        // The new configuration serves.
        assert!(matches!(
            check(&host, KEY, &d(2), || None),
            Standing::Current { number: 2, .. }
        ));
    }

    #[test]
    fn a_reloaded_vm_of_a_superseded_configuration_does_not_claim() {
        let host = host_at(1_000);
        start(&host, KEY, &d(1));
        served(&host, KEY, &d(1), 10);
        host.now.set(2_000);
        start(&host, KEY, &d(2));
        served(&host, KEY, &d(2), 20);
        // A trap on a worker: its VM restarts and configures the draining configuration.
        host.now.set(30_000);
        assert_eq!(
            start(&host, KEY, &d(1)),
            Standing::Superseded {
                by: d(2),
                number: 2
            }
        );
        // Its old connections stay refused, long after the grace period.
        for conn in [5, 12, 20] {
            assert!(matches!(
                check(&host, KEY, &d(1), || Some(conn)),
                Standing::Superseded { .. }
            ));
        }
        assert_eq!(record(&host).digest, d(2));
    }

    #[test]
    fn a_rollback_is_current_again_at_its_first_new_connection() {
        let host = host_at(1_000);
        start(&host, KEY, &d(1));
        served(&host, KEY, &d(1), 10);
        host.now.set(2_000);
        start(&host, KEY, &d(2));
        served(&host, KEY, &d(2), 20);
        // Within the grace period even a new connection does not switch back.
        host.now.set(2_000 + GRACE_MS - 1);
        assert!(matches!(
            check(&host, KEY, &d(1), || Some(21)),
            Standing::Superseded { .. }
        ));
        // The byte-identical configuration pushed again: Envoy reuses its root context, which
        // sees a connection newer than any configuration 2 served.
        host.now.set(60_000);
        assert_eq!(
            check(&host, KEY, &d(1), || Some(25)),
            Standing::Current {
                number: 3,
                claimed: true
            }
        );
        let r = record(&host);
        assert_eq!((r.digest, r.max_conn), (d(1), 25));
        assert_eq!(r.superseded, vec![d(2)]);
        // Configuration 2's keep-alive connections are refused now.
        assert!(matches!(
            check(&host, KEY, &d(2), || Some(20)),
            Standing::Superseded { .. }
        ));
    }

    #[test]
    fn a_new_configuration_becomes_current_even_if_an_older_one_is_remembered() {
        let host = host_at(1_000);
        for (i, n) in [1u8, 2, 3, 1].into_iter().enumerate() {
            host.now.set(1_000 * (i as u64 + 1));
            start(&host, KEY, &d(n));
        }
        // 1 was superseded: starting it again does not claim; 4 is new.
        assert_eq!(record(&host).digest, d(3));
        assert_eq!(
            start(&host, KEY, &d(4)),
            Standing::Current {
                number: 4,
                claimed: true
            }
        );
        assert_eq!(record(&host).superseded, vec![d(3), d(2), d(1)]);
    }

    #[test]
    fn history_is_bounded_and_has_no_duplicates() {
        let host = host_at(0);
        for n in 0..(HISTORY as u8 + 5) {
            host.now.set(u64::from(n) * 1_000);
            start(&host, KEY, &d(n));
        }
        let r = record(&host);
        assert_eq!(r.superseded.len(), HISTORY);
        assert_eq!(r.superseded[0], d(HISTORY as u8 + 3));
        // A configuration that fell out of the history counts as new again.
        assert!(matches!(
            start(&host, KEY, &d(0)),
            Standing::Current { claimed: true, .. }
        ));
        // Back and forth by connections: no digest twice.
        let mut conn = 1_000;
        for _ in 0..3 {
            for n in [1u8, 0] {
                host.now.set(host.now.get() + GRACE_MS);
                conn += 1;
                check(&host, KEY, &d(n), || Some(conn));
            }
        }
        let r = record(&host);
        let mut seen = r.superseded.clone();
        seen.sort();
        seen.dedup();
        assert_eq!(seen.len(), r.superseded.len());
        assert!(!r.superseded.contains(&r.digest));
    }

    #[test]
    fn the_mark_only_rises_and_only_for_the_current_configuration() {
        let host = host_at(1_000);
        start(&host, KEY, &d(1));
        served(&host, KEY, &d(1), 10);
        served(&host, KEY, &d(1), 7);
        assert_eq!(record(&host).max_conn, 10);
        served(&host, KEY, &d(2), 50);
        assert_eq!(record(&host).max_conn, 10);
    }

    #[test]
    fn without_a_record_or_a_connection_id_nothing_is_refused_or_claimed() {
        let host = host_at(1_000);
        assert_eq!(check(&host, KEY, &d(1), || Some(1)), Standing::Unknown);
        start(&host, KEY, &d(1));
        host.now.set(2_000);
        start(&host, KEY, &d(2));
        host.now.set(60_000);
        // No connection id: cannot be evidence of a rollback.
        assert!(matches!(
            check(&host, KEY, &d(1), || None),
            Standing::Superseded { .. }
        ));
        assert_eq!(record(&host).digest, d(2));
        // An unreadable record is treated as absent, and replaced by the next start.
        host.shared.borrow_mut().insert(KEY.into(), (vec![9, 9], 1));
        assert_eq!(check(&host, KEY, &d(1), || Some(1)), Standing::Unknown);
        assert!(matches!(
            start(&host, KEY, &d(2)),
            Standing::Current { claimed: true, .. }
        ));
    }
}
