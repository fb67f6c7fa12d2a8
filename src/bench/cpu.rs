//! CPU time of this whole process (every thread: the load generator, the
//! servers, the services, and the embedded broker when there is one), from
//! `getrusage(RUSAGE_SELF)`. On a machine whose cores are all busy, a
//! phase's throughput follows its CPU per request, so the HTTP bench reports
//! both: a phase that is slower than another for the same CPU waits on
//! something, one that costs more CPU does more work.

use std::time::Duration;

/// User plus system CPU time this process has used so far, or `None` where
/// the call fails.
pub fn process_cpu() -> Option<Duration> {
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: `usage` is a valid, writable rusage; getrusage only writes it.
    let status = unsafe { libc::getrusage(libc::RUSAGE_SELF, usage.as_mut_ptr()) };
    if status != 0 {
        return None;
    }
    // SAFETY: getrusage returned 0, so it filled the struct (it was zeroed
    // before anyway).
    let usage = unsafe { usage.assume_init() };
    let time = |t: libc::timeval| {
        Duration::from_secs(t.tv_sec.max(0) as u64) + Duration::from_micros(t.tv_usec.max(0) as u64)
    };
    Some(time(usage.ru_utime) + time(usage.ru_stime))
}

/// The CPU this process used since `before` (a [`process_cpu`] reading),
/// when both readings worked.
pub fn cpu_since(before: Option<Duration>) -> Option<Duration> {
    process_cpu()
        .zip(before)
        .map(|(now, before)| now.saturating_sub(before))
}

/// What a phase's CPU time `cpu` comes to: µs per request of the `sent`
/// requests, and cores kept busy over its `seconds` of wall time. Each is
/// `None` when unmeasured or when there is nothing to divide by.
pub fn per_request(cpu: Option<Duration>, sent: usize, seconds: f64) -> (Option<f64>, Option<f64>) {
    let cpu = cpu.map(|cpu| cpu.as_secs_f64());
    (
        cpu.filter(|_| sent > 0).map(|cpu| cpu * 1e6 / sent as f64),
        cpu.filter(|_| seconds > 0.0).map(|cpu| cpu / seconds),
    )
}

#[cfg(test)]
mod tests {
    use super::{per_request, process_cpu};
    use std::time::Duration;

    #[test]
    fn cpu_divides_into_per_request_and_cores_busy() {
        let two_seconds = Some(Duration::from_secs(2));
        assert_eq!(
            per_request(two_seconds, 1000, 4.0),
            (Some(2000.0), Some(0.5))
        );
        assert_eq!(per_request(two_seconds, 0, 0.0), (None, None));
        assert_eq!(per_request(None, 1000, 4.0), (None, None));
    }

    #[test]
    fn work_on_this_thread_counts() {
        let before = process_cpu().expect("getrusage");
        // Spin until the clock moves: CPU time advances in ticks of a few
        // ms at most, so this ends as soon as one tick passes.
        let mut x = 0u64;
        let after = loop {
            for i in 0..100_000u64 {
                x = x.wrapping_mul(31).wrapping_add(i);
            }
            std::hint::black_box(x);
            let now = process_cpu().expect("getrusage");
            if now > before {
                break now;
            }
        };
        assert!(after > before);
    }
}
