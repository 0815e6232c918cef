//! What a listing knows about one object.

use serde::{Deserialize, Serialize};

/// One object as listed: enough to fetch it, pin its version and verify its bytes.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
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
