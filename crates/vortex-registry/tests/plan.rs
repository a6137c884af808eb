//! The VRAM plan: arithmetic against hand-computed bytes, and the seed figures' refusal.

use vortex_registry::{
    Dtype, InitError, ModelBudget, OutputBuffers, Placement, PlanConfig, VramPlan,
};
use vortex_vram::Limits;

const GB: u64 = 1_000_000_000;

/// The seed table of DESIGN.md §3: budgets in decimal GB, weights as public files give them.
fn seed_models() -> Vec<ModelBudget> {
    [
        ("flux", 6_000_000_000, 5_950_000_000),
        ("liveportrait", 3_500_000_000, 260_000_000),
        ("kokoro", 400_000_000, 164_000_000),
        ("clip_b", 300_000_000, 300_000_000),
        ("clip_l", 600_000_000, 600_000_000),
    ]
    .into_iter()
    .map(|(name, budget, weight_bytes)| ModelBudget {
        name: name.to_owned(),
        budget,
        weight_bytes,
        cpu_weights: None,
    })
    .collect()
}

fn seed(buffers: OutputBuffers) -> PlanConfig {
    PlanConfig {
        models: seed_models(),
        buffers,
        scratch: 0,
        context_reserve: 0,
        limits: Limits::seed(),
        device_capacity: 12_884_901_888,
    }
}

#[test]
fn seed_buffers_have_the_design_byte_counts() {
    let b = OutputBuffers::seed();
    assert_eq!(b.actor_bytes(), 786_432);
    assert_eq!(b.audio_bytes(), 4_320_000);
    assert_eq!(b.frames(), 1080);
    assert_eq!(b.video_bytes(), 849_346_560);
    let f16 = OutputBuffers {
        video_dtype: Dtype::F16,
        ..b
    };
    let f32 = OutputBuffers {
        video_dtype: Dtype::F32,
        ..b
    };
    assert_eq!(f16.video_bytes(), 1_698_693_120);
    assert_eq!(f32.video_bytes(), 3_397_386_240);
}

#[test]
fn the_seed_figures_are_refused_with_the_arithmetic() {
    let plan = VramPlan::new(&seed(OutputBuffers::seed()));
    let models = 10_800_000_000u64;
    let total = models + 786_432 + 4_320_000 + 849_346_560;
    assert_eq!(total, 11_654_452_992);
    assert_eq!(plan.device_total(), total);
    let err = plan.check().unwrap_err();
    match &err {
        InitError::PlanDoesNotFit {
            total: t,
            limit,
            excess,
            limit_name,
            ..
        } => {
            assert_eq!(
                (*t, *limit, *excess),
                (total, 11_500_000_000, total - 11_500_000_000)
            );
            assert_eq!(*limit_name, "the hard limit");
        }
        other => panic!("expected PlanDoesNotFit, got {other}"),
    }
    let message = err.to_string();
    for needle in [
        "11.65 GB (11654452992 bytes)",
        "above the hard limit of 11.50 GB",
        "by 154.45 MB (154452992 bytes)",
        "pinned host memory",
        "video_buffer",
        "flux",
    ] {
        assert!(
            message.contains(needle),
            "{needle:?} missing from:\n{message}"
        );
    }
}

#[test]
fn the_seed_code_sample_with_f32_video_is_more_than_the_card() {
    let buffers = OutputBuffers {
        video_dtype: Dtype::F32,
        ..OutputBuffers::seed()
    };
    let mut config = seed(buffers);
    config.limits = Limits::new(
        vortex_vram::ByteSize(13 * GB),
        vortex_vram::ByteSize(14 * GB),
    )
    .unwrap();
    let plan = VramPlan::new(&config);
    assert_eq!(
        plan.device_total(),
        10_800_000_000 + 786_432 + 4_320_000 + 3_397_386_240
    );
    match plan.check().unwrap_err() {
        InitError::PlanDoesNotFit {
            limit, limit_name, ..
        } => {
            assert_eq!(limit, 12_884_901_888);
            assert_eq!(limit_name, "the device's capacity");
        }
        other => panic!("{other}"),
    }
}

#[test]
fn video_in_pinned_host_memory_fits() {
    let buffers = OutputBuffers {
        video_placement: Placement::PinnedHost { staging_frames: 24 },
        ..OutputBuffers::seed()
    };
    let mut config = seed(buffers);
    config.scratch = 256 << 20;
    config.context_reserve = 300 << 20;
    let plan = VramPlan::new(&config);
    let staging = 24 * 786_432;
    let total = 10_800_000_000 + 786_432 + 4_320_000 + staging + (256 << 20) + (300 << 20);
    assert_eq!(plan.device_total(), total);
    assert_eq!(plan.host_total(), 849_346_560);
    plan.check().unwrap();
    assert!(plan.above_soft_limit());
    let arena = plan.arena();
    assert_eq!(arena.scratch_bytes, 256 << 20);
    assert!(arena.static_bytes >= 10_800_000_000 + 786_432 + 4_320_000 + staging);
    let table = plan.to_string();
    assert!(
        table.contains("host+24f") && table.contains("pinned host memory: 849.35 MB"),
        "{table}"
    );
    let json: serde_json::Value = serde_json::to_value(&plan).unwrap();
    assert_eq!(json["entries"][0]["owner"], "flux");
    assert_eq!(json["entries"][0]["weight_bytes"], 5_950_000_000u64);
}

#[test]
fn a_budget_below_its_weights_is_caught() {
    let mut config = seed(OutputBuffers::seed());
    config.models[3].budget = 200_000_000; // clip_b: 0.30 GB of weights
    let err = VramPlan::new(&config).check().unwrap_err();
    let message = err.to_string();
    assert!(matches!(err, InitError::BudgetBelowWeights { .. }));
    assert!(
        message.contains("raise models.clip_b.budget to at least 300.00 MB"),
        "{message}"
    );
}
