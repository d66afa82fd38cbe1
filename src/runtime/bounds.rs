//! The concurrency bounds: a place under the global bound and the instance host's.

use super::Engine;
use crate::config::Profile;
use std::sync::Arc;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// A place in both concurrency bounds (global and per instance host).
pub struct Permit {
    _host: OwnedSemaphorePermit,
    _global: OwnedSemaphorePermit,
}

impl Engine {
    /// Waits for a place under both bounds. Dropping the future while it waits gives nothing up.
    pub async fn acquire(&self, p: &Profile) -> Permit {
        self.acquire_n(p, 1).await
    }

    /// [`acquire_n`](Self::acquire_n) as a future that owns what it needs (to be polled first
    /// where it is made, then awaited in a task).
    pub async fn acquire_n_owned(self: Arc<Self>, p: Arc<Profile>, n: u32) -> Permit {
        self.acquire_n(&p, n).await
    }

    /// Waits for `n` places under both bounds, for an operation that sends `n` requests at once
    /// (a live check sends [`CHECK_REQUESTS`]); never more places than a bound has.
    pub async fn acquire_n(&self, p: &Profile, n: u32) -> Permit {
        let n = n.clamp(1, self.per_host.min(self.global_max) as u32);
        let host = {
            let mut hosts = self.hosts.lock().expect("hosts lock");
            hosts
                .entry(p.host_port())
                .or_insert_with(|| Arc::new(Semaphore::new(self.per_host)))
                .clone()
        };
        let host = host
            .acquire_many_owned(n)
            .await
            .expect("semaphores are never closed");
        let global = self
            .global
            .clone()
            .acquire_many_owned(n)
            .await
            .expect("semaphores are never closed");
        Permit {
            _host: host,
            _global: global,
        }
    }
}
