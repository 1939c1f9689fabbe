//! What a host does with a decision: the effects on one request, in order, and whether the
//! request then goes on. Hosts apply them and decide nothing.

use std::rc::Rc;

use crate::reply::Reply;

/// One thing to do to a request (or its response), in order.
#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    /// Remove a request header. Failing it fails the request closed ([`Gateway::edit_failed`]).
    ///
    /// [`Gateway::edit_failed`]: super::Gateway::edit_failed
    RemoveHeader(String),
    /// Set a request header (replacing every value; `:path` included). Same failure rule.
    SetHeader(String, String),
    /// Route the request again (after its `:path` changed).
    ClearRouteCache,
    /// Answer the request locally.
    Reply(Reply),
    /// The decision record: one log line, and filter state `tvp_decision` for access logs.
    Record(Rc<str>),
    /// On the response: remove a header.
    RemoveResponseHeader(String),
    /// On the response: set a header (`:status` included).
    SetResponseHeader(String, String),
    /// The request waits for another worker: call [`Gateway::on_wake`] in its context when
    /// shared-data record `key` is written (at once if its version is no longer `seen`), or at
    /// `by_ms` (host clock) at the latest. Only a
    /// gateway whose worker shares flights ([`Worker::with_shared_flights`]) asks for it.
    ///
    /// [`Gateway::on_wake`]: super::Gateway::on_wake
    /// [`Worker::with_shared_flights`]: crate::flow::Worker::with_shared_flights
    WakeOnWrite {
        key: String,
        by_ms: u64,
        seen: Option<u32>,
    },
}

impl Effect {
    /// An edit of the request that must succeed before the request may go on.
    pub fn is_request_edit(&self) -> bool {
        matches!(
            self,
            Effect::RemoveHeader(_) | Effect::SetHeader(..) | Effect::ClearRouteCache
        )
    }
}

/// Whether the request goes on down the filter chain once the effects are applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// Continue (from a callback) or resume (a stopped request).
    Continue,
    /// Stay stopped: answered, or still waiting.
    Stop,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    pub effects: Vec<Effect>,
    pub next: Next,
}

impl Outcome {
    /// Nothing to do; the request goes on.
    pub fn go_on() -> Self {
        Outcome {
            effects: Vec::new(),
            next: Next::Continue,
        }
    }

    /// Nothing to do; the request stays stopped.
    pub fn stop() -> Self {
        Outcome {
            effects: Vec::new(),
            next: Next::Stop,
        }
    }

    /// A local answer.
    pub fn reply(reply: Reply) -> Self {
        Outcome {
            effects: vec![Effect::Reply(reply)],
            next: Next::Stop,
        }
    }

    /// The local answer of this outcome, if it has one.
    pub fn reply_of(&self) -> Option<&Reply> {
        self.effects.iter().find_map(|e| match e {
            Effect::Reply(r) => Some(r),
            _ => None,
        })
    }
}

/// Outcomes for requests by context id: an event may decide several (every request waiting
/// for the call-out that answered).
pub type Resolved = Vec<(u32, Outcome)>;
