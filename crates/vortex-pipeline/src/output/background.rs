//! Encoding beside the slot: a frame writer on a thread of its own, fed through a bounded
//! queue of recycled buffers.

use std::io;
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::thread::JoinHandle;

/// Frames in flight between the slot and the writer thread.
const IN_FLIGHT: usize = 8;

/// An encoder of frames, in order.
pub trait FrameWrite: Send + 'static {
    /// Appends frame `index`.
    fn frame(&mut self, index: u64, rgb: &[u8]) -> io::Result<()>;
    /// Ends the stream: everything written and closed.
    fn finish(&mut self) -> io::Result<()>;
}

/// A [`FrameWrite`] on a thread of its own: the slot only copies each frame into a recycled
/// buffer, and the colour conversion, encoding and writes happen beside it.
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
    pub fn start(mut writer: impl FrameWrite, frame_bytes: usize) -> Self {
        let (frames, queued) = sync_channel::<(u64, Vec<u8>)>(IN_FLIGHT);
        let (recycle, spare) = sync_channel::<Vec<u8>>(IN_FLIGHT + 1);
        let thread = std::thread::Builder::new()
            .name("vortex-encoder".to_owned())
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
            Ok(()) => io::Error::other("the encoder stopped"),
        }
    }

    fn join(&mut self) -> io::Result<()> {
        self.frames = None;
        match self.thread.take() {
            Some(thread) => thread
                .join()
                .unwrap_or_else(|_| Err(io::Error::other("the encoder panicked"))),
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
