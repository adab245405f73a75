//! `kubectl continuity messages <domain>`: the mail a domain's standby holds for its primary,
//! from the hand-back agent's tracking endpoint, reached through the API server's service
//! proxy (so it works from wherever kubectl does, with the caller's own permissions: `get`
//! on `services/proxy`).

use kube::Client;

use super::Domain;
use crate::handback::ledger::State;
use crate::handback::tracking::{self, MessageList};
use crate::resources::names::ChildNames;

/// Which messages to list.
pub struct Query {
    pub state: Option<String>,
    pub recipient: Option<String>,
    pub limit: usize,
}

/// Percent-encodes a query value (addresses may hold `+`, `&`, `=`).
fn encode(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' | b'@' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn table(list: &MessageList) -> String {
    let mut out = format!(
        "{:<6} {:<9} {:<20} {:<30} {:<30} {:<40} REPLY\n",
        "SEQ", "STATE", "RECEIVED", "SENDER", "RECIPIENT", "MESSAGE-ID"
    );
    for m in &list.items {
        let state = match m.state {
            State::Deferred => "Deferred",
            State::Delivered => "Delivered",
            State::Failed => "Failed",
        };
        out.push_str(&format!(
            "{:<6} {:<9} {:<20} {:<30} {:<30} {:<40} {}\n",
            m.seq,
            state,
            m.received_at.strftime("%Y-%m-%dT%H:%M:%SZ"),
            if m.sender.is_empty() { "<>" } else { &m.sender },
            m.recipient,
            m.message_id.as_deref().unwrap_or("-"),
            m.reply.as_deref().unwrap_or("")
        ));
    }
    out.push_str(&format!("{} of {} messages shown\n", list.items.len(), list.total));
    out
}

/// Prints the messages `query` selects, as a table or JSON.
pub async fn show(client: &Client, domain: &Domain, query: &Query, json: bool) -> Result<(), String> {
    let service = ChildNames::of(&domain.name, &domain.resource.spec).standby_mail;
    let mut params = format!("limit={}", query.limit);
    if let Some(state) = &query.state {
        params.push_str(&format!("&state={state}"));
    }
    if let Some(recipient) = &query.recipient {
        params.push_str(&format!("&recipient={}", encode(recipient)));
    }
    let path = format!(
        "/api/v1/namespaces/{}/services/{service}:{}/proxy/messages?{params}",
        domain.namespace,
        tracking::PORT_NAME
    );
    let request = http::Request::get(&path).body(Vec::new()).map_err(|e| e.to_string())?;
    let text = client
        .request_text(request)
        .await
        .map_err(|e| format!("cannot reach the standby's agent (is the mail pod running?): {e}"))?;
    let list: MessageList =
        serde_json::from_str(&text).map_err(|e| format!("unexpected answer from the agent: {e}"))?;
    if json {
        println!("{}", serde_json::to_string_pretty(&list).map_err(|e| e.to_string())?);
    } else {
        print!("{}", table(&list));
    }
    Ok(())
}
