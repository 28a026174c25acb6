//! Services: type, ports (numbers, names, protocols, node ports), cluster IP, external name,
//! session affinity and traffic policies.

use std::collections::BTreeSet;
use std::net::IpAddr;

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::names::{self, NameRule};
use super::pod::port_number;
use super::{FieldError, Path};

const TYPES: &[&str] = &["ClusterIP", "ExternalName", "LoadBalancer", "NodePort"];
const PROTOCOLS: &[&str] = &["SCTP", "TCP", "UDP"];
/// kube-apiserver's default `--service-node-port-range`.
const NODE_PORTS: std::ops::RangeInclusive<i32> = 30000..=32767;

pub(super) fn service(svc: &Service, old: Option<&Service>, errs: &mut Vec<FieldError>) {
    names::object_meta(&svc.metadata, NameRule::Dns1035, errs);
    let path = Path::new("spec");
    let Some(spec) = &svc.spec else {
        errs.push(FieldError::required(path.child("ports"), ""));
        return;
    };
    let kind = spec.type_.as_deref().unwrap_or_default();
    if !TYPES.contains(&kind) {
        if kind.is_empty() {
            errs.push(FieldError::required(path.child("type"), ""));
        } else {
            errs.push(FieldError::not_supported(path.child("type"), kind, TYPES));
        }
    }
    let cluster_ip = spec.cluster_ip.as_deref().unwrap_or_default();
    let headless = cluster_ip == "None";
    let ports = spec.ports.as_deref().unwrap_or_default();
    if ports.is_empty() && !headless && kind != "ExternalName" {
        errs.push(FieldError::required(path.child("ports"), ""));
    }
    if kind == "ExternalName" {
        match spec.external_name.as_deref().unwrap_or_default() {
            "" => errs.push(FieldError::required(path.child("externalName"), "")),
            name => {
                let trimmed = name.trim_end_matches('.').to_lowercase();
                for msg in names::dns1123_subdomain(&trimmed) {
                    errs.push(FieldError::invalid(path.child("externalName"), name, msg));
                }
            }
        }
    } else if !cluster_ip.is_empty() && !headless && cluster_ip.parse::<IpAddr>().is_err() {
        errs.push(FieldError::invalid(path.child("clusterIPs").index(0), cluster_ip, "must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)"));
    }

    let mut port_names = BTreeSet::new();
    for (i, port) in ports.iter().enumerate() {
        let p = path.child("ports").index(i);
        match port.name.as_deref().unwrap_or_default() {
            "" if ports.len() > 1 => errs.push(FieldError::required(p.child("name"), "")),
            "" => {}
            name => {
                for msg in names::dns1123_label(name) {
                    errs.push(FieldError::invalid(p.child("name"), name, msg));
                }
                if !port_names.insert(name.to_string()) {
                    errs.push(FieldError::duplicate(p.child("name"), name));
                }
            }
        }
        if let Some(msg) = port_number(port.port.into()) {
            errs.push(FieldError::invalid(p.child("port"), port.port, msg));
        }
        match port.protocol.as_deref().unwrap_or_default() {
            "" => errs.push(FieldError::required(p.child("protocol"), "")),
            proto if !PROTOCOLS.contains(&proto) => errs.push(FieldError::not_supported(p.child("protocol"), proto, PROTOCOLS)),
            _ => {}
        }
        match &port.target_port {
            Some(IntOrString::Int(0)) | None => {}
            Some(IntOrString::Int(n)) => {
                if let Some(msg) = port_number((*n).into()) {
                    errs.push(FieldError::invalid(p.child("targetPort"), *n, msg));
                }
            }
            Some(IntOrString::String(s)) => {
                for msg in names::iana_svc_name(s) {
                    errs.push(FieldError::invalid(p.child("targetPort"), s, msg));
                }
            }
        }
        if let Some(node_port) = port.node_port.filter(|n| *n != 0) {
            if kind == "ClusterIP" || kind == "ExternalName" {
                errs.push(FieldError::forbidden(p.child("nodePort"), format!("may not be used when `type` is '{kind}'")));
            } else if !NODE_PORTS.contains(&node_port) {
                errs.push(FieldError::invalid(
                    p.child("nodePort"),
                    node_port,
                    format!("provided port is not in the valid range. The range of valid ports is {}-{}", NODE_PORTS.start(), NODE_PORTS.end()),
                ));
            }
        }
    }

    match spec.session_affinity.as_deref().unwrap_or_default() {
        "" => errs.push(FieldError::required(path.child("sessionAffinity"), "")),
        "None" | "ClientIP" => {}
        other => errs.push(FieldError::not_supported(path.child("sessionAffinity"), other, &["ClientIP", "None"])),
    }
    if let Some(policy) = spec.external_traffic_policy.as_deref().filter(|p| !p.is_empty()) {
        if kind != "NodePort" && kind != "LoadBalancer" {
            errs.push(FieldError::invalid(path.child("externalTrafficPolicy"), policy, "may only be set when `type` is 'NodePort' or 'LoadBalancer'"));
        } else if policy != "Cluster" && policy != "Local" {
            errs.push(FieldError::not_supported(path.child("externalTrafficPolicy"), policy, &["Cluster", "Local"]));
        }
    }
    if let Some(policy) = spec.internal_traffic_policy.as_deref()
        && policy != "Cluster" && policy != "Local" {
            errs.push(FieldError::not_supported(path.child("internalTrafficPolicy"), policy, &["Cluster", "Local"]));
        }
    if let Some(selector) = &spec.selector {
        names::validate_labels(selector, &path.child("selector"), errs);
    }
    // A cluster IP, once allocated, stays (unless the service becomes an ExternalName).
    let old_ip = old.and_then(|o| o.spec.as_ref()).and_then(|s| s.cluster_ip.as_deref()).unwrap_or_default();
    if !old_ip.is_empty() && !cluster_ip.is_empty() && old_ip != cluster_ip && kind != "ExternalName" {
        errs.push(FieldError::invalid(path.child("clusterIPs").index(0), cluster_ip, "may not change once set"));
    }
}
