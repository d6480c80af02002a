//! Retrying requests through the cluster's transient failures: a leader
//! election after a server died takes 4 to 8 seconds here
//! (`docs/REPLICATION-notes.md`), during which requests time out or find
//! no responder.

use std::future::Future;
use std::time::Duration;

/// How long a request is retried before its error is returned.
pub(crate) const RETRY_FOR: Duration = Duration::from_secs(60);
/// The pause between two tries.
pub(crate) const RETRY_PAUSE: Duration = Duration::from_millis(100);

/// Runs `op` until it succeeds, `transient` says its error is not, or
/// [`RETRY_FOR`] has passed.
pub(crate) async fn retrying<T, E, F: Future<Output = Result<T, E>>>(
    mut op: impl FnMut() -> F,
    transient: impl Fn(&E) -> bool,
) -> Result<T, E> {
    let deadline = tokio::time::Instant::now() + RETRY_FOR;
    loop {
        match op().await {
            Err(e) if transient(&e) && tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(RETRY_PAUSE).await;
            }
            r => return r,
        }
    }
}
