use clap::Parser;

use runtime_rs::{cli::Cli, commands, exe_seal, logging};

fn main() {
    let cli = Cli::parse();
    let to_stderr = logging::init(cli.log.as_deref(), cli.log_format, cli.debug);
    if commands::enters_container(&cli.command) && !exe_seal::is_sealed() {
        let err = exe_seal::reexec_sealed();
        fail(&format!("cannot re-execute from a sealed copy of the runtime binary: {err}"), to_stderr);
    }
    match commands::dispatch(cli) {
        Ok(code) => std::process::exit(code),
        Err(e) => fail(&e.to_string(), to_stderr),
    }
}

/// Log the error and, when the log does not go to stderr, print it there too (as runc does:
/// containerd reads the log file, a person reads stderr).
fn fail(msg: &str, logged_to_stderr: bool) -> ! {
    tracing::error!("{msg}");
    if !logged_to_stderr {
        eprintln!("{msg}");
    }
    std::process::exit(1)
}
