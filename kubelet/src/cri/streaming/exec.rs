//! An exec session: the OCI runtime's `exec` runs the process (its stdio piped, or on a
//! terminal of ours), the channels carry its input and output, and the
//! error channel its exit status when it ends.

use std::os::unix::process::ExitStatusExt;
use std::process::{ExitStatus, Stdio};
use std::os::fd::OwnedFd;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{Message, WebSocket};
use futures_util::{Stream, StreamExt};
use oci_spec::runtime::Process;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::process::{Child, ChildStdin, Command};
use tokio::task::JoinHandle;

use super::channel::{self, Outgoing, CLOSE, ERROR, RESIZE, STDERR, STDIN, STDOUT, Size, Version};
use super::tty::{self, PtyMaster, PtyOutput};
use super::{Error, io};
use crate::cri::container::{ExecOptions, OciCli};

/// After the process ended, its output still in flight gets this long to arrive (a child
/// it left behind may hold the pipes open forever).
const DRAIN: Duration = Duration::from_secs(2);

/// What an `Exec` request prepared: the process to run and which streams the client wants.
pub struct ExecTarget {
    pub container_id: String,
    pub oci: OciCli,
    pub process: Process,
    pub stdin: bool,
    pub stdout: bool,
    pub stderr: bool,
    pub tty: bool,
}

/// Runs the session to its end; the client always gets a status on the error channel.
pub async fn run(socket: WebSocket, target: ExecTarget, version: Version) -> Result<(), Error> {
    let (sink, mut incoming) = socket.split();
    let (out, writer) = channel::spawn_writer(sink);
    let result = run_process(&target, &mut incoming, &out, version).await;
    let status = match &result {
        Ok(code) => channel::exit_status(*code),
        Err(e) => channel::error_status(&e.to_string()),
    };
    let _ = out.send(channel::binary(ERROR, status.to_string().as_bytes())).await;
    drop(out);
    let _ = writer.await;
    channel::finish(&mut incoming).await;
    result.map(drop)
}

/// Where the client's stdin goes.
enum Input {
    Pipe(Option<ChildStdin>),
    Pty(Arc<PtyMaster>),
    Ignored,
}

/// The process and its stdio; `incoming` is the client's channel messages, from the
/// WebSocket or from SPDY streams. They are read until the process ends (or the client
/// goes), and what follows is left for the caller: a WebSocket's closing handshake.
pub(super) async fn run_process<S>(target: &ExecTarget, incoming: &mut S, out: &Outgoing, version: Version) -> Result<i32, Error>
where
    S: Stream<Item = Result<Message, axum::Error>> + Unpin,
{
    let dir = tempfile::tempdir().map_err(io("creating the exec's directory"))?;
    let process_json = dir.path().join("process.json");
    std::fs::write(&process_json, serde_json::to_vec(&target.process).expect("process serialises"))
        .map_err(io(format!("writing {}", process_json.display())))?;
    let pty = if target.tty { Some(tty::open_pty()?) } else { None };
    let piped = |wanted: bool| if wanted { Stdio::piped() } else { Stdio::null() };
    let mut command = Command::new(&target.oci.binary);
    command.args(target.oci.exec_args(&target.container_id, &process_json, &ExecOptions::default()));
    match &pty {
        Some((_, slave)) => {
            let stdio = |fd: &OwnedFd| fd.try_clone().map(Stdio::from).map_err(io("duplicating the terminal"));
            command.stdin(stdio(slave)?).stdout(stdio(slave)?).stderr(stdio(slave)?);
            // Safety: the hook only makes async-signal-safe calls.
            unsafe { command.pre_exec(tty::become_session_leader) };
        }
        None => {
            command.stdin(piped(target.stdin)).stdout(piped(target.stdout)).stderr(piped(target.stderr));
        }
    }
    let mut child = command.spawn().map_err(|source| Error::Spawn { binary: target.oci.binary.clone(), source })?;

    let mut pumps: Vec<JoinHandle<()>> = Vec::new();
    let input = match pty {
        Some((master, slave)) => {
            // Only the runtime holds the slave now: its exit ends the output (EIO).
            drop(slave);
            let master = Arc::new(PtyMaster::new(master).map_err(io("the terminal's master"))?);
            pumps.push(tokio::spawn(pump(PtyOutput(master.clone()), STDOUT, out.clone())));
            // Resizes go to the terminal even when the client sends no input.
            Input::Pty(master)
        }
        None => {
            if let Some(s) = child.stdout.take() {
                pumps.push(tokio::spawn(pump(s, STDOUT, out.clone())));
            }
            if let Some(s) = child.stderr.take() {
                pumps.push(tokio::spawn(pump(s, STDERR, out.clone())));
            }
            Input::Pipe(child.stdin.take())
        }
    };
    let status = {
        let feeding = feed(incoming, input, version, target.stdin);
        tokio::pin!(feeding);
        tokio::select! {
            status = wait(&mut child) => status,
            // The client is gone or closed the session: the process runs on to its end.
            () = &mut feeding => wait(&mut child).await,
        }
    };
    let drain = futures_util::future::join_all(pumps.iter_mut());
    if tokio::time::timeout(DRAIN, drain).await.is_err() {
        pumps.iter().for_each(JoinHandle::abort);
    }
    status
}

async fn wait(child: &mut Child) -> Result<i32, Error> {
    let status = child.wait().await.map_err(io("waiting for the OCI runtime"))?;
    Ok(exit_code(status))
}

/// The process's exit code as a shell reports it: 128 + the signal that killed it.
fn exit_code(status: ExitStatus) -> i32 {
    status.code().unwrap_or_else(|| 128 + status.signal().unwrap_or(0))
}

/// Copies `from` (a pipe, or the terminal's output) to the client's `channel` until it ends
/// or the client is gone.
async fn pump(mut from: impl AsyncRead + Unpin, channel: u8, out: Outgoing) {
    let mut buf = vec![0u8; 32 * 1024];
    while let Ok(n) = from.read(&mut buf).await {
        if n == 0 || out.send(channel::binary(channel, &buf[..n])).await.is_err() {
            break;
        }
    }
}

/// The client's messages: stdin, resizes and (v5) the end of stdin. A client that goes
/// away ends stdin; the process runs on to its own end.
async fn feed(incoming: &mut (impl Stream<Item = Result<Message, axum::Error>> + Unpin), mut input: Input, version: Version, stdin: bool) {
    while let Some(Ok(message)) = incoming.next().await {
        let data = match message {
            Message::Binary(b) => b,
            Message::Close(_) => break,
            _ => continue,
        };
        let Some((&channel, payload)) = data.split_first() else { continue };
        match channel {
            // Input the request did not ask for is dropped (a terminal is open for resizes).
            STDIN if stdin => match &mut input {
                Input::Pipe(Some(stdin)) => {
                    // The process stopped reading: later input has nowhere to go.
                    let gone = stdin.write_all(payload).await.is_err();
                    if gone {
                        input = Input::Pipe(None);
                    }
                }
                Input::Pty(master) => {
                    let _ = master.write_all(payload).await;
                }
                _ => {}
            },
            RESIZE => {
                if let (Input::Pty(master), Ok(size)) = (&input, serde_json::from_slice::<Size>(payload)) {
                    let _ = master.resize(size);
                }
            }
            CLOSE if version == Version::V5 && payload.first() == Some(&STDIN) => close_stdin(&mut input).await,
            _ => {}
        }
    }
    close_stdin(&mut input).await;
}

/// A pipe is closed; a terminal gets end-of-file the way a keyboard sends it (^D).
async fn close_stdin(input: &mut Input) {
    match input {
        Input::Pipe(stdin) => drop(stdin.take()),
        Input::Pty(master) => {
            let _ = master.write_all(b"\x04").await;
            *input = Input::Ignored;
        }
        Input::Ignored => {}
    }
}
