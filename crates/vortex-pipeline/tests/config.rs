//! Configuration: the shipped config.toml loads and its plan fits; bad configs are refused
//! naming the key.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::Shipped;

use vortex_pipeline::config::{Config, ConfigError, DeviceKind};
use vortex_registry::Placement;

fn shipped() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config.toml")
}

#[test]
fn the_shipped_config_fits_under_the_soft_limit() {
    let config = Config::load(&shipped()).unwrap();
    let DeviceKind::Host(host) = &config.device else {
        panic!("host backend by default")
    };
    let models = config.build_models();
    let plan = config.plan(&models, host.capacity);
    plan.check().unwrap();
    assert!(plan.device_total() <= config.limits.soft(), "{plan}");
    assert_eq!(
        config.buffers.video_placement,
        Placement::PinnedHost { staging_frames: 24 }
    );
    assert_eq!(config.timing.deadline, Duration::from_secs(15));
    let time = config.time_plan();
    assert!(time.meets_deadline(), "{time}");
    // The figures the file's header comment states.
    assert_eq!(
        plan.device_total(),
        10_350_000_000 + 786_432 + 4_320_000 + 24 * 786_432 + (256 << 20) + 322_122_547
    );
}

#[test]
fn the_seed_budgets_are_refused_with_what_to_change() {
    let config = Shipped::new()
        .with(&[
            ("models.flux.budget", "\"6.0GB\""),
            ("models.liveportrait.budget", "\"3.5GB\""),
        ])
        .config();
    let plan = config.plan(&config.build_models(), 12_884_901_888);
    let err = plan.check().unwrap_err().to_string();
    assert!(
        err.contains("model `flux` has a budget of 6.00 GB"),
        "{err}"
    );
}

#[test]
fn a_plan_over_the_hard_limit_names_the_keys_to_change() {
    let config = Shipped::new()
        .with(&[
            ("buffers.video_placement", "\"device\""),
            ("models.liveportrait.budget", "\"3.5GB\""),
        ])
        .config();
    let err = config
        .plan(&config.build_models(), 12_884_901_888)
        .check()
        .unwrap_err()
        .to_string();
    for key in [
        "buffers.video_placement = \"pinned_host\"",
        "vram.scratch",
        "models.NAME.budget",
        "vram.hard_limit",
    ] {
        assert!(err.contains(key), "{key} missing from: {err}");
    }
}

fn check(edit: (&str, &str), key: &str, fragment: &str) {
    let text = std::fs::read_to_string(shipped()).unwrap();
    assert!(
        text.contains(edit.0),
        "the shipped config has no {:?}",
        edit.0
    );
    let bad = text.replacen(edit.0, edit.1, 1);
    let err = Config::parse(&bad, Path::new("bad.toml")).unwrap_err();
    let message = err.to_string();
    match &err {
        ConfigError::Invalid { key: k, .. } => assert_eq!(k, key, "{message}"),
        ConfigError::Syntax { .. } => {
            assert!(message.contains(key), "{message} does not name {key}")
        }
        ConfigError::Io { .. } => panic!("{message}"),
    }
    assert!(message.contains(fragment), "{message:?} lacks {fragment:?}");
    assert!(message.starts_with("bad.toml"), "{message}");
}

#[test]
fn bad_configs_name_the_key_and_what_to_write() {
    check(
        ("queue = 2", "queue = -1"),
        "server.queue",
        "use 0 (no waiting) to 1024",
    );
    check(("keep = 100", "keep = 0"), "server.keep", "above zero");
    check(
        (
            "# probe_addr = \"127.0.0.1:9401\"",
            "probe_addr = \"localhost\"",
        ),
        "server.probe_addr",
        "an IP and a port",
    );
    check(
        ("soft_limit = \"11.0GB\"", "soft_limit = \"12GB\""),
        "vram.soft_limit",
        "must be below the hard limit",
    );
    check(
        ("soft_limit = \"11.0GB\"", "soft_limit = \"11.5GB\""),
        "vram.soft_limit",
        "must be below",
    );
    check(
        ("hard_limit = \"11.5GB\"", "hard_limit = \"11.5\""),
        "vram.hard_limit",
        "has no unit",
    );
    check(
        ("hard_limit = \"11.5GB\"", "hard_limit = \"11.5 gigs\""),
        "vram.hard_limit",
        "unknown unit `gigs`",
    );
    check(
        ("scratch = \"256MiB\"", "scratch = \"0MiB\""),
        "vram.scratch",
        "above zero",
    );
    check(
        ("scratch = \"256MiB\"", "scratch = \"-1MiB\""),
        "vram.scratch",
        "non-negative",
    );
    check(
        ("image_size = 512", "image_size = 0"),
        "buffers.image_size",
        "above zero",
    );
    check(("fps = 24", "fps = -24"), "buffers.fps", "above zero");
    check(
        ("channels = 3", "channels = 5"),
        "buffers.channels",
        "use 1 to 4",
    );
    check(
        ("video_dtype = \"u8\"", "video_dtype = \"float\""),
        "buffers.video_dtype",
        "use \"u8\"",
    );
    check(
        (
            "video_placement = \"pinned_host\"",
            "video_placement = \"host\"",
        ),
        "buffers.video_placement",
        "pinned_host",
    );
    check(
        ("staging_frames = 24", "staging_frames = 0"),
        "buffers.staging_frames",
        "above zero",
    );
    check(
        ("backend = \"host\"", "backend = \"gpu\""),
        "device.backend",
        "use \"host\" or \"cuda\"",
    );
    check(
        (
            "host_preset = \"rtx3060-12gb\"",
            "host_preset = \"rtx4090\"",
        ),
        "device.host_preset",
        "rtx3060-12gb",
    );
    check(
        ("[models.kokoro]", "[models.bark]"),
        "models.bark",
        "the models are flux",
    );
    check(
        ("budget = \"0.4GB\"", "budget = \"0GB\""),
        "models.kokoro.budget",
        "above zero",
    );
    check(
        ("cost_profile = \"seed-targets\"", "cost_profile = \"fast\""),
        "timing.cost_profile",
        "rtx3060-public",
    );
    check(
        ("deadline = \"15s\"", "deadline = \"15\""),
        "timing.deadline",
        "with its unit",
    );
    check(
        ("deadline = \"15s\"", "deadline = \"0s\""),
        "timing.deadline",
        "above zero",
    );
    check(
        ("verified_frames = 8", "verified_frames = 5000"),
        "timing.verified_frames",
        "a slot has 1080",
    );
    check(
        ("time_scale = 0.8", "time_scale = -1.0"),
        "timing.time_scale",
        "from 0 to 1000",
    );
    check(
        ("leak_check_every = 10", "leak_check_every = 0"),
        "monitoring.leak_check_every",
        "above zero",
    );
    // Values that parse but would overflow or exhaust memory are refused, not panicked on.
    check(
        ("image_size = 512", "image_size = 9223372036854775807"),
        "buffers.image_size",
        "at most 4096",
    );
    check(
        ("seconds = 45", "seconds = 3600"),
        "buffers",
        "keep it under 32 GiB",
    );
    check(("fps = 24", "fps = 100000"), "buffers.fps", "at most 240");
    check(
        ("staging_frames = 24", "staging_frames = 5000"),
        "buffers.staging_frames",
        "a slot has 1080",
    );
    check(
        (
            "deadline = \"15s\"",
            "deadline = \"100000000000000000000s\"",
        ),
        "timing.deadline",
        "at most a day",
    );
    check(
        ("time_scale = 0.8", "time_scale = 1e300"),
        "timing.time_scale",
        "from 0 to 1000",
    );
    check(
        ("budget = \"7.1GB\"", "budget = \"20000000TB\""),
        "models.flux.budget",
        "64 bits",
    );
    // Syntax-level refusals from the TOML layer name the key too.
    check(
        ("ordinal = 0", "ordinal = 0\nordnial = 1"),
        "ordnial",
        "unknown field",
    );
    check(
        ("ordinal = 0", "ordinal = \"zero\""),
        "ordinal",
        "invalid type",
    );
    check(("[monitoring]", "[monitor]"), "monitor", "unknown field");
    check(
        ("ffmpeg = \"auto\"", "ffmpeg = \"\""),
        "output.ffmpeg",
        "\"ffmpeg\" (the one on PATH)",
    );
    check(
        (
            "ffmpeg = \"auto\"",
            "ffmpeg = \"auto\"\nffprobe = \"ffprobe\"",
        ),
        "ffprobe",
        "unknown field",
    );
}

#[test]
fn the_server_table_is_optional_and_ships_a_queue_of_two() {
    let server = Config::shipped().server;
    assert_eq!(
        (server.probe_addr.as_deref(), server.queue, server.keep),
        (None, 2, 100)
    );
    let text = std::fs::read_to_string(shipped()).unwrap();
    let without = &text[..text.find("[server]").unwrap()];
    let config = Config::parse(without, Path::new("c.toml")).unwrap();
    assert_eq!(config.server, vortex_pipeline::config::Server::default());
    let with = text.replace("# probe_addr = ", "probe_addr = ");
    let config = Config::parse(&with, Path::new("c.toml")).unwrap();
    assert_eq!(config.server.probe_addr.as_deref(), Some("127.0.0.1:9401"));
}

#[test]
fn output_ffmpeg_is_the_pinned_one_a_name_on_path_or_a_path() {
    let text = std::fs::read_to_string(shipped()).unwrap();
    let ffmpeg = |value: &str| {
        let edited = text.replacen("ffmpeg = \"auto\"", &format!("ffmpeg = {value}"), 1);
        Config::parse(&edited, Path::new("/etc/vortex/config.toml"))
            .unwrap()
            .output
            .ffmpeg
    };
    assert_eq!(Config::shipped().output.ffmpeg, None, "the pinned one");
    assert_eq!(
        ffmpeg("\"ffmpeg\""),
        Some("ffmpeg".into()),
        "looked up on PATH"
    );
    assert_eq!(
        ffmpeg("\"bin/ffmpeg\""),
        Some("/etc/vortex/bin/ffmpeg".into()),
        "beside the config file"
    );
    assert_eq!(
        ffmpeg("\"/usr/bin/ffmpeg\""),
        Some("/usr/bin/ffmpeg".into())
    );
}

#[test]
fn budgets_that_add_past_64_bits_are_refused_by_the_plan() {
    let config = Shipped::new()
        .with(&[
            ("models.flux.budget", "\"16000000TB\""),
            ("models.liveportrait.budget", "\"16000000TB\""),
        ])
        .config();
    let err = config
        .plan(&config.build_models(), 12_884_901_888)
        .check()
        .unwrap_err();
    assert!(
        err.to_string().contains("above the device's capacity")
            || err.to_string().contains("above the hard limit"),
        "{err}"
    );
}

#[test]
fn a_missing_model_and_a_missing_file_are_refused() {
    let text = std::fs::read_to_string(shipped()).unwrap();
    let start = text.find("[models.kokoro]").unwrap();
    let end = text.find("[models.clip_b]").unwrap();
    let without = format!("{}{}", &text[..start], &text[end..]);
    let err = Config::parse(&without, Path::new("c.toml"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("models.kokoro: missing"), "{err}");
    let err = Config::load(Path::new("/nonexistent/config.toml"))
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with("cannot read /nonexistent/config.toml"),
        "{err}"
    );
}

mod hostile {
    use super::*;
    use proptest::prelude::*;

    const NASTY: &[&str] = &[
        "0",
        "-1",
        "9223372036854775807",
        "-9223372036854775808",
        "1e308",
        "nan",
        "inf",
        "\"\"",
        "\"0B\"",
        "\"18446744073709551615B\"",
        "\"18446744073709551616B\"",
        "\"1e300s\"",
        "\"-5s\"",
        "\"0.000000001ms\"",
        "\"99999999999999999999min\"",
        "true",
        "[]",
        "{}",
        "\"synthetic\"",
        "\"/dev/null\"",
        "\"pinned_host\"",
        "\"device\"",
        "\"f16\"",
        "\"zero\"",
        "1",
        "4096",
    ];

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(300))]

        /// Any value in any key: a clear error or a config whose plans can be made and checked,
        /// never a panic.
        #[test]
        fn hostile_values_never_panic(edits in prop::collection::vec((any::<prop::sample::Index>(), 0..NASTY.len()), 1..6)) {
            let mut shipped = Shipped::new();
            let keys = shipped.keys();
            for (key, value) in edits {
                shipped = shipped.set(&keys[key.index(keys.len())], NASTY[value]);
            }
            if let Ok(config) = Config::parse(&shipped.text(), Path::new("fuzz.toml")) {
                let plan = config.plan(&config.build_models(), 12_884_901_888);
                let _ = plan.check();
                let _ = plan.to_string();
                let _ = config.time_plan().to_string();
                let _ = vortex_pipeline::report::TimePlanDoc::new(&config).to_string();
            }
        }
    }
}

/// The fixture every test edits the shipped file with: a key it has is set in place
/// (comments kept), a key it lacks or a value that is not TOML is a panic, not a silent no-op.
#[test]
fn the_fixture_edits_the_shipped_file_by_key() {
    let edited = Shipped::new().set("models.kokoro.budget", "\"0.5GB\"");
    assert_eq!(
        edited.config().models[vortex_pipeline::Stage::Audio].budget,
        500_000_000
    );
    assert!(
        edited
            .text()
            .contains("budget = \"0.5GB\"\nweights = \"kokoro-82m-int8\"")
    );
    assert!(edited.text().contains("# The real network: Kokoro-82M"));
    // Every key the file sets: what the hostile values go into.
    assert_eq!(Shipped::new().keys().len(), 42);
    let small = Shipped::small_slot().config();
    assert_eq!((small.buffers.image_size, small.buffers.frames()), (16, 4));
    for (path, value) in [
        ("buffers.image_sise", "16"),
        ("models.bark.budget", "\"1GB\""),
        ("buffers", "16"),
        ("buffers.image_size", "sixteen"),
    ] {
        let edit = std::panic::catch_unwind(|| Shipped::new().set(path, value));
        assert!(edit.is_err(), "{path} = {value} was accepted");
    }
}

/// Export precision against the device, at load, before anything is allocated: an f16
/// export on the host backend (the CPU provider, which lacks f16 kernels for most of its ops) is
/// refused naming both ways out; on CUDA, an f32 export whose weights fit its budget only in
/// f16 is told to export with --dtype f16; the f16 export on CUDA and the f32 one on the host
/// load.
#[test]
fn export_precision_is_checked_against_the_device() {
    let lp = "crates/vortex-models/tests/data/liveportrait";
    let parse = |edits: &[(&str, &str)]| {
        Config::parse(&Shipped::new().with(edits).text(), &common::shipped_path())
    };
    let f16 = format!("\"{lp}/tiny-f16\"");
    let f32 = format!("\"{lp}/tiny\"");
    let err = parse(&[("models.liveportrait.weights", &f16)])
        .unwrap_err()
        .to_string();
    for fragment in [
        "models.liveportrait.weights",
        "is f16",
        "device.backend = \"cuda\"",
        "--dtype f32",
    ] {
        assert!(err.contains(fragment), "{fragment} missing from: {err}");
    }
    // The tiny f32 export holds 435,111 f32 weights (1.74 MB); in f16 about half: 1.2 MB
    // holds them only in f16.
    let err = parse(&[
        ("device.backend", "\"cuda\""),
        ("models.liveportrait.weights", &f32),
        ("models.liveportrait.budget", "\"1.2MB\""),
    ])
    .unwrap_err()
    .to_string();
    for fragment in ["models.liveportrait.budget", "--dtype f16", "is f32"] {
        assert!(err.contains(fragment), "{fragment} missing from: {err}");
    }
    parse(&[
        ("device.backend", "\"cuda\""),
        ("models.liveportrait.weights", &f16),
        ("models.liveportrait.budget", "\"1.2MB\""),
    ])
    .unwrap();
    parse(&[("models.liveportrait.weights", &f32)]).unwrap();
    // Too small even in f16: the plan's own refusal, not a precision hint.
    parse(&[
        ("device.backend", "\"cuda\""),
        ("models.liveportrait.weights", &f32),
        ("models.liveportrait.budget", "\"100kB\""),
    ])
    .unwrap();
}
