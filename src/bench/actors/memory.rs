//! Resident memory of this process, from `/proc/self/statm`, read at
//! checkpoints and by a sampler thread that keeps the peak.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

/// The process's resident set in bytes, or `None` where `/proc` is missing
/// (not Linux) or unreadable.
pub fn resident_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    // Fields: size resident shared text lib data dt, in pages.
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * page_size())
}

#[cfg(unix)]
fn page_size() -> u64 {
    // SAFETY: sysconf reads a constant of the system and has no
    // preconditions.
    let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    u64::try_from(size).ok().filter(|&s| s > 0).unwrap_or(4096)
}

#[cfg(not(unix))]
fn page_size() -> u64 {
    4096
}

/// Bytes as mebibytes, for the report.
pub fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

/// A thread that reads the resident set every `every` and keeps the
/// highest value, until stopped. A thread of its own, so that a busy actix
/// arbiter cannot delay the samples.
pub struct PeakSampler {
    peak: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<()>>,
}

impl PeakSampler {
    /// Starts sampling; the peak starts at the current value.
    pub fn start(every: Duration) -> Self {
        let peak = Arc::new(AtomicU64::new(resident_bytes().unwrap_or(0)));
        let stop = Arc::new(AtomicBool::new(false));
        let handle = {
            let (peak, stop) = (peak.clone(), stop.clone());
            std::thread::Builder::new()
                .name("bench-rss".into())
                .spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        if let Some(now) = resident_bytes() {
                            peak.fetch_max(now, Ordering::Relaxed);
                        }
                        std::thread::park_timeout(every);
                    }
                })
                .ok()
        };
        Self { peak, stop, handle }
    }

    /// The highest resident set seen so far (0 when it cannot be read).
    pub fn peak(&self) -> u64 {
        if let Some(now) = resident_bytes() {
            self.peak.fetch_max(now, Ordering::Relaxed);
        }
        self.peak.load(Ordering::Relaxed)
    }
}

impl Drop for PeakSampler {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(handle) = self.handle.take() {
            handle.thread().unpark();
            let _ = handle.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(target_os = "linux")]
    #[test]
    fn the_peak_sees_memory_that_was_touched() {
        let before = resident_bytes().expect("statm on Linux");
        let sampler = PeakSampler::start(Duration::from_millis(1));
        // 64 MiB written page by page, so it is resident, not just reserved.
        let block = vec![1u8; 64 << 20];
        let peak = sampler.peak();
        assert_eq!(
            block
                .iter()
                .step_by(4096)
                .map(|&b| b as usize)
                .sum::<usize>(),
            16384
        );
        assert!(peak >= before + (32 << 20), "peak {peak}, before {before}");
    }
}
