//! Pods and their containers: the domain state machines of the CRI's
//! RuntimeService and their persisted records, on one [`PodRuntime`]: the store,
//! the images, the shim host, the pod networks and the per-object locks.
//!
//! `sandbox` runs a pod's infra (pause) task and owns its namespaces, network and
//! files; `container` runs its containers. Both are `impl PodRuntime` blocks; the
//! exits, events and recovery after a restart are [`runtime`]'s. Below this module:
//! `runtime` (shims), `spec`, `image`, `storage`, `network`, `store`, `config`.

pub(crate) mod container;
#[cfg(test)]
mod fake_shim;
#[cfg(test)]
mod lifecycle_tests;
mod names;
pub mod node_defaults;
mod runtime;
pub mod sandbox;

pub use node_defaults::NodeDefaults;
pub(crate) use runtime::{PodRuntime, PodRuntimeConfig};
pub(crate) use sandbox::network::PodWriter;

/// A duration in milliseconds, as the debug lines of a pod's and a container's
/// steps give them (docs/performance.md reads a pod start from those).
pub(crate) fn ms(d: std::time::Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Runs blocking work (mounts, forks, file writes) off the async workers (see
/// [`crate::blocking`]).
pub(crate) async fn off_worker<T, F>(f: F) -> Result<T, crate::error::CriError>
where
    T: Send + 'static,
    F: FnOnce() -> Result<T, crate::error::CriError> + Send + 'static,
{
    start_off_worker(f).await
}

/// [`off_worker`], started now rather than when first awaited.
pub(crate) fn start_off_worker<T, F>(
    f: F,
) -> impl std::future::Future<Output = Result<T, crate::error::CriError>>
where
    T: Send + 'static,
    F: FnOnce() -> Result<T, crate::error::CriError> + Send + 'static,
{
    let started = crate::blocking::start(f);
    async move {
        started.await.unwrap_or_else(|| {
            Err(crate::error::CriError::Unavailable(
                "the daemon is shutting down".into(),
            ))
        })
    }
}
