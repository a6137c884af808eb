//! Y4M (YUV 4:4:4, BT.601 full range), written a frame at a time.

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::Path;

use vortex_registry::OutputBuffers;

/// A Y4M file open for frames.
#[derive(Debug)]
pub struct Y4mWriter {
    out: BufWriter<File>,
    side: usize,
    channels: usize,
    planes: Vec<u8>,
    next: u64,
}

impl Y4mWriter {
    /// Creates the file and writes its header.
    pub fn create(path: &Path, b: &OutputBuffers) -> io::Result<Self> {
        let n = b.image_size as usize;
        let mut out = BufWriter::new(File::create(path)?);
        writeln!(out, "YUV4MPEG2 W{n} H{n} F{}:1 Ip A1:1 C444", b.fps)?;
        Ok(Y4mWriter {
            out,
            side: n,
            channels: b.channels as usize,
            planes: vec![0u8; 3 * n * n],
            next: 0,
        })
    }

    /// Appends frame `index`, which must be the next one.
    pub fn frame(&mut self, index: u64, frame: &[u8]) -> io::Result<()> {
        let (n, c) = (self.side, self.channels);
        if index != self.next || frame.len() != n * n * c {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "y4m: frame {index} of {} bytes, expected frame {} of {} bytes",
                    frame.len(),
                    self.next,
                    n * n * c
                ),
            ));
        }
        let planes = &mut self.planes;
        for (i, px) in frame.chunks_exact(c).enumerate() {
            let (r, g, bl) = if c >= 3 {
                (f32::from(px[0]), f32::from(px[1]), f32::from(px[2]))
            } else {
                (f32::from(px[0]), f32::from(px[0]), f32::from(px[0]))
            };
            // BT.601 full range.
            planes[i] = (0.299 * r + 0.587 * g + 0.114 * bl)
                .round()
                .clamp(0.0, 255.0) as u8;
            planes[n * n + i] = (128.0 - 0.168_736 * r - 0.331_264 * g + 0.5 * bl)
                .round()
                .clamp(0.0, 255.0) as u8;
            planes[2 * n * n + i] = (128.0 + 0.5 * r - 0.418_688 * g - 0.081_312 * bl)
                .round()
                .clamp(0.0, 255.0) as u8;
        }
        self.out.write_all(b"FRAME\n")?;
        self.out.write_all(planes)?;
        self.next += 1;
        Ok(())
    }

    /// Flushes the file.
    pub fn finish(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}

impl super::background::FrameWrite for Y4mWriter {
    fn frame(&mut self, index: u64, rgb: &[u8]) -> io::Result<()> {
        Y4mWriter::frame(self, index, rgb)
    }

    fn finish(&mut self) -> io::Result<()> {
        Y4mWriter::finish(self)
    }
}
