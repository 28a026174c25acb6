//! The command line, as runc spells it: global options, then a verb. Only argument structs
//! here; `commands/` does the work.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

#[derive(Debug, Parser)]
#[command(name = "runtime-rs", version, about = "An OCI container runtime, command-line compatible with runc")]
pub struct Cli {
    /// Root directory for storage of container state (this should be located in tmpfs)
    #[arg(long, global = true, default_value = "/run/runtime-rs")]
    pub root: PathBuf,
    /// Set the log file to write runtime-rs logs to (default is stderr)
    #[arg(long, global = true)]
    pub log: Option<PathBuf>,
    /// Set the log format
    #[arg(long = "log-format", global = true, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// Enable debug logging
    #[arg(long, global = true)]
    pub debug: bool,
    /// linux.cgroupsPath is systemd's slice:prefix:name; the cgroup is made where systemd
    /// would put it, with the cgroupfs driver (systemd is not asked)
    #[arg(long = "systemd-cgroup", global = true)]
    pub systemd_cgroup: bool,
    /// Accepted for runc compatibility ('true', 'false' or 'auto'); before the verb, as with
    /// runc (`spec --rootless` is the verb's own flag)
    #[arg(long, value_name = "true|false|auto")]
    pub rootless: Option<String>,
    /// Accepted for runc compatibility; checkpointing is not supported
    #[arg(long, global = true, hide = true)]
    pub criu: Option<String>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ListFormat {
    Table,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create a container (its process waits until `start`)
    Create(Create),
    /// Run the user-defined process of a created container
    Start { id: String },
    /// Output the state of a container
    State { id: String },
    /// Send a signal to the container's init process (default SIGTERM)
    Kill(Kill),
    /// Delete everything the container holds
    Delete(Delete),
    /// Create and start a container
    Run(Run),
    /// Execute a new process inside the container
    Exec(Exec),
    /// List containers started by runtime-rs with the given root
    List(List),
    /// Display the processes running inside a container
    Ps(Ps),
    /// Suspend all processes inside the container
    Pause { id: String },
    /// Resume all processes suspended by pause
    Resume { id: String },
    /// Show what this runtime supports, as JSON
    Features,
    /// Create a new specification file (config.json)
    Spec(SpecArgs),
    /// Update the resource limits of a running container
    Update(Update),
    /// Display container events and resource statistics
    Events(Events),
}

#[derive(Debug, Args)]
pub struct CreateOptions {
    /// Path to the root of the bundle directory, defaults to the current directory
    #[arg(long, short = 'b', default_value = ".")]
    pub bundle: PathBuf,
    /// Path to an AF_UNIX socket which will receive a file descriptor referencing the master end of the console's pseudoterminal
    #[arg(long = "console-socket")]
    pub console_socket: Option<PathBuf>,
    /// Specify the file to write the process id to
    #[arg(long = "pid-file")]
    pub pid_file: Option<PathBuf>,
    /// Do not use pivot root to jail process inside rootfs (for a rootfs on a ramdisk)
    #[arg(long = "no-pivot")]
    pub no_pivot: bool,
    /// Do not create a new session keyring for the container
    #[arg(long = "no-new-keyring")]
    pub no_new_keyring: bool,
    /// Pass N additional file descriptors to the container (stdio + $LISTEN_FDS + N in total)
    #[arg(long = "preserve-fds", default_value_t = 0)]
    pub preserve_fds: u32,
    /// The global --systemd-cgroup, filled in by the dispatcher
    #[arg(skip)]
    pub systemd_cgroup: bool,
}

#[derive(Debug, Args)]
pub struct Create {
    #[command(flatten)]
    pub opts: CreateOptions,
    pub id: String,
}

#[derive(Debug, Args)]
pub struct Run {
    #[command(flatten)]
    pub opts: CreateOptions,
    /// Detach from the container's process
    #[arg(long, short = 'd')]
    pub detach: bool,
    /// Do not delete the container after it exits
    #[arg(long)]
    pub keep: bool,
    /// Do not use a subreaper to reap reparented processes
    #[arg(long = "no-subreaper")]
    pub no_subreaper: bool,
    pub id: String,
}

#[derive(Debug, Args)]
pub struct Kill {
    /// Send the signal to all processes inside the container
    #[arg(long, short = 'a')]
    pub all: bool,
    pub id: String,
    /// Signal name (KILL, SIGKILL) or number; default SIGTERM
    pub signal: Option<String>,
}

#[derive(Debug, Args)]
pub struct Delete {
    /// Forcibly delete the container if it is still running (uses SIGKILL)
    #[arg(long, short = 'f')]
    pub force: bool,
    pub id: String,
}

#[derive(Debug, Args)]
pub struct Exec {
    /// Path to an AF_UNIX socket which will receive the pseudoterminal's master
    #[arg(long = "console-socket")]
    pub console_socket: Option<PathBuf>,
    /// Current working directory in the container
    #[arg(long)]
    pub cwd: Option<PathBuf>,
    /// Set environment variables
    #[arg(long, short = 'e')]
    pub env: Vec<String>,
    /// Allocate a pseudo-TTY
    #[arg(long, short = 't')]
    pub tty: bool,
    /// UID (format: <uid>[:<gid>])
    #[arg(long, short = 'u')]
    pub user: Option<String>,
    /// Additional gids
    #[arg(long = "additional-gids", short = 'g')]
    pub additional_gids: Vec<u32>,
    /// Path to the process.json
    #[arg(long, short = 'p')]
    pub process: Option<PathBuf>,
    /// Detach from the container's process
    #[arg(long, short = 'd')]
    pub detach: bool,
    /// Specify the file to write the process id to
    #[arg(long = "pid-file")]
    pub pid_file: Option<PathBuf>,
    /// Set the no new privileges value for the process
    #[arg(long = "no-new-privs")]
    pub no_new_privs: bool,
    /// Add a capability to the bounding set for the process
    #[arg(long, short = 'c')]
    pub cap: Vec<String>,
    /// Pass N additional file descriptors to the process
    #[arg(long = "preserve-fds", default_value_t = 0)]
    pub preserve_fds: u32,
    /// Allow exec in a paused container
    #[arg(long = "ignore-paused")]
    pub ignore_paused: bool,
    /// Accepted for runc compatibility; SELinux is not supported
    #[arg(long = "process-label", hide = true)]
    pub process_label: Option<String>,
    /// Accepted for runc compatibility; AppArmor is not supported
    #[arg(long, hide = true)]
    pub apparmor: Option<String>,
    /// Run the process in a sub-cgroup; not supported yet
    #[arg(long, hide = true)]
    pub cgroup: Option<String>,
    pub id: String,
    /// The command and its arguments (unless --process is given)
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub command: Vec<String>,
}

#[derive(Debug, Args)]
pub struct List {
    /// Select one of: table or json
    #[arg(long, short = 'f', value_enum, default_value_t = ListFormat::Table)]
    pub format: ListFormat,
    /// Display only container IDs
    #[arg(long, short = 'q')]
    pub quiet: bool,
}

#[derive(Debug, Args)]
pub struct Ps {
    /// Select one of: table or json
    #[arg(long, short = 'f', value_enum, default_value_t = ListFormat::Table)]
    pub format: ListFormat,
    pub id: String,
    /// Options passed to ps(1) (default -ef)
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub ps_args: Vec<String>,
}

/// runc's `update`: a resources JSON file (`-` for stdin) or single values; what is not
/// given keeps its value. Memory sizes take k, m, g suffixes; -1 means no limit.
#[derive(Debug, Args)]
pub struct Update {
    /// Path to a JSON file with linux.resources to apply, or - for stdin
    #[arg(long, short = 'r')]
    pub resources: Option<PathBuf>,
    /// Memory limit (in bytes)
    #[arg(long, allow_hyphen_values = true)]
    pub memory: Option<String>,
    /// Total memory usage (memory + swap); set -1 to enable unlimited swap
    #[arg(long = "memory-swap", allow_hyphen_values = true)]
    pub memory_swap: Option<String>,
    /// Memory reservation or soft limit (in bytes)
    #[arg(long = "memory-reservation", allow_hyphen_values = true)]
    pub memory_reservation: Option<String>,
    /// CPU shares (relative weight vs. other containers)
    #[arg(long = "cpu-share", alias = "cpu-shares")]
    pub cpu_shares: Option<u64>,
    /// CPU CFS hardcap limit (in usecs); -1 for none
    #[arg(long = "cpu-quota", allow_hyphen_values = true)]
    pub cpu_quota: Option<i64>,
    /// CPU CFS period to be used for hardcapping (in usecs)
    #[arg(long = "cpu-period")]
    pub cpu_period: Option<u64>,
    /// CPU(s) to use
    #[arg(long = "cpuset-cpus")]
    pub cpuset_cpus: Option<String>,
    /// Memory node(s) to use
    #[arg(long = "cpuset-mems")]
    pub cpuset_mems: Option<String>,
    /// Maximum number of pids allowed in the container; -1 for none
    #[arg(long = "pids-limit", allow_hyphen_values = true)]
    pub pids_limit: Option<i64>,
    /// Specifies per cgroup weight, range is from 10 to 1000
    #[arg(long = "blkio-weight")]
    pub blkio_weight: Option<u16>,
    pub id: String,
}

#[derive(Debug, Args)]
pub struct Events {
    /// Display the container's stats then exit
    #[arg(long)]
    pub stats: bool,
    /// Set the stats collection interval
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    pub interval: std::time::Duration,
    pub id: String,
}

#[derive(Debug, Args)]
pub struct SpecArgs {
    /// Path to the root of the bundle directory
    #[arg(long, short = 'b')]
    pub bundle: Option<PathBuf>,
    /// Generate a configuration for a rootless container
    #[arg(long)]
    pub rootless: bool,
    /// Add runtime-rs's built-in default seccomp profile (Kubernetes' RuntimeDefault) for the
    /// config's bounding capabilities as linux.seccomp (a runtime-rs extension; runc has none)
    #[arg(long = "seccomp-runtime-default")]
    pub seccomp_runtime_default: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_command_line_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }

    #[test]
    fn global_rootless_and_spec_rootless_do_not_collide() {
        let cli = Cli::try_parse_from(["runtime-rs", "--rootless", "auto", "spec", "--rootless"]).unwrap();
        assert_eq!(cli.rootless.as_deref(), Some("auto"));
        assert!(matches!(cli.command, Command::Spec(SpecArgs { rootless: true, .. })));
    }

    #[test]
    fn update_takes_runc_spellings_and_negative_values() {
        let cli = Cli::try_parse_from(["runtime-rs", "update", "--memory", "-1", "--cpu-share", "512", "--pids-limit", "-1", "c1"]).unwrap();
        let Command::Update(u) = cli.command else { panic!("not update") };
        assert_eq!(u.memory.as_deref(), Some("-1"));
        assert_eq!(u.cpu_shares, Some(512));
        assert_eq!(u.pids_limit, Some(-1));
        let cli = Cli::try_parse_from(["runtime-rs", "events", "--interval", "250ms", "c1"]).unwrap();
        let Command::Events(e) = cli.command else { panic!("not events") };
        assert_eq!(e.interval, std::time::Duration::from_millis(250));
    }

    #[test]
    fn global_options_may_follow_the_verb_like_containerd_passes_them() {
        let cli = Cli::try_parse_from(["runtime-rs", "create", "--root", "/r", "--log", "/l", "--log-format", "json", "--bundle", "/b", "c1"]).unwrap();
        assert_eq!(cli.root, std::path::Path::new("/r"));
        assert_eq!(cli.log_format, LogFormat::Json);
    }
}
