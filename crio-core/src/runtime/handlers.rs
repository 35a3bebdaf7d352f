//! Resolving configured handlers to the binaries they need, and whether they are there.

use std::path::{Path, PathBuf};

use crate::config::{Config, RuntimeHandler, RUNTIME_TYPE_VM};

/// The in-tree shim that drives runc/crun for `oci` handlers.
pub(crate) const RUNC_SHIM_BINARY: &str = "containerd-shim-runc-rs-v2";

/// One RuntimeClass handler as the core sees it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Handler {
    pub name: String,
    pub config: RuntimeHandler,
    /// `[crio.runtime] no_pivot`, for the OCI runtime's create.
    pub no_pivot: bool,
    /// What the handler's shim and runtime support, as probed (nothing before).
    pub features: crate::runtime::HandlerFeatures,
}

/// Whether a handler can run pods now, and if not why (CamelCase reason + message).
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Readiness {
    Ready,
    NotReady { reason: String, message: String },
}

impl Handler {
    /// containerd's runc `Options` for handlers our runc shim (or containerd's)
    /// serves, as the shim's Create and `-info` take them.
    pub(crate) fn shim_options(
        &self,
        systemd_cgroup: bool,
    ) -> Option<protocols::shim::protobuf::well_known_types::any::Any> {
        use protocols::shim::protobuf::Message;
        let Some(binary) = self.oci_runtime_binary() else {
            return self.file_options();
        };
        let options = protocols::shim::shim::oci::Options {
            binary_name: binary,
            root: self.config.runtime_root.clone(),
            systemd_cgroup,
            no_pivot_root: self.no_pivot,
            ..Default::default()
        };
        let mut any = protocols::shim::protobuf::well_known_types::any::Any::new();
        any.type_url = "containerd.runc.v1.Options".into();
        any.value = options.write_to_bytes().ok()?;
        Some(any)
    }

    /// containerd's `runtimeoptions.v1.Options` for a `vm` handler's shim: the
    /// handler's `runtime_config_path` (as CRI-O and containerd pass Kata's
    /// configuration file) and its `vm_*` keys as the configuration's body. `None`
    /// when the handler sets neither.
    fn file_options(&self) -> Option<protocols::shim::protobuf::well_known_types::any::Any> {
        use protocols::shim::protobuf::Message;
        let body = self.config.vm_config();
        if self.config.runtime_config_path.is_empty() && body.is_none() {
            return None;
        }
        let options = protocols::runtimeoptions::Options {
            config_path: self.config.runtime_config_path.clone(),
            config_body: body.unwrap_or_default(),
            ..Default::default()
        };
        let mut any = protocols::shim::protobuf::well_known_types::any::Any::new();
        any.type_url = protocols::runtimeoptions::TYPE_URL.into();
        any.value = options.write_to_bytes().ok()?;
        Some(any)
    }

    /// `runtime_path`, or `platform_runtime_paths`' entry for this platform
    /// (`linux/amd64`), as CRI-O picks it.
    fn runtime_path(&self) -> &str {
        let platform = format!("linux/{}", crate::spec::seccomp::go_arch());
        self.config
            .platform_runtime_paths
            .get(&platform)
            .unwrap_or(&self.config.runtime_path)
    }

    /// The shim v2 binary this handler is served by, as configured (maybe a bare name).
    pub(crate) fn shim_binary(&self) -> String {
        if self.config.runtime_type == RUNTIME_TYPE_VM {
            self.runtime_path().to_string()
        } else if !self.config.shim_path.is_empty() {
            self.config.shim_path.clone()
        } else {
            RUNC_SHIM_BINARY.to_string()
        }
    }

    /// For `oci` handlers, the OCI runtime binary the runc shim drives: an empty
    /// `runtime_path` names the binary after the handler, as CRI-O looks it up
    /// (`[crio.runtime.runtimes.crun]` runs `crun`).
    pub(crate) fn oci_runtime_binary(&self) -> Option<String> {
        (self.config.runtime_type != RUNTIME_TYPE_VM).then(|| {
            if self.runtime_path().is_empty() {
                self.name.clone()
            } else {
                self.runtime_path().to_string()
            }
        })
    }

    /// Whether `other` is this handler configured the same way (features aside).
    pub(crate) fn same_config(&self, other: &Handler) -> bool {
        self.name == other.name && self.config == other.config && self.no_pivot == other.no_pivot
    }

    /// Checks that every binary the handler needs exists and is executable.
    pub(crate) fn readiness(&self, search: &[PathBuf]) -> Readiness {
        let shim = self.shim_binary();
        if find_executable(&shim, search).is_none() {
            return Readiness::NotReady {
                reason: "ShimBinaryNotFound".into(),
                message: format!(
                    "runtime handler {:?}: shim v2 binary {shim:?} not found or not executable",
                    self.name
                ),
            };
        }
        for (what, path) in [
            ("guest kernel", &self.config.vm_kernel),
            ("guest initramfs", &self.config.vm_initramfs),
        ] {
            if let Some(path) = path.as_deref().filter(|p| !Path::new(p).is_file()) {
                return Readiness::NotReady {
                    reason: "GuestImageNotFound".into(),
                    message: format!(
                        "runtime handler {:?}: {what} {path:?} not found (packaging/install.sh builds and installs it)",
                        self.name
                    ),
                };
            }
        }
        if self.config.vm_shared_fs.as_deref() == Some("virtio-fs") {
            let daemon = self
                .config
                .vm_virtiofsd_path
                .as_deref()
                .unwrap_or(protocols::agent::DEFAULT_VIRTIOFSD);
            if find_executable(daemon, search).is_none() {
                return Readiness::NotReady {
                    reason: "VirtiofsdNotFound".into(),
                    message: format!(
                        "runtime handler {:?}: virtio-fs daemon {daemon:?} not found or not executable",
                        self.name
                    ),
                };
            }
        }
        if let Some(runtime) = self.oci_runtime_binary() {
            if find_executable(&runtime, search).is_none() {
                return Readiness::NotReady {
                    reason: "RuntimeBinaryNotFound".into(),
                    message: format!(
                        "runtime handler {:?}: OCI runtime {runtime:?} not found or not executable",
                        self.name
                    ),
                };
            }
        }
        Readiness::Ready
    }
}

/// Every configured handler, and which one is the default.
#[derive(Debug, Clone)]
pub(crate) struct HandlerRegistry {
    handlers: Vec<Handler>,
    default: String,
    /// Where bare binary names are looked up: the crio binary's own dir, then `PATH`.
    search: Vec<PathBuf>,
}

impl HandlerRegistry {
    pub(crate) fn from_config(config: &Config) -> Self {
        let runtime = &config.crio.runtime;
        let handlers = runtime
            .runtimes
            .iter()
            .map(|(name, config)| Handler {
                name: name.clone(),
                config: config.clone(),
                no_pivot: runtime.no_pivot,
                features: Default::default(),
            })
            .collect();
        Self {
            handlers,
            default: runtime.default_runtime.clone(),
            search: default_search_path(),
        }
    }

    /// Asks every handler's shim what it supports. Handlers configured as in
    /// `known` keep the features probed for them there: a reload probes only what
    /// it adds or changes. Probed together: the wait is the slowest handler's.
    pub(crate) async fn probed(mut self, known: Option<&HandlerRegistry>) -> Self {
        let search = &self.search;
        let probes = self.handlers.iter().map(|handler| async move {
            if let Some(same) = known
                .and_then(|k| k.resolve(&handler.name))
                .filter(|k| k.same_config(handler))
            {
                return same.features;
            }
            let shim = find_executable(&handler.shim_binary(), search);
            let found = crate::runtime::features::probe(handler, shim.as_deref()).await;
            tracing::debug!(handler = %handler.name, ?found, "handler features");
            found
        });
        let found = futures::future::join_all(probes).await;
        for (handler, features) in self.handlers.iter_mut().zip(found) {
            handler.features = features;
        }
        self
    }

    /// The registry with `name`'s features set, as a probe would find them.
    #[cfg(test)]
    pub(crate) fn with_features(
        mut self,
        name: &str,
        features: crate::runtime::HandlerFeatures,
    ) -> Self {
        for handler in self.handlers.iter_mut().filter(|h| h.name == name) {
            handler.features = features;
        }
        self
    }

    /// Resolves a pod's handler name; empty means the default. `None` = unknown handler.
    pub(crate) fn resolve(&self, name: &str) -> Option<&Handler> {
        let name = if name.is_empty() { &self.default } else { name };
        self.handlers.iter().find(|h| h.name == name)
    }

    pub(crate) fn handlers(&self) -> &[Handler] {
        &self.handlers
    }

    /// The absolute path of a handler's shim binary, if it is installed.
    pub(crate) fn locate_shim(&self, handler: &Handler) -> Option<PathBuf> {
        find_executable(&handler.shim_binary(), &self.search)
    }

    /// The configured handler names, for error messages.
    pub(crate) fn names(&self) -> Vec<String> {
        self.handlers.iter().map(|h| h.name.clone()).collect()
    }

    /// Readiness of every handler, by name (verbose `Status`).
    pub(crate) fn readiness(&self) -> Vec<(String, Readiness)> {
        self.handlers
            .iter()
            .map(|h| (h.name.clone(), h.readiness(&self.search)))
            .collect()
    }

    /// Readiness of the default handler: the CRI `RuntimeReady` condition.
    pub(crate) fn default_readiness(&self) -> Readiness {
        match self.resolve("") {
            Some(handler) => handler.readiness(&self.search),
            // Config validation guarantees the default exists.
            None => Readiness::NotReady {
                reason: "NoDefaultRuntime".into(),
                message: format!("default runtime {:?} is not configured", self.default),
            },
        }
    }
}

fn default_search_path() -> Vec<PathBuf> {
    let own_dir = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(Path::to_path_buf));
    let path = std::env::var_os("PATH").unwrap_or_default();
    own_dir
        .into_iter()
        .chain(std::env::split_paths(&path))
        .collect()
}

/// An absolute path is checked as is; a bare name is looked up in `search`.
pub(crate) fn find_executable(name: &str, search: &[PathBuf]) -> Option<PathBuf> {
    if name.is_empty() {
        return None;
    }
    let candidates: Vec<PathBuf> = if name.contains('/') {
        vec![PathBuf::from(name)]
    } else {
        search.iter().map(|dir| dir.join(name)).collect()
    };
    candidates.into_iter().find(|p| is_executable(p))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::RUNTIME_TYPE_OCI;

    fn handler(runtime_type: &str, runtime_path: &str, shim_path: &str) -> Handler {
        Handler {
            name: "runc".into(),
            config: RuntimeHandler {
                runtime_type: runtime_type.into(),
                runtime_path: runtime_path.into(),
                shim_path: shim_path.into(),
                ..Default::default()
            },
            no_pivot: false,
            features: Default::default(),
        }
    }

    #[test]
    fn platform_runtime_paths_win_on_their_platform() {
        let mut h = handler("oci", "/usr/bin/runc", "");
        h.config.platform_runtime_paths.insert(
            format!("linux/{}", crate::spec::seccomp::go_arch()),
            "/opt/runc-native".into(),
        );
        h.config
            .platform_runtime_paths
            .insert("linux/other".into(), "/opt/runc-other".into());
        assert_eq!(h.oci_runtime_binary().as_deref(), Some("/opt/runc-native"));
        h.config.platform_runtime_paths.clear();
        assert_eq!(h.oci_runtime_binary().as_deref(), Some("/usr/bin/runc"));
    }

    #[test]
    fn oci_handlers_use_the_runc_shim_with_their_runtime() {
        let h = handler(RUNTIME_TYPE_OCI, "/usr/bin/crun", "");
        assert_eq!(h.shim_binary(), RUNC_SHIM_BINARY);
        assert_eq!(h.oci_runtime_binary().as_deref(), Some("/usr/bin/crun"));
        let h = handler(RUNTIME_TYPE_OCI, "", "/opt/shim");
        assert_eq!(h.shim_binary(), "/opt/shim");
        assert_eq!(h.oci_runtime_binary().as_deref(), Some("runc"));
        // No runtime_path: the handler's name, as CRI-O looks it up; conmon-rs's
        // "pod" type is served the same way.
        let mut crun = handler(crate::config::RUNTIME_TYPE_POD, "", "");
        crun.name = "crun".into();
        crun.config.monitor_path = "/usr/libexec/crio/conmon-rs".into();
        assert_eq!(crun.oci_runtime_binary().as_deref(), Some("crun"));
        assert_eq!(
            crun.shim_binary(),
            RUNC_SHIM_BINARY,
            "monitor_path is conmon's"
        );
    }

    #[test]
    fn vm_handlers_use_runtime_path_as_the_shim() {
        let h = handler(RUNTIME_TYPE_VM, "/usr/bin/containerd-shim-kata-v2", "");
        assert_eq!(h.shim_binary(), "/usr/bin/containerd-shim-kata-v2");
        assert_eq!(h.oci_runtime_binary(), None);
    }

    #[test]
    fn readiness_names_the_missing_binary() {
        let dir = tempfile::tempdir().expect("tempdir");
        let search = vec![dir.path().to_path_buf()];
        let h = handler(RUNTIME_TYPE_OCI, "", "");
        match h.readiness(&search) {
            Readiness::NotReady { reason, message } => {
                assert_eq!(reason, "ShimBinaryNotFound");
                assert!(message.contains(RUNC_SHIM_BINARY), "{message}");
            }
            Readiness::Ready => panic!("nothing is installed in {search:?}"),
        }
        use std::os::unix::fs::PermissionsExt;
        for name in [RUNC_SHIM_BINARY, "runc"] {
            let p = dir.path().join(name);
            std::fs::write(&p, "#!/bin/sh\n").expect("write");
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        }
        assert_eq!(h.readiness(&search), Readiness::Ready);
    }

    #[test]
    fn a_virtio_fs_handler_needs_its_daemon() {
        let dir = tempfile::tempdir().expect("tempdir");
        let shim = dir.path().join("containerd-shim-kata-rs-v2");
        std::fs::write(&shim, "#!/bin/sh\n").expect("write");
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&shim, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        let mut h = handler(RUNTIME_TYPE_VM, &shim.display().to_string(), "");
        let search = vec![dir.path().to_path_buf()];
        assert_eq!(h.readiness(&search), Readiness::Ready, "9p needs no daemon");
        h.config.vm_shared_fs = Some("virtio-fs".into());
        h.config.vm_virtiofsd_path = Some(dir.path().join("virtiofsd").display().to_string());
        match h.readiness(&search) {
            Readiness::NotReady { reason, message } => {
                assert_eq!(reason, "VirtiofsdNotFound");
                assert!(message.contains("virtiofsd"), "{message}");
            }
            Readiness::Ready => panic!("no virtiofsd in {search:?}"),
        }
    }

    #[test]
    fn resolve_maps_empty_to_the_default_and_unknown_to_none() {
        let reg = HandlerRegistry::from_config(&Config::default());
        assert_eq!(reg.resolve("").map(|h| h.name.as_str()), Some("runc"));
        assert!(reg.resolve("nope").is_none());
    }

    #[test]
    fn vm_handlers_pass_their_config_file_and_keys_as_runtimeoptions() {
        use protocols::shim::protobuf::Message;
        let mut h = handler("vm", "/usr/bin/containerd-shim-kata-rs-v2", "");
        assert!(h.shim_options(false).is_none(), "nothing to pass");
        h.config.runtime_config_path = "/etc/kata/configuration.toml".into();
        h.config.vm_vcpus = Some(2);
        let any = h.shim_options(false).expect("options");
        assert_eq!(any.type_url, "runtimeoptions.v1.Options");
        let o = protocols::runtimeoptions::Options::parse_from_bytes(&any.value).expect("decode");
        assert_eq!(o.config_path, "/etc/kata/configuration.toml");
        assert_eq!(o.config_body.trim(), "vm_vcpus = 2");
    }
}
