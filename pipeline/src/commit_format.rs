//! The commit object's format: a JSON header line (format, row and error-row counts, byte
//! lengths), then the chunk's encoded result rows, then its error rows. Written once per chunk
//! by the claims protocol ([`crate::claims`]); read back by the finalizer and, header only, by
//! [`crate::status`].

use bytes::{BufMut, Bytes, BytesMut};
use serde::{Deserialize, Serialize};

/// A chunk's committed rows.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Commit {
    /// Rows written.
    pub ok: u64,
    /// Error rows written.
    pub failed: u64,
    /// Result rows, encoded, no header.
    pub results: Bytes,
    /// Error rows, encoded, no header.
    pub errors: Bytes,
}

#[derive(Serialize, Deserialize)]
struct CommitHeader {
    format: String,
    ok: u64,
    failed: u64,
    results: usize,
    errors: usize,
}

const COMMIT_FORMAT: &str = "dataflux-commit-1";

impl Commit {
    /// One object: a JSON header line, then the result rows, then the error rows.
    pub fn encode(&self) -> Bytes {
        let header = CommitHeader {
            format: COMMIT_FORMAT.into(),
            ok: self.ok,
            failed: self.failed,
            results: self.results.len(),
            errors: self.errors.len(),
        };
        let head = serde_json::to_vec(&header).unwrap_or_default();
        let mut buf =
            BytesMut::with_capacity(head.len() + 1 + self.results.len() + self.errors.len());
        buf.put_slice(&head);
        buf.put_u8(b'\n');
        buf.put_slice(&self.results);
        buf.put_slice(&self.errors);
        buf.freeze()
    }

    pub(crate) fn decode(bytes: Bytes) -> std::result::Result<Self, String> {
        let nl = bytes
            .iter()
            .position(|&b| b == b'\n')
            .ok_or("no header line")?;
        let header: CommitHeader =
            serde_json::from_slice(&bytes[..nl]).map_err(|e| e.to_string())?;
        if header.format != COMMIT_FORMAT {
            return Err(format!("format {:?}", header.format));
        }
        let body = bytes.slice(nl + 1..);
        if body.len() != header.results + header.errors {
            return Err(format!(
                "{} bytes of rows, the header says {}",
                body.len(),
                header.results + header.errors
            ));
        }
        Ok(Commit {
            ok: header.ok,
            failed: header.failed,
            results: body.slice(..header.results),
            errors: body.slice(header.results..),
        })
    }
}

/// The row and error-row counts of a commit from its first bytes (at least its header line).
pub(crate) fn read_counts(head: &[u8]) -> std::result::Result<(u64, u64), String> {
    let line = head.split(|&b| b == b'\n').next().ok_or("no header line")?;
    let header: CommitHeader = serde_json::from_slice(line).map_err(|e| e.to_string())?;
    if header.format != COMMIT_FORMAT {
        return Err(format!("format {:?}", header.format));
    }
    Ok((header.ok, header.failed))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commits_round_trip_and_refuse_short_bodies() {
        let c = Commit {
            ok: 2,
            failed: 1,
            results: Bytes::from_static(b"a,1\r\nb,2\r\n"),
            errors: Bytes::from_static(b"x,decode,bad\r\n"),
        };
        let bytes = c.encode();
        assert_eq!(Commit::decode(bytes.clone()).unwrap(), c);
        let short = bytes.slice(..bytes.len() - 1);
        assert!(Commit::decode(short).unwrap_err().contains("bytes of rows"));
        assert!(Commit::decode(Bytes::from_static(b"no header")).is_err());
        // The counts from the header alone.
        assert_eq!(read_counts(&bytes[..bytes.len().min(80)]), Ok((2, 1)));
        assert!(read_counts(
            b"{\"format\":\"other\",\"ok\":1,\"failed\":0,\"results\":0,\"errors\":0}\n"
        )
        .is_err());
    }
}
