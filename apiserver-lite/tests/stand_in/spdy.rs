//! Just enough SPDY/3.1 for the stand-in kubelet's port-forward: answer every stream the
//! client opens, relay each `data` stream to a TCP connection, echo pings, and end a
//! forwarded connection with a FIN on its data and error streams (kubectl waits for both).
//! Header blocks are zlib with the SPDY/3 dictionary, one zlib stream per direction.

use std::collections::HashMap;
use std::net::SocketAddr;

use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;

// The dictionary is the kubelet's own (its SPDY server), read from its source so there is
// one copy of those 1423 bytes in the project.
#[path = "../../../kubelet/src/cri/streaming/spdy/dictionary.rs"]
mod dictionary;

const SYN_STREAM: u16 = 1;
const SYN_REPLY: u16 = 2;
const RST_STREAM: u16 = 3;
const PING: u16 = 6;
const GOAWAY: u16 = 7;
const FLAG_FIN: u8 = 1;

enum Out {
    Reply(u32),
    Data { id: u32, data: Vec<u8>, fin: bool },
    Ping(Vec<u8>),
}

fn inflate(z: &mut Decompress, input: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(4096);
    let mut pos = 0;
    loop {
        let before = z.total_in();
        out.reserve(4096);
        match z.decompress_vec(&input[pos..], &mut out, FlushDecompress::Sync) {
            Ok(_) => {}
            Err(e) if e.needs_dictionary().is_some() => {
                z.set_dictionary(&dictionary::DICTIONARY).expect("the SPDY dictionary");
            }
            Err(e) => panic!("a SPDY header block does not inflate: {e}"),
        }
        pos += (z.total_in() - before) as usize;
        if pos >= input.len() && out.capacity() > out.len() {
            return out;
        }
    }
}

fn header_block(raw: &[u8]) -> HashMap<String, String> {
    let u32_at = |i: usize| u32::from_be_bytes(raw[i..i + 4].try_into().unwrap()) as usize;
    let mut i = 4;
    let mut headers = HashMap::new();
    for _ in 0..u32_at(0) {
        let n = u32_at(i);
        let name = String::from_utf8_lossy(&raw[i + 4..i + 4 + n]).to_lowercase();
        i += 4 + n;
        let v = u32_at(i);
        let value = String::from_utf8_lossy(&raw[i + 4..i + 4 + v]).to_string();
        i += 4 + v;
        headers.insert(name, value);
    }
    headers
}

fn control(kind: u16, flags: u8, payload: &[u8]) -> Vec<u8> {
    let mut f = vec![0x80, 0x03];
    f.extend_from_slice(&kind.to_be_bytes());
    f.push(flags);
    f.extend_from_slice(&(payload.len() as u32).to_be_bytes()[1..]);
    f.extend_from_slice(payload);
    f
}

/// Writes frames in order; owns the compressor.
async fn writer(mut w: impl AsyncWrite + Unpin, mut rx: mpsc::UnboundedReceiver<Out>) {
    let mut z = Compress::new(Compression::default(), true);
    z.set_dictionary(&dictionary::DICTIONARY).expect("the SPDY dictionary");
    while let Some(out) = rx.recv().await {
        let frame = match out {
            Out::Reply(id) => {
                // An empty name/value block: the count, zero.
                let mut block = Vec::with_capacity(64);
                z.compress_vec(&0u32.to_be_bytes(), &mut block, FlushCompress::Sync).unwrap();
                let mut payload = id.to_be_bytes().to_vec();
                payload.extend_from_slice(&block);
                control(SYN_REPLY, 0, &payload)
            }
            Out::Data { id, data, fin } => {
                let mut f = id.to_be_bytes().to_vec();
                f.push(if fin { FLAG_FIN } else { 0 });
                f.extend_from_slice(&(data.len() as u32).to_be_bytes()[1..]);
                f.extend_from_slice(&data);
                f
            }
            Out::Ping(payload) => control(PING, 0, &payload),
        };
        if w.write_all(&frame).await.is_err() {
            return;
        }
    }
}

/// One forwarded connection: the peer's data goes to `tcp`, what `tcp` answers comes back.
async fn relay(tcp_addr: SocketAddr, data_id: u32, error_id: Option<u32>, mut from_peer: mpsc::UnboundedReceiver<Option<Vec<u8>>>, out: mpsc::UnboundedSender<Out>) {
    let Ok(tcp) = TcpStream::connect(tcp_addr).await else {
        if let Some(e) = error_id {
            let _ = out.send(Out::Data { id: e, data: format!("connect to {tcp_addr} failed").into_bytes(), fin: true });
        }
        return;
    };
    let (mut r, mut w) = tcp.into_split();
    tokio::spawn(async move {
        // `None`: the peer's FIN.
        while let Some(Some(chunk)) = from_peer.recv().await {
            if w.write_all(&chunk).await.is_err() {
                break;
            }
        }
        let _ = w.shutdown().await;
    });
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        match r.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                let _ = out.send(Out::Data { id: data_id, data: buf[..n].to_vec(), fin: false });
            }
        }
    }
    let _ = out.send(Out::Data { id: data_id, data: Vec::new(), fin: true });
    if let Some(e) = error_id {
        let _ = out.send(Out::Data { id: e, data: Vec::new(), fin: true });
    }
}

/// Serve port-forward on an upgraded connection until the client goes.
pub async fn serve_port_forward(io: impl AsyncRead + AsyncWrite + Send + 'static, target: SocketAddr) {
    let (mut r, w) = tokio::io::split(io);
    let (out, rx) = mpsc::unbounded_channel();
    tokio::spawn(writer(w, rx));
    let mut z = Decompress::new(true);
    // Per request id, the error stream's id; per data stream, where its data goes.
    let mut error_streams: HashMap<String, u32> = HashMap::new();
    let mut data_streams: HashMap<u32, mpsc::UnboundedSender<Option<Vec<u8>>>> = HashMap::new();
    loop {
        let mut head = [0u8; 8];
        if r.read_exact(&mut head).await.is_err() {
            return;
        }
        let len = u32::from_be_bytes([0, head[5], head[6], head[7]]) as usize;
        let flags = head[4];
        let mut payload = vec![0u8; len];
        if r.read_exact(&mut payload).await.is_err() {
            return;
        }
        if head[0] & 0x80 == 0 {
            let id = u32::from_be_bytes(head[..4].try_into().unwrap());
            if let Some(tx) = data_streams.get(&id) {
                if !payload.is_empty() {
                    let _ = tx.send(Some(payload));
                }
                if flags & FLAG_FIN != 0 {
                    let _ = tx.send(None);
                }
            }
            continue;
        }
        match u16::from_be_bytes([head[2], head[3]]) {
            SYN_STREAM => {
                let id = u32::from_be_bytes(payload[..4].try_into().unwrap()) & 0x7fff_ffff;
                let headers = header_block(&inflate(&mut z, &payload[10..]));
                let _ = out.send(Out::Reply(id));
                let request = headers.get("requestid").cloned().unwrap_or_default();
                match headers.get("streamtype").map(String::as_str) {
                    Some("error") => {
                        error_streams.insert(request, id);
                    }
                    Some("data") => {
                        let (tx, rx) = mpsc::unbounded_channel();
                        data_streams.insert(id, tx);
                        tokio::spawn(relay(target, id, error_streams.get(&request).copied(), rx, out.clone()));
                    }
                    _ => {}
                }
            }
            PING => {
                let _ = out.send(Out::Ping(payload));
            }
            GOAWAY => return,
            RST_STREAM => {
                let id = u32::from_be_bytes(payload[..4].try_into().unwrap()) & 0x7fff_ffff;
                if let Some(tx) = data_streams.remove(&id) {
                    let _ = tx.send(None);
                }
            }
            // SETTINGS, WINDOW_UPDATE, HEADERS: nothing to do for a stand-in.
            _ => {}
        }
    }
}
