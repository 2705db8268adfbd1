//! CPU time of this process's threads, by thread name: how busy the SIP
//! engine, the relay, the receivers and the API are (a busy ratio is its
//! rate, `rate(sbc_thread_cpu_seconds_total[1m])`). Threads that block
//! while idle (the socket backend's) use CPU only for work; a DPDK poll
//! lcore spins at 100%, its busy ratio is `busy_polls / polls`.

use std::collections::BTreeMap;

/// Clock ticks per second of `/proc/<pid>/task/<tid>/stat` times: USER_HZ,
/// 100 on every Linux architecture (proc(5), `sysconf(_SC_CLK_TCK)`).
const TICKS_PER_SECOND: f64 = 100.0;

/// User + system CPU seconds of this process's threads, summed by thread
/// name (`sip-engine`, `media-relay`, `tokio-runtime-w`, EAL's
/// `dpdk-worker1`, ...), read from `/proc/self/task/*/stat` (proc(5): the
/// name in parentheses is field 2, utime and stime fields 14 and 15).
/// Empty where `/proc` cannot be read.
pub fn cpu_seconds() -> BTreeMap<String, f64> {
    let mut by_name = BTreeMap::new();
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return by_name;
    };
    for task in tasks.flatten() {
        let Ok(stat) = std::fs::read_to_string(task.path().join("stat")) else {
            continue;
        };
        if let Some((name, ticks)) = parse_stat(&stat) {
            *by_name.entry(name.to_string()).or_insert(0.0) += ticks as f64 / TICKS_PER_SECOND;
        }
    }
    by_name
}

/// (name, utime + stime in ticks) of one `stat` line. The name may hold
/// spaces and parentheses: it ends at the last `)`.
fn parse_stat(stat: &str) -> Option<(&str, u64)> {
    let open = stat.find('(')?;
    let close = stat.rfind(')')?;
    let name = stat.get(open + 1..close)?;
    // After the name: field 3 (state) is the first; utime and stime are
    // fields 14 and 15.
    let mut rest = stat.get(close + 1..)?.split_whitespace().skip(11);
    let utime: u64 = rest.next()?.parse().ok()?;
    let stime: u64 = rest.next()?.parse().ok()?;
    Some((name, utime + stime))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stat_line_gives_the_name_and_its_ticks() {
        let line = "4242 (sip engine) R 1 2 3 4 5 6 7 8 9 10 150 25 0 0 20 0 1 0";
        assert_eq!(parse_stat(line), Some(("sip engine", 175)));
        assert_eq!(parse_stat("1 (x"), None);
        // This process has threads, the test's own among them.
        let now = cpu_seconds();
        assert!(!now.is_empty());
        assert!(now.values().all(|s| *s >= 0.0));
    }
}
