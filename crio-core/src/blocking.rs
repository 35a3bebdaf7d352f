//! Blocking work (fsync, mounts, forks, tree removals) on tokio's blocking pool,
//! so it holds up no async worker and no task queued on it.

/// Runs `f` on the blocking pool: its value, its panic resumed here, or `None`
/// when the runtime shut down before it ran.
pub(crate) async fn run<T, F>(f: F) -> Option<T>
where
    T: Send + 'static,
    F: FnOnce() -> T + Send + 'static,
{
    start(f).await
}

/// [`run`], started now rather than when first awaited: for blocking work that
/// runs while the caller awaits something else.
pub(crate) fn start<T, F>(f: F) -> impl std::future::Future<Output = Option<T>>
where
    T: Send + 'static,
    F: FnOnce() -> T + Send + 'static,
{
    let handle = tokio::task::spawn_blocking(f);
    async move {
        match handle.await {
            Ok(value) => Some(value),
            Err(e) => match e.try_into_panic() {
                Ok(panic) => std::panic::resume_unwind(panic),
                Err(_) => None,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    #[tokio::test]
    async fn the_value_comes_back_and_a_panic_is_resumed() {
        let thread = std::thread::current().id();
        let ran_on = super::run(move || std::thread::current().id()).await;
        assert!(ran_on.is_some_and(|t| t != thread), "ran on another thread");
        let panicked = tokio::spawn(super::run(|| panic!("boom"))).await;
        assert!(panicked.is_err_and(|e| e.is_panic()));

        // `start` runs before it is awaited.
        let (tx, rx) = std::sync::mpsc::channel();
        let started = super::start(move || tx.send(()).is_ok());
        rx.recv_timeout(std::time::Duration::from_secs(5))
            .expect("ran before being awaited");
        assert_eq!(started.await, Some(true));
    }
}
