//! The configuration the daemon runs with now: what it started with, plus what
//! reloads have applied since (`crio status config` shows it).

use std::sync::{Arc, RwLock};

use super::Config;

#[derive(Debug)]
pub struct LiveConfig(RwLock<Arc<Config>>);

impl LiveConfig {
    pub fn new(config: Config) -> Self {
        Self(RwLock::new(Arc::new(config)))
    }

    pub fn current(&self) -> Arc<Config> {
        self.0.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub(crate) fn replace(&self, config: Config) {
        *self.0.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(config);
    }
}
