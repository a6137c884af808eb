//! The registry: typed and by-name lookup, declared against measured bytes, and rollback after
//! a failure at every allocation index.

use std::marker::PhantomData;
use std::sync::Arc;

use vortex_registry::{InitError, LoadContext, LoadError, Model, ModelRegistry};
use vortex_vram::{ArenaConfig, HostBackend, HostConfig, Purpose, Vram, VramConfig, VramError};

/// A model that takes a list of regions, writing a stamp into each.
struct Fake {
    name: &'static str,
    regions: Vec<u64>,
    budget: u64,
}

/// One model type per marker, so `get::<M>()` has distinct types to find.
struct Typed<K>(Fake, PhantomData<K>);
struct FluxKind;
struct KokoroKind;
type Flux = Typed<FluxKind>;
type Kokoro = Typed<KokoroKind>;

impl<K: Send + Sync + 'static> Model for Typed<K> {
    fn name(&self) -> &str {
        self.0.name
    }
    fn budget(&self) -> u64 {
        self.0.budget
    }
    fn weight_bytes(&self) -> u64 {
        self.0.regions.iter().sum()
    }
    fn load(&mut self, ctx: &mut LoadContext<'_>) -> Result<(), LoadError> {
        self.0.load(ctx)
    }
}

fn flux(name: &'static str, regions: Vec<u64>, budget: u64) -> Box<dyn Model> {
    Box::new(Flux::new(Fake {
        name,
        regions,
        budget,
    }))
}

fn kokoro(name: &'static str, regions: Vec<u64>, budget: u64) -> Box<dyn Model> {
    Box::new(Kokoro::new(Fake {
        name,
        regions,
        budget,
    }))
}

impl<K> Typed<K> {
    fn new(fake: Fake) -> Self {
        Typed(fake, PhantomData)
    }
}

impl Fake {
    fn load(&mut self, ctx: &mut LoadContext<'_>) -> Result<(), LoadError> {
        for (i, &bytes) in self.regions.iter().enumerate() {
            let region = ctx.alloc(Purpose::ModelWeights, bytes)?;
            ctx.arena().upload(&region, 0, &[i as u8; 8])?;
        }
        Ok(())
    }
}

fn models() -> Vec<Box<dyn Model>> {
    vec![
        flux("flux", vec![4096, 8192, 256], 16_384),
        kokoro("kokoro", vec![1000, 3000], 4096),
    ]
}

fn vram(static_bytes: u64) -> Vram {
    let backend = Arc::new(HostBackend::new(HostConfig::rtx3060_12gb()));
    Vram::new(
        backend,
        VramConfig::new(ArenaConfig::new(static_bytes, 4096)),
    )
    .unwrap()
}

#[test]
fn typed_and_by_name_lookup() {
    let vram = vram(1 << 20);
    let registry = ModelRegistry::load(vram.arena(), models()).unwrap();
    let flux: &Flux = registry.get::<Flux>().unwrap();
    assert_eq!(flux.0.regions.len(), 3);
    assert_eq!(registry.get::<Kokoro>().unwrap().name(), "kokoro");
    assert_eq!(registry.get_by_name("kokoro").unwrap().budget(), 4096);
    assert!(registry.get_by_name("clip_l").is_none());
    assert_eq!(registry.names().collect::<Vec<_>>(), ["flux", "kokoro"]);
    let loaded = registry.loaded();
    assert_eq!(
        (loaded[0].measured, loaded[0].weight_bytes),
        (4096 + 8192 + 256, 4096 + 8192 + 256)
    );
    assert_eq!(
        loaded[1].measured,
        1024 + 3072,
        "measured is what the tracker counts (256-byte granules)"
    );
    assert_eq!(
        vram.tracker()
            .owner_bytes(vram.tracker().owner_id("kokoro").unwrap()),
        4096
    );
    // The stamps landed where the regions are.
    let region = vram.arena().static_regions()[1];
    let mut stamp = [0u8; 8];
    vram.arena().download(&region, 0, &mut stamp).unwrap();
    assert_eq!(stamp, [1; 8]);
}

#[test]
fn a_failure_at_every_allocation_index_rolls_back_everything() {
    let sizes = [4096u64, 8192, 256, 1024, 3072];
    for fail_at in 0..sizes.len() {
        // A static region that holds exactly the allocations before `fail_at`.
        let fits: u64 = sizes[..fail_at].iter().sum();
        let vram = vram(fits.max(256));
        let before = vram.tracker().allocated();
        let stats_before = vram.arena().stats();
        let err = ModelRegistry::load(vram.arena(), models()).unwrap_err();
        let model = if fail_at < 3 { "flux" } else { "kokoro" };
        match &err {
            InitError::ModelLoad {
                model: m,
                requested,
                source,
                ..
            } => {
                assert_eq!(m, model, "failing at allocation {fail_at}");
                assert_eq!(*requested, [4096, 8192, 256, 1000, 3000][fail_at]);
                assert!(
                    matches!(**source, LoadError::Vram(VramError::OutOfMemory(_))),
                    "{source}"
                );
            }
            other => panic!("failing at {fail_at}: {other}"),
        }
        assert!(
            err.to_string()
                .contains(&format!("loading model `{model}` failed")),
            "{err}"
        );
        assert_eq!(
            vram.tracker().allocated(),
            before,
            "failing at {fail_at}: tracker not back"
        );
        assert_eq!(
            vram.arena().stats(),
            stats_before,
            "failing at {fail_at}: arena not back"
        );
        assert!(vram.arena().static_regions().is_empty());
    }
}

#[test]
fn the_hard_limit_during_load_names_the_model_and_what_to_change() {
    let backend = Arc::new(HostBackend::new(HostConfig::rtx3060_12gb()));
    let mut config = VramConfig::new(ArenaConfig::new(1 << 20, 0));
    config.limits =
        vortex_vram::Limits::new(vortex_vram::ByteSize(8192), vortex_vram::ByteSize(16_384))
            .unwrap();
    let vram = Vram::new(backend, config).unwrap();
    let err = ModelRegistry::load(vram.arena(), models()).unwrap_err();
    let InitError::ModelLoad {
        model,
        requested,
        available,
        remediation,
        ..
    } = &err
    else {
        panic!("{err}")
    };
    assert_eq!(
        (model.as_str(), *requested, *available),
        ("kokoro", 3072, 16_384 - 12_544 - 1024)
    );
    assert_eq!(
        remediation,
        "lower models.kokoro.budget or raise vram.hard_limit"
    );
    assert_eq!(vram.tracker().allocated(), 0);
}

#[test]
fn a_model_over_its_budget_is_refused_and_rolled_back() {
    let vram = vram(1 << 20);
    let models: Vec<Box<dyn Model>> = vec![
        kokoro("kokoro", vec![1000], 4096),
        flux("flux", vec![4096, 4096], 4096),
    ];
    let err = ModelRegistry::load(vram.arena(), models).unwrap_err();
    assert!(
        err.to_string()
            .contains("raise models.flux.budget to at least 8192 bytes"),
        "{err}"
    );
    assert_eq!(vram.tracker().allocated(), 0);
}

#[test]
fn duplicate_names_are_refused() {
    let vram = vram(1 << 20);
    let models: Vec<Box<dyn Model>> = vec![
        kokoro("kokoro", vec![256], 4096),
        flux("kokoro", vec![256], 4096),
    ];
    let err = ModelRegistry::load(vram.arena(), models).unwrap_err();
    assert!(
        matches!(err, InitError::DuplicateModel(ref n) if n == "kokoro"),
        "{err}"
    );
}
