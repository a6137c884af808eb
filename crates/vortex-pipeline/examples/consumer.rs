//! An ICN crate's use of Vortex, as a library: a pipeline built from a configuration made in
//! code, recipes from JSON, each slot written out as an MP4 with its manifest.
//!
//! ```sh
//! cargo run -p vortex-pipeline --example consumer -- OUT_DIR
//! ```
//!
//! It uses the reference audio and small shapes so it runs in seconds anywhere (the MP4s
//! through the pinned ffmpeg, fetched into Vortex's cache on first use); drop those two
//! edits for the real thing.

use std::path::PathBuf;

use vortex_models::weights::WeightSource;
use vortex_pipeline::{Config, Recipe, SlotFiles, Stage, VideoFormat, VortexPipeline};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let out = PathBuf::from(
        std::env::args()
            .nth(1)
            .unwrap_or_else(|| "consumer-slots".into()),
    );
    let mut config = Config::shipped();
    // Small slots of two seconds at 128² and 12 fps, on the emulated seed timings at a tenth.
    config.buffers.image_size = 128;
    config.buffers.seconds = 2;
    config.buffers.fps = 12;
    config.timing.time_scale = 0.1;
    config.models[Stage::Audio].weights = WeightSource::Synthetic { seed: 0 };
    let mut pipeline = VortexPipeline::new(config)?;
    let recipes = Recipe::from_json_lines(
        r#"{"slot_id": 1, "script": "Good evening.", "prompt": "a presenter in a red studio"}
{"slot_id": 2, "script": "And good night.", "seed": 42}"#,
    )?;
    let buffers = pipeline.config().buffers;
    for recipe in &recipes {
        let dir = out.join(format!("slot-{:04}", recipe.slot_id));
        let mut files = SlotFiles::with_format(&dir, &buffers, VideoFormat::Mp4);
        let result = pipeline.generate_slot_into(recipe, &mut files).await?;
        let kept = result.to_owned_result();
        println!(
            "slot {} in {:.0} ms: {} frames, {} samples -> {}",
            kept.slot_id,
            kept.generation_time_ms,
            kept.video_frames.len() / (128 * 128 * 3),
            kept.audio_waveform.len(),
            dir.join("video.mp4").display()
        );
    }
    Ok(())
}
