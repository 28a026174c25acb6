//! How a query is answered from [`Records`]: the answer, NODATA or NXDOMAIN with the zone's
//! SOA, CNAME chains inside the zone, `<dashed-ip>.<ns>.pod.<zone>` names (CoreDNS's
//! `pods insecure`), or "not ours, forward it". Pure.

use hickory_proto::op::{Query, ResponseCode};
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType};

use super::records::Records;
use super::zone::undashed;

/// What the server does with a query.
#[derive(Debug, Clone, PartialEq)]
pub enum Answer {
    /// Answered here.
    Local(Reply),
    /// Outside the zone (or a reverse name we own nothing for): ask the upstream resolvers.
    Forward,
}

/// A locally built reply's sections.
#[derive(Debug, Clone, PartialEq)]
pub struct Reply {
    pub rcode: ResponseCode,
    pub authoritative: bool,
    pub answers: Vec<Record>,
    pub authorities: Vec<Record>,
    pub additionals: Vec<Record>,
    /// The answer ends in a CNAME pointing outside the zone (an ExternalName service): the
    /// server resolves this name upstream and appends what it finds, as a recursive
    /// resolver would, since stub resolvers do not chase CNAMEs themselves.
    pub chase: Option<Name>,
}

impl Reply {
    fn new(rcode: ResponseCode) -> Self {
        Self { rcode, authoritative: true, answers: Vec::new(), authorities: Vec::new(), additionals: Vec::new(), chase: None }
    }
}

/// What exists at a name inside the zone.
enum Node<'a> {
    Owns(&'a [RData]),
    Pod(std::net::IpAddr),
    Apex,
    Empty,
    Missing,
}

/// CNAME chains inside the zone are at most this long (they are one step in practice).
const MAX_CHAIN: usize = 8;

impl Records {
    /// The reply to one question.
    pub fn answer(&self, query: &Query) -> Answer {
        let name = query.name();
        let qtype = query.query_type();
        if !self.zone().apex().zone_of(name) {
            // Reverse names for cluster IPs and endpoints are ours; the rest of in-addr.arpa
            // and ip6.arpa goes upstream (CoreDNS's `fallthrough in-addr.arpa ip6.arpa`).
            return match self.get(name) {
                Some(data) if self.is_synced() => Answer::Local(self.owned(name, qtype, data, false)),
                _ => Answer::Forward,
            };
        }
        if !matches!(query.query_class(), DNSClass::IN | DNSClass::ANY) {
            let mut reply = Reply::new(ResponseCode::Refused);
            reply.authoritative = false;
            return Answer::Local(reply);
        }
        if !self.is_synced() {
            let mut reply = Reply::new(ResponseCode::ServFail);
            reply.authoritative = false;
            return Answer::Local(reply);
        }
        Answer::Local(self.answer_in_zone(name, qtype))
    }

    fn answer_in_zone(&self, name: &Name, qtype: RecordType) -> Reply {
        let mut reply = Reply::new(ResponseCode::NoError);
        let mut current = name.clone();
        for _ in 0..MAX_CHAIN {
            match self.node(&current) {
                Node::Owns(data) => {
                    let step = self.owned(&current, qtype, data, true);
                    reply.answers.extend(step.answers);
                    reply.additionals.extend(step.additionals);
                    reply.authorities = step.authorities;
                    reply.rcode = step.rcode;
                    match step.chase {
                        Some(target) if self.zone().apex().zone_of(&target) => current = target,
                        other => {
                            reply.chase = other;
                            return reply;
                        }
                    }
                }
                Node::Pod(ip) => {
                    let data = [address(ip)];
                    let step = self.owned(&current, qtype, &data, true);
                    reply.answers.extend(step.answers);
                    reply.authorities = step.authorities;
                    return reply;
                }
                Node::Apex if qtype == RecordType::SOA || qtype == RecordType::ANY => {
                    reply.answers.push(self.zone().soa(self.serial()));
                    return reply;
                }
                Node::Apex | Node::Empty => {
                    reply.authorities = vec![self.zone().soa(self.serial())];
                    return reply;
                }
                Node::Missing => {
                    reply.rcode = ResponseCode::NXDomain;
                    reply.authorities = vec![self.zone().soa(self.serial())];
                    return reply;
                }
            }
        }
        reply
    }

    /// The records of `qtype` that `name` owns; its CNAME (to be followed) when it has one
    /// and another type was asked; NODATA otherwise. SRV answers carry their targets'
    /// addresses as additionals.
    fn owned(&self, name: &Name, qtype: RecordType, data: &[RData], in_zone: bool) -> Reply {
        let ttl = self.zone().ttl();
        let mut reply = Reply::new(ResponseCode::NoError);
        let matching: Vec<&RData> = data.iter().filter(|d| qtype == RecordType::ANY || d.record_type() == qtype).collect();
        if !matching.is_empty() {
            for d in matching {
                reply.answers.push(Record::from_rdata(name.clone(), ttl, d.clone()));
                if let RData::SRV(srv) = d {
                    for target in self.get(&srv.target).unwrap_or_default() {
                        if matches!(target, RData::A(_) | RData::AAAA(_)) {
                            reply.additionals.push(Record::from_rdata(srv.target.clone(), ttl, target.clone()));
                        }
                    }
                }
            }
            return reply;
        }
        if let Some(RData::CNAME(cname)) = data.iter().find(|d| d.record_type() == RecordType::CNAME) {
            reply.answers.push(Record::from_rdata(name.clone(), ttl, RData::CNAME(cname.clone())));
            reply.chase = Some(cname.0.clone());
            return reply;
        }
        if in_zone {
            reply.authorities.push(self.zone().soa(self.serial()));
        }
        reply
    }

    fn node(&self, name: &Name) -> Node<'_> {
        if let Some(data) = self.get(name) {
            return Node::Owns(data);
        }
        if self.is_interior(name) {
            return Node::Empty;
        }
        let apex_labels = usize::from(self.zone().apex().num_labels());
        let labels: Vec<&[u8]> = name.iter().collect();
        let depth = labels.len().saturating_sub(apex_labels);
        if depth == 0 {
            return Node::Apex;
        }
        // `pod.<zone>`, `<ns>.pod.<zone>`, `<dashed-ip>.<ns>.pod.<zone>`.
        if labels[depth - 1].eq_ignore_ascii_case(b"pod") {
            return match depth {
                1 | 2 => Node::Empty,
                3 => match std::str::from_utf8(labels[0]).ok().and_then(undashed) {
                    Some(ip) => Node::Pod(ip),
                    None => Node::Missing,
                },
                _ => Node::Missing,
            };
        }
        Node::Missing
    }
}

fn address(ip: std::net::IpAddr) -> RData {
    match ip {
        std::net::IpAddr::V4(v4) => RData::A(v4.into()),
        std::net::IpAddr::V6(v6) => RData::AAAA(v6.into()),
    }
}
