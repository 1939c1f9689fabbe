//! A configuration's background work, on Envoy's main thread: a tick (50 ms after loading,
//! then every second) fetches and refreshes every tenant's keys through configuration-level
//! call-outs. Fetched keys go to the process-wide store, where every worker's gateway finds
//! them, so no request waits for a cold key fetch and no request's end cancels a refresh.
//!
//! The tick comes from a timer thread that only commits the configuration's scheduler; Envoy
//! runs the tick itself on the main thread. The thread is joined before the scheduler is
//! deleted.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::mpsc;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use log::warn;

use tvp_core::config;
use tvp_core::flow::Worker;
use tvp_core::gateway::Gateway;

use crate::abi::{CalloutAnswer, ConfigHandle, ConfigScheduler};
use crate::crypto::{NativeSigner, NativeVerifier};
use crate::filter::{callout_response, FilterConfig};
use crate::host::{Caller, MetricIds, NativeHost};
use crate::registry;

const FIRST_TICK: Duration = Duration::from_millis(50);
const TICK: Duration = Duration::from_secs(1);

/// Commits the scheduler until told to stop (its sender dropped).
struct Ticker {
    stop: Option<mpsc::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Ticker {
    fn start(scheduler: Arc<ConfigScheduler>) -> Option<Ticker> {
        let (stop, stopped) = mpsc::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("tvp-tick".into())
            .spawn(move || {
                let mut wait = FIRST_TICK;
                // Wakes at once when the sender is dropped: `Disconnected` ends the loop.
                while let Err(mpsc::RecvTimeoutError::Timeout) = stopped.recv_timeout(wait) {
                    scheduler.commit(0);
                    // Requests waiting for another worker's exchange past its lease.
                    crate::wake::expired(crate::host::now_ms());
                    wait = TICK;
                }
            })
            .ok()?;
        Some(Ticker {
            stop: Some(stop),
            thread: Some(thread),
        })
    }
}

impl Drop for Ticker {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// One configuration's main-thread part. Fields drop in order: the ticker (joined) before the
/// scheduler it commits.
struct Background {
    _ticker: Option<Ticker>,
    _scheduler: Arc<ConfigScheduler>,
    gateway: Gateway,
    handle: ConfigHandle,
    metrics: Arc<MetricIds>,
    /// The context id the configuration's call-outs are sent as.
    root: u32,
}

thread_local! {
    static BACKGROUND: RefCell<HashMap<u64, Background>> = RefCell::new(HashMap::new());
}

/// Start `config`'s background work (main thread, in `config_new`). True when its ticker runs
/// (it also wakes requests whose wait for another worker ran out: without it, workers do not
/// share flights).
pub fn start(config: &FilterConfig, handle: ConfigHandle) -> bool {
    let Ok(parsed) = config::parse(config.bytes(), &config::process_env) else {
        return false;
    };
    let Some(scheduler) = handle.scheduler().map(Arc::new) else {
        warn!("no configuration scheduler: keys are fetched by requests only");
        return false;
    };
    let worker = Worker::new(Rc::new(parsed), Box::new(NativeVerifier::default()))
        .with_signer(Box::new(NativeSigner));
    let ticker = Ticker::start(Arc::clone(&scheduler));
    let ticking = ticker.is_some();
    if ticking {
        // The tick hands the counts to Envoy from now on (`MetricIds::flush`).
        config.metrics().batch();
    }
    let background = Background {
        _ticker: ticker,
        _scheduler: scheduler,
        gateway: Gateway::new(worker),
        handle,
        metrics: Arc::clone(config.metrics()),
        root: registry::next_id(),
    };
    BACKGROUND.with(|b| b.borrow_mut().insert(config.id(), background));
    ticking
}

/// Stop it (main thread, in `config_destroy`): the timer thread is joined, pending call-outs
/// are cancelled by Envoy with the configuration.
pub fn stop(config_id: u64) {
    let removed = BACKGROUND.with(|b| b.borrow_mut().remove(&config_id));
    if let Some(b) = &removed {
        // Its call-outs in flight are cancelled with the configuration.
        registry::unregister(b.root);
    }
    drop(removed);
}

/// The tick: refresh what is due.
pub fn tick(config: &FilterConfig) {
    with(config.id(), |b, host| {
        b.metrics.flush(b.handle);
        // No request lives on the main thread: outcomes name none.
        let _ = b.gateway.on_tick(host, b.root);
    });
}

/// A configuration call-out answered.
pub fn callout_done(config: &FilterConfig, envoy_id: u64, answer: CalloutAnswer) {
    with(config.id(), |b, host| {
        let Some(token) = registry::callout_answered(b.root, envoy_id) else {
            return;
        };
        let max = b.gateway.config().settings.max_callout_response_bytes;
        let response = callout_response(&answer, max);
        let _ = b
            .gateway
            .on_callout_response(host, token, &response, b.root);
    });
}

fn with(config_id: u64, f: impl FnOnce(&mut Background, &NativeHost)) {
    BACKGROUND.with(|b| {
        let Ok(mut all) = b.try_borrow_mut() else {
            return;
        };
        let Some(background) = all.get_mut(&config_id) else {
            return;
        };
        let metrics = Arc::clone(&background.metrics);
        let host = NativeHost {
            caller: Caller::Config(background.handle),
            metrics: &metrics,
        };
        f(background, &host);
    });
}
