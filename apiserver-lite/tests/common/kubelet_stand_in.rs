//! A kubelet stand-in for tests against the real binary: a thread of its own that, every
//! 100 ms, hands a client (from the admin kubeconfig) to the test's `tick`, which plays the
//! node's part (pods Ready, Succeeded, finished when deleted). Stops when dropped.

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

pub struct KubeletStandIn {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl KubeletStandIn {
    pub fn start<F, Fut>(kubeconfig: &std::path::Path, mut tick: F) -> KubeletStandIn
    where
        F: FnMut(kube::Client) -> Fut + Send + 'static,
        Fut: Future<Output = ()>,
    {
        let stop = Arc::new(AtomicBool::new(false));
        let kubeconfig = kubeconfig.to_path_buf();
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            rt.block_on(async move {
                let config = kube::config::Kubeconfig::read_from(&kubeconfig).expect("the admin kubeconfig");
                let config = kube::Config::from_custom_kubeconfig(config, &Default::default()).await.expect("a client config");
                let client = kube::Client::try_from(config).expect("a client");
                while !flag.load(Ordering::Relaxed) {
                    tick(client.clone()).await;
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            });
        });
        KubeletStandIn { stop, thread: Some(thread) }
    }
}

impl Drop for KubeletStandIn {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
