//! Where a slot's media goes: the [`MediaSink`] interface, fed by the pipeline as the media
//! is produced (the actor image and the audio after the first phase, each frame as the video
//! stage's drain produces it), and the encoders behind it.
//!
//! - [`SlotFiles`]: `actor.png`, `audio.wav`, `video.mp4` (or raw `video.y4m`) and
//!   `manifest.json` in a folder, written into `NAME.partial/`, synced (the manifest last) and
//!   renamed when the slot finishes, so a failed slot leaves no files and a killed process
//!   leaves only a `.partial` folder, which [`sweep_partial`] removes at the next start.
//!   [`SlotFile`] is the one list of those names; [`retain`] keeps the newest slot folders.
//! - [`png`], [`wav`], [`y4m`], [`mp4`] (ffmpeg): one encoder per format; [`ffmpeg`]: which
//!   ffmpeg (the configured one, else the pinned `imageio-ffmpeg` wheel's, fetched into
//!   Vortex's cache); [`background`]: an encoder on a thread of its own; [`svg`]: the plan as
//!   a picture.
//!
//! **Invariant:** this folder is the only place that names an encoder (the `png` crate,
//! ffmpeg); the pipeline knows only [`MediaSink`].

use std::io;
use std::path::{Path, PathBuf};

use vortex_registry::OutputBuffers;

pub mod background;
pub mod ffmpeg;
pub mod mp4;
pub mod png;
pub mod svg;
pub mod wav;
pub mod y4m;

pub use ffmpeg::{Ffmpeg, FfmpegError, FfmpegSource};
pub use svg::plan_svg;

/// Receives a slot's media as it is produced. A slot that fails calls [`MediaSink::abort`]
/// instead of [`MediaSink::finish`]; a sink keeps nothing of it.
pub trait MediaSink: Send {
    /// The actor image, `image_size² × channels` u8.
    fn actor(&mut self, image: &[u8]) -> io::Result<()>;
    /// The whole waveform, mono f32 at the buffers' sample rate.
    fn audio(&mut self, samples: &[f32]) -> io::Result<()>;
    /// Frame `index` (in order from 0), `image_size² × channels` u8.
    fn frame(&mut self, index: u64, rgb: &[u8]) -> io::Result<()>;
    /// The slot's manifest (recipe, timings, memory, what ran), once every stage is done.
    fn manifest(&mut self, manifest: &crate::report::Manifest) -> io::Result<()> {
        let _ = manifest;
        Ok(())
    }
    /// The slot finished: make what was received visible.
    fn finish(&mut self) -> io::Result<()>;
    /// The slot failed or was cancelled: discard what was received.
    fn abort(&mut self) {}
}

/// A sink that keeps nothing: the default of [`crate::VortexPipeline::generate_slot`].
#[derive(Debug, Clone, Copy, Default)]
pub struct Discard;

impl MediaSink for Discard {
    fn actor(&mut self, _: &[u8]) -> io::Result<()> {
        Ok(())
    }
    fn audio(&mut self, _: &[f32]) -> io::Result<()> {
        Ok(())
    }
    fn frame(&mut self, _: u64, _: &[u8]) -> io::Result<()> {
        Ok(())
    }
    fn finish(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// How a slot's video is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum VideoFormat {
    /// `video.mp4`: H.264 + AAC (the slot's audio muxed in), through ffmpeg ([`Ffmpeg`]).
    #[default]
    Mp4,
    /// `video.y4m`: raw YUV 4:4:4, no audio (about 850 MB for 45 s at 512²).
    Y4m,
}

/// A file of a slot's folder: the one list of their names, which [`SlotFiles`] writes and the
/// HTTP edge serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SlotFile {
    /// `video.mp4` or `video.y4m`.
    Video(VideoFormat),
    /// `audio.wav`.
    Audio,
    /// `actor.png`.
    Actor,
    /// `manifest.json`.
    Manifest,
}

impl SlotFile {
    /// Every file of a slot whose video is written as `format`, the video first.
    pub const fn all(format: VideoFormat) -> [SlotFile; 4] {
        [
            SlotFile::Video(format),
            SlotFile::Audio,
            SlotFile::Actor,
            SlotFile::Manifest,
        ]
    }

    /// Its name in the slot's folder.
    pub const fn name(self) -> &'static str {
        match self {
            SlotFile::Video(VideoFormat::Mp4) => "video.mp4",
            SlotFile::Video(VideoFormat::Y4m) => "video.y4m",
            SlotFile::Audio => "audio.wav",
            SlotFile::Actor => "actor.png",
            SlotFile::Manifest => "manifest.json",
        }
    }

    /// Its media type.
    pub const fn content_type(self) -> &'static str {
        match self {
            SlotFile::Video(VideoFormat::Mp4) => "video/mp4",
            // YUV4MPEG2 has no registered media type.
            SlotFile::Video(VideoFormat::Y4m) => "application/octet-stream",
            SlotFile::Audio => "audio/wav",
            SlotFile::Actor => "image/png",
            SlotFile::Manifest => "application/json",
        }
    }
}

/// `actor.png`, `audio.wav`, the video (`video.mp4` or `video.y4m`) and `manifest.json` of
/// one slot in a folder ([`SlotFile`]). Files are written into `DIR.partial/` as the media arrives (the
/// video encoded beside the slot, on a thread of its own) and the folder is renamed to `DIR`
/// on [`MediaSink::finish`]; [`MediaSink::abort`] (or dropping it unfinished) removes it.
/// MP4s are encoded by the ffmpeg given with [`SlotFiles::with_ffmpeg`], else by
/// [`Ffmpeg::resolve`]`(None)`'s.
#[derive(Debug)]
pub struct SlotFiles {
    dir: PathBuf,
    partial: PathBuf,
    buffers: OutputBuffers,
    format: VideoFormat,
    ffmpeg: Option<Ffmpeg>,
    video: Option<background::Background>,
    manifest: Option<String>,
    finished: bool,
}

impl SlotFiles {
    /// A sink writing into `dir` with raw `video.y4m` (created on first use; an existing
    /// `dir` is replaced when the slot finishes).
    pub fn new(dir: &Path, buffers: &OutputBuffers) -> Self {
        Self::with_format(dir, buffers, VideoFormat::Y4m)
    }

    /// A sink writing into `dir` with the video in `format`.
    pub fn with_format(dir: &Path, buffers: &OutputBuffers, format: VideoFormat) -> Self {
        let mut partial = dir.as_os_str().to_owned();
        partial.push(".partial");
        SlotFiles {
            dir: dir.to_owned(),
            partial: PathBuf::from(partial),
            buffers: *buffers,
            format,
            ffmpeg: None,
            video: None,
            manifest: None,
            finished: false,
        }
    }

    /// Encodes MP4s with `ffmpeg` (resolved once by the caller, from its configuration).
    pub fn with_ffmpeg(mut self, ffmpeg: Ffmpeg) -> Self {
        self.ffmpeg = Some(ffmpeg);
        self
    }

    fn folder(&self) -> io::Result<&Path> {
        std::fs::create_dir_all(&self.partial)?;
        Ok(&self.partial)
    }
}

impl MediaSink for SlotFiles {
    fn actor(&mut self, image: &[u8]) -> io::Result<()> {
        let path = self.folder()?.join(SlotFile::Actor.name());
        png::write_png(&path, &self.buffers, image)
    }

    fn audio(&mut self, samples: &[f32]) -> io::Result<()> {
        let path = self.folder()?.join(SlotFile::Audio.name());
        wav::write_wav(&path, self.buffers.sample_rate as u32, samples)
    }

    fn frame(&mut self, index: u64, rgb: &[u8]) -> io::Result<()> {
        if self.video.is_none() {
            let folder = self.folder()?.to_owned();
            let path = folder.join(SlotFile::Video(self.format).name());
            self.video = Some(match self.format {
                VideoFormat::Y4m => {
                    let writer = y4m::Y4mWriter::create(&path, &self.buffers)?;
                    background::Background::start(writer, rgb.len())
                }
                VideoFormat::Mp4 => {
                    let ffmpeg = match &self.ffmpeg {
                        Some(ffmpeg) => ffmpeg.clone(),
                        None => Ffmpeg::resolve(None).map_err(io::Error::other)?,
                    };
                    let writer = mp4::Mp4Writer::start(
                        &ffmpeg,
                        &path,
                        &self.buffers,
                        &folder.join(SlotFile::Audio.name()),
                    )?;
                    background::Background::start(writer, rgb.len())
                }
            });
        }
        match self.video.as_mut() {
            Some(video) => video.frame(index, rgb),
            None => Ok(()),
        }
    }

    /// Kept until [`MediaSink::finish`], which writes it after every other file is synced:
    /// a folder with a manifest is a whole slot.
    fn manifest(&mut self, manifest: &crate::report::Manifest) -> io::Result<()> {
        self.folder()?;
        self.manifest = Some(serde_json::to_string_pretty(manifest).map_err(io::Error::other)?);
        Ok(())
    }

    /// The video finished, every file flushed and synced, then the manifest written and
    /// synced, the folder synced, renamed to `DIR` and the rename synced: after a crash at
    /// any point `DIR` is either whole or absent.
    fn finish(&mut self) -> io::Result<()> {
        if let Some(video) = self.video.take() {
            video.finish()?;
        }
        let folder = self.folder()?.to_owned();
        for entry in std::fs::read_dir(&folder)? {
            std::fs::File::open(entry?.path())?.sync_all()?;
        }
        if let Some(text) = self.manifest.take() {
            use std::io::Write as _;
            let mut file = std::fs::File::create(folder.join(SlotFile::Manifest.name()))?;
            file.write_all(text.as_bytes())?;
            file.sync_all()?;
        }
        sync_dir(&folder)?;
        if self.dir.exists() {
            std::fs::remove_dir_all(&self.dir)?;
        }
        std::fs::rename(&self.partial, &self.dir)?;
        if let Some(parent) = self.dir.parent() {
            sync_dir(parent)?;
        }
        self.finished = true;
        Ok(())
    }

    fn abort(&mut self) {
        self.video = None;
        let _ = std::fs::remove_dir_all(&self.partial);
        self.finished = true;
    }
}

impl Drop for SlotFiles {
    fn drop(&mut self) {
        if !self.finished {
            self.abort();
        }
    }
}

/// Makes `dir`'s entries (names created, renamed or removed) durable.
fn sync_dir(dir: &Path) -> io::Result<()> {
    let dir = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    std::fs::File::open(dir)?.sync_all()
}

/// Removes every `NAME.partial/` folder directly under `out`: what a process killed in the
/// middle of a slot left (a slot's files become `NAME/` only once whole). Returns the folders
/// removed, for the caller to log; a missing `out` has none.
pub fn sweep_partial(out: &Path) -> io::Result<Vec<PathBuf>> {
    let entries = match std::fs::read_dir(out) {
        Ok(entries) => entries,
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(err) => return Err(err),
    };
    let mut removed = Vec::new();
    for entry in entries {
        let entry = entry?;
        let path = entry.path();
        if path.extension().is_some_and(|e| e == "partial") && entry.file_type()?.is_dir() {
            std::fs::remove_dir_all(&path)?;
            removed.push(path);
        }
    }
    if !removed.is_empty() {
        sync_dir(out)?;
    }
    removed.sort();
    Ok(removed)
}

/// Keeps the newest `keep` finished slot folders (`slot-*`, not `.partial`) directly under
/// `out` and removes the others, oldest first (by modification time, then name). Returns the
/// folders removed.
pub fn retain(out: &Path, keep: usize) -> io::Result<Vec<PathBuf>> {
    let mut slots = Vec::new();
    for entry in std::fs::read_dir(out)? {
        let entry = entry?;
        let path = entry.path();
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with("slot-") && !name.ends_with(".partial") && entry.file_type()?.is_dir() {
            let modified = entry.metadata()?.modified()?;
            slots.push((modified, path));
        }
    }
    if slots.len() <= keep {
        return Ok(Vec::new());
    }
    slots.sort();
    let excess = slots.len() - keep;
    let mut removed = Vec::with_capacity(excess);
    for (_, path) in slots.into_iter().take(excess) {
        std::fs::remove_dir_all(&path)?;
        removed.push(path);
    }
    Ok(removed)
}
