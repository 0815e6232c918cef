//! Demuxing, decoding and colour conversion with FFmpeg's libraries (through `ffmpeg-next`).
//!
//! The container is read through a [`Read`] + [`Seek`] source with a bounded buffer
//! ([`IO_BUFFER_BYTES`]), so memory never depends on the video's size. Frames are decoded in
//! order; only samples are converted to RGB. When the next sample lies much further ahead than
//! the distance between key frames, the demuxer seeks to it instead of decoding through.

use std::io::{Read, Seek};
use std::ops::ControlFlow;
use std::sync::Once;

use ff::format::context::{Input, StreamIo};
use ff::software::scaling;
use ff::util::frame;
use ffmpeg_next as ff;
use image::RgbImage;

use super::sample::{Sampler, Sampling};
use crate::decode::DecodeLimits;

/// The demuxer's read buffer: each read of the source asks for at most this much.
pub const IO_BUFFER_BYTES: usize = 256 * 1024;

/// A sample is sought to, rather than decoded through, when it lies more than this many
/// key-frame intervals ahead (and at least [`SEEK_MIN_GAP_S`]).
const SEEK_GOPS: f64 = 2.0;
/// See [`SEEK_GOPS`].
const SEEK_MIN_GAP_S: f64 = 1.0;

/// How a video is decoded.
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub struct VideoOptions {
    /// Which frames become samples.
    pub sampling: Sampling,
    /// Frames larger than these are refused.
    pub limits: DecodeLimits,
    /// Decoder threads (frame threading); 0 lets FFmpeg choose.
    pub threads: usize,
    /// Whether samples far apart are sought to (else every frame up to the last sample is
    /// decoded).
    pub seek: bool,
}

impl VideoOptions {
    /// Decoding with `sampling`, default limits, FFmpeg's thread count, seeking on.
    pub fn new(sampling: Sampling) -> Self {
        VideoOptions {
            sampling,
            limits: DecodeLimits::default(),
            threads: 0,
            seek: true,
        }
    }

    /// Sets [`limits`](Self::limits).
    #[must_use]
    pub fn with_limits(mut self, limits: DecodeLimits) -> Self {
        self.limits = limits;
        self
    }

    /// Sets [`threads`](Self::threads).
    #[must_use]
    pub fn with_threads(mut self, threads: usize) -> Self {
        self.threads = threads;
        self
    }

    /// Sets [`seek`](Self::seek).
    #[must_use]
    pub fn with_seek(mut self, seek: bool) -> Self {
        self.seek = seek;
        self
    }
}

/// One sample of a video, in RGB.
#[derive(Debug, Clone)]
pub struct VideoFrame {
    /// The sample's index `k` (0, 1, …).
    pub k: u64,
    /// The sample's time in seconds from the first frame: `k / F` with a rate, else the key
    /// frame's own time.
    pub time_s: f64,
    /// The presentation time of the frame shown, in seconds from the first frame.
    pub frame_time_s: f64,
    /// The pixels, converted with the stream's colour matrix and range.
    pub image: RgbImage,
}

/// What decoding a video came to.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct VideoSummary {
    /// Samples given to the caller.
    pub samples: u64,
    /// Frames the decoder produced (sampled or not).
    pub decoded: u64,
    /// Seeks made to skip ahead.
    pub seeks: u64,
    /// The video's duration in seconds, as declared or as decoded.
    pub duration_s: f64,
    /// The decoded frame size.
    pub width: u32,
    /// See [`width`](Self::width).
    pub height: u32,
}

/// Why a video gave no (or not all of its) samples.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum VideoError {
    /// The container cannot be opened or read (not a video, or damaged headers).
    #[error("cannot open video: {reason}")]
    Open {
        /// What FFmpeg said.
        reason: String,
    },
    /// The container holds no video stream (audio only, or only a cover picture).
    #[error("the container holds no video stream")]
    NoVideoStream,
    /// The stream's codec has no decoder in this FFmpeg, or the decoder refused it.
    #[error("cannot decode the {codec} video stream: {reason}")]
    Codec {
        /// The codec's name.
        codec: String,
        /// What FFmpeg said.
        reason: String,
    },
    /// Frames larger than the decode limits.
    #[error("video frames of {width}x{height} exceed the decode limits")]
    TooLarge {
        /// Frame width.
        width: u32,
        /// Frame height.
        height: u32,
    },
    /// The video broke off: the samples before `at_s` were given, none after.
    #[error("video cut short at {at_s:.3} s: {reason}")]
    Broken {
        /// The time of the last good frame, in seconds from the first frame.
        at_s: f64,
        /// What went wrong.
        reason: String,
    },
}

impl VideoError {
    /// The error row's kind: `decode` for a video that cannot be opened or broke off,
    /// `no_video_stream`, `unsupported` for a codec without decoder, `too_large`.
    pub fn kind(&self) -> &'static str {
        match self {
            VideoError::Open { .. } | VideoError::Broken { .. } => "decode",
            VideoError::NoVideoStream => "no_video_stream",
            VideoError::Codec { .. } => "unsupported",
            VideoError::TooLarge { .. } => "too_large",
        }
    }
}

fn init() {
    static INIT: Once = Once::new();
    INIT.call_once(|| {
        // Registers nothing on FFmpeg 4+, but keeps older libraries working.
        let _ = ff::init();
        // Errors become rows; FFmpeg's own stderr chatter would drown a job's log.
        ff::util::log::set_level(ff::util::log::Level::Quiet);
    });
}

/// Decodes the video `reader` holds and hands each sample to `on_frame`, in order; `name`
/// (the object's name) helps FFmpeg guess the container. `on_frame` may stop early with
/// [`ControlFlow::Break`]. A video that breaks off after some samples returns
/// [`VideoError::Broken`] once those samples were given.
///
/// A failing `reader` makes FFmpeg see an I/O error; callers that need to tell a store's
/// transient failure from a broken video record the reader's own error on the side.
pub fn decode_video<R, F>(
    reader: R,
    name: Option<&str>,
    options: &VideoOptions,
    mut on_frame: F,
) -> Result<VideoSummary, VideoError>
where
    R: Read + Seek + Send + 'static,
    F: FnMut(VideoFrame) -> ControlFlow<()>,
{
    init();
    let open = |e: ff::Error| VideoError::Open {
        reason: e.to_string(),
    };
    let io = StreamIo::from_read_seek_with_capacity(reader, IO_BUFFER_BYTES).map_err(open)?;
    let mut input = ff::format::input_from_stream(io, name, None).map_err(open)?;
    let mut video = Decoding::open(&input, options)?;
    video.run(&mut input, &mut on_frame)
}

/// One video's decoding state.
struct Decoding {
    options: VideoOptions,
    stream: usize,
    /// Seconds per unit of the stream's timestamps.
    tb: f64,
    decoder: ff::decoder::Video,
    sampler: Sampler,
    /// The first frame's timestamp: time zero.
    origin: Option<i64>,
    /// The declared duration in seconds, if the container says.
    declared_s: Option<f64>,
    /// The nominal time between frames, from the stream's average rate.
    frame_interval_s: Option<f64>,
    /// The time between frames of a constant-rate stream (average and base rates agree):
    /// what tells, from a packet's timestamp, that its frame cannot be a sample.
    constant_interval_s: Option<f64>,
    /// Whether the decoder skips the next packet's frame if it is not a reference.
    skipping: bool,
    /// The last key packet's time and the latest distance between key packets.
    last_key_s: Option<f64>,
    gop_s: Option<f64>,
    /// The last candidate frame, kept unconverted until a later frame shows it is a sample.
    prev: frame::Video,
    prev_t: Option<f64>,
    /// The latest decoded frame's time.
    last_t: Option<f64>,
    /// The latest timestamp of any packet of the stream (decoded or skipped), for telling a
    /// video cut short.
    last_packet_ts: Option<i64>,
    /// After a seek: the sample time sought to (the first frame must not be later).
    sought: Option<f64>,
    seek_ok: bool,
    scaler: Option<(ScalerKey, scaling::Context)>,
    summary: VideoSummary,
}

/// What a scaler was made for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct ScalerKey {
    format: ff::format::Pixel,
    width: u32,
    height: u32,
    space: ff::color::Space,
    full_range: bool,
}

/// What handling a frame asks of the loop.
enum Next {
    Continue,
    Seek(f64),
    Stop,
}

impl Decoding {
    fn open(input: &Input, options: &VideoOptions) -> Result<Self, VideoError> {
        let attached = ff::format::stream::Disposition::ATTACHED_PIC;
        let stream = input
            .streams()
            .best(ff::media::Type::Video)
            .filter(|s| !s.disposition().contains(attached))
            .or_else(|| {
                input.streams().find(|s| {
                    s.parameters().medium() == ff::media::Type::Video
                        && !s.disposition().contains(attached)
                })
            })
            .ok_or(VideoError::NoVideoStream)?;
        let codec_name = stream.parameters().id().name().to_string();
        let codec_err = |e: ff::Error| VideoError::Codec {
            codec: codec_name.clone(),
            reason: e.to_string(),
        };
        let mut context =
            ff::codec::Context::from_parameters(stream.parameters()).map_err(codec_err)?;
        context.set_threading(ff::codec::threading::Config {
            kind: ff::codec::threading::Type::Frame,
            count: options.threads,
            ..Default::default()
        });
        if options.sampling.keyframes {
            // SAFETY: a plain field of a context not opened yet, owned by `context`.
            unsafe {
                (*context.as_mut_ptr()).skip_frame = ff::ffi::AVDiscard::AVDISCARD_NONKEY;
            }
        }
        let decoder = context.decoder().video().map_err(codec_err)?;
        let (w, h) = (decoder.width(), decoder.height());
        let limits = &options.limits;
        if w > limits.max_width
            || h > limits.max_height
            || u64::from(w) * u64::from(h) > limits.max_pixels
        {
            return Err(VideoError::TooLarge {
                width: w,
                height: h,
            });
        }
        let tb = f64::from(stream.time_base());
        let declared_s = if stream.duration() > 0 {
            Some(stream.duration() as f64 * tb)
        } else if input.duration() > 0 {
            Some(input.duration() as f64 / f64::from(ff::ffi::AV_TIME_BASE))
        } else {
            None
        };
        let rate = stream.avg_frame_rate();
        let frame_interval_s =
            (rate.numerator() > 0 && rate.denominator() > 0).then(|| 1.0 / f64::from(rate));
        let base = stream.rate();
        let constant_interval_s = frame_interval_s.filter(|_| {
            base.numerator() > 0
                && i64::from(base.numerator()) * i64::from(rate.denominator())
                    == i64::from(rate.numerator()) * i64::from(base.denominator())
        });
        Ok(Decoding {
            options: *options,
            stream: stream.index(),
            tb,
            decoder,
            sampler: Sampler::new(options.sampling),
            origin: None,
            declared_s,
            frame_interval_s,
            constant_interval_s,
            skipping: false,
            last_key_s: None,
            gop_s: None,
            prev: frame::Video::empty(),
            prev_t: None,
            last_t: None,
            last_packet_ts: None,
            sought: None,
            seek_ok: options.seek && options.sampling.fps.is_some(),
            scaler: None,
            summary: VideoSummary {
                width: w,
                height: h,
                ..VideoSummary::default()
            },
        })
    }

    fn run(
        &mut self,
        input: &mut Input,
        on_frame: &mut dyn FnMut(VideoFrame) -> ControlFlow<()>,
    ) -> Result<VideoSummary, VideoError> {
        let mut packet = ff::Packet::empty();
        let mut current = frame::Video::empty();
        let mut broken: Option<String> = None;
        'read: loop {
            match packet.read(input) {
                Ok(()) => {}
                Err(ff::Error::Eof) => break,
                Err(e) => {
                    broken = Some(e.to_string());
                    break;
                }
            }
            if packet.stream() != self.stream {
                continue;
            }
            if let Some(ts) = packet.pts().or(packet.dts()) {
                self.last_packet_ts = Some(self.last_packet_ts.map_or(ts, |l| l.max(ts)));
            }
            if packet.is_key() {
                self.note_key(&packet);
            } else if self.options.sampling.keyframes {
                continue;
            }
            self.skip_unless_needed(&packet);
            if let Err(e) = self.decoder.send_packet(&packet) {
                broken = Some(e.to_string());
                break;
            }
            while self.decoder.receive_frame(&mut current).is_ok() {
                match self.on_decoded(&mut current, on_frame)? {
                    Next::Continue => {}
                    Next::Stop => return Ok(self.summary),
                    Next::Seek(target) => {
                        self.seek(input, target);
                        continue 'read;
                    }
                }
            }
        }
        if broken.is_none() {
            let _ = self.decoder.send_eof();
            while self.decoder.receive_frame(&mut current).is_ok() {
                // No seeking near the end: the remaining frames are few.
                if let Next::Stop = self.on_decoded(&mut current, on_frame)? {
                    return Ok(self.summary);
                }
            }
        }
        let last = self.last_t.unwrap_or(0.0);
        let interval = self.frame_interval_s.unwrap_or(0.0);
        self.summary.duration_s = self.declared_s.unwrap_or(last + interval);
        if broken.is_none() {
            // A container that ends well before its declared duration was cut short.
            let demuxed = match (self.last_packet_ts, self.origin) {
                (Some(ts), Some(origin)) => last.max((ts - origin) as f64 * self.tb),
                _ => last,
            };
            if let Some(declared) = self.declared_s {
                let slack = (2.0 * interval).max(0.25);
                if self.last_t.is_none() || demuxed + interval + slack < declared {
                    broken = Some(format!(
                        "the data ends after {last:.3} s of the {declared:.3} s declared"
                    ));
                }
            } else if self.last_t.is_none() {
                broken = Some("no frame could be decoded".into());
            }
        }
        if let Some(reason) = broken {
            return Err(VideoError::Broken { at_s: last, reason });
        }
        if self.prev_t.is_some() {
            let end = self.summary.duration_s.max(last);
            for k in self.sampler.due_until_end(end) {
                if self.emit_prev(k, on_frame)?.is_break() {
                    break;
                }
            }
        }
        Ok(self.summary)
    }

    /// Frames that cannot be samples are decoded only as far as the codec needs: a packet
    /// whose frame is neither a sample nor needed by the stream's constant rate to place one
    /// (the last frame at or before some `k / F` is the one whose successor comes after it)
    /// is decoded only if other frames refer to it (`skip_frame = NONREF`). Packets without a
    /// timestamp, variable-rate streams and the first frame are always decoded.
    fn skip_unless_needed(&mut self, packet: &ff::Packet) {
        let skip = match (
            self.constant_interval_s,
            self.origin,
            packet.pts(),
            self.sampler.sampling().fps,
        ) {
            (Some(interval), Some(origin), Some(pts), Some(fps)) if !self.sampling_keyframes() => {
                let t = (pts - origin) as f64 * self.tb;
                !self.sampler.shows_a_sample(t, interval, fps)
            }
            _ => false,
        };
        if skip != self.skipping {
            self.skipping = skip;
            let discard = if skip {
                ff::ffi::AVDiscard::AVDISCARD_NONREF
            } else {
                ff::ffi::AVDiscard::AVDISCARD_DEFAULT
            };
            // SAFETY: a plain field of the decoder's context, read when the next packet is
            // sent (and copied to frame threads at that point).
            unsafe {
                (*self.decoder.as_mut_ptr()).skip_frame = discard;
            }
        }
    }

    fn sampling_keyframes(&self) -> bool {
        self.options.sampling.keyframes
    }

    /// Keeps the distance between key packets, for the decision to seek.
    fn note_key(&mut self, packet: &ff::Packet) {
        let (Some(pts), Some(origin)) = (packet.pts(), self.origin) else {
            return;
        };
        let t = (pts - origin) as f64 * self.tb;
        if let Some(last) = self.last_key_s {
            if t > last {
                self.gop_s = Some(t - last);
            }
        }
        self.last_key_s = Some(t);
    }

    fn on_decoded(
        &mut self,
        current: &mut frame::Video,
        on_frame: &mut dyn FnMut(VideoFrame) -> ControlFlow<()>,
    ) -> Result<Next, VideoError> {
        self.summary.decoded += 1;
        let Some(ts) = current.timestamp().or(current.pts()) else {
            return Ok(Next::Continue);
        };
        let origin = *self.origin.get_or_insert(ts);
        let t = (ts - origin) as f64 * self.tb;
        self.last_t = Some(self.last_t.map_or(t, |l| l.max(t)));
        if let Some(target) = self.sought.take() {
            if t > target + 1e-6 {
                // The seek landed past the sample: go back to the start and decode through.
                self.seek_ok = false;
                return Ok(Next::Seek(0.0));
            }
        }
        if self.options.sampling.keyframes && !current.is_key() {
            return Ok(Next::Continue);
        }
        if self.options.sampling.fps.is_none() {
            let Some(k) = self.sampler.take_each() else {
                return Ok(Next::Stop);
            };
            let image = self.convert_rgb(current)?;
            return Ok(self.give(k, t, t, image, on_frame));
        }
        for k in self.sampler.due_before(t) {
            if self.emit_prev(k, on_frame)?.is_break() {
                return Ok(Next::Stop);
            }
        }
        if self.sampler.is_full() {
            return Ok(Next::Stop);
        }
        std::mem::swap(&mut self.prev, current);
        self.prev_t = Some(t);
        if self.seek_ok {
            if let (Some(next), Some(gop)) = (self.sampler.next_time(), self.gop_s) {
                if next - t > (SEEK_GOPS * gop).max(SEEK_MIN_GAP_S) {
                    return Ok(Next::Seek(next));
                }
            }
        }
        Ok(Next::Continue)
    }

    /// Seeks to the key frame at or before `target` seconds from the first frame.
    fn seek(&mut self, input: &mut Input, target: f64) {
        let origin_s = self.origin.unwrap_or(0) as f64 * self.tb;
        let ts = ((origin_s + target) * f64::from(ff::ffi::AV_TIME_BASE)).floor() as i64;
        if input.seek(ts, ..ts).is_err() {
            // Not seekable after all: decode through from where we are.
            self.seek_ok = false;
            return;
        }
        self.decoder.flush();
        self.summary.seeks += 1;
        self.prev_t = None;
        self.sought = Some(target);
    }

    fn emit_prev(
        &mut self,
        k: u64,
        on_frame: &mut dyn FnMut(VideoFrame) -> ControlFlow<()>,
    ) -> Result<ControlFlow<()>, VideoError> {
        let Some(frame_t) = self.prev_t else {
            // No frame at or before this sample (the stream starts later): nothing to show.
            return Ok(ControlFlow::Continue(()));
        };
        let time = self.sampler.time_of(k).unwrap_or(frame_t);
        let prev = std::mem::replace(&mut self.prev, frame::Video::empty());
        let image = self.convert_rgb(&prev);
        self.prev = prev;
        Ok(match self.give(k, time, frame_t, image?, on_frame) {
            Next::Stop => ControlFlow::Break(()),
            _ => ControlFlow::Continue(()),
        })
    }

    fn give(
        &mut self,
        k: u64,
        time_s: f64,
        frame_time_s: f64,
        image: RgbImage,
        on_frame: &mut dyn FnMut(VideoFrame) -> ControlFlow<()>,
    ) -> Next {
        self.summary.samples += 1;
        let frame = VideoFrame {
            k,
            time_s,
            frame_time_s,
            image,
        };
        match on_frame(frame) {
            ControlFlow::Continue(()) => Next::Continue,
            ControlFlow::Break(()) => Next::Stop,
        }
    }

    /// The frame in 8-bit RGB, full range, with the stream's matrix (BT.601 when unsaid).
    fn convert_rgb(&mut self, frame: &frame::Video) -> Result<RgbImage, VideoError> {
        let (width, height) = (frame.width(), frame.height());
        let limits = &self.options.limits;
        if width == 0
            || height == 0
            || width > limits.max_width
            || height > limits.max_height
            || u64::from(width) * u64::from(height) > limits.max_pixels
        {
            return Err(VideoError::TooLarge { width, height });
        }
        let format = frame.format();
        let full_range = frame.color_range() == ff::color::Range::JPEG
            || matches!(
                format,
                ff::format::Pixel::YUVJ420P
                    | ff::format::Pixel::YUVJ422P
                    | ff::format::Pixel::YUVJ444P
                    | ff::format::Pixel::YUVJ440P
            );
        let key = ScalerKey {
            format,
            width,
            height,
            space: frame.color_space(),
            full_range,
        };
        let broken = |e: ff::Error| VideoError::Broken {
            at_s: self.last_t.unwrap_or(0.0),
            reason: format!("colour conversion: {e}"),
        };
        if self.scaler.as_ref().map(|s| s.0) != Some(key) {
            let context = scaling::Context::get(
                format,
                width,
                height,
                ff::format::Pixel::RGB24,
                width,
                height,
                scaling::Flags::BILINEAR,
            )
            .map_err(broken)?;
            self.scaler = Some((key, context));
        }
        let Some((_, scaler)) = self.scaler.as_mut() else {
            unreachable!("set above")
        };
        set_colour(scaler, key.space, full_range);
        let mut rgb = frame::Video::empty();
        scaler.run(frame, &mut rgb).map_err(broken)?;
        let stride = rgb.stride(0);
        let data = rgb.data(0);
        let row = width as usize * 3;
        let mut pixels = Vec::with_capacity(row * height as usize);
        for y in 0..height as usize {
            pixels.extend_from_slice(&data[y * stride..y * stride + row]);
        }
        RgbImage::from_raw(width, height, pixels).ok_or(VideoError::TooLarge { width, height })
    }
}

/// Tells swscale the source's matrix and range; the output is full-range RGB.
fn set_colour(scaler: &mut scaling::Context, space: ff::color::Space, full_range: bool) {
    use ff::color::Space;
    use ff::ffi::{
        SWS_CS_BT2020, SWS_CS_DEFAULT, SWS_CS_FCC, SWS_CS_ITU601, SWS_CS_ITU709, SWS_CS_SMPTE240M,
    };
    let matrix = match space {
        Space::BT709 => SWS_CS_ITU709,
        Space::FCC => SWS_CS_FCC,
        Space::SMPTE240M => SWS_CS_SMPTE240M,
        Space::BT2020NCL | Space::BT2020CL => SWS_CS_BT2020,
        // BT.470BG, SMPTE 170M and unspecified: BT.601, FFmpeg's own default.
        _ => SWS_CS_ITU601,
    };
    // SAFETY: the context is valid and owned by `scaler`; the tables are static ones of
    // libswscale.
    unsafe {
        ff::ffi::sws_setColorspaceDetails(
            scaler.as_mut_ptr(),
            ff::ffi::sws_getCoefficients(matrix),
            i32::from(full_range),
            ff::ffi::sws_getCoefficients(SWS_CS_DEFAULT),
            1,
            0,
            1 << 16,
            1 << 16,
        );
    }
}
