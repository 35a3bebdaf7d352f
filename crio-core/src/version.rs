//! What this build is, for `crio version` and the CRI `Version` RPC.

use serde::Serialize;

/// The runtime name reported to the kubelet.
pub const RUNTIME_NAME: &str = "crio-rs";
/// The CRI API version served.
pub const CRI_API_VERSION: &str = "v1";

/// Build facts, printed by `crio version`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BuildInfo {
    pub version: &'static str,
    pub git_commit: &'static str,
    pub git_tree_state: &'static str,
    pub rust_version: &'static str,
    pub platform: String,
}

impl BuildInfo {
    pub fn current() -> Self {
        Self {
            version: env!("CARGO_PKG_VERSION"),
            git_commit: env!("CRIO_GIT_COMMIT"),
            git_tree_state: env!("CRIO_GIT_TREE_STATE"),
            rust_version: env!("CRIO_RUSTC_VERSION"),
            platform: format!("{}/{}", std::env::consts::OS, std::env::consts::ARCH),
        }
    }

    /// The plain, aligned text form.
    pub fn to_text(&self) -> String {
        format!(
            "Version:       {}\nGitCommit:     {}\nGitTreeState:  {}\nRustVersion:   {}\nPlatform:      {}\n",
            self.version, self.git_commit, self.git_tree_state, self.rust_version, self.platform
        )
    }
}
