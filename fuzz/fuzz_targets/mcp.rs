//! MCP request bodies (attacker-controlled JSON-RPC): never panic; an answer is JSON-RPC 2.0
//! that echoes a string or number id, and a relayed request is never one that needs the
//! account.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tvp_core::mcp::{answer, parse, relays, ConnectOffer, Kind, McpRequest};
use tvp_core::reply::ConnectLink;

fuzz_target!(|data: &[u8]| {
    let Some((&selector, body)) = data.split_first() else { return };
    let versions = [None, Some("2025-06-18"), Some("2025-11-25"), Some("2026-07-28"), Some("2099-01-01")];
    let request = McpRequest {
        kind: Kind::Message,
        protocol_version: versions[usize::from(selector) % versions.len()].map(str::to_string),
        method_header: None,
        name_header: None,
        session: None,
    };
    let offer = ConnectOffer {
        connection: "github".into(),
        message: "Authorization required to access the Token Vault: github".into(),
        link: (selector & 0x80 == 0).then(|| ConnectLink {
            id: "L1".into(),
            url: "https://gw.example/connect/github/start?id=L1".into(),
        }),
    };
    let message = parse(body);
    if relays(&request, message.as_ref()) {
        let method = message.as_ref().and_then(|m| m.method.as_deref());
        assert!(!matches!(method, Some("tools/call" | "prompts/get" | "resources/read")) || message.as_ref().is_some_and(|m| m.id.is_none()));
        return;
    }
    if let Some(reply) = answer(&request, message.as_ref(), selector & 0x40 == 0, &offer) {
        let answer: serde_json::Value = serde_json::from_slice(&reply.body).expect("JSON");
        assert_eq!(answer["jsonrpc"], "2.0");
        assert!(answer["id"].is_string() || answer["id"].is_number());
        assert!(answer["result"].is_object() != answer["error"].is_object());
    }
});
