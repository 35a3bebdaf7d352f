//! The daemon's request errors ([`CriError`]) and the one place where they become
//! gRPC statuses. A leaf of the module tree: every layer that answers a CRI request
//! returns these; lower layers' errors convert here.

use tonic::{Code, Status};

use crate::image::images::ImageError;
use crate::image::pull::PullError;
use crate::logs::LogError;
use crate::runtime::{ShimError, TaskError};
use crate::spec::SpecError;
use crate::store::StoreError;

/// Errors the CRI services return, each with its gRPC code.
#[derive(Debug, thiserror::Error)]
pub enum CriError {
    #[error("{0}")]
    InvalidArgument(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    AlreadyExists(String),
    #[error("{0}")]
    FailedPrecondition(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    /// An internal failure told only as text (no lower error behind it).
    #[error("{0}")]
    Internal(String),
    /// The node failed under the request (a mount, a file, a runtime, a plugin):
    /// `Internal`, with the failure kept as the source, so logs keep its chain.
    #[error("{}", with_context(context, source.as_ref()))]
    Failed {
        /// What was being done; empty when the source says it all.
        context: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("{0}")]
    Unauthenticated(String),
    #[error("{0}")]
    PermissionDenied(String),
    #[error("{0}")]
    DeadlineExceeded(String),
    #[error("{0}")]
    Unavailable(String),
    #[error("{0}")]
    ResourceExhausted(String),
    /// What the runtime refused in a way no other code names (an exec'd binary
    /// that is not there): `Unknown`, as containerd and CRI-O answer it.
    #[error("{0}")]
    Unknown(String),
}

/// `context: source`, or the source alone: the message the text-only errors gave.
fn with_context(context: &str, source: &(dyn std::error::Error + Send + Sync)) -> String {
    if context.is_empty() {
        source.to_string()
    } else {
        format!("{context}: {source}")
    }
}

impl CriError {
    /// `Internal`, keeping `source` (its text is the message).
    pub fn internal(source: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        CriError::Failed {
            context: String::new(),
            source: source.into(),
        }
    }

    /// `Internal` with what was being done: the message is `context: source`.
    pub fn internal_in(
        context: impl Into<String>,
        source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> Self {
        CriError::Failed {
            context: context.into(),
            source: source.into(),
        }
    }
}

impl From<crate::network::CniError> for CriError {
    fn from(err: crate::network::CniError) -> Self {
        // A plugin failing is the node's problem, not the request's (CRI-O
        // returns it as an unknown error; its text names the plugin).
        CriError::internal(err)
    }
}

impl From<ImageError> for CriError {
    fn from(err: ImageError) -> Self {
        match err {
            ImageError::InUse { .. } | ImageError::Pinned { .. } => {
                CriError::FailedPrecondition(err.to_string())
            }
            ImageError::Store(e) => CriError::Store(e),
            other => CriError::internal(other),
        }
    }
}

impl From<PullError> for CriError {
    fn from(err: PullError) -> Self {
        let message = err.to_string();
        if err.is_not_found() {
            return CriError::NotFound(message);
        }
        match err {
            PullError::InvalidName { .. } => CriError::InvalidArgument(message),
            PullError::Registries(_) => CriError::FailedPrecondition(message),
            PullError::Unauthorized { .. } => CriError::Unauthenticated(message),
            PullError::Stalled { .. } => CriError::DeadlineExceeded(message),
            PullError::Policy(crate::image::policy::PolicyError::Rejected { .. }) => {
                CriError::PermissionDenied(message)
            }
            PullError::Policy(_) => CriError::FailedPrecondition(message),
            PullError::Registry { .. } | PullError::AllFailed(_) => CriError::Unavailable(message),
            _ => CriError::Internal(message),
        }
    }
}

impl From<TaskError> for CriError {
    fn from(err: TaskError) -> Self {
        let message = err.to_string();
        match err {
            TaskError::NotFound { .. } => CriError::NotFound(message),
            TaskError::AlreadyExists { .. } => CriError::AlreadyExists(message),
            TaskError::FailedPrecondition { .. } => CriError::FailedPrecondition(message),
            TaskError::Timeout { .. } => CriError::DeadlineExceeded(message),
            TaskError::Connect { .. } | TaskError::Disconnected { .. } => {
                CriError::Unavailable(message)
            }
            TaskError::Other { .. } => CriError::Internal(message),
        }
    }
}

impl From<ShimError> for CriError {
    fn from(err: ShimError) -> Self {
        match err {
            ShimError::Task(e) => e.into(),
            ShimError::NoShim(_) => CriError::FailedPrecondition(err.to_string()),
            ShimError::Launch(_) => CriError::internal(err),
        }
    }
}

impl From<SpecError> for CriError {
    fn from(err: SpecError) -> Self {
        match err {
            SpecError::UnknownCapability(_) | SpecError::Seccomp { .. } => {
                CriError::InvalidArgument(err.to_string())
            }
            SpecError::Build(_) => CriError::internal(err),
        }
    }
}

impl From<LogError> for CriError {
    fn from(err: LogError) -> Self {
        CriError::internal(err)
    }
}

impl From<CriError> for Status {
    fn from(err: CriError) -> Self {
        let code = match &err {
            CriError::InvalidArgument(_) => Code::InvalidArgument,
            CriError::NotFound(_) => Code::NotFound,
            CriError::AlreadyExists(_) => Code::AlreadyExists,
            CriError::FailedPrecondition(_) => Code::FailedPrecondition,
            CriError::Store(_) | CriError::Internal(_) | CriError::Failed { .. } => Code::Internal,
            CriError::Unauthenticated(_) => Code::Unauthenticated,
            CriError::PermissionDenied(_) => Code::PermissionDenied,
            CriError::DeadlineExceeded(_) => Code::DeadlineExceeded,
            CriError::Unavailable(_) => Code::Unavailable,
            CriError::ResourceExhausted(_) => Code::ResourceExhausted,
            CriError::Unknown(_) => Code::Unknown,
        };
        if code == Code::Internal {
            // The node's failures are the operator's to see, with every cause.
            let mut causes = Vec::new();
            let mut source = std::error::Error::source(&err);
            while let Some(cause) = source {
                causes.push(cause.to_string());
                source = cause.source();
            }
            tracing::warn!(error = %err, ?causes, "request failed");
        }
        Status::new(code, capped(&err.to_string()))
    }
}

/// Longest run of non-blank text kept in a message: ids, names and paths are echoed
/// from requests, and a megabyte id would come back as a message clients refuse.
const MAX_WORD: usize = 256;
/// Longest message sent.
const MAX_MESSAGE: usize = 4096;

/// `message` with every word over [`MAX_WORD`] bytes cut (saying how long it was),
/// and the whole cut at [`MAX_MESSAGE`].
fn capped(message: &str) -> String {
    let cut = |s: &str, max: usize| {
        let mut end = max;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        format!("{}…({} bytes)", &s[..end], s.len())
    };
    let mut out = String::with_capacity(message.len().min(MAX_MESSAGE + 32));
    let mut rest = message;
    while !rest.is_empty() {
        let word_end = rest.find(char::is_whitespace).unwrap_or(rest.len());
        let (word, after) = rest.split_at(word_end);
        if word.len() > MAX_WORD {
            out.push_str(&cut(word, MAX_WORD));
        } else {
            out.push_str(word);
        }
        let blank_end = after
            .find(|c: char| !c.is_whitespace())
            .unwrap_or(after.len());
        out.push_str(&after[..blank_end]);
        rest = &after[blank_end..];
        if out.len() > MAX_MESSAGE {
            return cut(&out, MAX_MESSAGE);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failure_keeps_its_cause_and_reads_as_before() {
        let io = std::io::Error::new(std::io::ErrorKind::PermissionDenied, "denied");
        let err = CriError::internal_in("create /x", io);
        assert_eq!(err.to_string(), "create /x: denied");
        let cause = std::error::Error::source(&err).expect("a source");
        assert!(cause.downcast_ref::<std::io::Error>().is_some());
        let bare = CriError::internal(std::io::Error::other("plain"));
        assert_eq!(bare.to_string(), "plain");
        let s: Status = err.into();
        assert_eq!(
            (s.code(), s.message()),
            (Code::Internal, "create /x: denied")
        );
    }

    #[test]
    fn codes_follow_the_error_kind() {
        let s: Status = CriError::NotFound("pod x".into()).into();
        assert_eq!(s.code(), Code::NotFound);
        assert_eq!(s.message(), "pod x");
        let s: Status = CriError::InvalidArgument("bad".into()).into();
        assert_eq!(s.code(), Code::InvalidArgument);
        let s: Status = CriError::AlreadyExists("dup".into()).into();
        assert_eq!(s.code(), Code::AlreadyExists);
    }

    #[test]
    fn echoed_input_is_cut() {
        let huge = "x".repeat(1 << 20);
        let s: Status = CriError::NotFound(format!("container {huge} not found")).into();
        assert!(s.message().len() < 400, "{}", s.message().len());
        assert!(s.message().starts_with("container xxx"));
        assert!(s
            .message()
            .ends_with(&format!("…({} bytes) not found", 1 << 20)));
        let words = vec!["word"; 2000].join(" ");
        let s: Status = CriError::Internal(words).into();
        assert!(s.message().len() <= MAX_MESSAGE + 32);
        assert_eq!(capped("a  b\n c"), "a  b\n c");
    }
}
