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

/// One image, or one sample of a video, on its way through the stages.
#[derive(Debug)]
pub struct Item<T> {
    /// The chunk it belongs to.
    pub chunk: Arc<Chunk>,
    /// Its object's position in the chunk.
    pub index: usize,
    /// Which part of the object it is: the whole image, or one of a video's samples.
    pub part: Part,
    /// What the last stage made of it, or why it has no value.
    pub value: Result<T, Failure>,
}

/// Which part of its object an item is. An image is one item; a video is one item per
/// sample, in order, then possibly an error row, the last of which says so.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Part {
    /// The video sample (`None` for an image, or a video's error row).
    pub frame: Option<FrameAt>,
    /// Whether this is the object's last item: once it is committed, so is the object.
    pub last: bool,
}

impl Part {
    /// A whole image (or any object that is one item).
    pub const WHOLE: Part = Part {
        frame: None,
        last: true,
    };
}

/// A video sample's place: its index `k` and its time `k / F` in seconds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FrameAt {
    /// The sample's index.
    pub k: u64,
    /// Its time in seconds from the video's first frame.
    pub time_s: f64,
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
            part: self.part,
            value,
        }
    }

    /// Whether this is the chunk's last item.
    pub fn is_last_of_chunk(&self) -> bool {
        self.part.last && self.index + 1 == self.chunk.objects.len()
    }
}

/// What the fetch stage hands on for an object.
#[derive(Debug)]
pub enum Payload {
    /// The object's bytes, fetched whole.
    Bytes(bytes::Bytes),
    /// Not fetched: too large to hold (a video, read by ranges as it is decoded).
    Remote,
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

impl Failure {
    /// What a store's failure to read `object` makes of it: transient (after the store's
    /// retries: the chunk goes back) or its error row, of kind `not_found`, `integrity`,
    /// `permission_denied`, `too_large` or `fetch`.
    pub fn of_fetch(object: &str, e: &dataflux::Error) -> Failure {
        if e.is_temporary() {
            return Failure::Transient(e.to_string());
        }
        let kind = match e {
            dataflux::Error::NotFound { .. } => "not_found",
            dataflux::Error::Integrity { .. } => "integrity",
            dataflux::Error::PermissionDenied { .. } => "permission_denied",
            dataflux::Error::TooLarge { .. } => "too_large",
            _ => "fetch",
        };
        Failure::Bad(BadInput {
            object: object.to_string(),
            kind: kind.into(),
            message: e.to_string(),
        })
    }
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
