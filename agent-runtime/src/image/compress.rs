//! Layer and archive compression, told apart by magic bytes.

use std::io::{self, BufRead, Read};

/// How a tar stream is compressed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Compression {
    /// A plain tar.
    None,
    /// gzip (`1f 8b`).
    Gzip,
    /// zstd (`28 b5 2f fd`).
    Zstd,
}

impl Compression {
    /// Tells the compression from the first bytes of a stream.
    pub fn detect(head: &[u8]) -> Compression {
        if head.starts_with(&[0x1f, 0x8b]) {
            Compression::Gzip
        } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
            Compression::Zstd
        } else {
            Compression::None
        }
    }

    /// The OCI media type of a layer compressed this way.
    pub fn layer_media_type(self) -> &'static str {
        match self {
            Compression::None => super::oci::MEDIA_LAYER_TAR,
            Compression::Gzip => super::oci::MEDIA_LAYER_GZIP,
            Compression::Zstd => super::oci::MEDIA_LAYER_ZSTD,
        }
    }
}

/// Peeks at `reader`'s first bytes and returns the compression and a reader of the
/// decompressed stream.
pub fn decompress<'a, R: BufRead + 'a>(
    mut reader: R,
) -> io::Result<(Compression, Box<dyn Read + 'a>)> {
    let kind = Compression::detect(reader.fill_buf()?);
    let out: Box<dyn Read + 'a> = match kind {
        Compression::None => Box::new(reader),
        // Multi-member gzip (pigz, concatenated streams) is valid gzip too.
        Compression::Gzip => Box::new(flate2::bufread::MultiGzDecoder::new(reader)),
        Compression::Zstd => Box::new(zstd::stream::read::Decoder::with_buffer(reader)?),
    };
    Ok((kind, out))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn detects_and_decompresses() {
        let data = b"some tar bytes".repeat(100);
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&data).unwrap();
        let gz = gz.finish().unwrap();
        let zst = zstd::encode_all(&data[..], 1).unwrap();
        for (bytes, kind) in [
            (data.clone(), Compression::None),
            (gz, Compression::Gzip),
            (zst, Compression::Zstd),
        ] {
            let (k, mut r) = decompress(&bytes[..]).unwrap();
            assert_eq!(k, kind);
            let mut out = Vec::new();
            r.read_to_end(&mut out).unwrap();
            assert_eq!(out, data);
        }
        assert_eq!(Compression::detect(b""), Compression::None);
    }
}
