//! gRPC probes: `grpc.health.v1.Health/Check` with the probe's service name over plaintext
//! HTTP/2; SERVING is success. The two messages of the health protocol are written out
//! here rather than generated. Messages follow the upstream prober's.

use std::time::Duration;

use tonic::codegen::http::uri::PathAndQuery;

use super::http::join_host_port;

#[derive(Clone, PartialEq, prost::Message)]
pub struct HealthCheckRequest {
    #[prost(string, tag = "1")]
    pub service: String,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct HealthCheckResponse {
    /// UNKNOWN = 0, SERVING = 1, NOT_SERVING = 2, SERVICE_UNKNOWN = 3.
    #[prost(int32, tag = "1")]
    pub status: i32,
}

pub const SERVING: i32 = 1;

pub const CHECK_PATH: &str = "/grpc.health.v1.Health/Check";

fn status_name(status: i32) -> String {
    match status {
        0 => "UNKNOWN".into(),
        1 => "SERVING".into(),
        2 => "NOT_SERVING".into(),
        3 => "SERVICE_UNKNOWN".into(),
        n => n.to_string(),
    }
}

/// Checks `service` at `host:port` within `timeout`: `Ok(())` when SERVING, else the
/// failure's message.
pub async fn check(host: &str, port: u16, service: &str, timeout: Duration) -> Result<(), String> {
    let addr = join_host_port(host, port);
    let secs = timeout.as_secs_f64();
    let endpoint = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .map_err(|e| format!("invalid address {addr:?}: {e}"))?
        .connect_timeout(timeout)
        .timeout(timeout);
    let channel = match tokio::time::timeout(timeout, endpoint.connect()).await {
        Ok(Ok(c)) => c,
        Ok(Err(e)) => {
            return Err(format!("timeout: failed to connect service {addr:?} within {secs}s: {}", source_chain(&e)));
        }
        Err(_) => {
            return Err(format!(
                "timeout: failed to connect service {addr:?} within {secs}s: context deadline exceeded"
            ));
        }
    };
    let mut client = tonic::client::Grpc::new(channel);
    let call = async {
        client.ready().await.map_err(|e| tonic::Status::unavailable(e.to_string()))?;
        let codec = tonic_prost::ProstCodec::<HealthCheckRequest, HealthCheckResponse>::default();
        let request = tonic::Request::new(HealthCheckRequest { service: service.to_string() });
        client.unary(request, PathAndQuery::from_static(CHECK_PATH), codec).await
    };
    let response = match tokio::time::timeout(timeout, call).await {
        Err(_) => {
            return Err(format!("timeout: health rpc did not complete within {secs}s"));
        }
        Ok(Err(status)) => {
            return Err(match status.code() {
                tonic::Code::Unimplemented => {
                    format!(
                        "this server does not implement the grpc health protocol (grpc.health.v1.Health): {}",
                        status.message()
                    )
                }
                tonic::Code::DeadlineExceeded => {
                    format!("timeout: health rpc did not complete within {secs}s")
                }
                _ => format!("error: health rpc probe failed: {}: {}", status.code(), status.message()),
            });
        }
        Ok(Ok(r)) => r.into_inner(),
    };
    if response.status == SERVING {
        Ok(())
    } else {
        Err(format!("service unhealthy (responded with {:?})", status_name(response.status)))
    }
}

fn source_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(s) = cur {
        out.push_str(": ");
        out.push_str(&s.to_string());
        cur = s.source();
    }
    out
}
