//! One HTTP request: each callback reads what it must from the host and hands it to the core.

use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::Action;

use super::{apply, Shared};
use crate::host::{self, ProxyWasmHost};
use tvp_core::gateway;

pub struct Request {
    id: u32,
    plugin: Option<Shared>,
}

impl Request {
    pub fn new(id: u32, plugin: Option<Shared>) -> Self {
        Request { id, plugin }
    }

    /// Outside its headers callback a request that goes on must be resumed.
    fn resume_after(&self, action: Action) {
        if action == Action::Continue {
            host::resume_request();
        }
    }
}

impl Context for Request {
    fn on_http_call_response(
        &mut self,
        token: u32,
        _headers: usize,
        body_size: usize,
        _trailers: usize,
    ) {
        let Some(plugin) = &self.plugin else {
            return;
        };
        // Delivered to the context that sent it: this request's own outcome resumes it.
        let action = apply::callout_answered(plugin, token, body_size, self.id);
        self.resume_after(action);
    }
}

impl HttpContext for Request {
    fn on_http_request_headers(&mut self, _num_headers: usize, end_of_stream: bool) -> Action {
        let Some(plugin) = &self.plugin else {
            host::send_reply(&gateway::not_configured());
            return Action::Pause;
        };
        let head = host::request_head();
        let decided = plugin.gateway.borrow_mut().on_request_headers(
            &ProxyWasmHost,
            self.id,
            head,
            end_of_stream,
        );
        apply::resolved(plugin, decided, self.id)
    }

    fn on_http_request_body(&mut self, size: usize, end_of_stream: bool) -> Action {
        let Some(plugin) = &self.plugin else {
            return Action::Pause;
        };
        let outcome = plugin.gateway.borrow_mut().on_request_body(
            &ProxyWasmHost,
            self.id,
            size,
            end_of_stream,
            &host::request_body,
        );
        apply::this(plugin, self.id, outcome)
    }

    fn on_http_request_trailers(&mut self, _num_trailers: usize) -> Action {
        let Some(plugin) = &self.plugin else {
            return Action::Pause;
        };
        let outcome = plugin.gateway.borrow_mut().on_request_trailers(
            &ProxyWasmHost,
            self.id,
            &host::request_body,
        );
        apply::this(plugin, self.id, outcome)
    }

    fn on_http_response_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        if let Some(plugin) = &self.plugin {
            // Bound first: the borrow ends before the host is called.
            let effects = plugin.gateway.borrow_mut().on_response_headers(
                &ProxyWasmHost,
                self.id,
                &host::response_status,
                &host::response_header,
            );
            let outcome = gateway::Outcome {
                effects,
                next: gateway::Next::Continue,
            };
            return apply::this(plugin, self.id, outcome);
        }
        Action::Continue
    }
}

impl Drop for Request {
    fn drop(&mut self) {
        if let Some(plugin) = &self.plugin {
            if let Ok(mut g) = plugin.gateway.try_borrow_mut() {
                g.forget(&ProxyWasmHost, self.id);
            }
        }
    }
}
