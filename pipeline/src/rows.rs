//! Result rows and error rows as bytes: the tutorial's CSV dialect (Python `csv`'s minimal
//! quoting, `\r\n`), JSON lines, or Parquet ([`crate::parquet`]). A chunk's results are
//! encoded once, when it is committed ([`chunk_results`]); a shard is made of its chunks'
//! ([`shard_results`]).

use bytes::Bytes;

use crate::carrier::BadInput;
use crate::model::{Column, Row, Value};
use crate::spec::OutputFormat;

/// The errors file's header.
pub const ERRORS_HEADER: &[u8] = b"object,error_kind,message\r\n";

fn csv_writer(buf: &mut Vec<u8>) -> csv::Writer<&mut Vec<u8>> {
    csv::WriterBuilder::new()
        .terminator(csv::Terminator::CRLF)
        .quote_style(csv::QuoteStyle::Necessary)
        .from_writer(buf)
}

/// A results file's header (`image_id` then the model's columns; none for JSON lines).
///
/// ```
/// use dataflux_pipeline::{rows::header, Column, ColumnKind, OutputFormat};
/// let cols = [Column::new("classification", ColumnKind::Text)];
/// assert_eq!(header(OutputFormat::Csv, &cols), b"image_id,classification\r\n");
/// assert!(header(OutputFormat::Jsonl, &cols).is_empty());
/// ```
pub fn header(format: OutputFormat, columns: &[Column]) -> Vec<u8> {
    let mut buf = Vec::new();
    if format == OutputFormat::Csv {
        let mut w = csv_writer(&mut buf);
        let names = std::iter::once("image_id").chain(columns.iter().map(|c| c.name.as_str()));
        let _ = w.write_record(names);
        let _ = w.flush();
    }
    buf
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

fn csv_field(v: &Value) -> String {
    match v {
        Value::Text(s) => s.clone(),
        Value::Float32(x) => format!("{x:.6}"),
        Value::Float32List(xs) => xs
            .iter()
            .map(|x| format!("{x:.6}"))
            .collect::<Vec<_>>()
            .join(" "),
    }
}

fn json_value(v: &Value) -> serde_json::Value {
    match v {
        Value::Text(s) => serde_json::Value::from(s.as_str()),
        Value::Float32(x) => serde_json::Value::from(*x),
        Value::Float32List(xs) => serde_json::Value::from(xs.clone()),
    }
}

/// A chunk's results in `format`: rows without a header for the text formats, a whole
/// Parquet file for Parquet.
pub fn chunk_results(
    format: OutputFormat,
    columns: &[Column],
    records: &[Record<'_>],
) -> Result<Vec<u8>, crate::parquet::ParquetError> {
    match format {
        OutputFormat::Parquet => crate::parquet::encode(columns, records),
        text => Ok(rows(text, columns, records)),
    }
}

/// A shard's results file from its chunks' [`chunk_results`], in chunk order: the header
/// then the rows for the text formats, one Parquet file for Parquet.
pub fn shard_results(
    format: OutputFormat,
    columns: &[Column],
    chunks: &[Bytes],
) -> Result<Vec<u8>, crate::parquet::ParquetError> {
    if format == OutputFormat::Parquet {
        return crate::parquet::concat(columns, chunks);
    }
    let mut out = header(format, columns);
    for c in chunks {
        out.extend_from_slice(c);
    }
    Ok(out)
}

/// Result rows in a text format, no header (Parquet: see [`chunk_results`]; asked for
/// Parquet, this writes JSON lines).
///
/// ```
/// use dataflux_pipeline::{rows::{rows, Record}, Column, ColumnKind, OutputFormat, Value};
/// let cols = [Column::new("classification", ColumnKind::Text)];
/// let row = vec![Value::Text("teddy, teddy bear".into())];
/// let r = Record { object: "x/413621.jpg", image_id: "413621", row: &row };
/// assert_eq!(rows(OutputFormat::Csv, &cols, &[r.clone()]), b"413621,\"teddy, teddy bear\"\r\n");
/// assert_eq!(rows(OutputFormat::Jsonl, &cols, &[r]),
///     b"{\"image_id\":\"413621\",\"object\":\"x/413621.jpg\",\"classification\":\"teddy, teddy bear\"}\n");
/// ```
pub fn rows(format: OutputFormat, columns: &[Column], records: &[Record<'_>]) -> Vec<u8> {
    let mut buf = Vec::new();
    match format {
        OutputFormat::Csv => {
            let mut w = csv_writer(&mut buf);
            for r in records {
                let fields =
                    std::iter::once(r.image_id.to_string()).chain(r.row.iter().map(csv_field));
                let _ = w.write_record(fields);
            }
            let _ = w.flush();
        }
        OutputFormat::Jsonl | OutputFormat::Parquet => {
            for r in records {
                // Keys in column order (serde_json's map would sort them).
                let mut line = String::from("{");
                let mut field = |k: &str, v: serde_json::Value| {
                    if line.len() > 1 {
                        line.push(',');
                    }
                    line.push_str(&serde_json::Value::from(k).to_string());
                    line.push(':');
                    line.push_str(&v.to_string());
                };
                field("image_id", r.image_id.into());
                field("object", r.object.into());
                for (c, v) in columns.iter().zip(r.row) {
                    field(&c.name, json_value(v));
                }
                line.push('}');
                buf.extend_from_slice(line.as_bytes());
                buf.push(b'\n');
            }
        }
    }
    buf
}

/// Error rows (`object,error_kind,message`), no header.
///
/// ```
/// use dataflux_pipeline::{rows::error_rows, BadInput};
/// let bad = BadInput { object: "a/x.jpg".into(), kind: "decode".into(), message: "bad, very".into() };
/// assert_eq!(error_rows(&[bad]), b"a/x.jpg,decode,\"bad, very\"\r\n");
/// ```
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
