//! A listing saved as one compact object, so that many ranks need not list a bucket again.
//!
//! Format: JSON `{"format":"dataflux-manifest","version":1,"prefix":…,"objects":[[name,size,generation|null,crc32c|null],…]}`
//! — one array per object, no repeated keys.

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::list::{Listing, Skipped, Strategy};
use crate::meta::ObjectMeta;
use crate::store::{PutMode, Store};

const FORMAT: &str = "dataflux-manifest";
const VERSION: u32 = 1;

#[derive(Serialize, Deserialize)]
struct Manifest {
    format: String,
    version: u32,
    prefix: String,
    skipped: Skipped,
    objects: Vec<(String, u64, Option<i64>, Option<u32>)>,
}

/// Encodes a listing as manifest bytes.
///
/// ```
/// use dataflux::{manifest, Listing, ObjectMeta, Skipped, Strategy};
/// let listing = Listing { prefix: "p/".into(), objects: vec![ObjectMeta::new("p/a", 3)],
///     skipped: Skipped::default(), strategy: Strategy::Sequential };
/// let bytes = manifest::encode(&listing).unwrap();
/// assert_eq!(manifest::decode(&bytes, "m.json").unwrap().objects, listing.objects);
/// ```
pub fn encode(listing: &Listing) -> Result<Bytes> {
    let manifest = Manifest {
        format: FORMAT.into(),
        version: VERSION,
        prefix: listing.prefix.clone(),
        skipped: listing.skipped,
        objects: listing
            .objects
            .iter()
            .map(|o| (o.name.clone(), o.size, o.generation, o.crc32c))
            .collect(),
    };
    serde_json::to_vec(&manifest)
        .map(Bytes::from)
        .map_err(|e| Error::Manifest {
            location: "(encoding)".into(),
            reason: e.to_string(),
        })
}

/// Decodes manifest bytes; `location` names them in errors.
pub fn decode(bytes: &[u8], location: &str) -> Result<Listing> {
    let bad = |reason: String| Error::Manifest {
        location: location.to_string(),
        reason,
    };
    let m: Manifest = serde_json::from_slice(bytes).map_err(|e| bad(e.to_string()))?;
    if m.format != FORMAT || m.version != VERSION {
        return Err(bad(format!(
            "format {:?} version {} (expected {FORMAT:?} {VERSION})",
            m.format, m.version
        )));
    }
    let objects: Vec<ObjectMeta> = m
        .objects
        .into_iter()
        .map(|(name, size, generation, crc32c)| ObjectMeta {
            name,
            size,
            generation,
            crc32c,
            updated: None,
        })
        .collect();
    if objects.windows(2).any(|w| w[0].name >= w[1].name) {
        return Err(bad("objects are not sorted and unique".into()));
    }
    Ok(Listing {
        prefix: m.prefix,
        objects,
        skipped: m.skipped,
        strategy: Strategy::Sequential,
    })
}

/// Writes `listing` to object `name` of `store` (one put).
pub async fn save(store: &dyn Store, name: &str, listing: &Listing) -> Result<()> {
    store
        .put(name, encode(listing)?, PutMode::Overwrite)
        .await
        .map(|_| ())
}

/// Reads a listing from object `name` of `store` (one get).
pub async fn load(store: &dyn Store, name: &str) -> Result<Listing> {
    let bytes = store.get(name, None).await?;
    decode(&bytes, &store.object_url(name))
}
