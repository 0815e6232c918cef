//! What a listing knows about one object.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// One object as listed: enough to fetch it, pin its version and verify its bytes.
///
/// Equality and hashing compare the object's identity (name, size, generation, CRC32C), not
/// [`ObjectMeta::updated`], which is when the store last wrote it: a listing and a manifest
/// of the same objects are equal whether or not they carry timestamps.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ObjectMeta {
    /// The full object name inside its bucket or root (no leading `/`).
    pub name: String,
    /// Size in bytes.
    pub size: u64,
    /// GCS generation, where the store has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generation: Option<i64>,
    /// CRC32C (Castagnoli) of the content, where the store reports it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub crc32c: Option<u32>,
    /// When the store last wrote the object, by the store's own clock (GCS `updated`,
    /// `object_store`'s `last_modified`), where the request reported it. Leases compare these
    /// timestamps with each other, never with a node's clock.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub updated: Option<DateTime<Utc>>,
}

impl PartialEq for ObjectMeta {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name
            && self.size == other.size
            && self.generation == other.generation
            && self.crc32c == other.crc32c
    }
}

impl Eq for ObjectMeta {}

impl std::hash::Hash for ObjectMeta {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        (&self.name, self.size, self.generation, self.crc32c).hash(state);
    }
}

impl ObjectMeta {
    /// An object known only by name and size.
    ///
    /// ```
    /// let m = dataflux::ObjectMeta::new("images/1.jpg", 42);
    /// assert_eq!((m.name.as_str(), m.size, m.generation), ("images/1.jpg", 42, None));
    /// ```
    pub fn new(name: impl Into<String>, size: u64) -> Self {
        Self {
            name: name.into(),
            size,
            generation: None,
            crc32c: None,
            updated: None,
        }
    }

    /// The file stem of the object name: `a/b/000123.jpg` gives `000123`.
    ///
    /// ```
    /// assert_eq!(dataflux::ObjectMeta::new("a/b/000123.jpg", 1).stem(), "000123");
    /// assert_eq!(dataflux::ObjectMeta::new("a/noext", 1).stem(), "noext");
    /// ```
    pub fn stem(&self) -> &str {
        let base = self.name.rsplit('/').next().unwrap_or(&self.name);
        match base.rfind('.') {
            Some(0) | None => base,
            Some(dot) => &base[..dot],
        }
    }
}
