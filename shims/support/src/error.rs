//! Errors of the shared shim code, and how they reach a ttrpc caller.

use containerd_shim_protos::ttrpc;

/// What went wrong, in the categories containerd distinguishes.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    InvalidArgument(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    AlreadyExists(String),
    #[error("{0}")]
    FailedPrecondition(String),
    #[error("{0}")]
    Unimplemented(String),
    #[error("protobuf: {0}")]
    Protobuf(#[from] containerd_shim_protos::protobuf::Error),
    #[error("json: {0}")]
    Json(#[from] serde_json::Error),
    #[error("ttrpc: {0}")]
    Ttrpc(#[from] ttrpc::Error),
    #[error("shim: {0}")]
    Shim(#[from] containerd_shim::Error),
    #[error("{0}")]
    Other(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// An I/O error with what was being done.
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io {
            context: context.into(),
            source,
        }
    }

    /// The ttrpc status code containerd maps back to its errdefs.
    pub fn code(&self) -> ttrpc::Code {
        match self {
            Error::InvalidArgument(_) => ttrpc::Code::INVALID_ARGUMENT,
            Error::NotFound(_) => ttrpc::Code::NOT_FOUND,
            Error::AlreadyExists(_) => ttrpc::Code::ALREADY_EXISTS,
            Error::FailedPrecondition(_) => ttrpc::Code::FAILED_PRECONDITION,
            Error::Unimplemented(_) => ttrpc::Code::UNIMPLEMENTED,
            Error::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound => {
                ttrpc::Code::NOT_FOUND
            }
            _ => ttrpc::Code::UNKNOWN,
        }
    }
}

/// Shorthand for an I/O error mapper: `.map_err(io_err("open x"))`.
pub fn io_err(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> Error {
    let context = context.into();
    move |source| Error::Io { context, source }
}

/// A task call's outcome as its ttrpc reply; failures are logged at debug level.
pub fn ttrpc_result<T>(r: Result<T, Error>) -> ttrpc::Result<T> {
    r.map_err(|e| {
        tracing::debug!("request failed: {e}");
        e.into()
    })
}

impl From<Error> for ttrpc::Error {
    fn from(e: Error) -> Self {
        ttrpc::Error::RpcStatus(ttrpc::get_status(e.code(), e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn not_found_maps_to_not_found_status() {
        let e: ttrpc::Error = Error::NotFound("container x".into()).into();
        match e {
            ttrpc::Error::RpcStatus(s) => {
                assert_eq!(s.code(), ttrpc::Code::NOT_FOUND);
                assert_eq!(s.message(), "container x");
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn io_not_found_is_not_found() {
        let e = Error::io("open", std::io::Error::from(std::io::ErrorKind::NotFound));
        assert_eq!(e.code(), ttrpc::Code::NOT_FOUND);
    }
}
