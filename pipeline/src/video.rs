//! Videos in the job: an object read through the store in bounded ranged reads
//! ([`StoreReader`]), and a video's samples turned into the job's items (`produce`), each
//! through the model's own preprocessing, the last item marked as the object's last.
//!
//! A video is recognised by its first bytes ([`dataflux_inference::video::is_video`]). Small
//! objects arrive whole from the fetcher (within its prefetch window); larger ones
//! ([`INLINE_BYTES`]) are never held whole: FFmpeg's demuxer reads them a block at a time, so
//! a rank's memory does not depend on a video's size.

use std::io::{Read, Seek, SeekFrom};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use dataflux::{ObjectMeta, Store};
use dataflux_inference::video::{is_video, Sampling, SNIFF_BYTES};
use tokio::runtime::Handle;
use tokio::sync::mpsc;

use crate::carrier::{BadInput, Chunk, Failure, Item, Part};
use crate::model::BatchModel;

/// With videos sampled, objects larger than this are read by ranges as they are decoded,
/// never fetched whole.
pub const INLINE_BYTES: u64 = 8 << 20;

/// Bytes per ranged read of a video read through the store (one block is held at a time).
pub const READ_BLOCK_BYTES: u64 = 1 << 20;

/// Samples (model inputs) of one video waiting for the stages downstream, at most.
pub(crate) const SAMPLES_AHEAD: usize = 8;

/// A store object as [`Read`] + [`Seek`], one block of at most [`READ_BLOCK_BYTES`] held;
/// each block is one ranged GET through the store's retry layer, made from a blocking thread
/// on the job's runtime. The store's first error is kept aside ([`StoreReader::error`]) so
/// that a transient failure is told from a broken video.
#[derive(Debug)]
pub struct StoreReader {
    store: Arc<dyn Store>,
    name: String,
    size: u64,
    pos: u64,
    block: Option<(u64, Bytes)>,
    block_bytes: u64,
    handle: Handle,
    error: Arc<Mutex<Option<dataflux::Error>>>,
}

impl StoreReader {
    /// A reader of `object` in `store`, blocks of `block_bytes`, on the runtime `handle`
    /// (call it from a blocking thread, never from a task).
    pub fn new(
        store: Arc<dyn Store>,
        object: &ObjectMeta,
        block_bytes: u64,
        handle: Handle,
    ) -> Self {
        StoreReader {
            store,
            name: object.name.clone(),
            size: object.size,
            pos: 0,
            block: None,
            block_bytes: block_bytes.max(1),
            handle,
            error: Arc::default(),
        }
    }

    /// Where the store's first error will be, once reading failed.
    pub fn error(&self) -> Arc<Mutex<Option<dataflux::Error>>> {
        self.error.clone()
    }

    fn fill(&mut self) -> std::io::Result<()> {
        let start = self.pos;
        let end = (start + self.block_bytes).min(self.size);
        let store = self.store.clone();
        let name = self.name.clone();
        match self
            .handle
            .block_on(async move { store.get(&name, Some(start..end)).await })
        {
            Ok(bytes) if !bytes.is_empty() => {
                self.block = Some((start, bytes));
                Ok(())
            }
            Ok(_) => Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                format!("an empty read at byte {start} of {}", self.size),
            )),
            Err(e) => {
                let message = e.to_string();
                if let Ok(mut slot) = self.error.lock() {
                    slot.get_or_insert(e);
                }
                Err(std::io::Error::other(message))
            }
        }
    }
}

impl Read for StoreReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.pos >= self.size || buf.is_empty() {
            return Ok(0);
        }
        let inside = |b: &(u64, Bytes), pos: u64| pos >= b.0 && pos < b.0 + b.1.len() as u64;
        if !self.block.as_ref().is_some_and(|b| inside(b, self.pos)) {
            self.fill()?;
        }
        let Some((start, bytes)) = &self.block else {
            return Ok(0);
        };
        let offset = (self.pos - start) as usize;
        let n = buf.len().min(bytes.len() - offset);
        buf[..n].copy_from_slice(&bytes[offset..offset + n]);
        self.pos += n as u64;
        Ok(n)
    }
}

impl Seek for StoreReader {
    fn seek(&mut self, pos: SeekFrom) -> std::io::Result<u64> {
        let target = match pos {
            SeekFrom::Start(p) => Some(p),
            SeekFrom::End(d) => self.size.checked_add_signed(d),
            SeekFrom::Current(d) => self.pos.checked_add_signed(d),
        };
        self.pos = target.ok_or_else(|| {
            std::io::Error::new(std::io::ErrorKind::InvalidInput, "a seek before the start")
        })?;
        Ok(self.pos)
    }
}

/// An object the decode stage hands to [`produce`].
pub(crate) enum Source {
    /// Fetched whole, and sniffed as a video.
    Bytes(Bytes),
    /// Too large to fetch whole: read by ranges from the store.
    Remote(Arc<dyn Store>),
}

/// What [`produce`] needs besides the object.
pub(crate) struct VideoConfig {
    /// How samples are taken.
    #[cfg_attr(not(feature = "video"), allow(dead_code))]
    pub sampling: Sampling,
    /// Objects larger than this are refused when they turn out not to be videos.
    pub max_object_bytes: u64,
    /// The job's runtime, for the store's reads.
    pub handle: Handle,
}

/// The object at `index` of `chunk` as items on `tx`, in order: one per sample of a video
/// (through [`BatchModel::preprocess_rgb`]), then an error row if it broke off; an image (a
/// large object that is not a video) as one item. The last item is marked so. Runs on a
/// blocking thread; returns when done, or when `tx` is closed.
pub(crate) fn produce<M: BatchModel>(
    model: &M,
    config: &VideoConfig,
    chunk: Arc<Chunk>,
    index: usize,
    source: Source,
    tx: &mpsc::Sender<Item<M::Input>>,
) {
    let object = chunk.objects[index].clone();
    let out = |part: Part, value: Result<M::Input, Failure>| Item {
        chunk: chunk.clone(),
        index,
        part,
        value,
    };
    let bad = |kind: &str, message: String| bad(&object, kind, message);
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        run(model, config, &object, source, &|part, value| {
            tx.blocking_send(out(part, value)).is_ok()
        })
    }));
    if let Err(panic) = result {
        let message = crate::cpu_pool::panic_message(&*panic);
        let _ = tx.blocking_send(out(
            Part::WHOLE,
            Err(bad("panic", format!("decoding panicked: {message}"))),
        ));
    }
}

/// Hands an item on (false: the receiver is gone, stop).
type Emit<'a, I> = &'a dyn Fn(Part, Result<I, Failure>) -> bool;

fn run<M: BatchModel>(
    model: &M,
    config: &VideoConfig,
    object: &ObjectMeta,
    source: Source,
    send: Emit<'_, M::Input>,
) {
    let bad = |kind: &str, message: String| bad(object, kind, message);
    let reject = |r: crate::model::Rejection| bad(&r.kind, r.message);
    match source {
        // The decode stage hands bytes here only when they sniffed as a video.
        Source::Bytes(bytes) => {
            decode(
                model,
                config,
                object,
                std::io::Cursor::new(bytes),
                None,
                send,
            );
        }
        Source::Remote(store) => {
            let mut reader = StoreReader::new(
                store.clone(),
                object,
                READ_BLOCK_BYTES,
                config.handle.clone(),
            );
            let error = reader.error();
            let mut head = [0u8; SNIFF_BYTES];
            let n = read_head(&mut reader, &mut head);
            if reader.seek(SeekFrom::Start(0)).is_err() || n.is_err() {
                send(
                    Part::WHOLE,
                    Err(store_failure(object, &error, "reading its first bytes")),
                );
                return;
            }
            if is_video(&head[..n.unwrap_or(0)]) {
                decode(model, config, object, reader, Some(error), send);
                return;
            }
            // A large object that is not a video: an image, fetched whole within the limit.
            if object.size > config.max_object_bytes {
                let message = format!(
                    "{} bytes, above the job's largest object size of {} bytes",
                    object.size, config.max_object_bytes
                );
                send(Part::WHOLE, Err(bad("too_large", message)));
                return;
            }
            let name = object.name.clone();
            match config
                .handle
                .block_on(async move { store.get(&name, None).await })
            {
                Ok(bytes) => {
                    send(Part::WHOLE, model.preprocess(&bytes).map_err(reject));
                }
                Err(e) => {
                    send(Part::WHOLE, Err(fetch_failure(object, e)));
                }
            }
        }
    }
}

fn read_head(reader: &mut StoreReader, head: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < head.len() {
        match reader.read(&mut head[n..])? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}

/// The failure a store error makes of an object: transient (the chunk goes back) or its
/// error row.
fn fetch_failure(object: &ObjectMeta, e: dataflux::Error) -> Failure {
    Failure::of_fetch(&object.name, &e)
}

fn store_failure(
    object: &ObjectMeta,
    error: &Mutex<Option<dataflux::Error>>,
    doing: &str,
) -> Failure {
    match error.lock().ok().and_then(|mut e| e.take()) {
        Some(e) => fetch_failure(object, e),
        None => bad(object, "fetch", format!("{doing}: the read failed")),
    }
}

#[cfg(feature = "video")]
fn decode<M: BatchModel, R: Read + Seek + Send + 'static>(
    model: &M,
    config: &VideoConfig,
    object: &ObjectMeta,
    reader: R,
    store_error: Option<Arc<Mutex<Option<dataflux::Error>>>>,
    send: Emit<'_, M::Input>,
) {
    use crate::carrier::FrameAt;
    use dataflux_inference::video::{decode_video, VideoOptions};
    use std::ops::ControlFlow;

    let options = VideoOptions::new(config.sampling).with_threads(1);
    // One sample is held back, so that the last one can be marked as the object's last.
    let mut held: Option<(Part, Result<M::Input, Failure>)> = None;
    let mut gone = false;
    let result = decode_video(reader, Some(&object.name), &options, |frame| {
        let value = model.preprocess_rgb(&frame.image).map_err(|r| {
            let message = format!("sample {} at {:.3} s: {}", frame.k, frame.time_s, r.message);
            bad(object, &r.kind, message)
        });
        let part = Part {
            frame: Some(FrameAt {
                k: frame.k,
                time_s: frame.time_s,
            }),
            last: false,
        };
        if let Some((p, v)) = held.replace((part, value)) {
            if !send(p, v) {
                gone = true;
                return ControlFlow::Break(());
            }
        }
        ControlFlow::Continue(())
    });
    if gone {
        return;
    }
    let failure = match result {
        Ok(_) => None,
        Err(e) => {
            // The store's own failure first: a transient one sends the chunk back.
            let stored = store_error.and_then(|s| s.lock().ok().and_then(|mut e| e.take()));
            Some(match stored {
                Some(store) => fetch_failure(object, store),
                None => bad(object, e.kind(), e.to_string()),
            })
        }
    };
    match (held, failure) {
        (Some((part, value)), None) => {
            send(Part { last: true, ..part }, value);
        }
        (held, Some(failure)) => {
            if let Some((part, value)) = held {
                if !send(part, value) {
                    return;
                }
            }
            send(Part::WHOLE, Err(failure));
        }
        (None, None) => {
            let message = "no frame was sampled (a video without frames)".to_string();
            send(Part::WHOLE, Err(bad(object, "decode", message)));
        }
    }
}

#[cfg(not(feature = "video"))]
fn decode<M: BatchModel, R>(
    _model: &M,
    _config: &VideoConfig,
    object: &ObjectMeta,
    _reader: R,
    _store_error: Option<Arc<Mutex<Option<dataflux::Error>>>>,
    send: Emit<'_, M::Input>,
) {
    send(Part::WHOLE, Err(unsupported(object)));
}

/// The error row of `object`.
fn bad(object: &ObjectMeta, kind: &str, message: String) -> Failure {
    Failure::Bad(BadInput {
        object: object.name.clone(),
        kind: kind.into(),
        message,
    })
}

/// The error row of a video in a job that does not sample videos (or a build without them).
pub(crate) fn unsupported(object: &ObjectMeta) -> Failure {
    let message = if dataflux_inference::video::SUPPORTED {
        "a video: sample its frames with --video-fps or --video-keyframes"
    } else {
        "a video: this build has no video support (build with --features video)"
    };
    bad(object, "unsupported", message.into())
}
