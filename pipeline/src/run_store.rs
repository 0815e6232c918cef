//! The run's bookkeeping in one place: the store that holds it, the names in it ([`Layout`]),
//! how long a call may keep failing (the deadline the store's one retry layer was opened
//! with, named in errors), and how often a rank looks again while it waits for another.
//! The planner, the claims, the claim stage and the finalizer take one [`RunStore`] instead
//! of these five things each, and "is the run finished?" is asked here only.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use dataflux::Store;

use crate::error::Result;
use crate::layout::Layout;
use crate::store_ops::{self, store_call, Poller};

/// The run's bookkeeping store.
#[derive(Debug, Clone)]
pub(crate) struct RunStore {
    /// The output store: the run's plan, claims, commits and results live there.
    pub store: Arc<dyn Store>,
    /// The names of the run's objects.
    pub layout: Layout,
    /// How long a store call may keep failing transiently (`--store-deadline-secs`).
    pub deadline: Duration,
    /// How often a waiting rank looks again (`poll`).
    pub poll: Duration,
    /// How long a rank waits for another (`--wait-timeout-secs`).
    pub wait_timeout: Duration,
}

impl RunStore {
    /// The URL of the run's object `name`, for messages.
    pub fn url(&self, name: &str) -> String {
        self.store.object_url(name)
    }

    /// Whether the run is finished: its job summary exists (written last).
    pub async fn finished(&self) -> Result<bool> {
        let name = self.layout.job_summary();
        store_call(self.deadline, "checking the job summary", || {
            store_ops::exists(self.store.as_ref(), &name)
        })
        .await
    }

    /// The object `name`, or `None` if there is none; `what` names the call in errors.
    pub async fn get_or_none(&self, name: &str, what: &str) -> Result<Option<Bytes>> {
        store_call(self.deadline, what, || {
            store_ops::get_or_none(self.store.as_ref(), name)
        })
        .await
    }

    /// Creates `name` if it does not exist; whether this call created it.
    pub async fn create(&self, name: &str, data: Bytes, what: &str) -> Result<bool> {
        store_call(self.deadline, what, || {
            store_ops::create(self.store.as_ref(), name, data.clone())
        })
        .await
    }

    /// A poller for "wait until another rank has written it", every `poll`, up to
    /// `wait_timeout`.
    pub fn poller(&self) -> Poller {
        Poller::new(self.poll, self.wait_timeout)
    }
}
