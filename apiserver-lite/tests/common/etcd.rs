//! etcd for tests: Debian's /usr/bin/etcd on free loopback ports with its data in a tempdir.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use apiserver_lite::storage::etcd::EtcdStore;

const ETCD: &str = "/usr/bin/etcd";

/// etcd on random free loopback ports with its data in a tempdir, killed (by PID) on drop.
pub struct EtcdProcess {
    child: Child,
    pub endpoint: String,
    log: PathBuf,
}

pub fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("binding a free port");
    listener.local_addr().expect("reading the port").port()
}

impl EtcdProcess {
    pub fn start(dir: &Path) -> EtcdProcess {
        assert!(
            Path::new(ETCD).exists(),
            "the etcd storage tests need {ETCD}: apt-get install etcd-server (CI installs it)"
        );
        let (client, peer) = (free_port(), free_port());
        let endpoint = format!("http://127.0.0.1:{client}");
        let peer_url = format!("http://127.0.0.1:{peer}");
        let log = dir.join("etcd.log");
        let log_file = std::fs::File::create(&log).expect("creating etcd's log file");
        let child = Command::new(ETCD)
            .args(["--name", "test", "--data-dir"])
            .arg(dir.join("etcd"))
            .args(["--listen-client-urls", &endpoint, "--advertise-client-urls", &endpoint])
            .args(["--listen-peer-urls", &peer_url, "--initial-advertise-peer-urls", &peer_url])
            .args(["--initial-cluster", &format!("test={peer_url}")])
            .args(["--logger", "zap", "--log-outputs", "stderr"])
            .stdout(Stdio::null())
            .stderr(log_file)
            .spawn()
            .expect("starting etcd");
        EtcdProcess { child, endpoint, log }
    }

    /// Connect once etcd answers (it takes a moment to elect itself).
    pub async fn connect(&self, prefix: &str) -> EtcdStore {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            match EtcdStore::connect(std::slice::from_ref(&self.endpoint), prefix).await {
                Ok(store) => return store,
                Err(_) if Instant::now() < deadline => tokio::time::sleep(Duration::from_millis(100)).await,
                Err(err) => panic!(
                    "etcd at {} did not answer within 30s: {err}\netcd's log:\n{}",
                    self.endpoint,
                    std::fs::read_to_string(&self.log).unwrap_or_default()
                ),
            }
        }
    }
}

impl Drop for EtcdProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
