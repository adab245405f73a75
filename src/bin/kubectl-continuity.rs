//! `kubectl continuity`: the kubectl plugin for ContinuityDomains. This first cut lists the
//! mail a domain's standby holds for its primary, from the hand-back agent's tracking
//! endpoint, reached through the API server's service proxy (so it works from wherever
//! kubectl does, with the caller's own permissions: `get` on `services/proxy`).

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use kube::{Api, Client};

use continuity_operator::api::ContinuityDomain;
use continuity_operator::handback::ledger::State;
use continuity_operator::handback::tracking::{self, MessageList};
use continuity_operator::resources::names::ChildNames;

#[derive(Parser, Debug)]
#[command(name = "kubectl continuity", version, about = "Work with ContinuityDomains")]
struct Cli {
    /// The namespace; the kubeconfig context's when omitted.
    #[arg(short, long, global = true)]
    namespace: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Lists the messages the standby held for the primary, newest first.
    Messages {
        /// The ContinuityDomain.
        domain: String,
        /// Only messages in this state.
        #[arg(long, value_parser = ["Deferred", "Delivered", "Failed"])]
        state: Option<String>,
        /// Only messages for this recipient.
        #[arg(long)]
        recipient: Option<String>,
        /// At most this many.
        #[arg(long, default_value_t = tracking::DEFAULT_LIMIT)]
        limit: usize,
        /// `table` or `json`.
        #[arg(short, long, default_value = "table", value_parser = ["table", "json"])]
        output: String,
    },
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

async fn run(cli: Cli) -> Result<(), String> {
    let client = Client::try_default()
        .await
        .map_err(|e| format!("cannot reach the cluster: {e}"))?;
    let namespace = cli.namespace.unwrap_or_else(|| client.default_namespace().to_owned());
    match cli.command {
        Command::Messages {
            domain,
            state,
            recipient,
            limit,
            output,
        } => {
            let domains: Api<ContinuityDomain> = Api::namespaced(client.clone(), &namespace);
            let resource = domains
                .get_opt(&domain)
                .await
                .map_err(|e| format!("cannot read ContinuityDomain {namespace}/{domain}: {e}"))?
                .ok_or_else(|| format!("ContinuityDomain {namespace}/{domain} not found"))?;
            let service = ChildNames::of(&domain, &resource.spec).standby_mail;
            let mut query = format!("limit={limit}");
            if let Some(state) = state {
                query.push_str(&format!("&state={state}"));
            }
            if let Some(recipient) = recipient {
                query.push_str(&format!("&recipient={}", encode(&recipient)));
            }
            let path = format!(
                "/api/v1/namespaces/{namespace}/services/{service}:{}/proxy/messages?{query}",
                tracking::PORT_NAME
            );
            let request = http::Request::get(&path).body(Vec::new()).map_err(|e| e.to_string())?;
            let text = client
                .request_text(request)
                .await
                .map_err(|e| format!("cannot reach the standby's agent (is the mail pod running?): {e}"))?;
            let list: MessageList =
                serde_json::from_str(&text).map_err(|e| format!("unexpected answer from the agent: {e}"))?;
            if output == "json" {
                println!("{}", serde_json::to_string_pretty(&list).map_err(|e| e.to_string())?);
            } else {
                print!("{}", table(&list));
            }
            Ok(())
        }
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    match run(Cli::parse()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::FAILURE
        }
    }
}
