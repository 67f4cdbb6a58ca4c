//! Shards merge into exactly the summary one accumulator fed every record produces.

use aibench_results::{
    Accumulator, AccumulatorConfig, ErrorClass, Phase, RequestRecord, Slo, StopReason, TokenSource,
};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

fn random_record(rng: &mut SmallRng, id: u64) -> RequestRecord {
    let phase = match rng.random_range(0..20) {
        0 => Phase::Warmup,
        1 => Phase::Cooldown,
        _ => Phase::Measure,
    };
    let intended = rng.random_range(0..30_000_000u64);
    let mut r = RequestRecord::new(id, phase, intended);
    r.shard = rng.random_range(0..4);
    // Some records are operations of a non-LLM protocol, with their own fields.
    if rng.random_range(0..3) == 0 {
        r.op = Some(["GET", "SET", "query", "tpcb"][rng.random_range(0..4)].into());
        r.batch = (rng.random_range(0..3) == 0).then(|| rng.random_range(1..17));
        r.bytes_out = Some(rng.random_range(0..100_000));
        r.bytes_in = Some(rng.random_range(0..100_000));
        r.hits = (rng.random_range(0..2) == 0).then(|| rng.random_range(0..2));
        if rng.random_range(0..3) == 0 {
            r.neighbours_expected = Some(10);
            r.neighbours_found = Some(rng.random_range(0..11));
        }
        if rng.random_range(0..3) == 0 {
            r.steps = (0..rng.random_range(1..5))
                .map(|i| aibench_results::Step {
                    op: format!("tpcb: statement {i}").into(),
                    latency_us: rng.random_range(1..50_000),
                })
                .collect();
        }
    }
    match rng.random_range(0..10) {
        0 => {
            r.error = Some(ErrorClass::Dropped);
            return r;
        }
        1 => {
            let sent = intended + rng.random_range(0..3_000);
            r.sent_us = Some(sent);
            r.done_us = Some(sent + rng.random_range(0..2_000_000));
            r.error = Some(ErrorClass::ALL[rng.random_range(0..ErrorClass::ALL.len())]);
            return r;
        }
        _ => {}
    }
    let sent = intended + rng.random_range(0..3_000);
    r.sent_us = Some(sent);
    r.first_byte_us = Some(sent + rng.random_range(100..1_000));
    let chunks = rng.random_range(1..200u32);
    let first = sent + rng.random_range(1_000..2_000_000);
    r.first_token_us = Some(first);
    r.itl_us = (1..chunks).map(|_| rng.random_range(0..100_000)).collect();
    let end = first + r.itl_us.iter().map(|&g| u64::from(g)).sum::<u64>();
    r.end_us = Some(end);
    r.done_us = Some(end + rng.random_range(0..500));
    r.chunks = chunks;
    r.input_tokens = Some(rng.random_range(1..4_000));
    r.output_tokens = Some(chunks + rng.random_range(0..3));
    r.token_source = Some([TokenSource::Usage, TokenSource::Estimate][rng.random_range(0..2)]);
    r.status = Some(200);
    r
}

#[test]
fn merged_shards_equal_a_single_accumulator() {
    let config = AccumulatorConfig {
        slo: Slo {
            ttft_us: Some(500_000),
            tpot_us: Some(40_000),
            itl_us: Some(90_000),
            e2e_us: None,
        },
        late_after_us: 1_000,
        // A planned window inside the records' 30 s, so that the in-window and drained counts
        // merge too.
        window_us: Some([2_000_000, 25_000_000]),
    };
    for seed in 0..8u64 {
        let mut rng = SmallRng::seed_from_u64(seed);
        let n_shards = rng.random_range(1..6);
        let mut single = Accumulator::new(config);
        let mut shards: Vec<Accumulator> =
            (0..n_shards).map(|_| Accumulator::new(config)).collect();
        for id in 0..3_000 {
            let r = random_record(&mut rng, id);
            single.add(&r);
            let s = rng.random_range(0..n_shards);
            shards[s].add(&r);
        }
        single.set_stop_reason(StopReason::Duration);
        shards[0].set_stop_reason(StopReason::Duration);

        // Through the shard file format, merged in a scrambled order.
        let files: Vec<String> = shards.iter().map(|a| a.to_json().unwrap()).collect();
        let mut order: Vec<usize> = (0..n_shards).collect();
        order.rotate_left(rng.random_range(0..n_shards));
        let mut merged = Accumulator::new(config);
        for i in order {
            merged
                .merge(&Accumulator::from_json(&files[i]).unwrap())
                .unwrap();
        }

        let (a, b) = (single.summary(), merged.summary());
        assert_eq!(a.counts, b.counts, "seed {seed}");
        assert_eq!(a.latency, b.latency, "seed {seed}");
        assert_eq!(a.throughput, b.throughput, "seed {seed}");
        assert_eq!(a.tokens, b.tokens, "seed {seed}");
        assert_eq!(a.timeline, b.timeline, "seed {seed}");
        assert_eq!(a, b, "seed {seed}");
        for q in [0.0, 0.1, 0.25, 0.5, 0.75, 0.9, 0.99, 0.9999, 1.0] {
            assert_eq!(single.e2e_quantile_ms(q), merged.e2e_quantile_ms(q));
        }
        assert!(a.latency.itl.is_some() && a.throughput.good_requests.is_some());
        assert!(
            a.operations.contains_key("tpcb: statement 0")
                && a.operations["GET"].hit_ratio.is_some()
        );
    }
}

#[test]
fn shard_file_round_trips_exactly() {
    let mut rng = SmallRng::seed_from_u64(42);
    let mut acc = Accumulator::default();
    for id in 0..500 {
        acc.add(&random_record(&mut rng, id));
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("shard.json");
    acc.write_shard(&path).unwrap();
    let back = Accumulator::read_shard(&path).unwrap();
    assert_eq!(acc.summary(), back.summary());
    assert_eq!(acc.to_json().unwrap(), back.to_json().unwrap());
}

#[test]
fn empty_accumulator_summarizes_to_zeros() {
    let s = Accumulator::default().summary();
    assert_eq!(s.counts.total, 0);
    assert_eq!(s.duration_s, 0.0);
    assert!(s.latency.e2e.is_none());
    assert!(s.timeline.is_empty());
    let merged = {
        let mut a = Accumulator::default();
        a.merge(&Accumulator::from_json(&Accumulator::default().to_json().unwrap()).unwrap())
            .unwrap();
        a.summary()
    };
    assert_eq!(s, merged);
}
