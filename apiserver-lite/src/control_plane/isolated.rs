//! A component's term of leadership on a tokio runtime of its own. Control loops spawn
//! tasks of their own (watchers, reflectors, bindings in flight); dropping one future would
//! leave those running. Shutting the runtime down cancels all of them at once, which is the
//! in-process counterpart of upstream exiting the process when leadership is lost.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

/// Completes when the work ends; dropping it cancels the work and everything it spawned.
pub struct Isolated {
    runtime: Option<tokio::runtime::Runtime>,
    work: Option<tokio::task::JoinHandle<()>>,
}

impl Isolated {
    /// Start `work` on a new runtime with `threads` workers named `name`. Clients (and their
    /// connection tasks) should be made inside `work`, so they live and die with it.
    pub fn start(name: &str, threads: usize, work: impl Future<Output = ()> + Send + 'static) -> Isolated {
        match tokio::runtime::Builder::new_multi_thread().worker_threads(threads).thread_name(name).enable_all().build() {
            Ok(runtime) => {
                let work = runtime.spawn(work);
                Isolated { runtime: Some(runtime), work: Some(work) }
            }
            Err(e) => {
                tracing::error!("starting {name}: no runtime: {e}");
                Isolated { runtime: None, work: None }
            }
        }
    }
}

impl Future for Isolated {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let Some(work) = self.work.as_mut() else { return Poll::Ready(()) };
        match Pin::new(work).poll(cx) {
            Poll::Ready(result) => {
                if let Err(e) = result
                    && e.is_panic()
                {
                    tracing::error!("a control loop panicked: {e}");
                }
                self.work = None;
                Poll::Ready(())
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

impl Drop for Isolated {
    fn drop(&mut self) {
        if let Some(work) = self.work.take() {
            work.abort();
        }
        // Not a plain drop: that blocks, which async code must not.
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    #[tokio::test]
    async fn dropping_the_term_stops_what_its_work_spawned() {
        let ticks = Arc::new(AtomicUsize::new(0));
        let counter = ticks.clone();
        let term = Isolated::start("test-term", 1, async move {
            // A task spawned by the work, as watchers are: it must stop too.
            tokio::spawn(async move {
                loop {
                    counter.fetch_add(1, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            });
            std::future::pending::<()>().await
        });
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(ticks.load(Ordering::SeqCst) > 0);
        drop(term);
        tokio::time::sleep(Duration::from_millis(50)).await;
        let after = ticks.load(Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(ticks.load(Ordering::SeqCst), after, "the spawned task still runs");
    }

    #[tokio::test]
    async fn a_term_whose_work_ends_completes() {
        let term = Isolated::start("test-term", 1, async {});
        tokio::time::timeout(Duration::from_secs(5), term).await.expect("the term ends with its work");
    }
}
