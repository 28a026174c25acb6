use clap::Parser;

use runtime_rs::{
    cli::{Cli, Command},
    commands, exe_seal, logging,
};

fn main() {
    let cli = Cli::parse();
    let to_stderr = logging::init(cli.log.as_deref(), cli.log_format, cli.debug);
    if commands::enters_container(&cli.command) && !exe_seal::is_sealed() {
        let err = exe_seal::reexec_sealed();
        fail(&format!("cannot re-execute from a sealed copy of the runtime binary: {err}"), to_stderr);
    }
    let is_exec = matches!(cli.command, Command::Exec(_));
    match commands::dispatch(cli) {
        Ok(code) => std::process::exit(code),
        // As runc: an exec whose program never ran says so and exits 255, which no program's
        // own status (up to 255, or 128 + signal) is likely to be mistaken for.
        Err(e) if is_exec => fail_with(&format!("exec failed: {e}"), to_stderr, 255),
        Err(e) => fail(&e.to_string(), to_stderr),
    }
}

/// Log the error and, when the log does not go to stderr, print it there too (as runc does:
/// containerd reads the log file, a person reads stderr).
fn fail(msg: &str, logged_to_stderr: bool) -> ! {
    fail_with(msg, logged_to_stderr, 1)
}

fn fail_with(msg: &str, logged_to_stderr: bool, code: i32) -> ! {
    tracing::error!("{msg}");
    if !logged_to_stderr {
        eprintln!("{msg}");
    }
    std::process::exit(code)
}
