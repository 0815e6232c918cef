//! What travels between the stages: a claimed [`Chunk`], and one [`Item`] per image of it,
//! whose value changes type from stage to stage (bytes, the model's input, a row).

use std::sync::Arc;

use dataflux::ObjectMeta;

/// A chunk this rank works on: a fixed range of the run's listing.
#[derive(Debug)]
pub struct Chunk {
    /// Its number.
    pub id: usize,
    /// The listing position of its first object.
    pub start: usize,
    /// Its objects, in listing order.
    pub objects: Vec<ObjectMeta>,
    /// Run as a backup of a chunk another rank holds (no claim of ours; the first commit wins).
    pub backup: bool,
    /// When this rank took it on.
    pub taken: std::time::Instant,
}

/// One image on its way through the stages.
#[derive(Debug)]
pub struct Item<T> {
    /// The chunk it belongs to.
    pub chunk: Arc<Chunk>,
    /// Its position in the chunk.
    pub index: usize,
    /// What the last stage made of it, or why it has no value.
    pub value: Result<T, Failure>,
}

impl<T> Item<T> {
    /// The object as listed.
    pub fn object(&self) -> &ObjectMeta {
        &self.chunk.objects[self.index]
    }

    /// The same item with another value.
    pub fn with<U>(self, value: Result<U, Failure>) -> Item<U> {
        Item {
            chunk: self.chunk,
            index: self.index,
            value,
        }
    }

    /// Whether this is the chunk's last item.
    pub fn is_last_of_chunk(&self) -> bool {
        self.index + 1 == self.chunk.objects.len()
    }
}

/// Why an item has no value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// A permanent problem with this object: it becomes an error row.
    Bad(BadInput),
    /// The store failed transiently (after its retries): the chunk is released, not
    /// committed, and done again later.
    Transient(String),
}

/// One input that cannot be processed: an error row `object,error_kind,message`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadInput {
    /// The object's full name.
    pub object: String,
    /// A short machine-readable reason (`not_found`, `integrity`, `decode`, `panic`, …).
    pub kind: String,
    /// The full message.
    pub message: String,
}
