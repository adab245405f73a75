//! A DNS server the tests control, on 127.0.0.1 (UDP, port 0): the customers' DNS, and the
//! faults of the operator's own resolver. A stand-in, because no installable server can be
//! told to fail on demand (SERVFAIL, silence) for one name while answering for another; it
//! speaks real DNS over real sockets, encoded by hickory's own message types.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};

use hickory_resolver::proto::op::{Message, MessageType, ResponseCode};
use hickory_resolver::proto::rr::rdata::{A, SOA};
use hickory_resolver::proto::rr::{Name, RData, Record, RecordType};
use tokio::net::UdpSocket;

/// How the server answers for a name.
#[derive(Clone, Copy, Debug)]
pub enum Answer {
    /// An A record.
    Address(Ipv4Addr),
    /// The name does not exist.
    NxDomain,
    /// The server failed (the resolver's own trouble).
    ServFail,
    /// No answer at all.
    Silent,
}

/// A running server; it stops when dropped.
pub struct Dns {
    pub address: SocketAddr,
    zone: Arc<Mutex<HashMap<String, Answer>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Dns {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Dns {
    /// Starts a server that knows no name yet (NXDOMAIN for all).
    pub async fn start() -> Dns {
        let socket = UdpSocket::bind("127.0.0.1:0").await.expect("binding the DNS server");
        let address = socket.local_addr().expect("the DNS server's address");
        let zone: Arc<Mutex<HashMap<String, Answer>>> = Arc::default();
        let known = zone.clone();
        let task = tokio::spawn(async move {
            let mut buffer = [0u8; 1500];
            while let Ok((length, peer)) = socket.recv_from(&mut buffer).await {
                let Ok(query) = Message::from_vec(&buffer[..length]) else {
                    continue;
                };
                let Some(reply) = answer(&query, &known.lock().expect("zone")) else {
                    continue;
                };
                if let Ok(bytes) = reply.to_vec() {
                    let _ = socket.send_to(&bytes, peer).await;
                }
            }
        });
        Dns { address, zone, task }
    }

    /// From now on, answers `answer` for `name`.
    pub fn set(&self, name: &str, answer: Answer) {
        self.zone
            .lock()
            .expect("zone")
            .insert(name.trim_end_matches('.').to_ascii_lowercase(), answer);
    }
}

fn answer(query: &Message, zone: &HashMap<String, Answer>) -> Option<Message> {
    let question = query.queries.first()?;
    let name = question.name().to_ascii().trim_end_matches('.').to_ascii_lowercase();
    let mut reply = Message::new(query.metadata.id, MessageType::Response, query.metadata.op_code);
    reply.metadata.authoritative = true;
    reply.metadata.recursion_desired = query.metadata.recursion_desired;
    reply.metadata.recursion_available = true;
    reply.add_query(question.clone());
    let negative = |reply: &mut Message, code: ResponseCode| {
        reply.metadata.response_code = code;
        // The zone's SOA, as an authoritative negative answer carries it.
        let soa = SOA::new(
            Name::from_ascii("ns.test.").expect("name"),
            Name::from_ascii("hostmaster.test.").expect("name"),
            1,
            60,
            60,
            60,
            1,
        );
        reply.add_authority(Record::from_rdata(
            Name::from_ascii("test.").expect("name"),
            1,
            RData::SOA(soa),
        ));
    };
    match zone.get(&name).copied().unwrap_or(Answer::NxDomain) {
        Answer::Silent => return None,
        Answer::ServFail => reply.metadata.response_code = ResponseCode::ServFail,
        Answer::NxDomain => negative(&mut reply, ResponseCode::NXDomain),
        Answer::Address(ip) if question.query_type() == RecordType::A => {
            reply.add_answer(Record::from_rdata(question.name().clone(), 1, RData::A(A(ip))));
        }
        // The name exists, without a record of that type.
        Answer::Address(_) => negative(&mut reply, ResponseCode::NoError),
    }
    Some(reply)
}
