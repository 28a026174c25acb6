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
