//! Progress bars of long operator runs: rate and ETA on a terminal,
//! nothing when the output is JSON or stderr is not a terminal (a script,
//! a log file), so a machine reading the output never sees bar frames.

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::IsTerminal;

/// Whether a bar may be drawn: stderr is a terminal and the caller does
/// not print JSON.
pub fn visible(json: bool) -> bool {
    !json && std::io::stderr().is_terminal()
}

/// A bar for `total` items (a spinner with a count when the total is
/// unknown), labelled `what`, drawn only when `show`.
pub fn bar(show: bool, total: Option<u64>, what: &str) -> ProgressBar {
    if !show {
        return ProgressBar::hidden();
    }
    let (bar, template) = match total {
        Some(total) => (
            ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr()),
            "{prefix:>10} [{elapsed_precise}] {wide_bar} {human_pos}/{human_len} {per_sec} ETA {eta}",
        ),
        None => (
            ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr()),
            "{prefix:>10} [{elapsed_precise}] {spinner} {human_pos} {per_sec}",
        ),
    };
    if let Ok(style) = ProgressStyle::with_template(template) {
        bar.set_style(style);
    }
    bar.set_prefix(what.to_string());
    bar
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_output_never_draws_a_bar() {
        assert!(!visible(true));
        let hidden = bar(false, Some(10), "x");
        assert!(hidden.is_hidden());
    }
}
