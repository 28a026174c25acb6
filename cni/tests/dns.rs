//! The cluster DNS server on loopback (no root needed): hand-built records, a fake upstream
//! resolver, and a small hickory-proto client asking over UDP and TCP.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use cni::dns::{DnsServer, Records, Upstreams, Zone};
use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::rdata::A;
use hickory_proto::rr::{Name, RData, Record, RecordType};
use k8s_openapi::api::core::v1::{Service, ServicePort, ServiceSpec};
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointPort, EndpointSlice};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;

const LOOPBACK: SocketAddr = SocketAddr::new(std::net::IpAddr::V4(Ipv4Addr::LOCALHOST), 0);
const TIMEOUT: Duration = Duration::from_secs(3);

// ---- API objects ----------------------------------------------------------------------

fn meta(ns: &str, name: &str) -> ObjectMeta {
    ObjectMeta { namespace: Some(ns.into()), name: Some(name.into()), ..Default::default() }
}

fn service(ns: &str, name: &str, cluster_ip: &str, ports: &[(&str, i32)]) -> Service {
    let ports = ports.iter().map(|(n, p)| ServicePort { name: Some(n.to_string()), port: *p, protocol: Some("TCP".into()), ..Default::default() }).collect();
    Service { metadata: meta(ns, name), spec: Some(ServiceSpec { cluster_ip: Some(cluster_ip.into()), ports: Some(ports), ..Default::default() }), ..Default::default() }
}

fn external(ns: &str, name: &str, target: &str) -> Service {
    let spec = ServiceSpec { type_: Some("ExternalName".into()), external_name: Some(target.into()), ..Default::default() };
    Service { metadata: meta(ns, name), spec: Some(spec), ..Default::default() }
}

fn slice(ns: &str, service: &str, endpoints: &[(String, Option<&str>)], ports: &[(&str, i32)]) -> EndpointSlice {
    let mut metadata = meta(ns, &format!("{service}-x1"));
    metadata.labels = Some(BTreeMap::from([("kubernetes.io/service-name".to_string(), service.to_string())]));
    EndpointSlice {
        metadata,
        address_type: "IPv4".into(),
        endpoints: endpoints.iter().map(|(ip, host)| Endpoint { addresses: vec![ip.clone()], hostname: host.map(str::to_string), ..Default::default() }).collect(),
        ports: Some(ports.iter().map(|(n, p)| EndpointPort { name: Some(n.to_string()), port: Some(*p), protocol: Some("TCP".into()), ..Default::default() }).collect()),
    }
}

fn zone() -> Zone {
    Zone::new("cluster.local", 5).unwrap()
}

/// web (cluster IP, port http), pg (headless, two pods, port sql), big (headless, 100
/// pods: too big for 512 bytes), ext (ExternalName to db.example.com).
fn cluster_records() -> Records {
    let web = service("default", "web", "10.96.0.10", &[("http", 80)]);
    let pg = service("db", "pg", "None", &[("sql", 5432)]);
    let pg_eps = slice("db", "pg", &[("10.244.0.5".into(), Some("pg-0")), ("10.244.0.6".into(), None)], &[("sql", 5432)]);
    let big = service("default", "big", "None", &[]);
    let big_eps = slice("default", "big", &(1..=100).map(|i| (format!("10.244.1.{i}"), None)).collect::<Vec<_>>(), &[]);
    let ext = external("default", "ext", "db.example.com");
    Records::build(zone(), [&web, &pg, &big, &ext], [&pg_eps, &big_eps])
}

// ---- server under test ----------------------------------------------------------------

struct Running {
    addr: SocketAddr,
    records: watch::Sender<Arc<Records>>,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<Result<(), cni::dns::DnsError>>,
}

impl Running {
    async fn stop(mut self) {
        let _ = self.stop.take().unwrap().send(());
        tokio::time::timeout(TIMEOUT, &mut self.task).await.expect("server stops").unwrap().expect("server returns Ok");
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn start(records: Records, upstreams: Vec<SocketAddr>) -> Running {
    let server = DnsServer::bind(LOOPBACK).await.unwrap();
    let addr = server.local_addr();
    assert_ne!(addr.port(), 0);
    let (records_tx, records_rx) = watch::channel(Arc::new(records));
    let (stop_tx, stop_rx) = oneshot::channel();
    let upstream = Upstreams::new(upstreams, Duration::from_millis(300));
    let task = tokio::spawn(server.serve(records_rx, upstream, async move {
        let _ = stop_rx.await;
    }));
    Running { addr, records: records_tx, stop: Some(stop_tx), task }
}

// ---- client ---------------------------------------------------------------------------

fn question(name: &str, qtype: RecordType, edns: bool) -> Message {
    let mut message = Message::query();
    message.metadata.recursion_desired = true;
    message.add_query(Query::query(Name::from_ascii(name).unwrap(), qtype));
    if edns {
        let mut e = Edns::new();
        e.set_max_payload(1232);
        message.set_edns(e);
    }
    message
}

async fn udp_exchange(server: SocketAddr, query: &Message) -> Message {
    let socket = UdpSocket::bind(LOOPBACK).await.unwrap();
    socket.send_to(&query.to_vec().unwrap(), server).await.unwrap();
    let mut buf = vec![0u8; 65535];
    let (n, _) = tokio::time::timeout(TIMEOUT, socket.recv_from(&mut buf)).await.expect("UDP reply in time").unwrap();
    let reply = Message::from_vec(&buf[..n]).unwrap();
    assert_eq!(reply.metadata.id, query.metadata.id);
    reply
}

async fn tcp_exchange(server: SocketAddr, query: &Message) -> Message {
    let mut stream = TcpStream::connect(server).await.unwrap();
    let bytes = query.to_vec().unwrap();
    stream.write_all(&(bytes.len() as u16).to_be_bytes()).await.unwrap();
    stream.write_all(&bytes).await.unwrap();
    let len = tokio::time::timeout(TIMEOUT, stream.read_u16()).await.expect("TCP reply in time").unwrap();
    let mut buf = vec![0u8; usize::from(len)];
    stream.read_exact(&mut buf).await.unwrap();
    let reply = Message::from_vec(&buf).unwrap();
    assert_eq!(reply.metadata.id, query.metadata.id);
    reply
}

async fn udp(server: SocketAddr, name: &str, qtype: RecordType) -> Message {
    udp_exchange(server, &question(name, qtype, false)).await
}

async fn tcp(server: SocketAddr, name: &str, qtype: RecordType) -> Message {
    tcp_exchange(server, &question(name, qtype, false)).await
}

fn answers(reply: &Message) -> Vec<String> {
    let mut got: Vec<String> = reply.answers.iter().map(|r| r.data.to_string()).collect();
    got.sort();
    got
}

fn has_zone_soa(reply: &Message) -> bool {
    matches!(reply.authorities.as_slice(), [soa] if soa.record_type() == RecordType::SOA && soa.name.to_ascii() == "cluster.local.")
}

// ---- fake upstream --------------------------------------------------------------------

/// Answers example.com (192.0.2.1) and db.example.com (192.0.2.7), NXDOMAIN otherwise, on
/// UDP and TCP of one loopback port.
async fn fake_upstream() -> (SocketAddr, JoinHandle<()>) {
    let (udp, tcp) = loop {
        let udp = UdpSocket::bind(LOOPBACK).await.unwrap();
        if let Ok(tcp) = TcpListener::bind(udp.local_addr().unwrap()).await {
            break (udp, tcp);
        }
    };
    let addr = udp.local_addr().unwrap();
    let task = tokio::spawn(async move {
        let udp_loop = async {
            let mut buf = vec![0u8; 65535];
            loop {
                let (n, peer) = udp.recv_from(&mut buf).await.unwrap();
                let reply = upstream_reply(&buf[..n]);
                udp.send_to(&reply, peer).await.unwrap();
            }
        };
        let tcp_loop = async {
            loop {
                let (mut stream, _) = tcp.accept().await.unwrap();
                tokio::spawn(async move {
                    let len = stream.read_u16().await.unwrap();
                    let mut buf = vec![0u8; usize::from(len)];
                    stream.read_exact(&mut buf).await.unwrap();
                    let reply = upstream_reply(&buf);
                    stream.write_all(&(reply.len() as u16).to_be_bytes()).await.unwrap();
                    stream.write_all(&reply).await.unwrap();
                });
            }
        };
        tokio::join!(udp_loop, tcp_loop);
    });
    (addr, task)
}

fn upstream_reply(query: &[u8]) -> Vec<u8> {
    let query = Message::from_vec(query).unwrap();
    let mut reply = Message::new(query.metadata.id, MessageType::Response, OpCode::Query);
    reply.metadata.recursion_available = true;
    reply.add_queries(query.queries.clone());
    let q = &query.queries[0];
    let address = match q.name().to_ascii().to_ascii_lowercase().as_str() {
        "example.com." => Some(Ipv4Addr::new(192, 0, 2, 1)),
        "db.example.com." => Some(Ipv4Addr::new(192, 0, 2, 7)),
        _ => None,
    };
    match address {
        Some(ip) if q.query_type() == RecordType::A => {
            reply.add_answer(Record::from_rdata(q.name().clone(), 60, RData::A(A(ip))));
        }
        Some(_) => {}
        None => reply.metadata.response_code = ResponseCode::NXDomain,
    }
    reply.to_vec().unwrap()
}

/// A port where nothing listens (UDP: refused at once) and a socket that never answers.
async fn dead_upstreams() -> (SocketAddr, UdpSocket) {
    let closed = UdpSocket::bind(LOOPBACK).await.unwrap().local_addr().unwrap();
    let silent = UdpSocket::bind(LOOPBACK).await.unwrap();
    (closed, silent)
}

// ---- tests ----------------------------------------------------------------------------

#[tokio::test]
async fn service_a_record_over_udp_and_tcp() {
    let dns = start(cluster_records(), vec![]).await;
    for reply in [udp(dns.addr, "web.default.svc.cluster.local.", RecordType::A).await, tcp(dns.addr, "web.default.svc.cluster.local.", RecordType::A).await] {
        assert_eq!(reply.metadata.response_code, ResponseCode::NoError);
        assert!(reply.metadata.authoritative);
        assert_eq!(answers(&reply), ["10.96.0.10"]);
        assert_eq!(reply.answers[0].ttl, 5);
    }
    // Case does not matter, and the asked case comes back.
    let reply = udp(dns.addr, "WEB.default.SVC.cluster.local.", RecordType::A).await;
    assert_eq!(answers(&reply), ["10.96.0.10"]);
    assert_eq!(reply.answers[0].name.to_ascii(), "WEB.default.SVC.cluster.local.");
    dns.stop().await;
}

#[tokio::test]
async fn headless_service_answers_pod_addresses() {
    let dns = start(cluster_records(), vec![]).await;
    let reply = udp(dns.addr, "pg.db.svc.cluster.local.", RecordType::A).await;
    assert_eq!(answers(&reply), ["10.244.0.5", "10.244.0.6"]);
    let reply = udp(dns.addr, "pg-0.pg.db.svc.cluster.local.", RecordType::A).await;
    assert_eq!(answers(&reply), ["10.244.0.5"]);
    let reply = udp(dns.addr, "10-244-0-6.pg.db.svc.cluster.local.", RecordType::A).await;
    assert_eq!(answers(&reply), ["10.244.0.6"]);
}

#[tokio::test]
async fn srv_for_named_ports() {
    let dns = start(cluster_records(), vec![]).await;
    let reply = udp(dns.addr, "_http._tcp.web.default.svc.cluster.local.", RecordType::SRV).await;
    assert_eq!(answers(&reply), ["0 100 80 web.default.svc.cluster.local."]);
    assert_eq!(reply.additionals.iter().map(|r| r.data.to_string()).collect::<Vec<_>>(), ["10.96.0.10"]);
    let reply = tcp(dns.addr, "_sql._tcp.pg.db.svc.cluster.local.", RecordType::SRV).await;
    assert_eq!(answers(&reply), ["0 50 5432 10-244-0-6.pg.db.svc.cluster.local.", "0 50 5432 pg-0.pg.db.svc.cluster.local."]);
}

#[tokio::test]
async fn ptr_for_cluster_ip_and_endpoint() {
    let dns = start(cluster_records(), vec![]).await;
    let reply = udp(dns.addr, "10.0.96.10.in-addr.arpa.", RecordType::PTR).await;
    assert_eq!(answers(&reply), ["web.default.svc.cluster.local."]);
    let reply = udp(dns.addr, "5.0.244.10.in-addr.arpa.", RecordType::PTR).await;
    assert_eq!(answers(&reply), ["pg-0.pg.db.svc.cluster.local."]);
}

#[tokio::test]
async fn missing_name_is_nxdomain_with_soa() {
    let dns = start(cluster_records(), vec![]).await;
    let reply = udp(dns.addr, "nope.default.svc.cluster.local.", RecordType::A).await;
    assert_eq!(reply.metadata.response_code, ResponseCode::NXDomain);
    assert!(reply.answers.is_empty());
    assert!(has_zone_soa(&reply));
}

#[tokio::test]
async fn aaaa_for_ipv4_service_is_nodata_with_soa() {
    let dns = start(cluster_records(), vec![]).await;
    let reply = udp(dns.addr, "web.default.svc.cluster.local.", RecordType::AAAA).await;
    assert_eq!(reply.metadata.response_code, ResponseCode::NoError);
    assert!(reply.answers.is_empty());
    assert!(has_zone_soa(&reply));
}

#[tokio::test]
async fn names_outside_the_zone_are_forwarded_over_udp_and_tcp() {
    let (upstream, _fake) = fake_upstream().await;
    let dns = start(cluster_records(), vec![upstream]).await;
    let reply = udp(dns.addr, "example.com.", RecordType::A).await;
    assert_eq!(reply.metadata.response_code, ResponseCode::NoError);
    assert_eq!(answers(&reply), ["192.0.2.1"]);
    let reply = tcp(dns.addr, "example.com.", RecordType::A).await;
    assert_eq!(answers(&reply), ["192.0.2.1"]);
    // The upstream's own rcode is relayed.
    let reply = udp(dns.addr, "missing.example.com.", RecordType::A).await;
    assert_eq!(reply.metadata.response_code, ResponseCode::NXDomain);
}

#[tokio::test]
async fn dead_upstreams_are_skipped_in_order() {
    let (upstream, _fake) = fake_upstream().await;
    let (closed, _silent) = dead_upstreams().await;
    let dns = start(cluster_records(), vec![closed, _silent.local_addr().unwrap(), upstream]).await;
    let reply = udp(dns.addr, "example.com.", RecordType::A).await;
    assert_eq!(answers(&reply), ["192.0.2.1"]);
}

#[tokio::test]
async fn all_upstreams_down_is_servfail() {
    let (closed, silent) = dead_upstreams().await;
    let dns = start(cluster_records(), vec![closed, silent.local_addr().unwrap()]).await;
    let reply = udp(dns.addr, "example.com.", RecordType::A).await;
    assert_eq!(reply.metadata.response_code, ResponseCode::ServFail);
    let reply = tcp(dns.addr, "example.com.", RecordType::A).await;
    assert_eq!(reply.metadata.response_code, ResponseCode::ServFail);
    // The zone is still answered.
    assert_eq!(answers(&udp(dns.addr, "web.default.svc.cluster.local.", RecordType::A).await), ["10.96.0.10"]);
}

#[tokio::test]
async fn external_name_cname_is_completed_upstream() {
    let (upstream, _fake) = fake_upstream().await;
    let dns = start(cluster_records(), vec![upstream]).await;
    let reply = udp(dns.addr, "ext.default.svc.cluster.local.", RecordType::A).await;
    assert_eq!(reply.answers.len(), 2);
    assert_eq!(reply.answers[0].record_type(), RecordType::CNAME);
    assert_eq!(reply.answers[0].data.to_string(), "db.example.com.");
    assert_eq!(reply.answers[1].data.to_string(), "192.0.2.7");
}

#[tokio::test]
async fn large_answer_is_truncated_over_udp_and_whole_over_tcp() {
    let dns = start(cluster_records(), vec![]).await;
    let reply = udp(dns.addr, "big.default.svc.cluster.local.", RecordType::A).await;
    assert!(reply.metadata.truncation, "100 addresses do not fit in 512 bytes");
    assert!(reply.answers.is_empty());
    assert_eq!(reply.queries.len(), 1);
    // EDNS raises the limit to 1232, still too small for 100 records.
    let reply = udp_exchange(dns.addr, &question("big.default.svc.cluster.local.", RecordType::A, true)).await;
    assert!(reply.metadata.truncation);
    assert!(reply.edns.is_some(), "an EDNS query gets an EDNS reply");
    let reply = tcp(dns.addr, "big.default.svc.cluster.local.", RecordType::A).await;
    assert!(!reply.metadata.truncation);
    assert_eq!(reply.answers.len(), 100);
    // A small answer is not truncated.
    assert!(!udp(dns.addr, "web.default.svc.cluster.local.", RecordType::A).await.metadata.truncation);
}

#[tokio::test]
async fn records_swapped_while_serving() {
    let dns = start(cluster_records(), vec![]).await;
    assert_eq!(answers(&udp(dns.addr, "web.default.svc.cluster.local.", RecordType::A).await), ["10.96.0.10"]);
    let moved = service("default", "web", "10.96.0.99", &[]);
    let added = service("default", "new", "10.96.0.20", &[]);
    dns.records.send_replace(Arc::new(Records::build(zone(), [&moved, &added], [])));
    assert_eq!(answers(&udp(dns.addr, "web.default.svc.cluster.local.", RecordType::A).await), ["10.96.0.99"]);
    assert_eq!(answers(&tcp(dns.addr, "new.default.svc.cluster.local.", RecordType::A).await), ["10.96.0.20"]);
    let reply = udp(dns.addr, "pg.db.svc.cluster.local.", RecordType::A).await;
    assert_eq!(reply.metadata.response_code, ResponseCode::NXDomain);
    dns.stop().await;
}

#[tokio::test]
async fn before_the_first_sync_the_zone_is_servfail() {
    let dns = start(Records::unsynced(zone()), vec![]).await;
    let reply = udp(dns.addr, "web.default.svc.cluster.local.", RecordType::A).await;
    assert_eq!(reply.metadata.response_code, ResponseCode::ServFail);
}

#[tokio::test]
async fn several_queries_on_one_tcp_connection() {
    let dns = start(cluster_records(), vec![]).await;
    let mut stream = TcpStream::connect(dns.addr).await.unwrap();
    for name in ["web.default.svc.cluster.local.", "pg-0.pg.db.svc.cluster.local."] {
        let bytes = question(name, RecordType::A, false).to_vec().unwrap();
        stream.write_all(&(bytes.len() as u16).to_be_bytes()).await.unwrap();
        stream.write_all(&bytes).await.unwrap();
        let len = stream.read_u16().await.unwrap();
        let mut buf = vec![0u8; usize::from(len)];
        stream.read_exact(&mut buf).await.unwrap();
        assert_eq!(Message::from_vec(&buf).unwrap().answers.len(), 1, "{name}");
    }
}

#[tokio::test]
async fn garbage_gets_formerr_and_the_server_keeps_serving() {
    let dns = start(cluster_records(), vec![]).await;
    let socket = UdpSocket::bind(LOOPBACK).await.unwrap();
    let mut garbage = vec![0x12, 0x34, 0x01, 0x00, 0x00, 0x05, 0, 0, 0, 0, 0, 0];
    garbage.extend_from_slice(b"\x03abc");
    socket.send_to(&garbage, dns.addr).await.unwrap();
    let mut buf = vec![0u8; 512];
    let (n, _) = tokio::time::timeout(TIMEOUT, socket.recv_from(&mut buf)).await.unwrap().unwrap();
    let reply = Message::from_vec(&buf[..n]).unwrap();
    assert_eq!(reply.metadata.id, 0x1234);
    assert_eq!(reply.metadata.response_code, ResponseCode::FormErr);
    assert_eq!(answers(&udp(dns.addr, "web.default.svc.cluster.local.", RecordType::A).await), ["10.96.0.10"]);
}

#[tokio::test]
async fn bind_error_names_the_address() {
    let taken = UdpSocket::bind(LOOPBACK).await.unwrap();
    let addr = taken.local_addr().unwrap();
    let err = DnsServer::bind(addr).await.err().expect("port is taken");
    let message = err.to_string();
    assert!(message.contains(&addr.to_string()), "{message}");
    assert!(message.contains(&format!("is something else listening on port {}", addr.port())), "{message}");
}

#[tokio::test]
async fn nonlocal_bind_takes_an_address_the_node_does_not_have_yet() {
    let absent: SocketAddr = "192.0.2.53:0".parse().unwrap();
    let server = DnsServer::bind_nonlocal(absent).await.expect("IP_FREEBIND bind");
    assert_eq!(server.local_addr().ip(), absent.ip());
    assert_ne!(server.local_addr().port(), 0);
    assert!(DnsServer::bind(absent).await.is_err(), "a plain bind needs the address");

    // On an address that is there, it serves as usual.
    let server = DnsServer::bind_nonlocal(LOOPBACK).await.unwrap();
    let addr = server.local_addr();
    let (_records_tx, records_rx) = watch::channel(Arc::new(cluster_records()));
    let task = tokio::spawn(server.serve(records_rx, Upstreams::new(vec![], TIMEOUT), std::future::pending()));
    assert_eq!(answers(&udp(addr, "web.default.svc.cluster.local.", RecordType::A).await), ["10.96.0.10"]);
    assert_eq!(answers(&tcp(addr, "web.default.svc.cluster.local.", RecordType::A).await), ["10.96.0.10"]);
    task.abort();
}

// ---- the watcher against a fake API server ----------------------------------------------

mod fake_api {
    use std::convert::Infallible;
    use std::sync::Mutex;

    use bytes::Bytes;
    use futures::stream::{self, BoxStream, StreamExt};
    use http_body_util::StreamBody;
    use http_body::Frame;
    use tokio::sync::mpsc;

    use super::*;

    type Body = StreamBody<BoxStream<'static, Result<Frame<Bytes>, Infallible>>>;

    fn body(chunks: BoxStream<'static, Bytes>) -> Body {
        StreamBody::new(chunks.map(|b| Ok(Frame::data(b))).boxed())
    }

    /// A client whose API server lists `services` and `slices`, then streams the service
    /// watch events sent on the returned channel (other watches stay open and quiet).
    pub fn client(services: Vec<Service>, slices: Vec<EndpointSlice>) -> (kube::Client, mpsc::UnboundedSender<Service>) {
        let (events_tx, events_rx) = mpsc::unbounded_channel::<Service>();
        let events_rx = Arc::new(Mutex::new(Some(events_rx)));
        let service = tower::service_fn(move |request: http::Request<kube::client::Body>| {
            let watch = request.uri().query().unwrap_or_default().contains("watch=true");
            let path = request.uri().path().to_string();
            let (services, slices, events_rx) = (services.clone(), slices.clone(), events_rx.clone());
            async move {
                let list = |kind: &str, api_version: &str, items: serde_json::Value| {
                    let list = serde_json::json!({"apiVersion": api_version, "kind": kind, "metadata": {"resourceVersion": "1"}, "items": items});
                    body(stream::once(async move { Bytes::from(list.to_string()) }).boxed())
                };
                let quiet = || body(stream::pending().boxed());
                let response = match (path.as_str(), watch) {
                    ("/api/v1/services", false) => list("ServiceList", "v1", serde_json::to_value(&services).unwrap()),
                    ("/apis/discovery.k8s.io/v1/endpointslices", false) => list("EndpointSliceList", "discovery.k8s.io/v1", serde_json::to_value(&slices).unwrap()),
                    ("/api/v1/services", true) => match events_rx.lock().unwrap().take() {
                        Some(mut rx) => body(
                            stream::poll_fn(move |cx| rx.poll_recv(cx))
                                .map(|mut svc| {
                                    svc.metadata.resource_version = Some("2".into());
                                    let event = serde_json::json!({"type": "ADDED", "object": svc});
                                    Bytes::from(format!("{event}\n"))
                                })
                                .chain(stream::pending())
                                .boxed(),
                        ),
                        None => quiet(),
                    },
                    (_, true) => quiet(),
                    _ => return Ok::<_, Infallible>(http::Response::builder().status(404).body(body(stream::empty().boxed())).unwrap()),
                };
                Ok(http::Response::new(response))
            }
        });
        (kube::Client::new(service, "default"), events_tx)
    }
}

#[tokio::test]
async fn watcher_serves_listed_objects_and_applies_changes() {
    let pg_eps = slice("db", "pg", &[("10.244.0.5".into(), Some("pg-0"))], &[("sql", 5432)]);
    let (client, events) = fake_api::client(vec![service("default", "web", "10.96.0.10", &[])], vec![pg_eps]);

    let resolv_conf = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(resolv_conf.path(), "search example.com\n").unwrap();
    let config = cni::dns::DnsConfig { resolv_conf: resolv_conf.path().to_path_buf(), ..Default::default() };
    let server = DnsServer::bind(LOOPBACK).await.unwrap();
    let addr = server.local_addr();
    let (stop_tx, stop_rx) = oneshot::channel::<()>();
    let task = tokio::spawn(cni::dns::run_on(client, config, server, async move {
        let _ = stop_rx.await;
    }));

    let resolves_to = |name: &'static str, want: &'static [&'static str]| async move {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let reply = udp(addr, name, RecordType::A).await;
            if answers(&reply) == want {
                return;
            }
            assert!(tokio::time::Instant::now() < deadline, "{name}: still {:?} {:?}", reply.metadata.response_code, answers(&reply));
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    resolves_to("web.default.svc.cluster.local.", &["10.96.0.10"]).await;

    // A service added later (its slice was listed already) appears.
    events.send(service("db", "pg", "None", &[("sql", 5432)])).unwrap();
    resolves_to("pg-0.pg.db.svc.cluster.local.", &["10.244.0.5"]).await;

    stop_tx.send(()).unwrap();
    tokio::time::timeout(TIMEOUT, task).await.expect("stops on shutdown").unwrap().expect("returns Ok");
}
