//! The arena: properties of the scratch and static regions, and what an exhausted region says.

use std::sync::Arc;

use proptest::prelude::*;
use vortex_vram::{
    ALIGNMENT, ArenaConfig, HostBackend, HostConfig, Limits, Purpose, Region, ScratchBuffer, Vram,
    VramConfig, VramError,
};

const STATIC: u64 = 1 << 20;
const SCRATCH: u64 = 4 << 20;

fn vram(static_bytes: u64, scratch_bytes: u64) -> Vram {
    let backend = Arc::new(HostBackend::new(HostConfig::rtx3060_12gb()));
    Vram::new(
        backend,
        VramConfig::new(ArenaConfig::new(static_bytes, scratch_bytes)),
    )
    .unwrap()
}

#[derive(Debug, Clone)]
enum Op {
    Alloc(u64),
    Free(usize),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (1u64..=96 * 1024).prop_map(Op::Alloc),
        1 => (1u64..=1024 * 1024).prop_map(Op::Alloc),
        3 => any::<usize>().prop_map(Op::Free),
    ]
}

fn assert_disjoint_and_aligned(live: &[ScratchBuffer], start: u64, end: u64) {
    let mut spans: Vec<(u64, u64)> = live
        .iter()
        .map(|b| (b.ptr().addr(), b.ptr().addr() + b.size()))
        .collect();
    spans.sort_unstable();
    for &(lo, hi) in &spans {
        assert_eq!(lo % ALIGNMENT, 0, "unaligned start {lo:#x}");
        assert!(
            lo >= start && hi <= end,
            "{lo:#x}..{hi:#x} outside the scratch region"
        );
    }
    for pair in spans.windows(2) {
        assert!(
            pair[0].1 <= pair[1].0,
            "overlap: {:x?} and {:x?}",
            pair[0],
            pair[1]
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn scratch_never_overlaps_and_reclaims_every_byte(ops in prop::collection::vec(op(), 1..300)) {
        let vram = vram(STATIC, SCRATCH);
        let arena = vram.arena();
        let owner = vram.owner("prop").unwrap();
        let start = arena.base().addr() + STATIC;
        let mut live: Vec<ScratchBuffer> = Vec::new();
        for op in ops {
            match op {
                Op::Alloc(bytes) => match arena.alloc_scratch(owner, Purpose::Scratch, bytes) {
                    Ok(buffer) => {
                        prop_assert!(buffer.size() >= bytes && buffer.size() - bytes < ALIGNMENT);
                        live.push(buffer);
                    }
                    Err(VramError::OutOfMemory(report)) => {
                        prop_assert_eq!(report.region, Region::Scratch);
                        prop_assert!(report.largest_free_block < bytes.next_multiple_of(ALIGNMENT));
                    }
                    Err(other) => prop_assert!(false, "unexpected error {}", other),
                },
                Op::Free(i) if !live.is_empty() => {
                    let i = i % live.len();
                    live.swap_remove(i);
                }
                Op::Free(_) => {}
            }
            assert_disjoint_and_aligned(&live, start, start + SCRATCH);
            let held: u64 = live.iter().map(ScratchBuffer::size).sum();
            prop_assert_eq!(vram.tracker().allocated(), held);
            prop_assert_eq!(arena.stats().scratch.used, held);
        }
        drop(live);
        let stats = arena.stats();
        prop_assert_eq!(stats.scratch.used, 0);
        prop_assert_eq!(stats.scratch.free, SCRATCH);
        prop_assert_eq!(stats.scratch.live, 0);
        prop_assert_eq!(vram.tracker().allocated(), 0);
        // Coalesced again: the largest block the allocator vouches for can be taken whole.
        let largest = stats.scratch.largest_free_block;
        prop_assert!(largest * 8 >= SCRATCH * 7, "largest free block {} of {}", largest, SCRATCH);
        let whole = arena.alloc_scratch(owner, Purpose::Scratch, largest);
        prop_assert!(whole.is_ok());
    }

    #[test]
    fn static_regions_are_disjoint_aligned_and_roll_back(
        sizes in prop::collection::vec(1u64..=200_000, 1..40),
        keep in 0usize..40,
    ) {
        let vram = vram(STATIC * 4, 0);
        let arena = vram.arena();
        let owner = vram.owner("weights").unwrap();
        let keep = keep.min(sizes.len());
        let mut regions = Vec::new();
        let mut checkpoint = None;
        let mut before_rollback = 0;
        for (i, &bytes) in sizes.iter().enumerate() {
            if i == keep {
                checkpoint = Some(arena.static_checkpoint());
                before_rollback = vram.tracker().allocated();
            }
            match arena.alloc_static(owner, Purpose::ModelWeights, bytes) {
                Ok(region) => regions.push(region),
                Err(VramError::OutOfMemory(report)) => prop_assert_eq!(report.region, Region::Static),
                Err(other) => prop_assert!(false, "unexpected error {}", other),
            }
        }
        for pair in regions.windows(2) {
            prop_assert_eq!(pair[0].ptr.addr() % ALIGNMENT, 0);
            prop_assert!(pair[0].ptr.addr() + pair[0].size <= pair[1].ptr.addr());
        }
        let used: u64 = regions.iter().map(|r| r.size).sum();
        prop_assert_eq!(arena.stats().static_region.used, used);
        prop_assert_eq!(vram.tracker().allocated(), used);
        if let Some(checkpoint) = checkpoint {
            arena.rollback_static(checkpoint);
            prop_assert_eq!(vram.tracker().allocated(), before_rollback);
            prop_assert_eq!(arena.stats().static_region.used, before_rollback);
        }
    }
}

#[test]
fn exhausted_scratch_reports_the_breakdown() {
    let vram = vram(STATIC, 64 * 1024);
    let arena = vram.arena();
    let flux = vram.owner("flux").unwrap();
    let clip = vram.owner("clip_l").unwrap();
    let _weights = arena
        .alloc_static(flux, Purpose::ModelWeights, 600_000)
        .unwrap();
    // Fill the region with 1 KiB blocks, then free every other one: half free, all in holes.
    let mut blocks: Vec<_> = (0..64)
        .map(|_| arena.alloc_scratch(clip, Purpose::Scratch, 1024).unwrap())
        .collect();
    let mut i = 0;
    blocks.retain(|_| {
        i += 1;
        i % 2 == 0
    });
    let err = arena
        .alloc_scratch(clip, Purpose::Workspace, 4096)
        .unwrap_err();
    let VramError::OutOfMemory(report) = &err else {
        panic!("expected OOM, got {err}")
    };
    assert_eq!(report.region, Region::Scratch);
    assert_eq!(&*report.owner, "clip_l");
    assert_eq!(report.purpose, Purpose::Workspace);
    assert_eq!(report.requested, 4096);
    assert_eq!(report.capacity, 64 * 1024);
    assert_eq!(report.free, 32 * 1024);
    assert_eq!(report.largest_free_block, 1024);
    assert!((report.fragmentation - (1.0 - 1024.0 / 32768.0)).abs() < 1e-9);
    assert_eq!(report.allocated, 600_064 + 32 * 1024);
    assert_eq!(report.reserved, STATIC + 64 * 1024);
    assert_eq!(&*report.top_owners[0].0, "flux");
    assert_eq!(report.top_owners[1], (Arc::from("clip_l"), 32 * 1024));
    let message = err.to_string();
    for needle in [
        "4.10 kB",
        "`clip_l`",
        "scratch region",
        "fragmentation 96.9%",
        "top owners: flux",
        "fragmented",
    ] {
        assert!(
            message.contains(needle),
            "{needle:?} missing from: {message}"
        );
    }
    // Nothing was taken by the failed request.
    assert_eq!(vram.tracker().allocated(), 600_064 + 32 * 1024);
}

#[test]
fn exhausted_static_region_says_to_raise_it() {
    let vram = vram(4096, 0);
    let owner = vram.owner("video_buffer").unwrap();
    let err = vram
        .arena()
        .alloc_static(owner, Purpose::OutputBuffer, 4097)
        .unwrap_err();
    let message = err.to_string();
    assert!(
        message.contains("static region") && message.contains("raise the static region"),
        "{message}"
    );
    assert_eq!(vram.tracker().allocated(), 0);
}

#[test]
fn zero_byte_requests_are_refused_clearly() {
    let vram = vram(4096, 4096);
    let owner = vram.owner("x").unwrap();
    let err = vram
        .arena()
        .alloc_scratch(owner, Purpose::Scratch, 0)
        .unwrap_err();
    assert!(err.to_string().contains("at least one byte"), "{err}");
    assert!(
        vram.arena()
            .alloc_static(owner, Purpose::Scratch, 0)
            .is_err()
    );
    assert!(
        vram.arena()
            .alloc_scratch(owner, Purpose::Scratch, u64::MAX)
            .is_err()
    );
}

#[test]
fn stats_add_up() {
    let vram = vram(1 << 16, 1 << 16);
    let arena = vram.arena();
    let owner = vram.owner("o").unwrap();
    arena
        .alloc_static(owner, Purpose::OutputBuffer, 1000)
        .unwrap();
    let _a = arena.alloc_scratch(owner, Purpose::Scratch, 3000).unwrap();
    let stats = arena.stats();
    assert_eq!(stats.reserved, 1 << 17);
    assert_eq!(stats.static_region.used, 1024);
    assert_eq!(stats.scratch.used, 3072);
    assert_eq!(stats.allocated, 1024 + 3072);
    assert_eq!(stats.free, (1 << 17) - 1024 - 3072);
    assert!(stats.largest_free_block <= stats.free);
    assert!((0.0..1.0).contains(&stats.fragmentation));
    assert_eq!(vram.tracker().allocated(), 1024 + 3072);
    assert_eq!(vram.tracker().reserved(), 1 << 17);
    // Limits are independent of the arena: seed limits here.
    assert_eq!(vram.tracker().limits(), Limits::seed());
}

#[test]
fn dropping_the_arena_returns_the_slab() {
    let backend = Arc::new(HostBackend::new(HostConfig::rtx3060_12gb()));
    let vram = Vram::new(
        backend.clone(),
        VramConfig::new(ArenaConfig::new(1 << 20, 1 << 20)),
    )
    .unwrap();
    let owner = vram.owner("o").unwrap();
    let scratch = vram
        .arena()
        .alloc_scratch(owner, Purpose::Scratch, 100)
        .unwrap();
    assert_eq!(backend.live_allocations(), 1);
    drop(vram);
    // The scratch handle keeps the slab alive until it drops too.
    assert_eq!(backend.live_allocations(), 1);
    drop(scratch);
    assert_eq!(backend.live_allocations(), 0);
}

#[test]
fn a_sweep_reads_a_whole_region_through_scratch() {
    let vram = vram(1 << 20, 1 << 16);
    let arena = vram.arena();
    let owner = vram.owner("flux").unwrap();
    let weights = arena
        .alloc_static(owner, Purpose::ModelWeights, 200_000)
        .unwrap();
    let data: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    arena.upload(&weights, 0, &data).unwrap();
    let through = arena
        .alloc_scratch(owner, Purpose::Workspace, 65_536)
        .unwrap();
    let stream = arena.backend().create_stream().unwrap();
    // SAFETY: `through` and `weights` live, unrolled-back, until after the stream is
    // synchronized below.
    let swept = unsafe { arena.sweep(&weights, &through, stream) };
    assert_eq!(swept.unwrap(), weights.size);
    arena.backend().synchronize_stream(stream).unwrap();
    // The last chunk read is what the scratch holds: bytes 196,608.. of the region.
    let mut tail = vec![0u8; 16];
    through.download(0, &mut tail).unwrap();
    assert_eq!(tail, data[196_608..196_624]);
    drop(through);
    assert_eq!(vram.tracker().purpose_bytes(Purpose::Workspace), 0);
}

/// Bytes a library holds outside every allocator are counted like an allocation: visible under
/// their owner and purpose, refused above the hard limit (nothing recorded then), released
/// when the record drops.
#[test]
fn bytes_held_outside_the_arena_are_counted_refused_above_the_limit_and_released() {
    let vram = vram(STATIC, SCRATCH);
    let arena = vram.arena();
    let tracker = arena.tracker();
    let owner = tracker.register_owner("onnxruntime-cuda").unwrap();
    let before = tracker.allocated();
    let record = arena
        .record_outside(owner, Purpose::Context, 3 << 20)
        .unwrap();
    assert_eq!(record.bytes(), 3 << 20);
    assert_eq!(tracker.allocated(), before + (3 << 20));
    assert_eq!(tracker.owner_bytes(owner), 3 << 20);
    let hard = 11_500_000_000; // the default hard limit (VramConfig::new)
    let err = arena
        .record_outside(owner, Purpose::Context, hard)
        .unwrap_err();
    assert!(matches!(err, VramError::HardLimit { .. }), "{err}");
    assert_eq!(
        tracker.allocated(),
        before + (3 << 20),
        "a refusal records nothing"
    );
    drop(record);
    assert_eq!(tracker.allocated(), before);
}
