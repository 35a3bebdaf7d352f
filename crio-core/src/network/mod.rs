//! Pod networking. For now: finding the CNI network the node will use, which decides
//! the CRI `NetworkReady` condition. (Namespaces and plugin invocation come next.)

mod cni_config;

pub use cni_config::{find_network, CniConfigError, CniNetwork};
