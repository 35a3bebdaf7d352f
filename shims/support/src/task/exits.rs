//! Reporting exits: a reaped pid is matched to its process ([`claim_exit`]), its
//! output is given time to drain, then `Wait` returns and a `TaskExit` event goes
//! to the manager. An exit that comes before its process's pid is known waits
//! among the unclaimed until the start that learns the pid claims it.

use std::sync::Arc;
use std::time::{Duration, Instant};

use containerd_shim_protos::protobuf::MessageField;
use tokio::sync::watch;

use super::process::{claim_exit, Container, ExitState};
use super::service::Service;
use crate::events::{self, timestamp, topics};
use crate::reaper::Exit;
use crate::stdio::ProcessIo;

/// How long an exit may wait for its output to be delivered before it is reported.
const EXIT_IO_WAIT: Duration = Duration::from_secs(3);
/// How long an exit of a pid nobody knows yet is kept (a process that exits
/// before its start returned).
pub(super) const UNCLAIMED_EXIT_TTL: Duration = Duration::from_secs(60);

impl Service {
    /// One reaped child: reported if it was one of ours, else kept for its start.
    pub(super) async fn handle_exit(&self, exit: Exit) {
        let mut containers = self.inner.containers.lock().await;
        let claimed = claim_exit(&mut containers, exit.pid);
        drop(containers);
        let Some(claimed) = claimed else {
            if let Ok(mut unclaimed) = self.inner.unclaimed.lock() {
                unclaimed.keep(exit, Instant::now());
            }
            return;
        };
        tracing::info!(container = %claimed.container_id, exec = %claimed.exec_id, pid = exit.pid, status = exit.status, "process exited");
        let service = self.clone();
        tokio::spawn(async move {
            if claimed.kill_the_rest {
                // Nothing else ends the other processes of the container.
                let _ = claimed
                    .runtime
                    .kill(&claimed.container_id, libc::SIGKILL as u32, true)
                    .await;
            }
            service
                .report_exit(
                    claimed.container_id,
                    claimed.exec_id,
                    exit,
                    claimed.io,
                    claimed.exited,
                )
                .await;
        });
    }

    async fn report_exit(
        &self,
        cid: String,
        exec_id: String,
        exit: Exit,
        io: Option<Arc<ProcessIo>>,
        exited: watch::Sender<ExitState>,
    ) {
        if let Some(io) = &io {
            if !io.wait_outputs(EXIT_IO_WAIT).await {
                tracing::debug!(container = %cid, "output still open after exit");
            }
        }
        exited.send_replace(Some((exit.status, exit.at)));
        let id = if exec_id.is_empty() {
            cid.clone()
        } else {
            exec_id
        };
        self.events()
            .publish(
                topics::TASK_EXIT_EVENT_TOPIC,
                events::TaskExit {
                    container_id: cid,
                    id,
                    pid: exit.pid as u32,
                    exit_status: exit.status as u32,
                    exited_at: MessageField::some(timestamp(exit.at)),
                    ..Default::default()
                },
            )
            .await;
    }

    /// Marks a process whose pid just became known as exited if it already did.
    pub(super) fn claim_early_exit(&self, container: &Container, exec_id: &str, pid: u32) {
        let exit = match self.inner.unclaimed.lock() {
            Ok(mut unclaimed) => unclaimed.take(pid, Instant::now()),
            Err(_) => None,
        };
        let Some(exit) = exit else {
            return;
        };
        let Ok(p) = container.process(exec_id) else {
            return;
        };
        let service = self.clone();
        let (cid, eid, io, exited) = (
            container.id.clone(),
            exec_id.to_string(),
            p.io.clone(),
            p.exited.clone(),
        );
        tokio::spawn(async move { service.report_exit(cid, eid, exit, io, exited).await });
    }
}
