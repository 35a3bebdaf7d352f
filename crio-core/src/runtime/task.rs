//! A shim's Task API over ttrpc, at whichever version (v2 or v3) the shim declared.
//!
//! The generated `TaskClient` of containerd-shim-protos is hard-wired to
//! `containerd.task.v3.Task`, but containerd 1.x shims serve `containerd.task.v2.Task`
//! with the same messages, so this client builds requests itself with the service
//! name chosen at connect time. Every call has a deadline.

use std::time::Duration;

use protocols::shim::api;
use protocols::shim::protobuf::well_known_types::empty::Empty;
use protocols::shim::protobuf::Message;
use protocols::shim::ttrpc;
use protocols::shim::ttrpc::proto::{Code, Request};

use super::bootstrap::ShimAddress;

/// Deadline of ordinary task calls.
pub(crate) const CALL_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
pub enum TaskError {
    #[error("shim at {address}: cannot connect: {message}")]
    Connect { address: String, message: String },
    #[error("shim {method}: {message}")]
    NotFound {
        method: &'static str,
        message: String,
    },
    #[error("shim {method}: {message}")]
    AlreadyExists {
        method: &'static str,
        message: String,
    },
    #[error("shim {method}: {message}")]
    FailedPrecondition {
        method: &'static str,
        message: String,
    },
    #[error("shim {method}: no answer within {timeout:?}")]
    Timeout {
        method: &'static str,
        timeout: Duration,
    },
    /// The connection broke: the shim is gone (or going).
    #[error("shim {method}: connection lost: {message}")]
    Disconnected {
        method: &'static str,
        message: String,
    },
    #[error("shim {method}: {message}")]
    Other {
        method: &'static str,
        message: String,
    },
}

impl TaskError {
    pub(crate) fn is_not_found(&self) -> bool {
        matches!(self, TaskError::NotFound { .. })
    }

    pub(crate) fn is_disconnected(&self) -> bool {
        matches!(self, TaskError::Disconnected { .. })
    }

    fn from_ttrpc(method: &'static str, err: ttrpc::Error) -> Self {
        match err {
            ttrpc::Error::RpcStatus(status) => {
                let message = status.message().to_string();
                match status.code() {
                    Code::NOT_FOUND => TaskError::NotFound { method, message },
                    Code::ALREADY_EXISTS => TaskError::AlreadyExists { method, message },
                    Code::FAILED_PRECONDITION => TaskError::FailedPrecondition { method, message },
                    Code::DEADLINE_EXCEEDED => TaskError::Timeout {
                        method,
                        timeout: CALL_TIMEOUT,
                    },
                    _ => TaskError::Other { method, message },
                }
            }
            ttrpc::Error::RemoteClosed | ttrpc::Error::LocalClosed | ttrpc::Error::Socket(_) => {
                TaskError::Disconnected {
                    method,
                    message: err.to_string(),
                }
            }
            other => TaskError::Other {
                method,
                message: other.to_string(),
            },
        }
    }
}

/// A connected Task API client.
#[derive(Clone)]
pub(crate) struct TaskClient {
    client: ttrpc::asynchronous::Client,
    service: &'static str,
    address: ShimAddress,
}

impl std::fmt::Debug for TaskClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TaskClient")
            .field("address", &self.address)
            .finish()
    }
}

macro_rules! unary {
    ($(#[$doc:meta])* $name:ident, $method:literal, $req:ty => $resp:ty) => {
        $(#[$doc])*
        pub(crate) async fn $name(&self, req: &$req) -> Result<$resp, TaskError> {
            self.call($method, req, CALL_TIMEOUT).await
        }
    };
}

impl TaskClient {
    pub(crate) async fn connect(address: &ShimAddress) -> Result<Self, TaskError> {
        let target = if address.address.starts_with("unix://") {
            address.address.clone()
        } else {
            format!("unix://{}", address.address)
        };
        let client = ttrpc::asynchronous::Client::connect(&target)
            .await
            .map_err(|e| TaskError::Connect {
                address: address.address.clone(),
                message: e.to_string(),
            })?;
        Ok(Self {
            client,
            service: address.task_service(),
            address: address.clone(),
        })
    }

    pub(crate) fn address(&self) -> &ShimAddress {
        &self.address
    }

    /// One unary call with a deadline (`None` = wait as long as it takes).
    pub(crate) async fn call<Req: Message, Resp: Message>(
        &self,
        method: &'static str,
        req: &Req,
        timeout: impl Into<Option<Duration>>,
    ) -> Result<Resp, TaskError> {
        let timeout = timeout.into();
        let payload = req.write_to_bytes().map_err(|e| TaskError::Other {
            method,
            message: format!("encoding request: {e}"),
        })?;
        let mut request = Request::new();
        request.service = self.service.to_string();
        request.method = method.to_string();
        request.timeout_nano = timeout.map_or(0, |t| i64::try_from(t.as_nanos()).unwrap_or(0));
        request.payload = payload;
        let fut = self.client.request(request);
        let response = match timeout {
            // A little longer than the deadline the shim was given, so its own
            // DeadlineExceeded answer wins when it sends one.
            Some(t) => tokio::time::timeout(t + Duration::from_secs(1), fut)
                .await
                .map_err(|_| TaskError::Timeout { method, timeout: t })?,
            None => fut.await,
        }
        .map_err(|e| TaskError::from_ttrpc(method, e))?;
        Resp::parse_from_bytes(&response.payload).map_err(|e| TaskError::Other {
            method,
            message: format!("decoding response: {e}"),
        })
    }

    unary!(create, "Create", api::CreateTaskRequest => api::CreateTaskResponse);
    unary!(start, "Start", api::StartRequest => api::StartResponse);
    unary!(state, "State", api::StateRequest => api::StateResponse);
    unary!(kill, "Kill", api::KillRequest => Empty);
    unary!(delete, "Delete", api::DeleteRequest => api::DeleteResponse);
    unary!(exec, "Exec", api::ExecProcessRequest => Empty);
    unary!(stats, "Stats", api::StatsRequest => api::StatsResponse);
    unary!(update, "Update", api::UpdateTaskRequest => Empty);
    unary!(resize_pty, "ResizePty", api::ResizePtyRequest => Empty);
    unary!(close_io, "CloseIO", api::CloseIORequest => Empty);
    unary!(shutdown, "Shutdown", api::ShutdownRequest => Empty);

    /// Waits for a process to exit: no deadline, it returns when the process does
    /// (or the shim goes away).
    pub(crate) async fn wait(
        &self,
        req: &api::WaitRequest,
    ) -> Result<api::WaitResponse, TaskError> {
        self.call("Wait", req, None).await
    }
}

/// The Task API calls the core makes of a pod's shim: the seam between the pod
/// lifecycle and the shim it drives. [`TaskClient`] is the real one (ttrpc); the
/// lifecycle's unit tests drive fakes.
#[async_trait::async_trait]
pub(crate) trait TaskApi: Send + Sync + std::fmt::Debug {
    /// Where the shim serves.
    fn address(&self) -> &ShimAddress;
    async fn create(
        &self,
        req: &api::CreateTaskRequest,
    ) -> Result<api::CreateTaskResponse, TaskError>;
    async fn start(&self, req: &api::StartRequest) -> Result<api::StartResponse, TaskError>;
    async fn state(&self, req: &api::StateRequest) -> Result<api::StateResponse, TaskError>;
    async fn kill(&self, req: &api::KillRequest) -> Result<Empty, TaskError>;
    async fn delete(&self, req: &api::DeleteRequest) -> Result<api::DeleteResponse, TaskError>;
    async fn exec(&self, req: &api::ExecProcessRequest) -> Result<Empty, TaskError>;
    async fn stats(&self, req: &api::StatsRequest) -> Result<api::StatsResponse, TaskError>;
    async fn update(&self, req: &api::UpdateTaskRequest) -> Result<Empty, TaskError>;
    async fn resize_pty(&self, req: &api::ResizePtyRequest) -> Result<Empty, TaskError>;
    async fn close_io(&self, req: &api::CloseIORequest) -> Result<Empty, TaskError>;
    async fn shutdown(&self, req: &api::ShutdownRequest) -> Result<Empty, TaskError>;
    /// Returns when the process exits (or the shim goes away): no deadline.
    async fn wait(&self, req: &api::WaitRequest) -> Result<api::WaitResponse, TaskError>;
}

#[async_trait::async_trait]
impl TaskApi for TaskClient {
    fn address(&self) -> &ShimAddress {
        TaskClient::address(self)
    }

    async fn create(
        &self,
        req: &api::CreateTaskRequest,
    ) -> Result<api::CreateTaskResponse, TaskError> {
        TaskClient::create(self, req).await
    }

    async fn start(&self, req: &api::StartRequest) -> Result<api::StartResponse, TaskError> {
        TaskClient::start(self, req).await
    }

    async fn state(&self, req: &api::StateRequest) -> Result<api::StateResponse, TaskError> {
        TaskClient::state(self, req).await
    }

    async fn kill(&self, req: &api::KillRequest) -> Result<Empty, TaskError> {
        TaskClient::kill(self, req).await
    }

    async fn delete(&self, req: &api::DeleteRequest) -> Result<api::DeleteResponse, TaskError> {
        TaskClient::delete(self, req).await
    }

    async fn exec(&self, req: &api::ExecProcessRequest) -> Result<Empty, TaskError> {
        TaskClient::exec(self, req).await
    }

    async fn stats(&self, req: &api::StatsRequest) -> Result<api::StatsResponse, TaskError> {
        TaskClient::stats(self, req).await
    }

    async fn update(&self, req: &api::UpdateTaskRequest) -> Result<Empty, TaskError> {
        TaskClient::update(self, req).await
    }

    async fn resize_pty(&self, req: &api::ResizePtyRequest) -> Result<Empty, TaskError> {
        TaskClient::resize_pty(self, req).await
    }

    async fn close_io(&self, req: &api::CloseIORequest) -> Result<Empty, TaskError> {
        TaskClient::close_io(self, req).await
    }

    async fn shutdown(&self, req: &api::ShutdownRequest) -> Result<Empty, TaskError> {
        TaskClient::shutdown(self, req).await
    }

    async fn wait(&self, req: &api::WaitRequest) -> Result<api::WaitResponse, TaskError> {
        TaskClient::wait(self, req).await
    }
}
