//! Polling with a deadline, for conditions that no single event announces.

use std::future::Future;
use std::time::{Duration, Instant};

/// How often [`until`] re-checks its condition.
const POLL_INTERVAL: Duration = Duration::from_millis(50);

/// Re-evaluates `check` until it yields `Some`, or fails after `timeout` with `what` and
/// the last state `describe`d.
pub async fn until<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = anyhow::Result<Option<T>>>,
{
    let deadline = Instant::now() + timeout;
    let mut last_error = None;
    loop {
        match check().await {
            Ok(Some(value)) => return Ok(value),
            Ok(None) => {}
            Err(err) => last_error = Some(err),
        }
        if Instant::now() >= deadline {
            let detail = last_error
                .map(|err| format!(" (last error: {err:#})"))
                .unwrap_or_default();
            anyhow::bail!("timed out after {timeout:?} waiting for {what}{detail}");
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}
