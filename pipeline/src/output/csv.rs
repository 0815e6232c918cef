//! The CSV dialect of the GKE tutorial: Python `csv`'s minimal quoting, `\r\n`.

use super::Record;
use crate::model::{Column, Value};

pub(super) fn writer(buf: &mut Vec<u8>) -> csv::Writer<&mut Vec<u8>> {
    csv::WriterBuilder::new()
        .terminator(csv::Terminator::CRLF)
        .quote_style(csv::QuoteStyle::Necessary)
        .from_writer(buf)
}

/// The header line: `image_id` then the model's columns.
pub(super) fn header(columns: &[Column]) -> Vec<u8> {
    let mut buf = Vec::new();
    let mut w = writer(&mut buf);
    let names = std::iter::once("image_id").chain(columns.iter().map(|c| c.name.as_str()));
    let _ = w.write_record(names);
    let _ = w.flush();
    drop(w);
    buf
}

/// Rows, no header.
pub(super) fn rows(records: &[Record<'_>]) -> Vec<u8> {
    let mut buf = Vec::new();
    let mut w = writer(&mut buf);
    for r in records {
        let fields = std::iter::once(r.image_id.to_string()).chain(r.row.iter().map(field));
        let _ = w.write_record(fields);
    }
    let _ = w.flush();
    drop(w);
    buf
}

fn field(v: &Value) -> String {
    match v {
        Value::Text(s) => s.clone(),
        Value::Float32(x) => format!("{x:.6}"),
        Value::Float32List(xs) => xs
            .iter()
            .map(|x| format!("{x:.6}"))
            .collect::<Vec<_>>()
            .join(" "),
        Value::Int64(n) => n.to_string(),
        Value::Seconds(x) => format!("{x:.3}"),
    }
}
