//! MP4 (H.264 + AAC) through ffmpeg ([`super::ffmpeg::Ffmpeg`]: the pinned static build, or
//! the one configured): frames go to its stdin as raw RGB as the video stage produces them,
//! the audio comes from the slot's `audio.wav`; nothing uncompressed is written.

use std::io::{self, Read, Write};
use std::path::Path;
use std::process::{Child, ChildStdin, Stdio};

use vortex_registry::OutputBuffers;

use super::ffmpeg::Ffmpeg;

/// An ffmpeg process encoding one slot.
#[derive(Debug)]
pub struct Mp4Writer {
    child: Child,
    stdin: Option<ChildStdin>,
    frame_bytes: usize,
    next: u64,
}

impl Mp4Writer {
    /// Starts `ffmpeg` writing `path` from raw frames of `b`'s shape and the audio in `wav`.
    /// H.264 in yuv420p, limited range, BT.709, tagged as such; AAC at 128 kb/s.
    pub fn start(ffmpeg: &Ffmpeg, path: &Path, b: &OutputBuffers, wav: &Path) -> io::Result<Self> {
        if b.channels != 3 || !b.image_size.is_multiple_of(2) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "MP4 needs RGB frames of an even size, not {} channels of {}²: set buffers.channels = 3 and an even buffers.image_size, or use --y4m",
                    b.channels, b.image_size
                ),
            ));
        }
        let size = format!("{0}x{0}", b.image_size);
        let fps = b.fps.to_string();
        let mut child = ffmpeg
            .command()
            .args(["-hide_banner", "-loglevel", "error", "-y"])
            .args(["-f", "rawvideo", "-pix_fmt", "rgb24", "-video_size", &size])
            .args(["-framerate", &fps, "-i", "pipe:0"])
            .arg("-i")
            .arg(wav)
            .args(["-map", "0:v", "-map", "1:a"])
            // One encoder thread at a preset that keeps up with the video stage on one core:
            // the other core is the stage's.
            .args([
                "-c:v",
                "libx264",
                "-preset",
                "superfast",
                "-crf",
                "20",
                "-threads",
                "1",
            ])
            .args(["-vf", "scale=out_color_matrix=bt709:out_range=tv"])
            .args([
                "-pix_fmt",
                "yuv420p",
                "-color_range",
                "tv",
                "-colorspace",
                "bt709",
            ])
            .args(["-color_primaries", "bt709", "-color_trc", "bt709"])
            .args(["-c:a", "aac", "-b:a", "128k", "-movflags", "+faststart"])
            .arg(path)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|err| {
                io::Error::new(
                    err.kind(),
                    format!(
                        "cannot run ffmpeg {} (from {}): {err}; or use --y4m",
                        ffmpeg.program().display(),
                        ffmpeg.source()
                    ),
                )
            })?;
        let stdin = child.stdin.take();
        Ok(Mp4Writer {
            child,
            stdin,
            frame_bytes: b.frame_bytes() as usize,
            next: 0,
        })
    }

    fn failed(&mut self, what: &str) -> io::Error {
        self.stdin = None;
        let _ = self.child.kill();
        let mut stderr = String::new();
        if let Some(mut e) = self.child.stderr.take() {
            let _ = e.read_to_string(&mut stderr);
        }
        let status = self
            .child
            .wait()
            .map_or_else(|e| e.to_string(), |s| s.to_string());
        let tail: Vec<&str> = stderr.lines().rev().take(4).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        io::Error::other(format!(
            "ffmpeg {what} ({status}): {}; the slot's files were not kept",
            tail.join(" | ")
        ))
    }
}

impl super::background::FrameWrite for Mp4Writer {
    fn frame(&mut self, index: u64, rgb: &[u8]) -> io::Result<()> {
        if index != self.next || rgb.len() != self.frame_bytes {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "mp4: frame {index} of {} bytes, expected frame {} of {} bytes",
                    rgb.len(),
                    self.next,
                    self.frame_bytes
                ),
            ));
        }
        let written = match self.stdin.as_mut() {
            Some(stdin) => stdin.write_all(rgb),
            None => Err(io::Error::other("ffmpeg's input is closed")),
        };
        if written.is_err() {
            return Err(self.failed("stopped taking frames"));
        }
        self.next += 1;
        Ok(())
    }

    fn finish(&mut self) -> io::Result<()> {
        drop(self.stdin.take());
        let mut stderr = String::new();
        if let Some(mut e) = self.child.stderr.take() {
            let _ = e.read_to_string(&mut stderr);
        }
        let status = self.child.wait()?;
        if status.success() {
            Ok(())
        } else {
            Err(io::Error::other(format!(
                "ffmpeg failed ({status}): {}",
                stderr.lines().rev().take(4).collect::<Vec<_>>().join(" | ")
            )))
        }
    }
}

impl Drop for Mp4Writer {
    fn drop(&mut self) {
        if self.stdin.take().is_some() {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}
