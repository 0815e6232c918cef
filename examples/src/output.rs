//! Where results go: rows in the tutorial's CSV dialect (or JSON lines), committed in whole
//! parts so a restarted rank resumes exactly where its last part ended, then one final file
//! per rank, a per-rank `_SUCCESS` with its summary, and a job summary from rank 0.
//!
//! Layout under the output prefix (`<run>` is the run id, `<r>` the rank):
//! - `_dataflux/<run>/manifest.json`: the listing every rank shards (written once, kept).
//! - `_dataflux/<run>/parts/rank-<r>/<start>-<end>.{csv,jsonl}` and `….errors.csv`: committed
//!   parts; `start..end` are positions in the rank's shard. Deleted once the rank is done.
//! - `results_<run>_shard_<r>.{csv,jsonl}`, `errors_<run>_shard_<r>.csv`: the rank's results.
//! - `_SUCCESS_shard_<r>.json`: the rank finished; its summary.
//! - `_job_summary_<run>.json`: rank 0's total after every rank finished.

use std::ops::Range;

use bytes::Bytes;
use dataflux::{PutMode, Store};
use dataflux_inference::Prediction;
use serde::{Deserialize, Serialize};

/// Output format of result rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize, Deserialize)]
pub enum Format {
    /// `image_id,classification` with Python `csv` minimal quoting and `\r\n` line ends,
    /// exactly as the GKE tutorial writes it; top-k > 1 adds score and label columns.
    Csv,
    /// One JSON object per line with the object name and every prediction.
    Jsonl,
}

impl Format {
    /// File extension.
    pub fn extension(self) -> &'static str {
        match self {
            Format::Csv => "csv",
            Format::Jsonl => "jsonl",
        }
    }
}

/// One input that could not be classified.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BadInput {
    /// The object's full name.
    pub object: String,
    /// A short machine-readable reason (`not_found`, `integrity`, `decode`, `too_large`, …).
    pub kind: String,
    /// The full message.
    pub message: String,
}

/// One classified image.
#[derive(Debug, Clone, PartialEq)]
pub struct Classified {
    /// The object's full name.
    pub object: String,
    /// Its file stem, the tutorial's `image_id`.
    pub image_id: String,
    /// Top-k predictions, best first.
    pub predictions: Vec<Prediction>,
}

fn csv_writer(buf: &mut Vec<u8>) -> csv::Writer<&mut Vec<u8>> {
    csv::WriterBuilder::new()
        .terminator(csv::Terminator::CRLF)
        .quote_style(csv::QuoteStyle::Necessary)
        .from_writer(buf)
}

/// The header line of a results file.
///
/// ```
/// use dataflux_examples::output::{header, Format};
/// assert_eq!(header(Format::Csv, 1), b"image_id,classification\r\n");
/// assert_eq!(header(Format::Csv, 2), b"image_id,classification,score,label_2,score_2\r\n");
/// assert!(header(Format::Jsonl, 5).is_empty());
/// ```
pub fn header(format: Format, top_k: usize) -> Vec<u8> {
    if format == Format::Jsonl {
        return Vec::new();
    }
    let mut cols = vec!["image_id".to_string(), "classification".to_string()];
    if top_k > 1 {
        cols.push("score".into());
        for k in 2..=top_k {
            cols.push(format!("label_{k}"));
            cols.push(format!("score_{k}"));
        }
    }
    let mut buf = Vec::new();
    {
        let mut w = csv_writer(&mut buf);
        let _ = w.write_record(&cols);
        let _ = w.flush();
    }
    buf
}

/// Result rows (no header).
///
/// ```
/// use dataflux_examples::output::{rows, Classified, Format};
/// use dataflux_inference::Prediction;
/// let c = Classified { object: "x/413621.jpg".into(), image_id: "413621".into(),
///     predictions: vec![Prediction { label: "teddy, teddy bear".into(), index: 850, probability: 0.9 }] };
/// assert_eq!(rows(Format::Csv, 1, &[c]), b"413621,\"teddy, teddy bear\"\r\n");
/// ```
pub fn rows(format: Format, top_k: usize, items: &[Classified]) -> Vec<u8> {
    let mut buf = Vec::new();
    match format {
        Format::Csv => {
            let mut w = csv_writer(&mut buf);
            for c in items {
                let mut record = vec![c.image_id.clone()];
                let mut preds = c.predictions.iter();
                record.push(preds.next().map(|p| p.label.clone()).unwrap_or_default());
                if top_k > 1 {
                    record.push(
                        c.predictions
                            .first()
                            .map(|p| format!("{:.6}", p.probability))
                            .unwrap_or_default(),
                    );
                    for k in 1..top_k {
                        let p = c.predictions.get(k);
                        record.push(p.map(|p| p.label.clone()).unwrap_or_default());
                        record.push(
                            p.map(|p| format!("{:.6}", p.probability))
                                .unwrap_or_default(),
                        );
                    }
                }
                let _ = w.write_record(&record);
            }
            let _ = w.flush();
        }
        Format::Jsonl => {
            for c in items {
                let preds: Vec<serde_json::Value> = c
                    .predictions
                    .iter()
                    .map(|p| serde_json::json!({ "label": p.label, "index": p.index, "probability": p.probability }))
                    .collect();
                let line = serde_json::json!({ "image_id": c.image_id, "object": c.object, "predictions": preds });
                buf.extend_from_slice(line.to_string().as_bytes());
                buf.push(b'\n');
            }
        }
    }
    buf
}

/// The errors file header.
pub const ERRORS_HEADER: &[u8] = b"object,error_kind,message\r\n";

/// Error rows (no header).
pub fn error_rows(items: &[BadInput]) -> Vec<u8> {
    let mut buf = Vec::new();
    {
        let mut w = csv_writer(&mut buf);
        for b in items {
            let _ = w.write_record([&b.object, &b.kind, &b.message]);
        }
        let _ = w.flush();
    }
    buf
}

/// Names of everything a rank writes.
#[derive(Debug, Clone)]
pub struct Layout {
    /// Output prefix (folder form).
    pub prefix: String,
    /// Run id.
    pub run_id: String,
    /// This rank.
    pub rank: usize,
    /// Result format.
    pub format: Format,
}

impl Layout {
    /// The run's private folder.
    pub fn run_dir(&self) -> String {
        format!("{}_dataflux/{}/", self.prefix, self.run_id)
    }
    /// The shared listing.
    pub fn manifest(&self) -> String {
        format!("{}manifest.json", self.run_dir())
    }
    /// This rank's parts folder.
    pub fn parts_dir(&self) -> String {
        format!("{}parts/rank-{:05}/", self.run_dir(), self.rank)
    }
    /// A results part covering shard positions `range`.
    pub fn part(&self, range: &Range<usize>) -> String {
        format!(
            "{}{:010}-{:010}.{}",
            self.parts_dir(),
            range.start,
            range.end,
            self.format.extension()
        )
    }
    /// The errors part covering `range`.
    pub fn errors_part(&self, range: &Range<usize>) -> String {
        format!(
            "{}{:010}-{:010}.errors.csv",
            self.parts_dir(),
            range.start,
            range.end
        )
    }
    /// This rank's final results file.
    pub fn results(&self) -> String {
        format!(
            "{}results_{}_shard_{}.{}",
            self.prefix,
            self.run_id,
            self.rank,
            self.format.extension()
        )
    }
    /// This rank's final errors file.
    pub fn errors(&self) -> String {
        format!(
            "{}errors_{}_shard_{}.csv",
            self.prefix, self.run_id, self.rank
        )
    }
    /// This rank's completion marker.
    pub fn success(&self) -> String {
        format!(
            "{}_SUCCESS_{}_shard_{}.json",
            self.prefix, self.run_id, self.rank
        )
    }
    /// The job summary.
    pub fn job_summary(&self) -> String {
        format!("{}_job_summary_{}.json", self.prefix, self.run_id)
    }

    /// Parses a results-part name back into its range.
    pub fn parse_part(&self, name: &str) -> Option<Range<usize>> {
        let base = name.strip_prefix(&self.parts_dir())?;
        let stem = base.strip_suffix(&format!(".{}", self.format.extension()))?;
        let (a, b) = stem.split_once('-')?;
        Some(a.parse().ok()?..b.parse().ok()?)
    }
}

/// The committed prefix of a rank's shard: parts that chain from position 0 without a gap.
/// Anything after a gap (impossible unless parts were deleted by hand) is redone.
pub fn committed_end(mut parts: Vec<Range<usize>>) -> (usize, Vec<Range<usize>>) {
    parts.sort_by_key(|r| r.start);
    let mut end = 0;
    let mut chain = Vec::new();
    for p in parts {
        if p.start == end && p.end > p.start {
            end = p.end;
            chain.push(p);
        }
    }
    (end, chain)
}

/// Writes one part: errors first, then the results part, whose existence commits both.
pub async fn commit_part(
    store: &dyn Store,
    layout: &Layout,
    range: &Range<usize>,
    results: Bytes,
    errors: Bytes,
) -> dataflux::Result<()> {
    store
        .put(&layout.errors_part(range), errors, PutMode::Overwrite)
        .await?;
    store
        .put(&layout.part(range), results, PutMode::Overwrite)
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_chain_from_zero() {
        assert_eq!(committed_end(vec![4..8, 0..4, 8..9]).0, 9);
        assert_eq!(committed_end(vec![0..4, 5..8]).0, 4);
        assert_eq!(committed_end(vec![]).0, 0);
    }

    #[test]
    fn part_names_round_trip() {
        let l = Layout {
            prefix: "out/".into(),
            run_id: "r1".into(),
            rank: 2,
            format: Format::Csv,
        };
        let name = l.part(&(1024..2048));
        assert_eq!(
            name,
            "out/_dataflux/r1/parts/rank-00002/0000001024-0000002048.csv"
        );
        assert_eq!(l.parse_part(&name), Some(1024..2048));
        assert_eq!(l.parse_part(&l.errors_part(&(0..1))), None);
    }

    #[test]
    fn csv_quotes_minimally_with_crlf() {
        let c = Classified {
            object: "a/1.jpg".into(),
            image_id: "1".into(),
            predictions: vec![Prediction {
                label: "say \"hi\", ok".into(),
                index: 0,
                probability: 0.5,
            }],
        };
        assert_eq!(rows(Format::Csv, 1, &[c]), b"1,\"say \"\"hi\"\", ok\"\r\n");
        let bad = BadInput {
            object: "a/x.jpg".into(),
            kind: "decode".into(),
            message: "bad, very".into(),
        };
        assert_eq!(error_rows(&[bad]), b"a/x.jpg,decode,\"bad, very\"\r\n");
    }
}
