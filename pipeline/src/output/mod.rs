//! Result rows and error rows as bytes, one module per format behind one interface:
//! [`csv`](self) (the tutorial's dialect: Python `csv`'s minimal quoting, `\r\n`), JSON lines,
//! or [`parquet`]. A chunk's results are encoded once, when it is committed
//! ([`chunk_results`]); a shard is made of its chunks' ([`shard_results`]).

mod csv;
mod jsonl;
pub mod parquet;

use bytes::Bytes;

use crate::carrier::BadInput;
use crate::model::{Column, Row};
pub use parquet::ParquetError;

/// How result rows are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OutputFormat {
    /// `image_id,<columns>` with Python `csv`'s minimal quoting and `\r\n`, as the GKE
    /// tutorial writes it.
    Csv,
    /// One JSON object per line: `image_id`, `object` and every column.
    Jsonl,
    /// Parquet (arrow-rs, snappy): `image_id`, `object` and every column, typed; embeddings
    /// as a fixed-size list of float32. The default for embeddings.
    Parquet,
}

impl OutputFormat {
    /// The file extension.
    pub fn extension(self) -> &'static str {
        match self {
            OutputFormat::Csv => "csv",
            OutputFormat::Jsonl => "jsonl",
            OutputFormat::Parquet => "parquet",
        }
    }
}

/// The errors file's header.
pub const ERRORS_HEADER: &[u8] = b"object,error_kind,message\r\n";

/// A results file's header (`image_id` then the model's columns, for CSV; none for JSON lines
/// and Parquet, whose files carry their own schema).
///
/// ```
/// use dataflux_pipeline::{output::header, Column, ColumnKind, OutputFormat};
/// let cols = [Column::new("classification", ColumnKind::Text)];
/// assert_eq!(header(OutputFormat::Csv, &cols), b"image_id,classification\r\n");
/// assert!(header(OutputFormat::Jsonl, &cols).is_empty());
/// ```
pub fn header(format: OutputFormat, columns: &[Column]) -> Vec<u8> {
    match format {
        OutputFormat::Csv => csv::header(columns),
        OutputFormat::Jsonl | OutputFormat::Parquet => Vec::new(),
    }
}

/// One image's result: its object name, its `image_id` (the file stem) and its row.
#[derive(Debug, Clone, PartialEq)]
pub struct Record<'a> {
    /// The object's full name.
    pub object: &'a str,
    /// The tutorial's `image_id`: the object's file stem.
    pub image_id: &'a str,
    /// The model's values.
    pub row: &'a Row,
}

/// A chunk's results in `format`: rows without a header for the text formats, a whole
/// Parquet file for Parquet.
///
/// ```
/// use dataflux_pipeline::{output::{chunk_results, Record}, Column, ColumnKind, OutputFormat, Value};
/// let cols = [Column::new("classification", ColumnKind::Text)];
/// let row = vec![Value::Text("teddy, teddy bear".into())];
/// let r = Record { object: "x/413621.jpg", image_id: "413621", row: &row };
/// assert_eq!(chunk_results(OutputFormat::Csv, &cols, &[r.clone()]).unwrap(), b"413621,\"teddy, teddy bear\"\r\n");
/// assert_eq!(chunk_results(OutputFormat::Jsonl, &cols, &[r.clone()]).unwrap(),
///     b"{\"image_id\":\"413621\",\"object\":\"x/413621.jpg\",\"classification\":\"teddy, teddy bear\"}\n");
/// // Parquet: a whole file (magic number at both ends).
/// let file = chunk_results(OutputFormat::Parquet, &cols, &[r]).unwrap();
/// assert!(file.starts_with(b"PAR1") && file.ends_with(b"PAR1"));
/// ```
pub fn chunk_results(
    format: OutputFormat,
    columns: &[Column],
    records: &[Record<'_>],
) -> Result<Vec<u8>, ParquetError> {
    match format {
        OutputFormat::Csv => Ok(csv::rows(records)),
        OutputFormat::Jsonl => Ok(jsonl::rows(columns, records)),
        OutputFormat::Parquet => parquet::encode(columns, records),
    }
}

/// Result rows in `format`, no header: [`chunk_results`] (kept under its old name; for
/// Parquet it writes a Parquet file, never JSON lines).
pub fn rows(
    format: OutputFormat,
    columns: &[Column],
    records: &[Record<'_>],
) -> Result<Vec<u8>, ParquetError> {
    chunk_results(format, columns, records)
}

/// A shard's results file from its chunks' [`chunk_results`], in chunk order: the header
/// then the rows for the text formats, one Parquet file for Parquet.
pub fn shard_results(
    format: OutputFormat,
    columns: &[Column],
    chunks: &[Bytes],
) -> Result<Vec<u8>, ParquetError> {
    if format == OutputFormat::Parquet {
        return parquet::concat(columns, chunks);
    }
    let mut out = header(format, columns);
    for c in chunks {
        out.extend_from_slice(c);
    }
    Ok(out)
}

/// Error rows (`object,error_kind,message`), no header.
///
/// ```
/// use dataflux_pipeline::{output::error_rows, BadInput};
/// let bad = BadInput { object: "a/x.jpg".into(), kind: "decode".into(), message: "bad, very".into() };
/// assert_eq!(error_rows(&[bad]), b"a/x.jpg,decode,\"bad, very\"\r\n");
/// ```
pub fn error_rows(items: &[BadInput]) -> Vec<u8> {
    let mut buf = Vec::new();
    {
        let mut w = csv::writer(&mut buf);
        for b in items {
            let _ = w.write_record([&b.object, &b.kind, &b.message]);
        }
        let _ = w.flush();
    }
    buf
}
