//! Y4M (YUV 4:4:4, BT.601 full range), written a frame at a time.

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::Path;
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::thread::JoinHandle;

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

/// Frames in flight between the slot and the writer thread.
const IN_FLIGHT: usize = 8;

/// A [`Y4mWriter`] on a thread of its own: the slot only copies each frame into a recycled
/// buffer, and the colour conversion and the file writes happen beside it.
#[derive(Debug)]
pub struct Background {
    frames: Option<SyncSender<(u64, Vec<u8>)>>,
    spare: Receiver<Vec<u8>>,
    made: usize,
    frame_bytes: usize,
    thread: Option<JoinHandle<io::Result<()>>>,
}

impl Background {
    /// Starts the thread for `writer`, whose frames are `frame_bytes` long.
    pub fn start(mut writer: Y4mWriter, frame_bytes: usize) -> Self {
        let (frames, queued) = sync_channel::<(u64, Vec<u8>)>(IN_FLIGHT);
        let (recycle, spare) = sync_channel::<Vec<u8>>(IN_FLIGHT + 1);
        let thread = std::thread::Builder::new()
            .name("vortex-y4m".to_owned())
            .spawn(move || {
                for (index, frame) in queued {
                    writer.frame(index, &frame)?;
                    let _ = recycle.try_send(frame);
                }
                writer.finish()
            })
            .ok();
        Background {
            // No thread, no queue: `frame` then reports the failure instead of blocking.
            frames: thread.is_some().then_some(frames),
            spare,
            made: 0,
            frame_bytes,
            thread,
        }
    }

    /// Queues frame `index` (a copy of it), waiting only when the writer is behind.
    pub fn frame(&mut self, index: u64, rgb: &[u8]) -> io::Result<()> {
        let mut buffer = match self.spare.try_recv() {
            Ok(buffer) => buffer,
            Err(_) if self.made < IN_FLIGHT + 1 => {
                self.made += 1;
                Vec::with_capacity(self.frame_bytes)
            }
            Err(_) => self.spare.recv().map_err(|_| self.stopped())?,
        };
        buffer.clear();
        buffer.extend_from_slice(rgb);
        match &self.frames {
            Some(frames) => frames.send((index, buffer)).map_err(|_| self.stopped()),
            None => Err(self.stopped()),
        }
    }

    fn stopped(&mut self) -> io::Error {
        // The writer ended early: its own error says why.
        match self.join() {
            Err(err) => err,
            Ok(()) => io::Error::other("the y4m writer stopped"),
        }
    }

    fn join(&mut self) -> io::Result<()> {
        self.frames = None;
        match self.thread.take() {
            Some(thread) => thread
                .join()
                .unwrap_or_else(|_| Err(io::Error::other("the y4m writer panicked"))),
            None => Ok(()),
        }
    }

    /// Waits for every queued frame to be written and the file flushed.
    pub fn finish(mut self) -> io::Result<()> {
        self.join()
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        let _ = self.join();
    }
}
