//! Is this a video? Decided by the container's signature in the first bytes, never by the
//! object's name.

/// How many leading bytes [`is_video`] needs at most (an MPEG-TS stream shows its second
/// packet's sync byte at 188).
pub const SNIFF_BYTES: usize = 192;

/// ISO-BMFF brands of still images (HEIF, AVIF), which share MP4's `ftyp` box.
const IMAGE_BRANDS: [&[u8; 4]; 8] = [
    b"avif", b"avis", b"heic", b"heix", b"mif1", b"msf1", b"heim", b"heis",
];

/// Whether `head` (an object's first [`SNIFF_BYTES`] bytes, or all of a shorter one) starts a video
/// container: MP4/MOV/3GP (an `ftyp`, `moov`, `mdat`, `free`, `skip` or `wide` box, not an
/// image brand), Matroska/WebM (EBML), AVI (RIFF `AVI `), MPEG-TS (sync bytes every 188),
/// MPEG-PS, FLV, Ogg or raw YUV4MPEG2.
///
/// ```
/// use dataflux_inference::video::is_video;
/// assert!(is_video(b"\0\0\0\x20ftypisom\0\0\x02\0"));
/// assert!(is_video(b"\x1a\x45\xdf\xa3\x9f\x42\x86\x81"));
/// assert!(is_video(b"RIFF\x10\0\0\0AVI LIST"));
/// assert!(!is_video(b"\0\0\0\x1cftypavif\0\0\0\0"));
/// assert!(!is_video(b"\xff\xd8\xff\xe0\0\x10JFIF"));
/// ```
pub fn is_video(head: &[u8]) -> bool {
    if head.len() >= 12 && &head[4..8] == b"ftyp" {
        let brand = &head[8..12];
        return !IMAGE_BRANDS.iter().any(|b| &b[..] == brand);
    }
    if head.len() >= 8 && matches!(&head[4..8], b"moov" | b"mdat" | b"free" | b"skip" | b"wide") {
        return true;
    }
    if head.starts_with(b"\x1a\x45\xdf\xa3") {
        return true;
    }
    if head.len() >= 12 && &head[..4] == b"RIFF" && &head[8..12] == b"AVI " {
        return true;
    }
    if head.starts_with(b"FLV\x01") || head.starts_with(b"OggS") || head.starts_with(b"YUV4MPEG2") {
        return true;
    }
    if head.starts_with(b"\0\0\x01\xba") {
        return true;
    }
    // MPEG-TS: one sync byte per 188-byte packet; only a whole second packet proves it.
    head.len() > 188 && head[0] == 0x47 && head[188] == 0x47
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn containers_are_videos_and_images_are_not() {
        assert!(is_video(b"\0\0\0\x18ftypmp42\0\0\0\0"));
        assert!(is_video(b"\0\0\0\x14ftypqt  \0\0\0\0"));
        assert!(is_video(b"\0\0\0\x08wide\0\0\0\0"));
        assert!(is_video(b"FLV\x01\x05\0\0\0"));
        let mut ts = vec![0u8; 400];
        ts[0] = 0x47;
        ts[188] = 0x47;
        assert!(is_video(&ts));
        ts[188] = 0;
        assert!(!is_video(&ts));
        assert!(!is_video(b"\x89PNG\r\n\x1a\n"));
        assert!(!is_video(b"RIFF\x10\0\0\0WEBPVP8 "));
        assert!(!is_video(b"\0\0\0\x1cftypheic\0\0\0\0"));
        assert!(!is_video(b""));
    }
}
