//! The video stage on a LivePortrait export: the actor image's appearance features and
//! keypoints once per slot, then per frame the driving keypoints — small head motion and blinks
//! from the seed, the mouth opened by the audio's energy through the lip retargeting network —
//! stitched, warped and decoded, and the frame written as it is made.
//!
//! Ported from `drive()`, `lip_ratios_from_audio()` and `natural_motion()` in
//! `tests/data/liveportrait/make_golden.py` (LivePortrait's own retargeting order: eye and lip
//! deltas, then stitching), checked against its goldens by `tests/liveportrait.rs`.

use vortex_registry::Dtype;
use vortex_vram::{Arena, OwnerId};

use crate::compute::{
    ComputeError, FrameDrain, FrameTarget, Implementation, Recipe, SpeechTiming, StageContext,
    StageImpl, VideoInputs, VideoStage, check_dtype, check_rgb,
};
use crate::export::{Export, ExportedNetwork, LivePortraitManifest};
use crate::weights::ResidentWeights;
use vortex_runtime::{
    Graph, Input, Optimization, Output, OutputInto, Runtime, SessionConfig, Terminator,
};

/// The actor's eye-open ratio (LivePortrait measures it with a landmark detector; Vortex has
/// none, so it is this constant, the golden's).
pub const SOURCE_EYE_RATIO: f32 = 0.35;
/// The actor's lip-open ratio (the mouth closed).
pub const SOURCE_LIP_RATIO: f32 = 0.0;
/// The widest lip-open ratio the audio drives.
pub const LIP_MAX: f32 = 0.5;
/// Energy below this share of the loudest frame keeps the mouth closed.
pub const LIP_GATE: f64 = 0.1;

/// What the actor image gives, once per slot.
#[derive(Debug, Clone, PartialEq)]
pub struct Source {
    /// Appearance features `[1, C, D, S/4, S/4]`.
    pub features: Vec<f32>,
    /// Canonical keypoints `[K, 3]`.
    pub kp: Vec<f32>,
    /// Expression `[K, 3]`.
    pub exp: Vec<f32>,
    /// Translation.
    pub t: [f32; 3],
    /// Scale.
    pub scale: f32,
    /// Head pose in degrees: pitch, yaw, roll.
    pub pose: [f32; 3],
    /// The source's keypoints `x_s` `[K, 3]`.
    pub x_s: Vec<f32>,
}

/// One frame's driving.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Drive {
    /// Target lip-open ratio.
    pub lip: f32,
    /// Head pose deltas in degrees (pitch, yaw, roll).
    pub head: [f32; 3],
    /// 0 = eyes as the source, 1 = closed.
    pub blink: f32,
}

/// LivePortrait's `headpose_pred_to_degree`: softmax over the bins, the expected bin, × 3 −
/// 97.5 (f32, as the reference).
pub fn headpose_to_degree(bins: &[f32]) -> f32 {
    let max = bins.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let e: Vec<f32> = bins.iter().map(|b| (b - max).exp()).collect();
    let sum: f32 = e.iter().sum();
    let expected: f32 = e.iter().enumerate().map(|(i, v)| v / sum * i as f32).sum();
    expected * 3.0 - 97.5
}

/// LivePortrait's `get_rotation_matrix`: `(Rz(roll) Ry(yaw) Rx(pitch))ᵀ`, row-major, for row
/// vectors (`x R`).
pub fn rotation_matrix(pitch: f32, yaw: f32, roll: f32) -> [f32; 9] {
    let rad = |d: f32| d / 180.0 * std::f32::consts::PI;
    let (x, y, z) = (rad(pitch), rad(yaw), rad(roll));
    let (cx, sx, cy, sy, cz, sz) = (x.cos(), x.sin(), y.cos(), y.sin(), z.cos(), z.sin());
    let rx = [1.0, 0.0, 0.0, 0.0, cx, -sx, 0.0, sx, cx];
    let ry = [cy, 0.0, sy, 0.0, 1.0, 0.0, -sy, 0.0, cy];
    let rz = [cz, -sz, 0.0, sz, cz, 0.0, 0.0, 0.0, 1.0];
    let mul = |a: &[f32; 9], b: &[f32; 9]| {
        let mut m = [0f32; 9];
        for i in 0..3 {
            for j in 0..3 {
                m[i * 3 + j] = (0..3).map(|k| a[i * 3 + k] * b[k * 3 + j]).sum();
            }
        }
        m
    };
    let r = mul(&mul(&rz, &ry), &rx);
    [r[0], r[3], r[6], r[1], r[4], r[7], r[2], r[5], r[8]]
}

/// `x = scale (kp R + exp)`, then `x[:, 0:2] += t[0:2]`.
pub fn keypoints(kp: &[f32], r: &[f32; 9], exp: &[f32], scale: f32, t: &[f32; 3]) -> Vec<f32> {
    let mut x = vec![0f32; kp.len()];
    for (k, p) in kp.chunks_exact(3).enumerate() {
        for j in 0..3 {
            let rotated: f32 = (0..3).map(|i| p[i] * r[i * 3 + j]).sum();
            x[k * 3 + j] = (rotated + exp[k * 3 + j]) * scale;
        }
        x[k * 3] += t[0];
        x[k * 3 + 1] += t[1];
    }
    x
}

/// One lip-open ratio per frame from the waveform's energy: RMS over each frame's samples,
/// over the loudest frame's, gated and scaled to at most [`LIP_MAX`].
pub fn lip_ratios(samples: &[f32], sample_rate: u64, fps: u64, frames: usize) -> Vec<f32> {
    let rms: Vec<f64> = (0..frames as u64)
        .map(|i| {
            let a = (i * sample_rate / fps) as usize;
            let b = (((i + 1) * sample_rate / fps) as usize).min(samples.len());
            if b > a {
                let sum: f64 = samples[a..b].iter().map(|&x| f64::from(x).powi(2)).sum();
                (sum / (b - a) as f64).sqrt()
            } else {
                0.0
            }
        })
        .collect();
    let loudest = rms.iter().copied().fold(0.0, f64::max);
    if loudest <= 1e-6 {
        return vec![0.0; frames];
    }
    rms.iter()
        .map(|r| {
            let e = r / loudest;
            (f64::from(LIP_MAX) * ((e - LIP_GATE) / (1.0 - LIP_GATE)).clamp(0.0, 1.0)) as f32
        })
        .collect()
}

/// How open a speech sound holds the mouth, 0 (lips closed) to 1 (widest): the viseme
/// classes of misaki's phoneme set (IPA, with its capitals for diphthongs: A eɪ, I aɪ, W aʊ,
/// Y ɔɪ, O oʊ, Q əʊ). Lips close for p b m, nearly for f v; open vowels most, close and
/// reduced vowels least; other consonants a little; punctuation is a pause. Marks are not
/// sounds: a length mark `ː` (and a space between words) takes the opening of the sound
/// before it, a stress mark `ˈ` `ˌ` (written before its vowel) the one after it ([`Mark`]).
pub fn viseme_openness(symbol: char) -> Result<f32, Mark> {
    Ok(match symbol {
        'p' | 'b' | 'm' => 0.0,
        'f' | 'v' => 0.1,
        'a' | 'ɑ' | 'æ' | 'ɐ' | 'ɒ' | 'ʌ' | 'I' | 'W' => 1.0,
        'ɔ' | 'Y' => 0.8,
        'e' | 'ɛ' | 'ɜ' | 'ə' | 'ɚ' | 'A' | 'o' | 'O' | 'Q' => 0.65,
        'ᵊ' | 'ᵻ' => 0.4,
        'i' | 'ɪ' | 'y' | 'u' | 'ʊ' | 'w' => 0.35,
        // A space between words is no pause in connected speech (the energy closes the
        // mouth where there is one); punctuation is.
        'ː' | ' ' => return Err(Mark::Before),
        'ˈ' | 'ˌ' => return Err(Mark::After),
        c if c.is_alphabetic() => 0.25,
        _ => 0.0,
    })
}

/// Which sound a mark takes its mouth opening from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mark {
    /// The sound before it (length, a space between words).
    Before,
    /// The sound after it (stress).
    After,
}

/// Each sound's opening, marks resolved to their neighbour's (none: a pause).
fn openness(speech: &SpeechTiming) -> Vec<f64> {
    let raw: Vec<Result<f32, Mark>> = speech
        .sounds
        .iter()
        .map(|s| viseme_openness(s.symbol))
        .collect();
    let mut open = vec![0f64; raw.len()];
    let mut before = 0.0;
    for (o, r) in open.iter_mut().zip(&raw) {
        match r {
            Ok(v) => before = f64::from(*v),
            Err(Mark::Before) => {}
            Err(Mark::After) => continue,
        }
        *o = before;
    }
    let mut after = 0.0;
    for (o, r) in open.iter_mut().zip(&raw).rev() {
        match r {
            Ok(_) | Err(Mark::Before) => after = *o,
            Err(Mark::After) => *o = after,
        }
    }
    open
}

/// One lip-open ratio per frame from when each sound is said (the audio stage's timing) and
/// the waveform's energy: the sounds' openness ([`viseme_openness`]) averaged over the
/// frame's samples shapes the mouth, the energy sizes it (the gated level of [`lip_ratios`],
/// doubled and capped at 1, so a quiet sound still shows), then each frame is blended with
/// its neighbours (¼, ½, ¼: the lips move ahead of and after a sound). At most [`LIP_MAX`].
pub fn lip_ratios_timed(
    samples: &[f32],
    speech: &SpeechTiming,
    sample_rate: u64,
    fps: u64,
    frames: usize,
) -> Vec<f32> {
    let level = lip_ratios(samples, sample_rate, fps, frames);
    let opening = openness(speech);
    let fps = fps.max(1);
    let mut open = vec![0f64; frames];
    let mut first = 0;
    for (i, o) in open.iter_mut().enumerate() {
        let a = i as u64 * sample_rate / fps;
        let b = (i as u64 + 1) * sample_rate / fps;
        // Sounds wholly before this frame are done.
        while speech.sounds.get(first).is_some_and(|s| s.end <= a) {
            first += 1;
        }
        // (`first` stops at the end: the slices are never out of range.)
        let weighted: f64 = speech.sounds[first..]
            .iter()
            .zip(&opening[first..])
            .take_while(|(s, _)| s.start < b)
            .map(|(s, v)| v * s.end.min(b).saturating_sub(s.start.max(a)) as f64)
            .sum();
        *o = weighted / (b - a).max(1) as f64;
    }
    (0..frames)
        .map(|i| {
            let at = |k: usize| open[k.min(frames - 1)];
            let shape = 0.25 * at(i.saturating_sub(1)) + 0.5 * at(i) + 0.25 * at(i + 1);
            let size = (2.0 * f64::from(level[i]) / f64::from(LIP_MAX)).min(1.0);
            (f64::from(LIP_MAX) * shape * size) as f32
        })
        .collect()
}

/// splitmix64's uniform in [0, 1).
struct SplitMix64(u64);

impl SplitMix64 {
    fn uniform(&mut self) -> f64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        ((z ^ (z >> 31)) >> 11) as f64 * 2f64.powi(-53)
    }
}

/// Small head motion (two sines per axis, ±2°, ±3°, ±1.5°) and 0.2 s blinks every 2–5 s,
/// from the seed: per frame (pitch, yaw, roll) deltas and a blink amount.
pub fn natural_motion(seed: u64, frames: usize, fps: u64) -> Vec<([f32; 3], f32)> {
    const AMP: [f64; 3] = [2.0, 3.0, 1.5];
    const BLINK: f64 = 0.2;
    let tau = 2.0 * std::f64::consts::PI;
    let mut r = SplitMix64(seed);
    let waves: Vec<[f64; 4]> = AMP
        .iter()
        .map(|_| {
            [
                0.1 + 0.2 * r.uniform(),
                tau * r.uniform(),
                0.3 + 0.4 * r.uniform(),
                tau * r.uniform(),
            ]
        })
        .collect();
    let duration = frames as f64 / fps as f64;
    let mut starts = Vec::new();
    let mut t = 0.5 + 2.5 * r.uniform();
    while t < duration {
        starts.push(t);
        t += 2.0 + 3.0 * r.uniform();
    }
    (0..frames)
        .map(|i| {
            let s = i as f64 / fps as f64;
            let mut head = [0f32; 3];
            for (a, (amp, [f1, p1, f2, p2])) in AMP.iter().zip(&waves).enumerate() {
                head[a] = (amp
                    * (0.7 * (tau * f1 * s + p1).sin() + 0.3 * (tau * f2 * s + p2).sin()))
                    as f32;
            }
            let blink = starts
                .iter()
                .map(|b| (s - b) / BLINK)
                .filter(|x| (0.0..=1.0).contains(x))
                .map(|x| 1.0 - (2.0 * x - 1.0).abs())
                .fold(0.0, f64::max);
            (head, blink as f32)
        })
        .collect()
}

/// The video stage on one LivePortrait export.
#[derive(Debug)]
pub struct LivePortraitNetwork {
    detail: String,
    size: usize,
    num_kp: usize,
    /// `feature_3d`'s shape, from the manifest.
    feature_shape: [usize; 5],
    appearance: Graph,
    motion: Graph,
    warping: Graph,
    stitching: Graph,
    lip: Graph,
    eye: Graph,
    frame: Vec<f32>,
}

impl LivePortraitNetwork {
    /// Sessions over `weights` (resident in `arena`, host-addressable: the CPU provider).
    pub fn new(
        runtime: &'static Runtime,
        export: &Export,
        arena: &Arena,
        weights: &ResidentWeights,
        session: &SessionConfig,
    ) -> Result<Self, ComputeError> {
        let ExportedNetwork::LivePortrait(manifest) = export.network() else {
            return Err(ComputeError::WrongExport {
                dir: export.dir().to_owned(),
                found: export.kind(),
                wanted: "LivePortrait",
            });
        };
        let graph = |name: &str, session: &SessionConfig| -> Result<Graph, ComputeError> {
            let g = manifest.graph(name);
            let tensors =
                weights.graph_weights(arena, |n| g.external_initializers.iter().any(|i| i == n))?;
            Ok(runtime.graph_with(
                &export.file(&g.file),
                tensors,
                session,
                Optimization::NoWeightCopies,
            )?)
        };
        // Only the per-frame graph (fixed shapes, run bound on CUDA) may be replayed as a CUDA
        // graph (`[runtime] cuda_graphs`); the others run once a slot or at changing inputs.
        let once = session.without_cuda_graph();
        let [a, m, w, s, l, e] = LivePortraitManifest::GRAPHS;
        let appearance = graph(a, &once)?;
        let mut motion = graph(m, &once)?;
        let mut warping = graph(w, session)?;
        let mut stitching = graph(s, &once)?;
        let mut lip = graph(l, &once)?;
        let mut eye = graph(e, &once)?;
        for g in [
            &mut motion,
            &mut warping,
            &mut stitching,
            &mut lip,
            &mut eye,
        ] {
            g.share_stop(&appearance);
        }
        let c = manifest.config;
        // Checked when the export was opened.
        let feature_shape = manifest
            .feature_shape()
            .ok_or_else(|| ComputeError::WrongExport {
                dir: export.dir().to_owned(),
                found: "malformed LivePortrait",
                wanted: "LivePortrait",
            })?;
        Ok(LivePortraitNetwork {
            feature_shape,
            detail: format!(
                "LivePortrait ({} px source, {} px frames, {} keypoints) exported by export_liveportrait.py, on ONNX Runtime's {} provider",
                c.image_size,
                2 * c.image_size,
                c.num_kp,
                session.provider.name()
            ),
            size: c.image_size as usize,
            num_kp: c.num_kp as usize,
            appearance,
            motion,
            warping,
            stitching,
            lip,
            eye,
            frame: Vec::new(),
        })
    }

    /// Side of the frames it draws.
    pub fn frame_size(&self) -> usize {
        2 * self.size
    }

    fn mlp(
        graph: &mut Graph,
        arena: &Arena,
        owner: OwnerId,
        feat: &[f32],
    ) -> Result<Vec<f32>, ComputeError> {
        let mut out = Vec::new();
        graph.run(
            arena,
            owner,
            &[Input::F32("feat", &[1, feat.len()], feat)],
            &mut [Output::F32("delta", &mut out)],
        )?;
        Ok(out)
    }

    /// The source's features and keypoints from `image` (`[3, S, S]` in [0, 1]).
    pub fn prepare(
        &mut self,
        arena: &Arena,
        owner: OwnerId,
        image: &[f32],
    ) -> Result<Source, ComputeError> {
        let s = self.size;
        let shape = [1, 3, s, s];
        // The source's features are written by ONNX Runtime straight into `features`.
        let mut features = vec![0.0f32; self.feature_shape.iter().product()];
        self.appearance.run_into(
            arena,
            owner,
            &[Input::F32("image", &shape, image)],
            &mut [OutputInto {
                name: "feature_3d",
                shape: &self.feature_shape,
                data: &mut features,
            }],
        )?;
        let (mut kp, mut pitch, mut yaw, mut roll) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        let (mut t, mut exp, mut scale) = (Vec::new(), Vec::new(), Vec::new());
        self.motion.run(
            arena,
            owner,
            &[Input::F32("image", &shape, image)],
            &mut [
                Output::F32("kp", &mut kp),
                Output::F32("pitch", &mut pitch),
                Output::F32("yaw", &mut yaw),
                Output::F32("roll", &mut roll),
                Output::F32("t", &mut t),
                Output::F32("exp", &mut exp),
                Output::F32("scale", &mut scale),
            ],
        )?;
        let k = self.num_kp;
        if kp.len() != 3 * k || exp.len() != 3 * k || t.len() != 3 || scale.len() != 1 {
            return Err(ComputeError::GraphOutput {
                graph: "motion_extractor".to_owned(),
                found: kp.len(),
                expected: 3 * k,
            });
        }
        let pose = [
            headpose_to_degree(&pitch),
            headpose_to_degree(&yaw),
            headpose_to_degree(&roll),
        ];
        let t = [t[0], t[1], t[2]];
        let r = rotation_matrix(pose[0], pose[1], pose[2]);
        let x_s = keypoints(&kp, &r, &exp, scale[0], &t);
        Ok(Source {
            features,
            kp,
            exp,
            t,
            scale: scale[0],
            pose,
            x_s,
        })
    }

    /// The start-up profile run's work: a source prepared, one frame driven (eyes, lips and
    /// stitching all run) and drawn.
    pub fn profile(&mut self, arena: &Arena, owner: OwnerId) -> Result<(), ComputeError> {
        let image = vec![0.5f32; 3 * self.size * self.size];
        let src = self.prepare(arena, owner, &image)?;
        let drive = Drive {
            lip: 0.3,
            head: [1.0, 1.0, 1.0],
            blink: 0.5,
        };
        let x_d = self.driving_keypoints(arena, owner, &src, drive)?;
        self.render(arena, owner, &src, &x_d).map(drop)
    }

    /// The driving keypoints of one frame (`drive()`'s steps 1–4).
    pub fn driving_keypoints(
        &mut self,
        arena: &Arena,
        owner: OwnerId,
        src: &Source,
        d: Drive,
    ) -> Result<Vec<f32>, ComputeError> {
        let k = self.num_kp;
        let r = rotation_matrix(
            src.pose[0] + d.head[0],
            src.pose[1] + d.head[1],
            src.pose[2] + d.head[2],
        );
        let mut x_d = keypoints(&src.kp, &r, &src.exp, src.scale, &src.t);
        let add = |x: &mut [f32], delta: &[f32]| x.iter_mut().zip(delta).for_each(|(a, b)| *a += b);
        let c_d_eye = SOURCE_EYE_RATIO * (1.0 - d.blink);
        if c_d_eye != SOURCE_EYE_RATIO {
            let mut feat = src.x_s.clone();
            feat.extend([SOURCE_EYE_RATIO, SOURCE_EYE_RATIO, c_d_eye]);
            let delta = Self::mlp(&mut self.eye, arena, owner, &feat)?;
            add(&mut x_d, &delta);
        }
        if d.lip != SOURCE_LIP_RATIO {
            let mut feat = src.x_s.clone();
            feat.extend([SOURCE_LIP_RATIO, d.lip]);
            let delta = Self::mlp(&mut self.lip, arena, owner, &feat)?;
            add(&mut x_d, &delta);
        }
        let mut feat = src.x_s.clone();
        feat.extend_from_slice(&x_d);
        let delta = Self::mlp(&mut self.stitching, arena, owner, &feat)?;
        if delta.len() != 3 * k + 2 {
            return Err(ComputeError::GraphOutput {
                graph: "stitching".to_owned(),
                found: delta.len(),
                expected: 3 * k + 2,
            });
        }
        add(&mut x_d, &delta[..3 * k]);
        for p in x_d.chunks_exact_mut(3) {
            p[0] += delta[3 * k];
            p[1] += delta[3 * k + 1];
        }
        Ok(x_d)
    }

    /// One frame (`[3, 2S, 2S]`, values in (0, 1)) of the source under `x_d`.
    pub fn render(
        &mut self,
        arena: &Arena,
        owner: OwnerId,
        src: &Source,
        x_d: &[f32],
    ) -> Result<&[f32], ComputeError> {
        let (s, k) = (self.size, self.num_kp);
        let side = 2 * s;
        // The frame is written by ONNX Runtime straight into the network's frame buffer
        // (allocated once, reused every frame): no output tensor copied afterwards.
        self.frame.resize(3 * side * side, 0.0);
        self.warping.run_into(
            arena,
            owner,
            &[
                Input::F32("feature_3d", &self.feature_shape, &src.features),
                Input::F32("kp_source", &[1, k, 3], &src.x_s),
                Input::F32("kp_driving", &[1, k, 3], x_d),
            ],
            &mut [OutputInto {
                name: "frame",
                shape: &[1, 3, side, side],
                data: &mut self.frame,
            }],
        )?;
        Ok(&self.frame)
    }
}

impl StageImpl for LivePortraitNetwork {
    fn implementation(&self) -> Implementation {
        Implementation::network(&self.detail)
    }

    fn check_buffers(&self, buffers: &vortex_registry::OutputBuffers) -> Result<(), ComputeError> {
        for (what, key, dtype, supported) in [
            (
                "the actor image",
                "actor_dtype",
                buffers.actor_dtype,
                Dtype::U8,
            ),
            ("the audio", "audio_dtype", buffers.audio_dtype, Dtype::F32),
            ("the video", "video_dtype", buffers.video_dtype, Dtype::U8),
        ] {
            check_dtype("LivePortrait", what, key, dtype, supported)?;
        }
        check_rgb(buffers)?;
        if buffers.image_size as usize != self.frame_size() {
            return Err(ComputeError::FrameSize {
                found: buffers.image_size,
                needed: self.frame_size() as u64,
            });
        }
        Ok(())
    }

    fn stopper(&self) -> Option<Terminator> {
        Some(self.appearance.terminator())
    }
}

impl VideoStage for LivePortraitNetwork {
    fn run(
        &mut self,
        cx: &mut StageContext<'_>,
        recipe: &Recipe,
        inputs: VideoInputs<'_>,
        target: FrameTarget<'_>,
        drain: &mut FrameDrain<'_>,
    ) -> Result<(), ComputeError> {
        self.check_buffers(cx.buffers)?;
        let b = *cx.buffers;
        let (n, s) = (b.image_size as usize, self.size);
        // The actor image, averaged 2×2 down to the extractors' side, channels first in [0, 1].
        let mut actor = vec![0u8; b.actor_bytes() as usize];
        cx.arena.download(inputs.actor, 0, &mut actor)?;
        let mut image = vec![0f32; 3 * s * s];
        for y in 0..s {
            for x in 0..s {
                for c in 0..3 {
                    let at = |yy: usize, xx: usize| f32::from(actor[(yy * n + xx) * 3 + c]);
                    let sum = at(2 * y, 2 * x)
                        + at(2 * y, 2 * x + 1)
                        + at(2 * y + 1, 2 * x)
                        + at(2 * y + 1, 2 * x + 1);
                    image[(c * s + y) * s + x] = sum / 4.0 / 255.0;
                }
            }
        }
        let mut audio = vec![0u8; b.audio_bytes() as usize];
        cx.arena.download(inputs.audio, 0, &mut audio)?;
        let samples: Vec<f32> = audio
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        let frames = b.frames() as usize;
        // Kokoro says when each sound is spoken: the mouth follows the sounds; without that
        // (the reference audio) the energy alone.
        let lips = if inputs.speech.is_empty() {
            lip_ratios(&samples, b.sample_rate, b.fps, frames)
        } else {
            lip_ratios_timed(&samples, inputs.speech, b.sample_rate, b.fps, frames)
        };
        let motion = natural_motion(recipe.seed, frames, b.fps);
        let src = self.prepare(cx.arena, cx.owner, &image)?;
        let frame_bytes = b.frame_bytes();
        let plane = n * n;
        cx.staging.resize(frame_bytes as usize, 0);
        for (i, (lip, (head, blink))) in lips.into_iter().zip(motion).enumerate() {
            let x_d =
                self.driving_keypoints(cx.arena, cx.owner, &src, Drive { lip, head, blink })?;
            let frame = self.render(cx.arena, cx.owner, &src, &x_d)?;
            for (p, px) in cx.staging.chunks_exact_mut(3).enumerate() {
                for (c, out) in px.iter_mut().enumerate() {
                    // LivePortrait's parse_output: trunc(clip(v, 0, 1) × 255).
                    *out = (frame[c * plane + p].clamp(0.0, 1.0) * 255.0) as u8;
                }
            }
            let offset = (i as u64 % target.capacity.max(1)) * frame_bytes;
            cx.arena.upload(target.region, offset, &cx.staging[..])?;
            drain(i as u64, offset)?;
        }
        Ok(())
    }
}
