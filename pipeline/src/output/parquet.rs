//! Result rows as Parquet (arrow-rs): one file per committed chunk, merged into one file per
//! output shard.
//!
//! Columns: `image_id` and `object` (strings), then the model's, typed: text as strings,
//! scores as float32, embeddings as a fixed-size list of float32 (what pyarrow, DuckDB and
//! Spark read as `fixed_size_list<float>[n]` / `FLOAT[n]`). Snappy-compressed.

use std::sync::Arc;

use arrow_array::builder::{
    FixedSizeListBuilder, Float32Builder, Float64Builder, Int64Builder, StringBuilder,
};
use arrow_array::{ArrayRef, RecordBatch};
use arrow_schema::{DataType, Field, Schema, SchemaRef};
use bytes::Bytes;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::ArrowWriter;
use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;

use super::Record;
use crate::model::{Column, ColumnKind, Value};

/// Why rows could not become Parquet: a row that does not match the model's columns, or an
/// arrow/parquet failure.
#[derive(Debug, thiserror::Error)]
pub enum ParquetError {
    /// A value of the wrong kind or length for its column.
    #[error("object {object}: column {column}: {reason}")]
    Mismatch {
        /// The object whose row is wrong.
        object: String,
        /// The column.
        column: String,
        /// What is wrong.
        reason: String,
    },
    /// Writing or reading Parquet failed.
    #[error(transparent)]
    Parquet(#[from] parquet::errors::ParquetError),
    /// Building the arrow batch failed.
    #[error(transparent)]
    Arrow(#[from] arrow_schema::ArrowError),
}

/// The arrow schema of a results file with `columns`.
pub fn schema(columns: &[Column]) -> SchemaRef {
    let mut fields = vec![
        Field::new("image_id", DataType::Utf8, false),
        Field::new("object", DataType::Utf8, false),
    ];
    for c in columns {
        let t = match c.kind {
            ColumnKind::Text => DataType::Utf8,
            ColumnKind::Float32 => DataType::Float32,
            ColumnKind::Int64 => DataType::Int64,
            ColumnKind::Seconds => DataType::Float64,
            ColumnKind::Float32List(n) => DataType::FixedSizeList(
                Arc::new(Field::new("item", DataType::Float32, false)),
                n as i32,
            ),
        };
        let mut field = Field::new(&c.name, t, false);
        if let Some(shape) = &c.shape {
            field = field.with_metadata(std::collections::HashMap::from([(
                "shape".to_string(),
                serde_json::to_string(shape).unwrap_or_default(),
            )]));
        }
        fields.push(field);
    }
    Arc::new(Schema::new(fields))
}

fn properties() -> WriterProperties {
    WriterProperties::builder()
        .set_compression(Compression::SNAPPY)
        .build()
}

/// One Parquet file holding `records` (possibly none).
pub fn encode(columns: &[Column], records: &[Record<'_>]) -> Result<Vec<u8>, ParquetError> {
    let schema = schema(columns);
    let mut image_ids = StringBuilder::new();
    let mut objects = StringBuilder::new();
    for r in records {
        image_ids.append_value(r.image_id);
        objects.append_value(r.object);
    }
    let mut arrays: Vec<ArrayRef> = vec![Arc::new(image_ids.finish()), Arc::new(objects.finish())];
    for (i, c) in columns.iter().enumerate() {
        let mismatch = |r: &Record<'_>, reason: String| ParquetError::Mismatch {
            object: r.object.to_string(),
            column: c.name.clone(),
            reason,
        };
        let array: ArrayRef = match c.kind {
            ColumnKind::Text => {
                let mut b = StringBuilder::new();
                for r in records {
                    match r.row.get(i) {
                        Some(Value::Text(s)) => b.append_value(s),
                        other => return Err(mismatch(r, format!("expected text, got {other:?}"))),
                    }
                }
                Arc::new(b.finish())
            }
            ColumnKind::Float32 => {
                let mut b = Float32Builder::new();
                for r in records {
                    match r.row.get(i) {
                        Some(Value::Float32(x)) => b.append_value(*x),
                        other => {
                            return Err(mismatch(r, format!("expected a float, got {other:?}")))
                        }
                    }
                }
                Arc::new(b.finish())
            }
            ColumnKind::Int64 => {
                let mut b = Int64Builder::new();
                for r in records {
                    match r.row.get(i) {
                        Some(Value::Int64(x)) => b.append_value(*x),
                        other => {
                            return Err(mismatch(r, format!("expected an integer, got {other:?}")))
                        }
                    }
                }
                Arc::new(b.finish())
            }
            ColumnKind::Seconds => {
                let mut b = Float64Builder::new();
                for r in records {
                    match r.row.get(i) {
                        Some(Value::Seconds(x)) => b.append_value(*x),
                        other => {
                            return Err(mismatch(r, format!("expected seconds, got {other:?}")))
                        }
                    }
                }
                Arc::new(b.finish())
            }
            ColumnKind::Float32List(n) => {
                let mut b = FixedSizeListBuilder::with_capacity(
                    Float32Builder::with_capacity(records.len() * n),
                    n as i32,
                    records.len(),
                )
                .with_field(Arc::new(Field::new("item", DataType::Float32, false)));
                for r in records {
                    match r.row.get(i) {
                        Some(Value::Float32List(xs)) if xs.len() == n => {
                            b.values().append_slice(xs);
                            b.append(true);
                        }
                        other => {
                            return Err(mismatch(
                                r,
                                format!(
                                    "expected {n} floats, got {:?}",
                                    other.map(|v| match v {
                                        Value::Float32List(xs) => format!("{} floats", xs.len()),
                                        v => format!("{v:?}"),
                                    })
                                ),
                            ))
                        }
                    }
                }
                Arc::new(b.finish())
            }
        };
        arrays.push(array);
    }
    let batch = RecordBatch::try_new(schema.clone(), arrays)?;
    let mut out = Vec::new();
    let mut writer = ArrowWriter::try_new(&mut out, schema, Some(properties()))?;
    writer.write(&batch)?;
    writer.close()?;
    Ok(out)
}

/// One Parquet file holding the rows of `parts` (Parquet files with `columns`' schema), in
/// order.
pub fn concat(columns: &[Column], parts: &[Bytes]) -> Result<Vec<u8>, ParquetError> {
    let schema = schema(columns);
    let mut out = Vec::new();
    let mut writer = ArrowWriter::try_new(&mut out, schema, Some(properties()))?;
    for part in parts {
        for batch in ParquetRecordBatchReaderBuilder::try_new(part.clone())?.build()? {
            writer.write(&batch?)?;
        }
    }
    writer.close()?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use parquet::file::reader::{FileReader, SerializedFileReader};

    fn cols() -> Vec<Column> {
        vec![
            Column::new("label", ColumnKind::Text),
            Column::new("embedding", ColumnKind::Float32List(3)),
        ]
    }

    fn read(bytes: Vec<u8>) -> Vec<RecordBatch> {
        ParquetRecordBatchReaderBuilder::try_new(Bytes::from(bytes))
            .unwrap()
            .build()
            .unwrap()
            .map(|b| b.unwrap())
            .collect()
    }

    #[test]
    fn rows_round_trip_and_concatenate_in_order() {
        let rows: Vec<Vec<Value>> = (0..4)
            .map(|i| {
                vec![
                    Value::Text(format!("l{i}")),
                    Value::Float32List(vec![i as f32, 0.5, -1.0]),
                ]
            })
            .collect();
        let names: Vec<String> = (0..4).map(|i| format!("p/{i}.jpg")).collect();
        let recs: Vec<Record<'_>> = (0..4)
            .map(|i| Record {
                object: &names[i],
                image_id: &names[i][2..3],
                row: &rows[i],
            })
            .collect();
        let a = Bytes::from(encode(&cols(), &recs[..3]).unwrap());
        let empty = Bytes::from(encode(&cols(), &[]).unwrap());
        let b = Bytes::from(encode(&cols(), &recs[3..]).unwrap());
        let merged = concat(&cols(), &[a, empty, b]).unwrap();
        let reader = SerializedFileReader::new(Bytes::from(merged.clone())).unwrap();
        assert_eq!(reader.metadata().file_metadata().num_rows(), 4);
        let batches = read(merged);
        let batch = arrow_select_concat(&batches);
        assert_eq!(batch.schema(), schema(&cols()));
        let ids = batch
            .column(0)
            .as_any()
            .downcast_ref::<arrow_array::StringArray>()
            .unwrap();
        assert_eq!(
            (0..4).map(|i| ids.value(i).to_string()).collect::<Vec<_>>(),
            ["0", "1", "2", "3"]
        );
        let emb = batch
            .column(3)
            .as_any()
            .downcast_ref::<arrow_array::FixedSizeListArray>()
            .unwrap();
        let third = emb.value(3);
        let third = third
            .as_any()
            .downcast_ref::<arrow_array::Float32Array>()
            .unwrap();
        assert_eq!(third.values(), &[3.0, 0.5, -1.0]);
    }

    fn arrow_select_concat(batches: &[RecordBatch]) -> RecordBatch {
        assert_eq!(batches.len(), 1, "one batch per file read back");
        batches[0].clone()
    }

    #[test]
    fn a_row_of_the_wrong_width_is_named() {
        let row = vec![Value::Text("x".into()), Value::Float32List(vec![1.0])];
        let rec = Record {
            object: "p/bad.jpg",
            image_id: "bad",
            row: &row,
        };
        let err = encode(&cols(), &[rec]).unwrap_err().to_string();
        assert!(
            err.contains("p/bad.jpg") && err.contains("embedding") && err.contains("1 floats"),
            "{err}"
        );
    }
}
