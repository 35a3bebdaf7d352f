//! `UpdateContainerResources`: the CRI's new values merged over what the container
//! has (only the fields set, as containerd's `WithResources`), applied live through
//! the shim's `Update` (OCI `LinuxResources` as JSON) while the task exists, and kept
//! in the record for `ContainerStatus.resources` and restarts.

use protocols::cri;
use protocols::shim::api;
use protocols::shim::protobuf::well_known_types::any::Any;

use super::spec_input;
use crate::error::CriError;
use crate::pods::PodRuntime;
use crate::spec::{self, Resources};
use crate::store::ContainerRecord;
use crate::store::ContainerState;

/// containerd's type URL for runtime-spec resources (its shims ignore it and read JSON).
pub(super) const LINUX_RESOURCES_TYPE: &str =
    "types.containerd.io/opencontainers/runtime-spec/1/LinuxResources";

/// The fields of `new` that are set, over `old`.
pub(super) fn merge(old: &Resources, new: &Resources) -> Resources {
    let mut out = old.clone();
    let set = |o: &mut i64, n: i64| {
        if n != 0 {
            *o = n;
        }
    };
    set(&mut out.cpu_period, new.cpu_period);
    set(&mut out.cpu_quota, new.cpu_quota);
    set(&mut out.cpu_shares, new.cpu_shares);
    set(&mut out.memory_limit, new.memory_limit);
    set(&mut out.memory_swap, new.memory_swap);
    set(&mut out.oom_score_adj, new.oom_score_adj);
    if !new.cpuset_cpus.is_empty() {
        out.cpuset_cpus = new.cpuset_cpus.clone();
    }
    if !new.cpuset_mems.is_empty() {
        out.cpuset_mems = new.cpuset_mems.clone();
    }
    for (size, limit) in &new.hugepages {
        out.hugepages.retain(|(s, _)| s != size);
        out.hugepages.push((size.clone(), *limit));
    }
    out.unified.extend(new.unified.clone());
    out
}

/// The resources sent to the shim: only what the request sets, so the runtime
/// leaves the rest (devices, pids) as they are.
fn update_payload(requested: &Resources) -> Result<Vec<u8>, CriError> {
    let r = requested.clone();
    serde_json::to_vec(&spec::linux_resources(&r))
        .map_err(|e| CriError::internal_in("encode resources", e))
}

impl PodRuntime {
    /// UpdateContainerResources.
    pub(crate) async fn update_container_resources(
        &self,
        id: &str,
        linux: Option<&cri::LinuxContainerResources>,
    ) -> Result<(), CriError> {
        let record = self.container(id)?;
        let _lock = self.locks.lock(&record.id).await;
        let record: ContainerRecord = self.container(&record.id)?;
        let Some(linux) = linux else {
            return Ok(());
        };
        let pod = self.sandbox(&record.sandbox_id)?.ok_or_else(|| {
            CriError::NotFound(format!(
                "pod sandbox {} of container {} not found",
                record.sandbox_id, record.id
            ))
        })?;
        let min_memory = self.pod_handler(&pod)?.config.container_min_memory_bytes();
        let mut requested = spec_input::resources(Some(linux), 0, min_memory)?;
        spec_input::fit_swap(&mut requested, self.config.host.swap_accounting, true);
        let merged = merge(&record.resources, &requested);
        if record.state == ContainerState::Running || record.state == ContainerState::Created {
            let shim = self.shims.get(&record.sandbox_id).ok_or_else(|| {
                CriError::FailedPrecondition(format!(
                    "the shim of container {} is not running",
                    record.id
                ))
            })?;
            let req = api::UpdateTaskRequest {
                id: record.id.clone(),
                resources: Some(Any {
                    type_url: LINUX_RESOURCES_TYPE.into(),
                    value: update_payload(&requested)?,
                    ..Default::default()
                })
                .into(),
                ..Default::default()
            };
            match shim.client.update(&req).await {
                Ok(_) => {}
                // Exited meanwhile: what is recorded applies to nothing running.
                Err(e) if e.is_not_found() => {}
                Err(e) => return Err(e.into()),
            }
        }
        let key = record.id.clone();
        self.store
            .write_async(move |tx| {
                if let Some(mut c) = tx.get::<ContainerRecord>(&key)? {
                    c.resources = merged;
                    tx.put(&c)?;
                }
                Ok(())
            })
            .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merge_keeps_what_is_not_set() {
        let old = Resources {
            cpu_shares: 512,
            memory_limit: 64 << 20,
            cpuset_cpus: "0".into(),
            ..Default::default()
        };
        let new = Resources {
            memory_limit: 128 << 20,
            ..Default::default()
        };
        let m = merge(&old, &new);
        assert_eq!(m.cpu_shares, 512);
        assert_eq!(m.memory_limit, 128 << 20);
        assert_eq!(m.cpuset_cpus, "0");
        let json: serde_json::Value =
            serde_json::from_slice(&update_payload(&new).expect("json")).expect("parse");
        assert_eq!(json["memory"]["limit"], 128 << 20);
        assert!(json.get("pids").is_none());
    }
}
