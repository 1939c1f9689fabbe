//! [`crate::generation`] in the filter: each root context knows its configuration's digest;
//! it starts (claims or adopts) on its first tick or request, publishes the newest connection
//! it served about once a second, and every request of a superseded configuration is refused
//! before anything else.

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use log::{info, warn};

use crate::audit::Decision;
use crate::flow::{Host, Worker};
use crate::generation::{self, Digest, Standing};
use crate::host::{self, ProxyWasmHost};
use crate::reply::Reply;

/// The realm of refusals that name no tenant (as `http`'s).
const REALM: &str = "token-vault-proxy";

/// One root context's part.
pub(super) struct Local {
    key: String,
    digest: Digest,
    started: Cell<bool>,
    /// Read the connection id of the next request (set on every tick).
    sample: Cell<bool>,
    /// The newest connection served, and the one last published.
    newest: Cell<u64>,
    published: Cell<u64>,
}

thread_local! {
    /// The roots of this VM by their worker (old and new configurations share a VM while old
    /// connections drain), so a request finds its root's part from the worker it holds.
    static ROOTS: RefCell<Vec<(*const RefCell<Worker>, Rc<Local>)>> = const { RefCell::new(Vec::new()) };
}

impl Local {
    pub(super) fn new(configuration: &[u8]) -> Rc<Local> {
        let name = host::plugin_name().unwrap_or_default();
        Rc::new(Local {
            key: generation::key(&name),
            digest: generation::digest(configuration),
            started: Cell::new(false),
            sample: Cell::new(true),
            newest: Cell::new(0),
            published: Cell::new(0),
        })
    }

    fn start(&self) {
        if self.started.replace(true) {
            return;
        }
        let me = generation::label(&self.digest);
        match generation::start(&ProxyWasmHost, &self.key, &self.digest) {
            Standing::Current { number, claimed } => info!(
                "configuration {me} is current (generation {number}{})",
                if claimed { ", new" } else { "" }
            ),
            Standing::Superseded { by, number } => warn!(
                "configuration {me} was superseded by {} (generation {number}): its requests are refused",
                generation::label(&by)
            ),
            Standing::Unknown => warn!("configuration {me}: the generation record is unavailable"),
        }
    }
}

pub(super) fn register(worker: &Rc<RefCell<Worker>>, local: Rc<Local>) {
    ROOTS.with(|r| r.borrow_mut().push((Rc::as_ptr(worker), local)));
}

pub(super) fn unregister(worker: &Rc<RefCell<Worker>>) {
    ROOTS.with(|r| r.borrow_mut().retain(|(w, _)| *w != Rc::as_ptr(worker)));
}

fn local_of(worker: &Rc<RefCell<Worker>>) -> Option<Rc<Local>> {
    ROOTS.with(|r| {
        r.borrow()
            .iter()
            .find(|(w, _)| *w == Rc::as_ptr(worker))
            .map(|(_, l)| Rc::clone(l))
    })
}

/// The root's tick: start if not yet, publish the newest connection served.
pub(super) fn tick(local: &Local) {
    local.start();
    local.sample.set(true);
    let newest = local.newest.get();
    if newest > local.published.get() {
        generation::served(&ProxyWasmHost, &local.key, &local.digest, newest);
        local.published.set(newest);
    }
}

/// At the start of a request: the answer when its configuration was superseded.
pub(super) fn refusal(context_id: u32, worker: Option<&Rc<RefCell<Worker>>>) -> Option<Reply> {
    let local = local_of(worker?)?;
    local.start();
    let mut read = None;
    let standing = generation::check(&ProxyWasmHost, &local.key, &local.digest, || {
        let conn = host::connection_id();
        read = Some(conn);
        conn
    });
    match standing {
        Standing::Current { number, claimed } => {
            if claimed {
                info!(
                    "#{context_id} configuration {} is current again (generation {number}): \
                     it serves the newest connections",
                    generation::label(&local.digest)
                );
            }
            if local.sample.replace(false) {
                if let Some(conn) = read.unwrap_or_else(host::connection_id) {
                    local.newest.set(local.newest.get().max(conn));
                }
            }
            None
        }
        Standing::Unknown => None,
        Standing::Superseded { by, number } => {
            ProxyWasmHost.count(REALM, "deny.superseded_configuration");
            info!(
                "#{context_id} configuration {} was superseded by {} (generation {number}): refused",
                generation::label(&local.digest),
                generation::label(&by)
            );
            super::http::audit(
                context_id,
                None,
                None,
                Decision::Deny,
                "superseded_configuration",
            );
            Some(generation::superseded_reply())
        }
    }
}
