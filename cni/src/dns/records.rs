//! The cluster zone's records, built from Service and EndpointSlice objects by the Kubernetes
//! DNS specification (schema 1.1.0): A/AAAA for services and headless endpoints, SRV for
//! named ports, PTR for cluster IPs and endpoint addresses, CNAME for ExternalName services.
//! Pure: the watcher rebuilds a whole [`Records`] on change and swaps it in.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;

use hickory_proto::rr::rdata::{A, AAAA, CNAME, PTR, SRV, TXT};
use hickory_proto::rr::{LowerName, Name, RData};
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;

use super::zone::{dashed, serial_now, Zone};

/// The label the EndpointSlice controller puts on a service's slices.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";
/// The schema version of the specification these records follow, served as TXT at
/// `dns-version.<zone>`.
pub const SCHEMA_VERSION: &str = "1.1.0";

/// Every record the cluster DNS answers from, indexed by lowercase owner name.
#[derive(Debug, Clone)]
pub struct Records {
    zone: Zone,
    serial: u32,
    synced: bool,
    names: HashMap<LowerName, Vec<RData>>,
    /// Names inside the zone that own nothing but have names below them (`svc.<zone>`,
    /// `<ns>.svc.<zone>`, a headless service without ready endpoints): NODATA, not NXDOMAIN.
    interior: HashSet<LowerName>,
}

impl Records {
    /// Records before the first list of services and slices has arrived: queries inside the
    /// zone get SERVFAIL (so clients retry) rather than a cached NXDOMAIN.
    pub fn unsynced(zone: Zone) -> Self {
        Self { zone, serial: serial_now(), synced: false, names: HashMap::new(), interior: HashSet::new() }
    }

    /// The records for these services and their slices (slices are matched to services by
    /// namespace and the `kubernetes.io/service-name` label).
    pub fn build<'a>(
        zone: Zone,
        services: impl IntoIterator<Item = &'a Service>,
        slices: impl IntoIterator<Item = &'a EndpointSlice>,
    ) -> Self {
        let mut slices_of: HashMap<(&str, &str), Vec<&EndpointSlice>> = HashMap::new();
        for slice in slices {
            let namespace = slice.metadata.namespace.as_deref().unwrap_or_default();
            if let Some(service) = slice.metadata.labels.as_ref().and_then(|l| l.get(SERVICE_NAME_LABEL)) {
                slices_of.entry((namespace, service.as_str())).or_default().push(slice);
            }
        }
        let mut builder = Builder::new(zone);
        builder.add_version();
        for service in services {
            let (Some(namespace), Some(name)) = (service.metadata.namespace.as_deref(), service.metadata.name.as_deref()) else {
                continue;
            };
            let slices = slices_of.get(&(namespace, name)).map(Vec::as_slice).unwrap_or_default();
            builder.add_service(namespace, name, service, slices);
        }
        builder.finish()
    }

    pub fn zone(&self) -> &Zone {
        &self.zone
    }

    /// False for [`Records::unsynced`].
    pub fn is_synced(&self) -> bool {
        self.synced
    }

    pub(crate) fn serial(&self) -> u32 {
        self.serial
    }

    /// The record data owned by `name` (case-insensitive).
    pub fn get(&self, name: &Name) -> Option<&[RData]> {
        self.names.get(&LowerName::from(name)).map(Vec::as_slice)
    }

    /// Whether `name` is an empty non-terminal of the zone (exists, owns nothing).
    pub(crate) fn is_interior(&self, name: &Name) -> bool {
        self.interior.contains(&LowerName::from(name))
    }
}

/// Collects records while walking services; SRV weights are set at the end, once each SRV
/// name's record count is known.
struct Builder {
    zone: Zone,
    names: HashMap<LowerName, Vec<RData>>,
    interior: HashSet<LowerName>,
    srv: HashMap<LowerName, Vec<(u16, Name)>>,
}

impl Builder {
    fn new(zone: Zone) -> Self {
        Self { zone, names: HashMap::new(), interior: HashSet::new(), srv: HashMap::new() }
    }

    fn add(&mut self, owner: &Name, data: RData) {
        self.mark_ancestors(owner);
        let entry = self.names.entry(LowerName::from(owner)).or_default();
        if !entry.contains(&data) {
            entry.push(data);
        }
    }

    /// Names between `owner` and the apex exist even when they own nothing.
    fn mark_ancestors(&mut self, owner: &Name) {
        if !self.zone.apex().zone_of(owner) {
            return; // reverse names: only the exact names we own are answered here
        }
        let mut name = owner.base_name();
        while name.num_labels() > self.zone.apex().num_labels() {
            self.interior.insert(LowerName::from(&name));
            name = name.base_name();
        }
    }

    fn add_version(&mut self) {
        if let Ok(name) = Name::from_labels(["dns-version"]).and_then(|n| n.append_domain(self.zone.apex())) {
            self.add(&name, RData::TXT(TXT::new(vec![SCHEMA_VERSION.to_string()])));
        }
    }

    fn add_service(&mut self, namespace: &str, name: &str, service: &Service, slices: &[&EndpointSlice]) {
        let Some(spec) = service.spec.as_ref() else { return };
        let Ok(owner) = self.zone.service_name(namespace, name) else {
            tracing::warn!(namespace, name, "cluster DNS: service name is not a DNS label; skipped");
            return;
        };
        if spec.type_.as_deref() == Some("ExternalName") {
            self.add_external_name(&owner, spec.external_name.as_deref().unwrap_or_default());
            return;
        }
        let cluster_ip = spec.cluster_ip.as_deref().unwrap_or_default();
        if cluster_ip.eq_ignore_ascii_case("None") {
            self.add_headless(&owner, spec.publish_not_ready_addresses.unwrap_or(false), slices);
            return;
        }
        let ips: Vec<IpAddr> = match spec.cluster_ips.as_deref() {
            Some(ips) if !ips.is_empty() => ips.iter().filter_map(|ip| ip.parse().ok()).collect(),
            _ => cluster_ip.parse().ok().into_iter().collect(),
        };
        if ips.is_empty() {
            return; // not allocated yet: the service gets its name once it has an address
        }
        for ip in ips {
            self.add(&owner, address(ip));
            self.add(&Name::from(ip), RData::PTR(PTR(owner.clone())));
        }
        for port in spec.ports.iter().flatten() {
            let (Some(port_name), Ok(number)) = (port.name.as_deref(), u16::try_from(port.port)) else { continue };
            if let Some(srv_name) = srv_name(&owner, port_name, port.protocol.as_deref()) {
                self.srv.entry(LowerName::from(&srv_name)).or_default().push((number, owner.clone()));
                self.mark_ancestors(&srv_name);
            }
        }
    }

    fn add_external_name(&mut self, owner: &Name, external: &str) {
        let target = external.trim().trim_end_matches('.');
        match Name::from_ascii(target) {
            Ok(mut target) if !target.is_root() => {
                target.set_fqdn(true);
                self.add(owner, RData::CNAME(CNAME(target)));
            }
            _ => tracing::warn!(name = %owner, external, "cluster DNS: ExternalName is not a DNS name; skipped"),
        }
    }

    /// One A/AAAA per ready endpoint address at the service's name and at the endpoint's own
    /// name (`<hostname>.<svc>...`, or `<dashed-ip>.<svc>...` without a hostname), its PTR,
    /// and one SRV per named port and endpoint.
    fn add_headless(&mut self, owner: &Name, publish_not_ready: bool, slices: &[&EndpointSlice]) {
        self.interior.insert(LowerName::from(owner));
        self.mark_ancestors(owner);
        for slice in slices {
            if !matches!(slice.address_type.as_str(), "IPv4" | "IPv6") {
                continue; // FQDN slices are not addresses
            }
            for endpoint in &slice.endpoints {
                // An unknown readiness counts as ready, as the EndpointSlice API documents.
                let ready = endpoint.conditions.as_ref().and_then(|c| c.ready).unwrap_or(true);
                if !ready && !publish_not_ready {
                    continue;
                }
                for ip in endpoint.addresses.iter().filter_map(|a| a.parse::<IpAddr>().ok()) {
                    let label = endpoint.hostname.clone().filter(|h| !h.is_empty()).unwrap_or_else(|| dashed(ip));
                    let Ok(endpoint_name) = owner.prepend_label(label.as_str()) else { continue };
                    self.add(owner, address(ip));
                    self.add(&endpoint_name, address(ip));
                    self.add(&Name::from(ip), RData::PTR(PTR(endpoint_name.clone())));
                    for port in slice.ports.iter().flatten() {
                        let (Some(port_name), Some(Ok(number))) = (port.name.as_deref(), port.port.map(u16::try_from)) else { continue };
                        if let Some(srv_name) = srv_name(owner, port_name, port.protocol.as_deref()) {
                            let targets = self.srv.entry(LowerName::from(&srv_name)).or_default();
                            if !targets.contains(&(number, endpoint_name.clone())) {
                                targets.push((number, endpoint_name.clone()));
                            }
                            self.mark_ancestors(&srv_name);
                        }
                    }
                }
            }
        }
    }

    fn finish(mut self) -> Records {
        for (name, targets) in std::mem::take(&mut self.srv) {
            // Equal weights summing to about 100, as CoreDNS spreads them.
            let weight = (100 / targets.len().max(1)).max(1) as u16;
            let data = targets.into_iter().map(|(port, target)| RData::SRV(SRV::new(0, weight, port, target))).collect();
            self.names.insert(name, data);
        }
        // A name that owns records is not interior.
        self.interior.retain(|n| !self.names.contains_key(n));
        Records { zone: self.zone, serial: serial_now(), synced: true, names: self.names, interior: self.interior }
    }
}

fn address(ip: IpAddr) -> RData {
    match ip {
        IpAddr::V4(v4) => RData::A(A(v4)),
        IpAddr::V6(v6) => RData::AAAA(AAAA(v6)),
    }
}

/// `_<port>._<proto>.<svc>...`; `None` for an unnamed port or a name that is no label.
fn srv_name(owner: &Name, port: &str, protocol: Option<&str>) -> Option<Name> {
    if port.is_empty() {
        return None;
    }
    let protocol = protocol.unwrap_or("TCP").to_ascii_lowercase();
    owner.prepend_label(format!("_{protocol}").as_str()).and_then(|n| n.prepend_label(format!("_{port}").as_str())).ok()
}

#[cfg(test)]
pub(crate) mod tests {
    use std::collections::BTreeMap;

    use k8s_openapi::api::core::v1::{ServicePort, ServiceSpec};
    use k8s_openapi::api::discovery::v1::{Endpoint, EndpointConditions, EndpointPort};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    use super::*;

    pub(crate) fn zone() -> Zone {
        Zone::new("cluster.local", 5).unwrap()
    }

    pub(crate) fn name(s: &str) -> Name {
        Name::from_ascii(s).unwrap()
    }

    pub(crate) fn service(ns: &str, name: &str, cluster_ip: &str, ports: &[(&str, i32, &str)]) -> Service {
        Service {
            metadata: ObjectMeta { namespace: Some(ns.into()), name: Some(name.into()), ..Default::default() },
            spec: Some(ServiceSpec {
                cluster_ip: Some(cluster_ip.into()),
                ports: Some(
                    ports
                        .iter()
                        .map(|(n, p, proto)| ServicePort { name: (!n.is_empty()).then(|| n.to_string()), port: *p, protocol: Some(proto.to_string()), ..Default::default() })
                        .collect(),
                ),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    pub(crate) fn external(ns: &str, name: &str, target: &str) -> Service {
        Service {
            metadata: ObjectMeta { namespace: Some(ns.into()), name: Some(name.into()), ..Default::default() },
            spec: Some(ServiceSpec { type_: Some("ExternalName".into()), external_name: Some(target.into()), ..Default::default() }),
            ..Default::default()
        }
    }

    /// `endpoints`: (address, hostname, ready).
    pub(crate) fn slice(ns: &str, service: &str, endpoints: &[(&str, Option<&str>, Option<bool>)], ports: &[(&str, i32, &str)]) -> EndpointSlice {
        EndpointSlice {
            metadata: ObjectMeta {
                namespace: Some(ns.into()),
                name: Some(format!("{service}-abc")),
                labels: Some(BTreeMap::from([(SERVICE_NAME_LABEL.to_string(), service.to_string())])),
                ..Default::default()
            },
            address_type: "IPv4".into(),
            endpoints: endpoints
                .iter()
                .map(|(ip, host, ready)| Endpoint {
                    addresses: vec![ip.to_string()],
                    hostname: host.map(str::to_string),
                    conditions: Some(EndpointConditions { ready: *ready, ..Default::default() }),
                    ..Default::default()
                })
                .collect(),
            ports: Some(ports.iter().map(|(n, p, proto)| EndpointPort { name: Some(n.to_string()), port: Some(*p), protocol: Some(proto.to_string()), ..Default::default() }).collect()),
        }
    }

    pub(crate) fn headless(ns: &str, name: &str, ports: &[(&str, i32, &str)]) -> Service {
        service(ns, name, "None", ports)
    }

    fn owned(records: &Records, owner: &str) -> Vec<String> {
        let mut got: Vec<String> = records.get(&name(owner)).unwrap_or_default().iter().map(ToString::to_string).collect();
        got.sort();
        got
    }

    #[test]
    fn cluster_ip_service_gets_a_ptr_and_srv_for_named_ports_only() {
        let svc = service("default", "web", "10.96.0.10", &[("http", 80, "TCP"), ("", 81, "TCP"), ("dns", 53, "UDP")]);
        let records = Records::build(zone(), [&svc], []);
        assert!(records.is_synced());
        assert_eq!(owned(&records, "web.default.svc.cluster.local."), ["10.96.0.10"]);
        assert_eq!(owned(&records, "10.0.96.10.in-addr.arpa."), ["web.default.svc.cluster.local."]);
        assert_eq!(owned(&records, "_http._tcp.web.default.svc.cluster.local."), ["0 100 80 web.default.svc.cluster.local."]);
        assert_eq!(owned(&records, "_dns._udp.web.default.svc.cluster.local."), ["0 100 53 web.default.svc.cluster.local."]);
        assert!(records.is_interior(&name("default.svc.cluster.local.")));
        assert!(records.is_interior(&name("svc.cluster.local.")));
        assert!(records.is_interior(&name("_tcp.web.default.svc.cluster.local.")));
    }

    #[test]
    fn dual_stack_service_gets_a_and_aaaa() {
        let mut svc = service("default", "web", "10.96.0.10", &[]);
        svc.spec.as_mut().unwrap().cluster_ips = Some(vec!["10.96.0.10".into(), "fd00::a".into()]);
        let records = Records::build(zone(), [&svc], []);
        assert_eq!(owned(&records, "web.default.svc.cluster.local."), ["10.96.0.10", "fd00::a"]);
        let v6_reverse = "a.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.d.f.ip6.arpa.";
        assert_eq!(owned(&records, v6_reverse), ["web.default.svc.cluster.local."]);
    }

    #[test]
    fn headless_service_gets_ready_endpoints_with_their_names() {
        let svc = headless("db", "pg", &[]);
        let eps = slice(
            "db",
            "pg",
            &[("10.244.0.5", Some("pg-0"), Some(true)), ("10.244.0.6", None, None), ("10.244.0.7", Some("pg-2"), Some(false))],
            &[("sql", 5432, "TCP")],
        );
        let records = Records::build(zone(), [&svc], [&eps]);
        assert_eq!(owned(&records, "pg.db.svc.cluster.local."), ["10.244.0.5", "10.244.0.6"]);
        assert_eq!(owned(&records, "pg-0.pg.db.svc.cluster.local."), ["10.244.0.5"]);
        assert_eq!(owned(&records, "10-244-0-6.pg.db.svc.cluster.local."), ["10.244.0.6"]);
        assert!(owned(&records, "pg-2.pg.db.svc.cluster.local.").is_empty(), "not ready");
        assert_eq!(owned(&records, "5.0.244.10.in-addr.arpa."), ["pg-0.pg.db.svc.cluster.local."]);
        assert_eq!(owned(&records, "6.0.244.10.in-addr.arpa."), ["10-244-0-6.pg.db.svc.cluster.local."]);
        assert_eq!(
            owned(&records, "_sql._tcp.pg.db.svc.cluster.local."),
            ["0 50 5432 10-244-0-6.pg.db.svc.cluster.local.", "0 50 5432 pg-0.pg.db.svc.cluster.local."]
        );
    }

    #[test]
    fn publish_not_ready_addresses_includes_unready_endpoints() {
        let mut svc = headless("db", "pg", &[]);
        svc.spec.as_mut().unwrap().publish_not_ready_addresses = Some(true);
        let eps = slice("db", "pg", &[("10.244.0.7", Some("pg-2"), Some(false))], &[]);
        let records = Records::build(zone(), [&svc], [&eps]);
        assert_eq!(owned(&records, "pg.db.svc.cluster.local."), ["10.244.0.7"]);
    }

    #[test]
    fn headless_without_endpoints_exists_but_owns_nothing() {
        let svc = headless("db", "pg", &[]);
        let records = Records::build(zone(), [&svc], []);
        assert!(records.get(&name("pg.db.svc.cluster.local.")).is_none());
        assert!(records.is_interior(&name("pg.db.svc.cluster.local.")));
    }

    #[test]
    fn slices_of_other_services_or_namespaces_do_not_leak() {
        let svc = headless("db", "pg", &[]);
        let other_ns = slice("other", "pg", &[("10.244.1.1", None, None)], &[]);
        let other_svc = slice("db", "redis", &[("10.244.1.2", None, None)], &[]);
        let records = Records::build(zone(), [&svc], [&other_ns, &other_svc]);
        assert!(records.get(&name("pg.db.svc.cluster.local.")).is_none());
    }

    #[test]
    fn external_name_is_a_cname() {
        let svc = external("default", "ext", "db.example.com");
        let records = Records::build(zone(), [&svc], []);
        assert_eq!(owned(&records, "ext.default.svc.cluster.local."), ["db.example.com."]);
    }

    #[test]
    fn service_without_cluster_ip_yet_has_no_records() {
        let svc = service("default", "new", "", &[("http", 80, "TCP")]);
        let records = Records::build(zone(), [&svc], []);
        assert!(records.get(&name("new.default.svc.cluster.local.")).is_none());
        assert!(records.get(&name("_http._tcp.new.default.svc.cluster.local.")).is_none());
    }

    #[test]
    fn schema_version_is_served() {
        let records = Records::build(zone(), [], []);
        assert_eq!(owned(&records, "dns-version.cluster.local."), ["1.1.0"]);
    }

    #[test]
    fn lookups_ignore_case() {
        let svc = service("default", "web", "10.96.0.10", &[]);
        let records = Records::build(zone(), [&svc], []);
        assert_eq!(owned(&records, "WEB.Default.SVC.cluster.LOCAL."), ["10.96.0.10"]);
    }

    #[test]
    fn unsynced_records_say_so() {
        assert!(!Records::unsynced(zone()).is_synced());
    }
}
