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
        if matches!(qtype, RecordType::AXFR | RecordType::IXFR) {
            // The zone is the cluster's inventory: not for transfer.
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dns::records::tests::{external, headless, name, service, slice, zone};

    fn records() -> Records {
        let web = service("default", "web", "10.96.0.10", &[("http", 80, "TCP")]);
        let pg = headless("db", "pg", &[]);
        let pg_eps = slice("db", "pg", &[("10.244.0.5", Some("pg-0"), Some(true)), ("10.244.0.6", None, Some(true))], &[("sql", 5432, "TCP")]);
        let ext = external("default", "ext", "db.example.com");
        let alias = external("default", "alias", "web.default.svc.cluster.local");
        Records::build(zone(), [&web, &pg, &ext, &alias], [&pg_eps])
    }

    fn ask(records: &Records, qname: &str, qtype: RecordType) -> Answer {
        records.answer(&Query::query(name(qname), qtype))
    }

    fn local(records: &Records, qname: &str, qtype: RecordType) -> Reply {
        match ask(records, qname, qtype) {
            Answer::Local(reply) => reply,
            Answer::Forward => panic!("{qname} {qtype} was forwarded"),
        }
    }

    fn rdata(records: &[Record]) -> Vec<String> {
        let mut got: Vec<String> = records.iter().map(|r| r.data.to_string()).collect();
        got.sort();
        got
    }

    fn is_soa(records: &[Record]) -> bool {
        matches!(records, [r] if r.record_type() == RecordType::SOA && r.name.to_ascii() == "cluster.local.")
    }

    #[test]
    fn service_a_record_with_ttl_and_the_asked_case() {
        let reply = local(&records(), "Web.Default.svc.cluster.local.", RecordType::A);
        assert_eq!(reply.rcode, ResponseCode::NoError);
        assert!(reply.authoritative);
        assert_eq!(rdata(&reply.answers), ["10.96.0.10"]);
        assert_eq!(reply.answers[0].ttl, 5);
        assert_eq!(reply.answers[0].name.to_ascii(), "Web.Default.svc.cluster.local.");
    }

    #[test]
    fn aaaa_for_an_ipv4_only_name_is_nodata_with_soa() {
        let reply = local(&records(), "web.default.svc.cluster.local.", RecordType::AAAA);
        assert_eq!(reply.rcode, ResponseCode::NoError);
        assert!(reply.answers.is_empty());
        assert!(is_soa(&reply.authorities));
    }

    #[test]
    fn missing_names_are_nxdomain_with_soa() {
        for missing in ["nope.default.svc.cluster.local.", "web.nope.svc.cluster.local.", "x.cluster.local.", "a.b.web.default.svc.cluster.local."] {
            let reply = local(&records(), missing, RecordType::A);
            assert_eq!(reply.rcode, ResponseCode::NXDomain, "{missing}");
            assert!(is_soa(&reply.authorities), "{missing}");
            assert_eq!(reply.authorities[0].ttl, 5);
        }
    }

    #[test]
    fn names_above_records_are_nodata() {
        for interior in ["default.svc.cluster.local.", "svc.cluster.local.", "_tcp.web.default.svc.cluster.local."] {
            let reply = local(&records(), interior, RecordType::A);
            assert_eq!(reply.rcode, ResponseCode::NoError, "{interior}");
            assert!(reply.answers.is_empty() && is_soa(&reply.authorities), "{interior}");
        }
    }

    #[test]
    fn apex_answers_its_soa() {
        let reply = local(&records(), "cluster.local.", RecordType::SOA);
        assert!(is_soa(&reply.answers));
        let reply = local(&records(), "cluster.local.", RecordType::A);
        assert!(reply.answers.is_empty() && is_soa(&reply.authorities));
    }

    #[test]
    fn srv_for_a_named_port_with_target_addresses() {
        let reply = local(&records(), "_http._tcp.web.default.svc.cluster.local.", RecordType::SRV);
        assert_eq!(rdata(&reply.answers), ["0 100 80 web.default.svc.cluster.local."]);
        assert_eq!(rdata(&reply.additionals), ["10.96.0.10"]);
        let reply = local(&records(), "_sql._tcp.pg.db.svc.cluster.local.", RecordType::SRV);
        assert_eq!(rdata(&reply.answers), ["0 50 5432 10-244-0-6.pg.db.svc.cluster.local.", "0 50 5432 pg-0.pg.db.svc.cluster.local."]);
        assert_eq!(rdata(&reply.additionals), ["10.244.0.5", "10.244.0.6"]);
    }

    #[test]
    fn headless_service_answers_endpoint_addresses() {
        let reply = local(&records(), "pg.db.svc.cluster.local.", RecordType::A);
        assert_eq!(rdata(&reply.answers), ["10.244.0.5", "10.244.0.6"]);
        let reply = local(&records(), "pg-0.pg.db.svc.cluster.local.", RecordType::A);
        assert_eq!(rdata(&reply.answers), ["10.244.0.5"]);
    }

    #[test]
    fn ptr_for_cluster_ips_and_endpoints_others_forwarded() {
        let reply = local(&records(), "10.0.96.10.in-addr.arpa.", RecordType::PTR);
        assert_eq!(rdata(&reply.answers), ["web.default.svc.cluster.local."]);
        let reply = local(&records(), "5.0.244.10.IN-ADDR.ARPA.", RecordType::PTR);
        assert_eq!(rdata(&reply.answers), ["pg-0.pg.db.svc.cluster.local."]);
        assert_eq!(ask(&records(), "8.8.8.8.in-addr.arpa.", RecordType::PTR), Answer::Forward);
    }

    #[test]
    fn names_outside_the_zone_are_forwarded() {
        assert_eq!(ask(&records(), "example.com.", RecordType::A), Answer::Forward);
        assert_eq!(ask(&records(), "local.", RecordType::A), Answer::Forward);
        assert_eq!(ask(&records(), "othercluster.local.", RecordType::A), Answer::Forward);
    }

    #[test]
    fn external_name_answers_cname_and_asks_for_the_target() {
        let reply = local(&records(), "ext.default.svc.cluster.local.", RecordType::A);
        assert_eq!(rdata(&reply.answers), ["db.example.com."]);
        assert_eq!(reply.chase, Some(name("db.example.com.")));
        let reply = local(&records(), "ext.default.svc.cluster.local.", RecordType::CNAME);
        assert_eq!(rdata(&reply.answers), ["db.example.com."]);
        assert_eq!(reply.chase, None);
    }

    #[test]
    fn cname_into_the_zone_is_followed_here() {
        let reply = local(&records(), "alias.default.svc.cluster.local.", RecordType::A);
        assert_eq!(reply.answers.len(), 2);
        assert_eq!(reply.answers[0].record_type(), RecordType::CNAME);
        assert_eq!(reply.answers[1].name.to_ascii(), "web.default.svc.cluster.local.");
        assert_eq!(rdata(&reply.answers[1..]), ["10.96.0.10"]);
        assert_eq!(reply.chase, None);
    }

    #[test]
    fn pod_names_answer_their_address() {
        let reply = local(&records(), "10-244-0-9.default.pod.cluster.local.", RecordType::A);
        assert_eq!(rdata(&reply.answers), ["10.244.0.9"]);
        let reply = local(&records(), "10-244-0-9.default.pod.cluster.local.", RecordType::AAAA);
        assert!(reply.answers.is_empty() && is_soa(&reply.authorities));
        let reply = local(&records(), "fd00--9.default.pod.cluster.local.", RecordType::AAAA);
        assert_eq!(rdata(&reply.answers), ["fd00::9"]);
        let reply = local(&records(), "not-an-ip.default.pod.cluster.local.", RecordType::A);
        assert_eq!(reply.rcode, ResponseCode::NXDomain);
        let reply = local(&records(), "default.pod.cluster.local.", RecordType::A);
        assert_eq!(reply.rcode, ResponseCode::NoError);
    }

    #[test]
    fn before_the_first_list_the_zone_is_servfail_and_the_rest_forwarded() {
        let records = Records::unsynced(zone());
        assert_eq!(local(&records, "web.default.svc.cluster.local.", RecordType::A).rcode, ResponseCode::ServFail);
        assert_eq!(ask(&records, "example.com.", RecordType::A), Answer::Forward);
    }

    #[test]
    fn non_internet_class_is_refused() {
        let mut query = Query::query(name("web.default.svc.cluster.local."), RecordType::A);
        query.set_query_class(DNSClass::CH);
        assert!(matches!(records().answer(&query), Answer::Local(r) if r.rcode == ResponseCode::Refused));
    }

    #[test]
    fn zone_transfers_are_refused() {
        for qtype in [RecordType::AXFR, RecordType::IXFR] {
            assert!(matches!(ask(&records(), "cluster.local.", qtype), Answer::Local(r) if r.rcode == ResponseCode::Refused));
        }
    }

    #[test]
    fn any_returns_everything_the_name_owns() {
        let reply = local(&records(), "web.default.svc.cluster.local.", RecordType::ANY);
        assert_eq!(rdata(&reply.answers), ["10.96.0.10"]);
    }
}
