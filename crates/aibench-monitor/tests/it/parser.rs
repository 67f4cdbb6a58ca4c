//! The exposition parser on real bodies, and properties over arbitrary ones.

use std::collections::BTreeMap;

use aibench_monitor::csv::{decode_labels, encode_labels};
use aibench_monitor::expo::{parse, Exposition, Format, MetricType, TextWriter};
use aibench_monitor::scrape::select;
use aibench_monitor::{Filter, TargetKind};
use proptest::prelude::*;

fn data(name: &str) -> String {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn parse_clean(name: &str) -> Exposition {
    let text = data(name);
    let e = parse(&text, Format::detect(None, &text));
    assert!(e.errors.is_empty(), "{name}: {:?}", e.errors);
    e
}

fn value(e: &Exposition, name: &str, labels: &[(&str, &str)]) -> f64 {
    e.find(name, labels)
        .unwrap_or_else(|| panic!("no {name} {labels:?}"))
        .value
}

/// Buckets of every histogram are cumulative and end with +Inf equal to `_count`.
fn check_histograms(e: &Exposition) -> usize {
    let mut series: BTreeMap<(String, String), Vec<(f64, f64)>> = BTreeMap::new();
    let mut counts: BTreeMap<(String, String), f64> = BTreeMap::new();
    for s in &e.samples {
        let Some(f) = e.family_of(s) else { continue };
        if f.kind != MetricType::Histogram {
            continue;
        }
        let mut others: Vec<&(String, String)> =
            s.labels.iter().filter(|(k, _)| k != "le").collect();
        others.sort();
        let key = (f.name.clone(), format!("{others:?}"));
        if s.name.ends_with("_bucket") {
            let le = s.labels.iter().find(|(k, _)| k == "le").expect("le label");
            let le = aibench_monitor::expo::parse_value(&le.1).expect("le value");
            series.entry(key).or_default().push((le, s.value));
        } else if s.name.ends_with("_count") {
            counts.insert(key, s.value);
        }
    }
    for (key, buckets) in &series {
        for w in buckets.windows(2) {
            assert!(w[0].0 < w[1].0 && w[0].1 <= w[1].1, "{key:?}: {w:?}");
        }
        let last = buckets.last().unwrap();
        assert_eq!(last.0, f64::INFINITY, "{key:?}");
        assert_eq!(Some(&last.1), counts.get(key), "{key:?}");
    }
    series.len()
}

#[test]
fn vllm_v1_exposition() {
    let e = parse_clean("vllm-v1.txt");
    assert_eq!(e.format, Format::Prometheus);
    let m = [("model_name", "Qwen/Qwen2.5-0.5B-Instruct")];
    assert_eq!(value(&e, "vllm:num_requests_running", &m), 37.0);
    assert_eq!(value(&e, "vllm:num_requests_waiting", &m), 5.0);
    assert_eq!(
        value(&e, "vllm:kv_cache_usage_perc", &m),
        0.4182795698924731
    );
    assert_eq!(
        value(&e, "vllm:gpu_cache_usage_perc", &m),
        0.4182795698924731
    );
    assert_eq!(
        value(
            &e,
            "vllm:request_success_total",
            &[("finished_reason", "length")]
        ),
        1144.0
    );
    assert_eq!(
        value(
            &e,
            "vllm:time_to_first_token_seconds_bucket",
            &[("le", "+Inf")]
        ),
        1158.0
    );
    let info = e.find("vllm:cache_config_info", &[]).unwrap();
    assert_eq!(info.labels.len(), 15);
    let lora = e.find("vllm:lora_requests_info", &[]).unwrap();
    assert_eq!(
        lora.labels[1],
        ("running_lora_adapters".into(), String::new())
    );
    assert!(check_histograms(&e) >= 10);
    let summary = e.find("http_request_size_bytes_count", &[]).unwrap();
    assert_eq!(e.family_of(summary).unwrap().kind, MetricType::Summary);

    // The vLLM filter keeps scheduler, cache, token and latency series and drops the rest.
    let total = e.samples.len();
    let kept = select(e, TargetKind::Vllm.default_filter()).samples;
    let names: std::collections::BTreeSet<&str> = kept.iter().map(|s| s.name.as_str()).collect();
    for want in [
        "vllm:num_requests_running",
        "vllm:num_requests_waiting",
        "vllm:kv_cache_usage_perc",
        "vllm:gpu_cache_usage_perc",
        "vllm:prompt_tokens_total",
        "vllm:generation_tokens_total",
        "vllm:time_to_first_token_seconds_bucket",
        "vllm:inter_token_latency_seconds_sum",
        "vllm:e2e_request_latency_seconds_count",
        "process_cpu_seconds_total",
    ] {
        assert!(names.contains(want), "{want} dropped");
    }
    for unwanted in [
        "python_gc_objects_collected_total",
        "vllm:cache_config_info",
        "http_requests_total",
    ] {
        assert!(!names.contains(unwanted), "{unwanted} kept");
    }
    assert!(kept.len() < total);
    let all = select(parse_clean("vllm-v1.txt"), Filter::All).samples;
    assert_eq!(all.len(), total);
}

#[test]
fn aibench_sim_exposition() {
    let e = parse_clean("aibench-sim.txt");
    for name in [
        "vllm:num_requests_running",
        "vllm:num_requests_waiting",
        "vllm:kv_cache_usage_perc",
        "vllm:gpu_cache_usage_perc",
        "vllm:generation_tokens_total",
    ] {
        assert!(e.find(name, &[("model_name", "sim")]).is_some(), "{name}");
    }
    assert!(check_histograms(&e) >= 10);
}

#[test]
fn prometheus_and_pushgateway_expositions() {
    for file in ["prometheus-2.42.txt", "pushgateway-1.5.txt"] {
        let e = parse_clean(file);
        let gc = e
            .find("go_gc_duration_seconds", &[("quantile", "0.5")])
            .unwrap();
        assert_eq!(e.family_of(gc).unwrap().kind, MetricType::Summary);
        let count = e.find("go_gc_duration_seconds_count", &[]).unwrap();
        assert_eq!(e.family_name(count), "go_gc_duration_seconds");
        assert!(e.samples.len() > 50, "{file}");
    }
    let e = parse_clean("prometheus-2.42.txt");
    assert!(check_histograms(&e) >= 5);
    assert!(e.find("prometheus_build_info", &[]).is_some());
}

#[test]
fn openmetrics_exposition() {
    let e = parse_clean("openmetrics-vllm.txt");
    assert_eq!(e.format, Format::OpenMetrics);
    assert!(e.eof);
    let kind = |name: &str| e.families.iter().find(|f| f.name == name).unwrap().kind;
    assert_eq!(kind("vllm:prompt_tokens"), MetricType::Counter);
    assert_eq!(kind("queue_depth_distribution"), MetricType::GaugeHistogram);
    assert_eq!(kind("build"), MetricType::Info);
    assert_eq!(kind("feature_flags"), MetricType::StateSet);
    let total = e.find("vllm:prompt_tokens_total", &[]).unwrap();
    assert_eq!(e.family_name(total), "vllm:prompt_tokens");
    let created = e.find("vllm:prompt_tokens_created", &[]).unwrap();
    assert_eq!(e.family_name(created), "vllm:prompt_tokens");
    assert_eq!(e.family_name(e.find("build_info", &[]).unwrap()), "build");
    let gsum = e.find("queue_depth_distribution_gsum", &[]).unwrap();
    assert_eq!(e.family_name(gsum), "queue_depth_distribution");
    let q = e
        .find("rpc_duration_seconds", &[("quantile", "0.99")])
        .unwrap();
    assert!(q.value.is_nan());
    assert_eq!(q.timestamp, Some(1_732_531_917.5));
    let bucket = e
        .find("vllm:time_to_first_token_seconds_bucket", &[("le", "0.02")])
        .unwrap();
    assert_eq!(bucket.value, 165.0);
    let unit = e
        .families
        .iter()
        .find(|f| f.name == "vllm:time_to_first_token_seconds")
        .unwrap();
    assert_eq!(unit.unit.as_deref(), Some("seconds"));
    let odd = e.find("cache_free_bytes", &[]).unwrap();
    assert_eq!(odd.value, f64::NEG_INFINITY);
    assert_eq!(odd.labels[0].1, "C:\\cache");
    assert_eq!(odd.labels[1].1, "line one\nline \"two\"");
    let help = e
        .families
        .iter()
        .find(|f| f.name == "cache_free_bytes")
        .unwrap();
    assert_eq!(
        help.help.as_deref(),
        Some("Bytes free, \"quoted\" and \\ escaped.")
    );
    // The vLLM filter works on OpenMetrics counter names too.
    let kept = select(e, TargetKind::Vllm.default_filter()).samples;
    assert!(kept.iter().any(|s| s.name == "vllm:prompt_tokens_total"));
    assert!(kept.iter().any(|s| s.name == "process_cpu_seconds_total"));
    assert!(!kept.iter().any(|s| s.name == "python_info"));
}

#[test]
fn redis_info_reply() {
    let s = aibench_monitor::scrape::redis::parse_info(&data("redis-7.0-info.txt"));
    let find = |n: &str| s.iter().find(|x| x.name == n);
    assert!(find("redis_connected_clients").is_some());
    assert!(find("redis_used_memory").is_some());
    assert!(find("redis_instantaneous_ops_per_sec").is_some());
    let get = s
        .iter()
        .find(|x| x.name == "redis_commands_calls" && x.labels[0].1 == "get")
        .unwrap();
    assert_eq!(get.value, 1.0);
    assert_eq!(find("redis_db_keys").unwrap().labels[0].1, "db0");
    assert!(find("redis_redis_version").is_none());
}

/// Text that looks like the format, to reach deep into the parser.
fn format_like() -> impl Strategy<Value = String> {
    proptest::collection::vec(
        prop_oneof![
            Just("# HELP ".to_string()),
            Just("# TYPE ".to_string()),
            Just("# UNIT ".to_string()),
            Just("# EOF".to_string()),
            Just("counter".to_string()),
            Just("histogram".to_string()),
            Just("_bucket".to_string()),
            Just("_total".to_string()),
            Just("{".to_string()),
            Just("}".to_string()),
            Just("=".to_string()),
            Just(",".to_string()),
            Just("\"".to_string()),
            Just("\\".to_string()),
            Just("\n".to_string()),
            Just(" ".to_string()),
            Just("\t".to_string()),
            Just("le".to_string()),
            Just("+Inf".to_string()),
            Just("NaN".to_string()),
            Just(" # {".to_string()),
            "[a-z_:]{1,8}",
            "[0-9.eE+-]{1,8}",
            any::<char>().prop_map(|c| c.to_string()),
        ],
        0..60,
    )
    .prop_map(|parts| parts.concat())
}

fn label_text() -> impl Strategy<Value = String> {
    "(?s).{0,12}"
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn never_panics_on_any_text(text in "(?s).{0,400}") {
        let _ = parse(&text, Format::Prometheus);
        let _ = parse(&text, Format::OpenMetrics);
        let _ = Format::detect(None, &text);
    }

    #[test]
    fn never_panics_on_format_like_text(text in format_like()) {
        let a = parse(&text, Format::Prometheus);
        let _ = parse(&text, Format::OpenMetrics);
        for s in &a.samples {
            let _ = a.family_name(s);
        }
    }

    #[test]
    fn written_samples_read_back(
        name in "[a-zA-Z_:][a-zA-Z0-9_:]{0,20}",
        labels in proptest::collection::btree_map("[a-zA-Z_][a-zA-Z0-9_]{0,8}", label_text(), 0..5),
        value in prop_oneof![any::<f64>(), Just(f64::NAN), Just(f64::INFINITY), Just(f64::NEG_INFINITY)],
    ) {
        let pairs: Vec<(&str, &str)> = labels.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let mut w = TextWriter::new();
        w.family(&name, MetricType::Gauge, "help");
        w.sample(&name, &pairs, value);
        let e = parse(&w.finish(), Format::Prometheus);
        prop_assert!(e.errors.is_empty(), "{:?}", e.errors);
        prop_assert_eq!(e.samples.len(), 1);
        let s = &e.samples[0];
        prop_assert_eq!(&s.name, &name);
        let got: Vec<(String, String)> = s.labels.clone();
        let want: Vec<(String, String)> = labels.into_iter().collect();
        prop_assert_eq!(got, want);
        prop_assert!(s.value == value || (s.value.is_nan() && value.is_nan()));
        prop_assert_eq!(s.family, Some(0));
    }

    #[test]
    fn csv_labels_round_trip(labels in proptest::collection::btree_map("(?s).{1,8}", "(?s).{0,12}", 0..5)) {
        let pairs: Vec<(String, String)> = labels.into_iter().collect();
        let encoded = encode_labels(&pairs);
        let line = format!("1.0,m,{},2", aibench_monitor::csv::field(&encoded));
        let fields = aibench_monitor::csv::split_line(&line);
        prop_assert_eq!(fields.len(), 4);
        prop_assert_eq!(decode_labels(&fields[2]), pairs);
    }
}
