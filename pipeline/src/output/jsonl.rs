//! JSON lines: one object per row, `image_id`, `object`, then the model's columns in order.

use super::Record;
use crate::model::{Column, Value};

/// Rows, one JSON object per line.
pub(super) fn rows(columns: &[Column], records: &[Record<'_>]) -> Vec<u8> {
    let mut buf = Vec::new();
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
    buf
}

fn json_value(v: &Value) -> serde_json::Value {
    match v {
        Value::Text(s) => serde_json::Value::from(s.as_str()),
        Value::Float32(x) => serde_json::Value::from(*x),
        Value::Float32List(xs) => serde_json::Value::from(xs.clone()),
        Value::Int64(n) => serde_json::Value::from(*n),
        Value::Seconds(x) => serde_json::Value::from(*x),
    }
}
