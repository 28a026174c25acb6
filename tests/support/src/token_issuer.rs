//! A small token issuer for a registry configured with `auth: token`, serving the Docker
//! token protocol on loopback from a thread of the test process.
//!
//! `GET /token?service=S&scope=repository:NAME:pull,push` answers `{"token": JWT, ...}`. The
//! JWT is RS256, signed by a key made with the openssl command line; its certificate goes in
//! the registry's `rootcertbundle` and in the JWT header's `x5c`, which is how the registry
//! picks the key. Correct Basic credentials get every action asked for, anonymous clients get
//! `pull` only when the issuer allows it, wrong credentials get 401.

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::json;

use crate::http::{base64, basic_auth};

pub const SERVICE: &str = "krs-test-registry";
pub const ISSUER: &str = "krs-test-issuer";
/// How long issued tokens live, in seconds.
pub const EXPIRES_IN: u64 = 300;

pub struct TokenIssuer {
    pub addr: String,
    /// The certificate (PEM) that verifies tokens: the registry's rootcertbundle.
    pub cert: PathBuf,
    issued: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

struct Policy {
    user: String,
    password: String,
    anonymous_pull: bool,
    key: PathBuf,
    x5c: String,
}

impl TokenIssuer {
    /// Start an issuer that keeps its key in `dir`.
    pub fn start(dir: &Path, user: &str, password: &str, anonymous_pull: bool) -> TokenIssuer {
        let key = dir.join("token-key.pem");
        let cert = dir.join("token-cert.pem");
        openssl(&[
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=krs-test-token-issuer",
            "-keyout", key.to_str().unwrap(), "-out", cert.to_str().unwrap(),
        ], None);
        let der = openssl(&["x509", "-in", cert.to_str().unwrap(), "-outform", "DER"], None);
        let policy = Arc::new(Policy {
            user: user.into(),
            password: password.into(),
            anonymous_pull,
            key,
            x5c: base64(&der, false),
        });
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind token issuer");
        let addr = listener.local_addr().unwrap().to_string();
        let issued = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (issued, stop) = (issued.clone(), stop.clone());
            std::thread::spawn(move || {
                for conn in listener.incoming() {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    if let Ok(conn) = conn {
                        // One at a time is enough for tests, and keeps the issuer simple.
                        let _ = serve(conn, &policy, &issued);
                    }
                }
            })
        };
        TokenIssuer { addr, cert, issued, stop, thread: Some(thread) }
    }

    /// The realm to put in the registry's config and its `WWW-Authenticate` challenge.
    pub fn realm(&self) -> String {
        format!("http://{}/token", self.addr)
    }

    /// How many tokens were handed out (to check that clients cache them).
    pub fn issued(&self) -> usize {
        self.issued.load(Ordering::SeqCst)
    }
}

impl Drop for TokenIssuer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(&self.addr); // wake the accept loop
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn openssl(args: &[&str], stdin: Option<&[u8]>) -> Vec<u8> {
    let mut child = Command::new("openssl")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run openssl (apt-get install openssl)");
    let mut input = child.stdin.take().unwrap();
    if let Some(data) = stdin {
        input.write_all(data).expect("write to openssl");
    }
    drop(input);
    let out = child.wait_with_output().expect("wait for openssl");
    assert!(out.status.success(), "openssl {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    out.stdout
}

fn serve(conn: TcpStream, policy: &Policy, issued: &AtomicUsize) -> std::io::Result<()> {
    let mut reader = BufReader::new(conn.try_clone()?);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let target = line.split(' ').nth(1).unwrap_or("/").to_string();
    let mut authorization = None;
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h)? == 0 || h.trim().is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':')
            && k.trim().eq_ignore_ascii_case("authorization")
        {
            authorization = Some(v.trim().to_string());
        }
    }
    let (path, query) = target.split_once('?').unwrap_or((&target, ""));
    let mut service = String::new();
    let mut scopes = Vec::new();
    for pair in query.split('&') {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        match k {
            "service" => service = percent_decode(v),
            "scope" => scopes.push(percent_decode(v)),
            _ => {}
        }
    }
    let authenticated = match &authorization {
        None => false,
        Some(a) if *a == basic_auth(&policy.user, &policy.password) => true,
        Some(_) => return respond(conn, 401, "{\"details\":\"bad credentials\"}"),
    };
    if path != "/token" {
        return respond(conn, 404, "{}");
    }
    if service != SERVICE {
        return respond(conn, 400, "{\"details\":\"unknown service\"}");
    }
    if !authenticated && !policy.anonymous_pull {
        return respond(conn, 401, "{\"details\":\"credentials required\"}");
    }
    let mut access = Vec::new();
    for scope in &scopes {
        // repository:NAME:ACTIONS (NAME may not contain ':'; registry hosts are not in it).
        let mut parts = scope.rsplitn(2, ':');
        let (Some(actions), Some(kind_name)) = (parts.next(), parts.next()) else { continue };
        let Some((kind, name)) = kind_name.split_once(':') else { continue };
        let actions: Vec<&str> =
            actions.split(',').filter(|a| authenticated || *a == "pull").collect();
        access.push(json!({"type": kind, "name": name, "actions": actions}));
    }
    let token = sign(policy, &access, authorization.is_some());
    issued.fetch_add(1, Ordering::SeqCst);
    let body = json!({"token": token, "access_token": token, "expires_in": EXPIRES_IN});
    respond(conn, 200, &body.to_string())
}

fn sign(policy: &Policy, access: &[serde_json::Value], authenticated: bool) -> String {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs();
    let header = json!({"typ": "JWT", "alg": "RS256", "x5c": [policy.x5c]});
    let claims = json!({
        "iss": ISSUER,
        "sub": if authenticated { policy.user.as_str() } else { "" },
        "aud": SERVICE,
        "exp": now + EXPIRES_IN,
        "nbf": now - 10,
        "iat": now,
        "jti": format!("{now}-{}", std::process::id()),
        "access": access,
    });
    let signing_input = format!(
        "{}.{}",
        base64(header.to_string().as_bytes(), true),
        base64(claims.to_string().as_bytes(), true)
    );
    let sig = openssl(&["dgst", "-sha256", "-sign", policy.key.to_str().unwrap()], Some(signing_input.as_bytes()));
    format!("{signing_input}.{}", base64(&sig, true))
}

fn respond(mut conn: TcpStream, status: u16, body: &str) -> std::io::Result<()> {
    let reason = match status {
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        _ => "Not Found",
    };
    write!(
        conn,
        "HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' if i + 2 < b.len() => {
                let hex = std::str::from_utf8(&b[i + 1..i + 3]).unwrap_or("");
                match u8::from_str_radix(hex, 16) {
                    Ok(v) => out.push(v),
                    Err(_) => out.extend_from_slice(&b[i..i + 3]),
                }
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}
