//! Columns of services, endpoints and endpoint slices, as kube-apiserver 1.33 prints them.

use serde_json::{json, Value};
use time::OffsetDateTime;

use super::selector::format_labels;
use super::{age_of, array_at, col, int_at, str_at, wide, Column, Row, AGE, NAME};

pub(crate) const SERVICE_COLUMNS: &[Column] = &[
    NAME,
    col("Type", "string", "type determines how the Service is exposed."),
    col("Cluster-IP", "string", "clusterIP is the IP address of the service and is usually assigned randomly."),
    col("External-IP", "string", "externalIPs is a list of IP addresses for which nodes in the cluster will also accept traffic for this service."),
    col("Port(s)", "string", "The list of ports that are exposed by this service."),
    AGE,
    wide("Selector", "string", "Route service traffic to pods with label keys and values matching this selector."),
];

fn strings(values: &[Value]) -> Vec<String> {
    values.iter().filter_map(Value::as_str).map(str::to_string).collect()
}

/// EXTERNAL-IP: what reaches the service from outside; a load balancer not yet provisioned
/// is `<pending>`.
fn external_ip(svc: &Value) -> String {
    let external_ips = strings(array_at(svc, "/spec/externalIPs"));
    match str_at(svc, "/spec/type") {
        "ClusterIP" | "NodePort" | "" if !external_ips.is_empty() => external_ips.join(","),
        "ClusterIP" | "NodePort" | "" => "<none>".into(),
        "LoadBalancer" => {
            let mut all: Vec<String> = array_at(svc, "/status/loadBalancer/ingress")
                .iter()
                .map(|i| if !str_at(i, "/ip").is_empty() { str_at(i, "/ip") } else { str_at(i, "/hostname") })
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect();
            all.extend(external_ips);
            if all.is_empty() { "<pending>".into() } else { all.join(",") }
        }
        "ExternalName" => str_at(svc, "/spec/externalName").to_string(),
        _ => "<unknown>".into(),
    }
}

/// PORT(S): `port[:nodePort]/protocol`, comma-joined.
fn ports(svc: &Value) -> String {
    let pieces: Vec<String> = array_at(svc, "/spec/ports")
        .iter()
        .map(|p| {
            let protocol = if str_at(p, "/protocol").is_empty() { "TCP" } else { str_at(p, "/protocol") };
            match int_at(p, "/nodePort") {
                n if n > 0 => format!("{}:{n}/{protocol}", int_at(p, "/port")),
                _ => format!("{}/{protocol}", int_at(p, "/port")),
            }
        })
        .collect();
    if pieces.is_empty() { "<none>".into() } else { pieces.join(",") }
}

pub(crate) fn service(svc: &Value, now: OffsetDateTime) -> Row {
    let cluster_ip = array_at(svc, "/spec/clusterIPs").first().and_then(Value::as_str).or_else(|| svc.pointer("/spec/clusterIP").and_then(Value::as_str)).unwrap_or("<none>");
    let cluster_ip = if cluster_ip.is_empty() { "<none>" } else { cluster_ip };
    Row::new(vec![
        json!(str_at(svc, "/metadata/name")),
        json!(str_at(svc, "/spec/type")),
        json!(cluster_ip),
        json!(external_ip(svc)),
        json!(ports(svc)),
        age_of(svc, now),
        json!(format_labels(svc.pointer("/spec/selector"))),
    ])
}

pub(crate) const ENDPOINTS_COLUMNS: &[Column] = &[NAME, col("Endpoints", "string", "The set of all endpoints is the union of all subsets."), AGE];

/// How many addresses a list shows before `+ N more...`.
const SHOWN: usize = 3;

fn with_more(list: Vec<String>, count: usize, empty: &str) -> String {
    if count > list.len() {
        return format!("{} + {} more...", list.join(","), count - SHOWN);
    }
    if list.is_empty() { empty.into() } else { list.join(",") }
}

/// ENDPOINTS: `ip:port` for each address and port, the first three of them.
pub(crate) fn endpoints(ep: &Value, now: OffsetDateTime) -> Row {
    let subsets = array_at(ep, "/subsets");
    let text = if subsets.is_empty() {
        "<none>".to_string()
    } else {
        let mut list = Vec::new();
        let mut count = 0;
        for subset in subsets {
            let addresses = array_at(subset, "/addresses");
            let subset_ports = array_at(subset, "/ports");
            if subset_ports.is_empty() {
                // Headless services may have no ports.
                count += addresses.len();
                list.extend(addresses.iter().map(|a| str_at(a, "/ip").to_string()).take(SHOWN - list.len().min(SHOWN)));
                continue;
            }
            for port in subset_ports {
                count += addresses.len();
                for a in addresses {
                    if list.len() == SHOWN {
                        break;
                    }
                    let ip = str_at(a, "/ip");
                    let host = if ip.contains(':') { format!("[{ip}]") } else { ip.to_string() };
                    list.push(format!("{host}:{}", int_at(port, "/port")));
                }
            }
        }
        with_more(list, count, "")
    };
    Row::new(vec![json!(str_at(ep, "/metadata/name")), json!(text), age_of(ep, now)])
}

pub(crate) const ENDPOINTSLICE_COLUMNS: &[Column] = &[
    NAME,
    col("AddressType", "string", "addressType specifies the type of address carried by this EndpointSlice."),
    col("Ports", "string", "ports specifies the list of network ports exposed by each endpoint in this slice."),
    col("Endpoints", "string", "endpoints is a list of unique endpoints in this slice."),
    AGE,
];

pub(crate) fn endpointslice(slice: &Value, now: OffsetDateTime) -> Row {
    let slice_ports = array_at(slice, "/ports");
    let port_list: Vec<String> = slice_ports
        .iter()
        .take(SHOWN)
        .map(|p| match p.get("port").and_then(Value::as_i64) {
            Some(n) => n.to_string(),
            None => p.get("name").and_then(Value::as_str).unwrap_or("*").to_string(),
        })
        .collect();
    let addresses: Vec<String> = array_at(slice, "/endpoints").iter().flat_map(|e| strings(array_at(e, "/addresses"))).collect();
    let address_count = addresses.len();
    let address_list: Vec<String> = addresses.into_iter().take(SHOWN).collect();
    Row::new(vec![
        json!(str_at(slice, "/metadata/name")),
        json!(str_at(slice, "/addressType")),
        json!(with_more(port_list, slice_ports.len(), "<unset>")),
        json!(with_more(address_list, address_count, "<unset>")),
        age_of(slice, now),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    const NOW: OffsetDateTime = datetime!(2025-01-01 12:00:00 UTC);

    #[test]
    fn cluster_ip_services_print_ports_and_none_external() {
        let svc = json!({
            "metadata": {"name": "web", "creationTimestamp": "2025-01-01T11:59:15Z"},
            "spec": {"type": "ClusterIP", "clusterIP": "10.96.0.10", "clusterIPs": ["10.96.0.10"], "selector": {"app": "web"},
                     "ports": [{"port": 80, "protocol": "TCP"}, {"port": 53, "protocol": "UDP"}]}
        });
        assert_eq!(service(&svc, NOW).cells, vec![json!("web"), json!("ClusterIP"), json!("10.96.0.10"), json!("<none>"), json!("80/TCP,53/UDP"), json!("45s"), json!("app=web")]);
    }

    #[test]
    fn node_ports_load_balancers_and_external_names() {
        let np = json!({"metadata": {"name": "np"}, "spec": {"type": "NodePort", "clusterIPs": ["10.96.1.1"], "ports": [{"port": 80, "nodePort": 30080, "protocol": "TCP"}]}});
        let c = service(&np, NOW).cells;
        assert_eq!(c[3..5], [json!("<none>"), json!("80:30080/TCP")]);
        let mut lb = json!({"metadata": {"name": "lb"}, "spec": {"type": "LoadBalancer", "clusterIPs": ["10.96.1.2"], "ports": [{"port": 443, "nodePort": 31443, "protocol": "TCP"}]}});
        assert_eq!(service(&lb, NOW).cells[3], json!("<pending>"));
        lb["status"] = json!({"loadBalancer": {"ingress": [{"ip": "203.0.113.7"}]}});
        lb["spec"]["externalIPs"] = json!(["198.51.100.1"]);
        assert_eq!(service(&lb, NOW).cells[3], json!("203.0.113.7,198.51.100.1"));
        let en = json!({"metadata": {"name": "db"}, "spec": {"type": "ExternalName", "externalName": "db.example.com"}});
        assert_eq!(service(&en, NOW).cells[2..5], [json!("<none>"), json!("db.example.com"), json!("<none>")]);
        let headless = json!({"metadata": {"name": "h"}, "spec": {"type": "ClusterIP", "clusterIP": "None", "clusterIPs": ["None"], "ports": [{"port": 80, "protocol": "TCP"}]}});
        assert_eq!(service(&headless, NOW).cells[2], json!("None"));
    }

    #[test]
    fn endpoints_show_three_addresses_then_a_count() {
        let ep = json!({"metadata": {"name": "web"}, "subsets": [{
            "addresses": [{"ip": "10.0.0.1"}, {"ip": "10.0.0.2"}, {"ip": "10.0.0.3"}, {"ip": "10.0.0.4"}],
            "ports": [{"port": 8080, "protocol": "TCP"}]
        }]});
        assert_eq!(endpoints(&ep, NOW).cells[1], json!("10.0.0.1:8080,10.0.0.2:8080,10.0.0.3:8080 + 1 more..."));
        let one = json!({"metadata": {"name": "k"}, "subsets": [{"addresses": [{"ip": "fd00::1"}], "ports": [{"port": 6443}]}]});
        assert_eq!(endpoints(&one, NOW).cells[1], json!("[fd00::1]:6443"));
        assert_eq!(endpoints(&json!({"metadata": {"name": "e"}}), NOW).cells[1], json!("<none>"));
    }

    #[test]
    fn endpoint_slices_show_type_ports_and_addresses() {
        let s = json!({"metadata": {"name": "web-abcde"}, "addressType": "IPv4",
            "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
            "endpoints": [{"addresses": ["10.0.0.1"]}, {"addresses": ["10.0.0.2"]}]});
        assert_eq!(endpointslice(&s, NOW).cells[..4], [json!("web-abcde"), json!("IPv4"), json!("8080"), json!("10.0.0.1,10.0.0.2")]);
        let empty = json!({"metadata": {"name": "e"}, "addressType": "IPv4"});
        assert_eq!(endpointslice(&empty, NOW).cells[2..4], [json!("<unset>"), json!("<unset>")]);
    }
}
