//! Pod networking: pinned network namespaces, and finding the CNI network the node
//! will use (the CRI `NetworkReady` condition). Plugin invocation comes next.

mod cni_config;
pub mod netns;

pub use cni_config::{find_network, CniConfigError, CniNetwork};
