//! The runtime handler registry: RuntimeClass handler -> shim binary and options.
//! (The shim launcher, ttrpc clients and event sink arrive with the lifecycle work.)

mod handlers;

pub use handlers::{Handler, HandlerRegistry, Readiness, RUNC_SHIM_BINARY};
