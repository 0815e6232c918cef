//! The store's clock: leases are judged by the store's own object timestamps, never by the
//! ranks' local clocks (invariant 9). A process writes a probe object and reads its
//! timestamp back ([`probe`]); between probes it adds the monotonic time elapsed since
//! ([`Reading::now`]).

use std::time::Instant;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use dataflux::PutMode;

use crate::error::Result;
use crate::run_store::RunStore;
use crate::store_ops::store_call;

/// The store's time at a moment of this process's monotonic clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Reading {
    store: DateTime<Utc>,
    at: Instant,
}

impl Reading {
    /// The store's time now, estimated from this reading plus the monotonic time since.
    pub fn now(&self) -> Option<DateTime<Utc>> {
        chrono::Duration::from_std(self.at.elapsed())
            .ok()
            .map(|d| self.store + d)
    }
}

/// Writes `holder`'s probe and reads its timestamp: `None` when the store keeps none.
pub(crate) async fn probe(run: &RunStore, holder: &str) -> Result<Option<Reading>> {
    let name = run.layout.clock(holder);
    let at = Instant::now();
    let meta = store_call(run.deadline, "reading the store's clock", || async {
        run.store
            .put(&name, Bytes::from(holder.to_string()), PutMode::Overwrite)
            .await?;
        run.store.head(&name).await
    })
    .await?;
    Ok(meta.updated.map(|store| Reading { store, at }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_estimate_moves_with_the_monotonic_clock() {
        let store = DateTime::parse_from_rfc3339("2026-01-01T00:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let r = Reading {
            store,
            at: Instant::now() - std::time::Duration::from_secs(5),
        };
        let now = r.now().unwrap();
        assert!(now >= store + chrono::Duration::seconds(5));
        assert!(now < store + chrono::Duration::seconds(6));
    }
}
