//! Periodic housekeeping (expired grants, expired sessions) that stops with its owner.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

/// Runs `work` on `owner` every `every`, the first time after one period, until the
/// owner is dropped. Only a weak reference is held between runs, so the task never keeps
/// the databases open after the appliance stops.
pub(crate) fn every<T, F, Fut>(
    owner: &Arc<T>,
    every: Duration,
    work: F,
) -> tokio::task::JoinHandle<()>
where
    T: Send + Sync + 'static,
    F: Fn(Arc<T>) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send,
{
    let weak = Arc::downgrade(owner);
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.tick().await;
        loop {
            tick.tick().await;
            let Some(me) = weak.upgrade() else { return };
            work(me).await;
        }
    })
}
