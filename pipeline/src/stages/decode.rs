//! decode: each object becomes the model's input on the CPU pool, as soon as it arrives;
//! results leave in arrival order. At most `queue` objects are in the stage at once.
//!
//! A video (recognised by its first bytes) becomes one item per sample: it is decoded on a
//! blocking thread of its own ([`crate::video::produce`]), its samples waiting in a small
//! channel until the objects before it have left. At most `max_videos` are decoded at once;
//! a video that finds no room waits, with the objects behind it, until an earlier one is done,
//! so the oldest video always has its thread.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use bytes::Bytes;
use dataflux::Store;
use futures::stream::{FuturesOrdered, StreamExt};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::carrier::{BadInput, Failure, Item, Part, Payload};
use crate::cpu_pool::CpuPool;
use crate::error::{Error, Result};
use crate::model::BatchModel;
use crate::video::{produce, unsupported, Source, VideoConfig, SAMPLES_AHEAD};

/// What the decode stage needs besides the model and the pool.
pub(crate) struct DecodeConfig {
    /// Objects in the stage at once, at most.
    pub queue: usize,
    /// Videos decoded at once, at most.
    pub max_videos: usize,
    /// How videos are sampled; `None`: a video is an error row.
    pub video: Option<VideoConfig>,
    /// Where objects too large to fetch whole are read from.
    pub store: Arc<dyn Store>,
}

/// An object's way out of the stage: one item, or a video's items as they come.
enum Output<I> {
    One(Item<I>),
    Many(mpsc::Receiver<Item<I>>, JoinHandle<()>),
}

type Pending<I> = Pin<Box<dyn Future<Output = Output<I>> + Send>>;

/// A video being drained: its samples as they come, and its thread.
type Draining<I> = Option<(mpsc::Receiver<Item<I>>, JoinHandle<()>)>;

pub(crate) async fn run<M: BatchModel>(
    model: Arc<M>,
    pool: Arc<CpuPool>,
    config: DecodeConfig,
    mut rx: mpsc::Receiver<Item<Payload>>,
    tx: mpsc::Sender<Item<M::Input>>,
) -> Result<()> {
    let config = Arc::new(config);
    let queue = config.queue.max(1);
    let max_videos = config.max_videos.max(1);
    let mut inflight: FuturesOrdered<Pending<M::Input>> = FuturesOrdered::new();
    let mut ready: VecDeque<Output<M::Input>> = VecDeque::new();
    let mut current: Draining<M::Input> = None;
    let mut waiting: Option<Item<Payload>> = None;
    let mut videos = 0usize;
    let mut open = true;
    let send = |item: Item<M::Input>| {
        let tx = tx.clone();
        async move {
            tx.send(item)
                .await
                .map_err(|_| Error::Disconnected("decode"))
        }
    };
    loop {
        // The head of the line leaves first: a ready image, or the video being drained.
        if current.is_none() {
            if let Some(out) = ready.pop_front() {
                match out {
                    Output::One(item) => send(item).await?,
                    Output::Many(rx, handle) => current = Some((rx, handle)),
                }
                continue;
            }
        }
        if let Some(item) = waiting.take() {
            if videos < max_videos {
                videos += 1;
                inflight.push_back(start_video(&model, &config, item));
            } else {
                waiting = Some(item);
            }
        }
        let held = inflight.len() + ready.len() + usize::from(current.is_some());
        if !open && waiting.is_none() && held == 0 {
            break;
        }
        tokio::select! {
            biased;
            next = recv_current(&mut current), if current.is_some() => match next {
                Some(item) => send(item).await?,
                None => {
                    if let Some((_, handle)) = current.take() {
                        if let Err(e) = handle.await {
                            return Err(Error::StagePanicked {
                                stage: "decode",
                                message: e.to_string(),
                            });
                        }
                    }
                    videos -= 1;
                }
            },
            Some(done) = inflight.next(), if !inflight.is_empty() => ready.push_back(done),
            next = rx.recv(), if open && waiting.is_none() && held < queue => match next {
                Some(item) => match route(&config, item) {
                    Route::Image(item) => inflight.push_back(decode(model.clone(), pool.clone(), item)),
                    Route::Done(item) => inflight.push_back(Box::pin(std::future::ready(Output::One(item)))),
                    Route::Video(item) if videos < max_videos => {
                        videos += 1;
                        inflight.push_back(start_video(&model, &config, item));
                    }
                    Route::Video(item) => waiting = Some(item),
                },
                None => open = false,
            },
        }
    }
    Ok(())
}

async fn recv_current<I>(current: &mut Draining<I>) -> Option<Item<I>> {
    match current {
        Some((rx, _)) => rx.recv().await,
        None => None,
    }
}

/// Where an object goes in the stage.
enum Route<I> {
    /// An image: preprocessed on the pool.
    Image(Item<Bytes>),
    /// A video: decoded on a thread of its own.
    Video(Item<Payload>),
    /// Nothing to do: a failure, or a video the job does not sample.
    Done(Item<I>),
}

fn route<I>(config: &DecodeConfig, item: Item<Payload>) -> Route<I> {
    let is_video = match &item.value {
        Err(_) => false,
        Ok(Payload::Remote) => true,
        Ok(Payload::Bytes(b)) => {
            let head = &b[..b.len().min(dataflux_inference::video::SNIFF_BYTES)];
            dataflux_inference::video::is_video(head)
        }
    };
    if is_video {
        if config.video.is_some() {
            return Route::Video(item);
        }
        let failure = unsupported(item.object());
        return Route::Done(item.with(Err(failure)));
    }
    match item.value {
        Ok(Payload::Bytes(bytes)) => Route::Image(Item {
            chunk: item.chunk,
            index: item.index,
            part: item.part,
            value: Ok(bytes),
        }),
        Ok(Payload::Remote) => unreachable!("routed as a video above"),
        Err(f) => Route::Done(Item {
            chunk: item.chunk,
            index: item.index,
            part: item.part,
            value: Err(f),
        }),
    }
}

fn start_video<M: BatchModel>(
    model: &Arc<M>,
    config: &Arc<DecodeConfig>,
    item: Item<Payload>,
) -> Pending<M::Input> {
    let (tx, rx) = mpsc::channel(SAMPLES_AHEAD);
    let (model, config) = (model.clone(), config.clone());
    let handle = tokio::task::spawn_blocking(move || {
        let Some(video) = config.video.as_ref() else {
            return;
        };
        let source = match item.value {
            Ok(Payload::Bytes(bytes)) => Source::Bytes(bytes),
            Ok(Payload::Remote) => Source::Remote(config.store.clone()),
            Err(_) => return,
        };
        produce(model.as_ref(), video, item.chunk, item.index, source, &tx);
    });
    Box::pin(std::future::ready(Output::Many(rx, handle)))
}

fn decode<M: BatchModel>(
    model: Arc<M>,
    pool: Arc<CpuPool>,
    item: Item<Bytes>,
) -> Pending<M::Input> {
    Box::pin(async move {
        let object = item.object().name.clone();
        let value = match item.value {
            Err(f) => Err(f),
            Ok(ref bytes) => {
                let bytes = bytes.clone();
                match pool.run(move || model.preprocess(&bytes)).await {
                    Ok(Ok(input)) => Ok(input),
                    Ok(Err(rejection)) => Err(Failure::Bad(BadInput {
                        object,
                        kind: rejection.kind,
                        message: rejection.message,
                    })),
                    Err(panic) => Err(Failure::Bad(BadInput {
                        object,
                        kind: "panic".into(),
                        message: format!("preprocessing panicked: {panic}"),
                    })),
                }
            }
        };
        Output::One(Item {
            chunk: item.chunk,
            index: item.index,
            part: Part::WHOLE,
            value,
        })
    })
}
