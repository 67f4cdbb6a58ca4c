//! The host sampler: CPU, memory, network, disk and load from `/proc`.
//!
//! Series (rates are over the interval since the previous sample, so the first sample has
//! levels only):
//!
//! | series                                        | labels                 | unit        |
//! |-----------------------------------------------|------------------------|-------------|
//! | `host_cpu_utilisation_ratio`                  | `cpu` = `total`, `0`.. | 0..1        |
//! | `host_cpu_mode_ratio`                         | `mode` = user, system, iowait, steal | 0..1 of all CPUs |
//! | `host_memory_total_bytes`, `host_memory_available_bytes`, `host_memory_used_bytes`, `host_swap_used_bytes` | | bytes |
//! | `host_network_receive_bytes_per_second`, `host_network_transmit_bytes_per_second` | `device` | bytes/s |
//! | `host_disk_read_bytes_per_second`, `host_disk_write_bytes_per_second` | `device` (whole disks) | bytes/s |
//! | `host_load1`, `host_load5`, `host_load15`     |                        | runnable tasks |
//! | `process_cpu_cores`                           | `process`              | cores busy  |
//! | `process_resident_memory_bytes`, `process_threads` | `process`         | bytes, threads |
//!
//! The `process_*` series are the watched processes ([`Watch`]): a service's process group, or
//! aibench itself with its client shards, so that a busy host can be told apart from a busy
//! service.
//!
//! Utilisation counts every state but idle and iowait as busy.

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};
use std::time::Instant;

use crate::expo::Sample;

/// Disks are counted in 512-byte sectors in `/proc/diskstats`, whatever their block size.
const SECTOR: f64 = 512.0;

#[derive(Clone, Copy, Debug, Default, PartialEq)]
struct CpuTimes {
    user: u64,
    nice: u64,
    system: u64,
    idle: u64,
    iowait: u64,
    irq: u64,
    softirq: u64,
    steal: u64,
}

impl CpuTimes {
    fn total(&self) -> u64 {
        self.user
            + self.nice
            + self.system
            + self.idle
            + self.iowait
            + self.irq
            + self.softirq
            + self.steal
    }

    fn idle_all(&self) -> u64 {
        self.idle + self.iowait
    }
}

/// Processes to sample, under a name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Watch {
    /// Every process of this process group (a local service and its children).
    Group(u32),
    /// This process and those of its children that share its process group (aibench and its
    /// client shards, not the services it started in groups of their own).
    Tree(u32),
}

/// One process's line of `/proc/<pid>/stat`, the fields used.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
struct ProcStat {
    pid: u32,
    ppid: u32,
    pgrp: u32,
    /// utime + stime, clock ticks.
    ticks: u64,
    threads: u64,
    /// Resident set, pages.
    rss: u64,
}

fn parse_proc_stat(pid: u32, text: &str) -> Option<ProcStat> {
    // The command name is in parentheses and may hold spaces: fields follow the last `)`.
    let rest = &text[text.rfind(')')? + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let n = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok());
    // After the name: state(0) ppid(1) pgrp(2) ... utime(11) stime(12) ... num_threads(17)
    // ... rss(21).
    Some(ProcStat {
        pid,
        ppid: n(1)? as u32,
        pgrp: n(2)? as u32,
        ticks: n(11)? + n(12)?,
        threads: n(17)?,
        rss: n(21)?,
    })
}

#[derive(Clone, Debug)]
struct Counters {
    at: Instant,
    /// CPU ticks of each watched name.
    procs: BTreeMap<String, u64>,
    /// `cpu` (all) first, then `cpu0`, `cpu1`, ...
    cpus: Vec<(String, CpuTimes)>,
    net: BTreeMap<String, (u64, u64)>,
    disk: BTreeMap<String, (u64, u64)>,
}

/// Samples the host where it runs.
pub struct HostSampler {
    proc_root: PathBuf,
    sys_root: PathBuf,
    prev: Option<Counters>,
    watched: Vec<(String, Watch)>,
}

impl Default for HostSampler {
    fn default() -> Self {
        HostSampler::new()
    }
}

impl HostSampler {
    pub fn new() -> HostSampler {
        HostSampler::with_roots("/proc", "/sys")
    }

    /// Read from other roots (tests point these at fixtures).
    pub fn with_roots(proc_root: impl Into<PathBuf>, sys_root: impl Into<PathBuf>) -> HostSampler {
        HostSampler {
            proc_root: proc_root.into(),
            sys_root: sys_root.into(),
            prev: None,
            watched: Vec::new(),
        }
    }

    /// Also sample these processes, each under its name.
    pub fn watching(mut self, watched: Vec<(String, Watch)>) -> HostSampler {
        self.watched = watched;
        self
    }

    /// CPU ticks, threads and resident pages of each watched name.
    fn processes(&self) -> BTreeMap<String, (u64, u64, u64)> {
        let mut out = BTreeMap::new();
        if self.watched.is_empty() {
            return out;
        }
        let Ok(dir) = std::fs::read_dir(&self.proc_root) else {
            return out;
        };
        let stats: Vec<ProcStat> = dir
            .filter_map(|e| e.ok())
            .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
            .filter_map(|pid| {
                let text =
                    std::fs::read_to_string(self.proc_root.join(pid.to_string()).join("stat"))
                        .ok()?;
                parse_proc_stat(pid, &text)
            })
            .collect();
        for (name, watch) in &self.watched {
            let mine = |p: &ProcStat| match *watch {
                Watch::Group(g) => p.pgrp == g,
                Watch::Tree(root) => {
                    p.pid == root
                        || (p.ppid == root
                            && stats.iter().any(|r| r.pid == root && r.pgrp == p.pgrp))
                }
            };
            let e = out.entry(name.clone()).or_insert((0, 0, 0));
            for p in stats.iter().filter(|p| mine(p)) {
                e.0 += p.ticks;
                e.1 += p.threads;
                e.2 += p.rss;
            }
        }
        out
    }

    /// One sample at `now`. Fails only when `/proc/stat` cannot be read; other files that are
    /// missing just leave their series out.
    pub fn sample(&mut self, now: Instant) -> io::Result<Vec<Sample>> {
        let stat = std::fs::read_to_string(self.proc_root.join("stat"))?;
        let read =
            |name: &str| std::fs::read_to_string(self.proc_root.join(name)).unwrap_or_default();
        let procs = self.processes();
        let counters = Counters {
            at: now,
            procs: procs.iter().map(|(k, v)| (k.clone(), v.0)).collect(),
            cpus: parse_stat(&stat),
            net: parse_net_dev(&read("net/dev")),
            disk: parse_diskstats(&read("diskstats"), &self.whole_disks()),
        };
        let mut out = Vec::new();
        levels(&read("meminfo"), &read("loadavg"), &mut out);
        let page = page_size();
        for (name, (_, threads, rss)) in &procs {
            out.push(s("process_threads", &[("process", name)], *threads as f64));
            out.push(s(
                "process_resident_memory_bytes",
                &[("process", name)],
                (*rss * page) as f64,
            ));
        }
        if let Some(prev) = &self.prev {
            rates(prev, &counters, &mut out);
        }
        self.prev = Some(counters);
        Ok(out)
    }

    /// Names under `/sys/block` (whole disks, not partitions), minus loop and RAM devices.
    /// Empty when `/sys/block` cannot be read, which means "take every device".
    fn whole_disks(&self) -> Vec<String> {
        std::fs::read_dir(self.sys_root.join("block"))
            .map(|dir| {
                dir.filter_map(|e| e.ok())
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default()
    }
}

fn s(name: &str, labels: &[(&str, &str)], value: f64) -> Sample {
    Sample::new(
        name,
        labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        value,
    )
}

fn levels(meminfo: &str, loadavg: &str, out: &mut Vec<Sample>) {
    let mem = parse_meminfo(meminfo);
    let kib = |k: &str| mem.get(k).map(|v| *v as f64 * 1024.0);
    if let (Some(total), Some(avail)) = (kib("MemTotal"), kib("MemAvailable")) {
        out.push(s("host_memory_total_bytes", &[], total));
        out.push(s("host_memory_available_bytes", &[], avail));
        out.push(s("host_memory_used_bytes", &[], (total - avail).max(0.0)));
    }
    if let (Some(total), Some(free)) = (kib("SwapTotal"), kib("SwapFree")) {
        out.push(s("host_swap_used_bytes", &[], (total - free).max(0.0)));
    }
    let mut load = loadavg.split_whitespace();
    for name in ["host_load1", "host_load5", "host_load15"] {
        if let Some(v) = load.next().and_then(|x| x.parse::<f64>().ok()) {
            out.push(s(name, &[], v));
        }
    }
}

fn page_size() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let v = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if v > 0 {
        v as u64
    } else {
        4096
    }
}

fn clock_ticks() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let v = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if v > 0 {
        v as f64
    } else {
        100.0
    }
}

fn rates(prev: &Counters, now: &Counters, out: &mut Vec<Sample>) {
    let dt = now.at.saturating_duration_since(prev.at).as_secs_f64();
    if dt > 0.0 {
        let hz = clock_ticks();
        for (name, ticks) in &now.procs {
            if let Some(old) = prev.procs.get(name) {
                let cores = ticks.saturating_sub(*old) as f64 / hz / dt;
                out.push(s("process_cpu_cores", &[("process", name)], cores));
            }
        }
    }
    for (name, cur) in &now.cpus {
        let Some((_, old)) = prev.cpus.iter().find(|(n, _)| n == name) else {
            continue;
        };
        let total = cur.total().saturating_sub(old.total());
        if total == 0 {
            continue;
        }
        let idle = cur.idle_all().saturating_sub(old.idle_all());
        let busy = total.saturating_sub(idle) as f64 / total as f64;
        let label = name
            .strip_prefix("cpu")
            .filter(|n| !n.is_empty())
            .unwrap_or("total");
        out.push(s("host_cpu_utilisation_ratio", &[("cpu", label)], busy));
        if label == "total" {
            let part = |a: u64, b: u64| a.saturating_sub(b) as f64 / total as f64;
            out.push(s(
                "host_cpu_mode_ratio",
                &[("mode", "user")],
                part(cur.user + cur.nice, old.user + old.nice),
            ));
            out.push(s(
                "host_cpu_mode_ratio",
                &[("mode", "system")],
                part(
                    cur.system + cur.irq + cur.softirq,
                    old.system + old.irq + old.softirq,
                ),
            ));
            out.push(s(
                "host_cpu_mode_ratio",
                &[("mode", "iowait")],
                part(cur.iowait, old.iowait),
            ));
            out.push(s(
                "host_cpu_mode_ratio",
                &[("mode", "steal")],
                part(cur.steal, old.steal),
            ));
        }
    }
    if dt <= 0.0 {
        return;
    }
    let per_s = |a: u64, b: u64| a.saturating_sub(b) as f64 / dt;
    for (dev, (rx, tx)) in &now.net {
        if let Some((orx, otx)) = prev.net.get(dev) {
            out.push(s(
                "host_network_receive_bytes_per_second",
                &[("device", dev)],
                per_s(*rx, *orx),
            ));
            out.push(s(
                "host_network_transmit_bytes_per_second",
                &[("device", dev)],
                per_s(*tx, *otx),
            ));
        }
    }
    for (dev, (r, w)) in &now.disk {
        if let Some((or, ow)) = prev.disk.get(dev) {
            out.push(s(
                "host_disk_read_bytes_per_second",
                &[("device", dev)],
                per_s(*r, *or) * SECTOR,
            ));
            out.push(s(
                "host_disk_write_bytes_per_second",
                &[("device", dev)],
                per_s(*w, *ow) * SECTOR,
            ));
        }
    }
}

fn parse_stat(text: &str) -> Vec<(String, CpuTimes)> {
    text.lines()
        .filter(|l| l.starts_with("cpu"))
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            let name = f.next()?.to_string();
            let v: Vec<u64> = f.map(|x| x.parse().unwrap_or(0)).collect();
            let at = |i: usize| v.get(i).copied().unwrap_or(0);
            Some((
                name,
                CpuTimes {
                    user: at(0),
                    nice: at(1),
                    system: at(2),
                    idle: at(3),
                    iowait: at(4),
                    irq: at(5),
                    softirq: at(6),
                    steal: at(7),
                },
            ))
        })
        .collect()
}

fn parse_meminfo(text: &str) -> BTreeMap<String, u64> {
    text.lines()
        .filter_map(|l| {
            let (k, rest) = l.split_once(':')?;
            let v = rest.split_whitespace().next()?.parse().ok()?;
            Some((k.trim().to_string(), v))
        })
        .collect()
}

/// Interface -> (received bytes, transmitted bytes).
fn parse_net_dev(text: &str) -> BTreeMap<String, (u64, u64)> {
    text.lines()
        .filter_map(|l| {
            let (name, rest) = l.split_once(':')?;
            let f: Vec<u64> = rest
                .split_whitespace()
                .map(|x| x.parse().unwrap_or(0))
                .collect();
            Some((name.trim().to_string(), (*f.first()?, *f.get(8)?)))
        })
        .collect()
}

/// Device -> (sectors read, sectors written), whole disks only (loop and RAM devices never).
fn parse_diskstats(text: &str, whole_disks: &[String]) -> BTreeMap<String, (u64, u64)> {
    text.lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let name = f.get(2)?.to_string();
            if name.starts_with("loop") || name.starts_with("ram") {
                return None;
            }
            if !whole_disks.is_empty() && !whole_disks.contains(&name) {
                return None;
            }
            let read = f.get(5)?.parse().ok()?;
            let written = f.get(9)?.parse().ok()?;
            Some((name, (read, written)))
        })
        .collect()
}

/// Whether this machine has a readable `/proc/stat`.
pub fn available(proc_root: &Path) -> bool {
    proc_root.join("stat").is_file()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn write_fixture(dir: &Path, stat: &str, net: &str, disk: &str) {
        std::fs::create_dir_all(dir.join("proc/net")).unwrap();
        std::fs::create_dir_all(dir.join("sys/block/sda")).unwrap();
        std::fs::write(dir.join("proc/stat"), stat).unwrap();
        std::fs::write(dir.join("proc/net/dev"), net).unwrap();
        std::fs::write(dir.join("proc/diskstats"), disk).unwrap();
        std::fs::write(
            dir.join("proc/meminfo"),
            "MemTotal:       16000000 kB\nMemFree:  1 kB\nMemAvailable:   12000000 kB\nSwapTotal: 100 kB\nSwapFree: 40 kB\n",
        )
        .unwrap();
        std::fs::write(dir.join("proc/loadavg"), "0.50 0.25 0.10 1/100 42\n").unwrap();
    }

    const NET_HEAD: &str = "Inter-|   Receive                                                |  Transmit\n face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed\n";

    #[test]
    fn rates_and_levels_from_fixtures() {
        let tmp = tempfile::tempdir().unwrap();
        let d = tmp.path();
        write_fixture(
            d,
            "cpu  100 0 100 800 0 0 0 0 0 0\ncpu0 50 0 50 400 0 0 0 0 0 0\ncpu1 50 0 50 400 0 0 0 0 0 0\nintr 1\n",
            &format!("{NET_HEAD}    lo: 1000 10 0 0 0 0 0 0 2000 20 0 0 0 0 0 0\n"),
            "   8       0 sda 10 0 100 0 20 0 200 0 0 0 0\n   8       1 sda1 10 0 100 0 20 0 200 0 0 0 0\n   7       0 loop0 1 0 8 0 0 0 0 0 0 0 0\n",
        );
        let mut h = HostSampler::with_roots(d.join("proc"), d.join("sys"));
        let t0 = Instant::now();
        let first = h.sample(t0).unwrap();
        assert!(first
            .iter()
            .all(|s| !s.name.contains("per_second") && !s.name.contains("cpu")));
        let mem_used = first
            .iter()
            .find(|s| s.name == "host_memory_used_bytes")
            .unwrap();
        assert_eq!(mem_used.value, 4_000_000.0 * 1024.0);
        assert_eq!(
            first.iter().find(|s| s.name == "host_load5").unwrap().value,
            0.25
        );
        assert_eq!(
            first
                .iter()
                .find(|s| s.name == "host_swap_used_bytes")
                .unwrap()
                .value,
            60.0 * 1024.0
        );

        write_fixture(
            d,
            "cpu  200 0 200 900 100 0 0 0 0 0\ncpu0 150 0 50 400 0 0 0 0 0 0\ncpu1 50 0 150 500 100 0 0 0 0 0\n",
            &format!("{NET_HEAD}    lo: 3000 10 0 0 0 0 0 0 6000 20 0 0 0 0 0 0\n"),
            "   8       0 sda 10 0 300 0 20 0 1200 0 0 0 0\n   8       1 sda1 10 0 300 0 20 0 1200 0 0 0 0\n",
        );
        let second = h.sample(t0 + Duration::from_secs(2)).unwrap();
        let get = |name: &str, label: (&str, &str)| {
            second
                .iter()
                .find(|s| {
                    s.name == name && s.labels.iter().any(|(k, v)| k == label.0 && v == label.1)
                })
                .map(|s| s.value)
        };
        // total: 400 ticks, idle+iowait 200 -> 0.5 busy.
        assert_eq!(
            get("host_cpu_utilisation_ratio", ("cpu", "total")),
            Some(0.5)
        );
        assert_eq!(get("host_cpu_utilisation_ratio", ("cpu", "0")), Some(1.0));
        assert_eq!(
            get("host_cpu_utilisation_ratio", ("cpu", "1")),
            Some(100.0 / 300.0)
        );
        assert_eq!(get("host_cpu_mode_ratio", ("mode", "iowait")), Some(0.25));
        assert_eq!(
            get("host_network_receive_bytes_per_second", ("device", "lo")),
            Some(1000.0)
        );
        assert_eq!(
            get("host_network_transmit_bytes_per_second", ("device", "lo")),
            Some(2000.0)
        );
        assert_eq!(
            get("host_disk_read_bytes_per_second", ("device", "sda")),
            Some(100.0 * 512.0)
        );
        assert_eq!(
            get("host_disk_write_bytes_per_second", ("device", "sda")),
            Some(500.0 * 512.0)
        );
        assert_eq!(
            get("host_disk_read_bytes_per_second", ("device", "sda1")),
            None
        );
    }

    /// A `/proc/<pid>/stat` line: pid, (comm), state, ppid, pgrp, then utime and stime as
    /// fields 14 and 15, num_threads 20, rss 24.
    fn proc_stat(pid: u32, comm: &str, ppid: u32, pgrp: u32, ticks: u64, threads: u64) -> String {
        let mut f = vec!["0".to_string(); 22];
        f[0] = "S".into();
        f[1] = ppid.to_string();
        f[2] = pgrp.to_string();
        f[11] = ticks.to_string();
        f[12] = "0".into();
        f[17] = threads.to_string();
        f[21] = "100".into();
        format!("{pid} ({comm}) {}\n", f.join(" "))
    }

    #[test]
    fn watched_processes_are_summed_by_group_and_tree() {
        let tmp = tempfile::tempdir().unwrap();
        let d = tmp.path();
        write_fixture(d, "cpu  100 0 100 800 0 0 0 0 0 0\n", NET_HEAD, "");
        let procs = |ticks: u64| {
            // aibench (10, group 10) with a client shard (11) and a service it started in a
            // group of its own (20, with a worker 21); an unrelated process (30).
            for (pid, comm, ppid, pgrp, t) in [
                (10, "aibench", 1, 10, ticks),
                (11, "aibench client", 10, 10, ticks),
                (20, "sim (x)", 10, 20, 2 * ticks),
                (21, "worker", 20, 20, 2 * ticks),
                (30, "other", 1, 30, 50 * ticks),
            ] {
                std::fs::create_dir_all(d.join(format!("proc/{pid}"))).unwrap();
                std::fs::write(
                    d.join(format!("proc/{pid}/stat")),
                    proc_stat(pid, comm, ppid, pgrp, t, 2),
                )
                .unwrap();
            }
        };
        procs(0);
        let mut h = HostSampler::with_roots(d.join("proc"), d.join("sys")).watching(vec![
            ("aibench".into(), Watch::Tree(10)),
            ("llm".into(), Watch::Group(20)),
        ]);
        let t0 = Instant::now();
        let first = h.sample(t0).unwrap();
        let find = |v: &[Sample], name: &str, labels: &str| {
            v.iter()
                .find(|s| {
                    s.name == name
                        && s.labels
                            .iter()
                            .map(|(k, v)| format!("{k}={v}"))
                            .collect::<Vec<_>>()
                            == [labels]
                })
                .map(|s| s.value)
        };
        assert_eq!(find(&first, "process_threads", "process=llm"), Some(4.0));
        assert_eq!(
            find(&first, "process_resident_memory_bytes", "process=aibench"),
            Some((200 * page_size()) as f64)
        );
        let hz = clock_ticks() as u64;
        procs(hz);
        let second = h.sample(t0 + Duration::from_secs(1)).unwrap();
        let cores = |p: &str| find(&second, "process_cpu_cores", p).unwrap();
        assert!((cores("process=aibench") - 2.0).abs() < 1e-9);
        assert!((cores("process=llm") - 4.0).abs() < 1e-9);
    }

    #[test]
    fn garbage_files_do_not_panic() {
        let tmp = tempfile::tempdir().unwrap();
        let d = tmp.path();
        write_fixture(d, "cpu x y\ncpu0\n", "garbage\n:\n", "1 2\n\n");
        let mut h = HostSampler::with_roots(d.join("proc"), d.join("sys"));
        h.sample(Instant::now()).unwrap();
        h.sample(Instant::now()).unwrap();
    }

    #[test]
    fn the_real_proc_can_be_sampled() {
        if !available(Path::new("/proc")) {
            return;
        }
        let mut h = HostSampler::new();
        h.sample(Instant::now()).unwrap();
        std::thread::sleep(Duration::from_millis(50));
        let s = h.sample(Instant::now()).unwrap();
        let total = s
            .iter()
            .find(|x| x.name == "host_cpu_utilisation_ratio" && x.labels[0].1 == "total");
        if let Some(t) = total {
            assert!((0.0..=1.0).contains(&t.value));
        }
        assert!(s.iter().any(|x| x.name == "host_memory_available_bytes"));
    }
}
