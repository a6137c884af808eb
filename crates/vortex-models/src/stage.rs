//! The one key of everything per stage: [`Stage`], and [`StageMap`], the table keyed by it.
//!
//! A slot has five stages, one per resident model. Every per-stage table in Vortex (costs,
//! timings, streams, implementations, weights) is a `StageMap<T>`, so a table cannot be
//! indexed in one order and filled in another, and a `match` on [`Stage`] is exhaustive.

use std::fmt;
use std::ops::{Index, IndexMut};

use serde::Serialize;
use serde::ser::SerializeMap;

/// A stage of a slot, and the model that runs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    /// Speech from the script (Kokoro-82M).
    Audio,
    /// The actor image from the prompt (FLUX.1-schnell).
    Actor,
    /// The talking-head video (LivePortrait).
    Video,
    /// Verification with CLIP ViT-B/32.
    ClipB,
    /// Verification with CLIP ViT-L/14.
    ClipL,
}

/// What a stage computes, and so which compute interface its implementations have.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StageKind {
    /// A waveform from a script.
    Audio,
    /// An image from a prompt.
    Actor,
    /// Frames from an image and a waveform.
    Video,
    /// An embedding from frames.
    Embedding,
}

impl Stage {
    /// Every stage, in slot order.
    pub const ALL: [Stage; 5] = [
        Stage::Audio,
        Stage::Actor,
        Stage::Video,
        Stage::ClipB,
        Stage::ClipL,
    ];

    /// The order models are loaded in: the largest first, so a refusal comes early.
    pub const LOAD_ORDER: [Stage; 5] = [
        Stage::Actor,
        Stage::Video,
        Stage::Audio,
        Stage::ClipB,
        Stage::ClipL,
    ];

    /// The label used in logs, metrics and files.
    pub const fn as_str(self) -> &'static str {
        match self {
            Stage::Audio => "audio",
            Stage::Actor => "actor",
            Stage::Video => "video",
            Stage::ClipB => "clip_b",
            Stage::ClipL => "clip_l",
        }
    }

    /// The name of the model that runs the stage: its owner in the tracker and its table in
    /// config.toml (`[models.NAME]`).
    pub const fn model(self) -> &'static str {
        match self {
            Stage::Audio => "kokoro",
            Stage::Actor => "flux",
            Stage::Video => "liveportrait",
            Stage::ClipB => "clip_b",
            Stage::ClipL => "clip_l",
        }
    }

    /// The stage whose model is called `model`.
    pub fn of_model(model: &str) -> Option<Stage> {
        Stage::ALL.into_iter().find(|s| s.model() == model)
    }

    /// What the stage computes.
    pub const fn kind(self) -> StageKind {
        match self {
            Stage::Audio => StageKind::Audio,
            Stage::Actor => StageKind::Actor,
            Stage::Video => StageKind::Video,
            Stage::ClipB | Stage::ClipL => StageKind::Embedding,
        }
    }

    const fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for Stage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One `T` per [`Stage`]. Serializes as a map from stage label to value, in slot order.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StageMap<T>([T; 5]);

impl<T> StageMap<T> {
    /// A map with `f(stage)` for every stage, called in slot order.
    pub fn from_fn(mut f: impl FnMut(Stage) -> T) -> Self {
        StageMap(Stage::ALL.map(&mut f))
    }

    /// A map with `f(stage)` for every stage, called in slot order; the first error wins.
    pub fn try_from_fn<E>(mut f: impl FnMut(Stage) -> Result<T, E>) -> Result<Self, E> {
        let [a, b, c, d, e] = Stage::ALL;
        Ok(StageMap([f(a)?, f(b)?, f(c)?, f(d)?, f(e)?]))
    }

    /// Every stage with its value, in slot order.
    pub fn iter(&self) -> impl Iterator<Item = (Stage, &T)> {
        Stage::ALL.into_iter().zip(self.0.iter())
    }

    /// Every stage with its value, mutably, in slot order.
    pub fn iter_mut(&mut self) -> impl Iterator<Item = (Stage, &mut T)> {
        Stage::ALL.into_iter().zip(self.0.iter_mut())
    }

    /// A map of `f(stage, value)`.
    pub fn map<U>(self, mut f: impl FnMut(Stage, T) -> U) -> StageMap<U> {
        let mut stages = Stage::ALL.into_iter();
        StageMap(self.0.map(|v| f(stages.next().unwrap_or(Stage::Audio), v)))
    }

    /// A map of references to the values.
    pub fn as_ref(&self) -> StageMap<&T> {
        StageMap(self.0.each_ref())
    }

    /// A map of mutable references to the values, to hand each stage its own.
    pub fn as_mut(&mut self) -> StageMap<&mut T> {
        StageMap(self.0.each_mut())
    }

    /// The values, in slot order.
    pub fn into_values(self) -> [T; 5] {
        self.0
    }
}

impl<T> Index<Stage> for StageMap<T> {
    type Output = T;
    fn index(&self, stage: Stage) -> &T {
        &self.0[stage.index()]
    }
}

impl<T> IndexMut<Stage> for StageMap<T> {
    fn index_mut(&mut self, stage: Stage) -> &mut T {
        &mut self.0[stage.index()]
    }
}

impl<T: Serialize> Serialize for StageMap<T> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(5))?;
        for (stage, value) in self.iter() {
            map.serialize_entry(stage.as_str(), value)?;
        }
        map.end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn indexing_follows_the_key_not_a_position() {
        let map = StageMap::from_fn(|s| s.as_str().len());
        for stage in Stage::ALL {
            assert_eq!(map[stage], stage.as_str().len());
        }
        let labels: Vec<_> = map.iter().map(|(s, _)| s.as_str()).collect();
        assert_eq!(labels, ["audio", "actor", "video", "clip_b", "clip_l"]);
    }

    #[test]
    fn every_model_has_one_stage() {
        for stage in Stage::ALL {
            assert_eq!(Stage::of_model(stage.model()), Some(stage));
        }
        assert_eq!(Stage::of_model("sdxl"), None);
        let mut loaded: Vec<_> = Stage::LOAD_ORDER.to_vec();
        loaded.sort();
        assert_eq!(loaded, Stage::ALL);
    }

    #[test]
    fn serializes_as_a_map_by_label() {
        let map = StageMap::from_fn(|s| s == Stage::Video);
        assert_eq!(
            serde_json::to_string(&map).unwrap(),
            r#"{"audio":false,"actor":false,"video":true,"clip_b":false,"clip_l":false}"#
        );
    }
}
