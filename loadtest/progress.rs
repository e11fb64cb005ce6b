//! The progress bar on stderr: cards being set up, then each run's seconds
//! and payments/s so far. It is drawn only when stderr is a terminal (and
//! not with `--quiet`), so piped output, tests and `--json` stay clean.

use crate::record::Recorder;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

/// How often the bar's figures are refreshed during a run.
const TICK: Duration = Duration::from_millis(200);

#[derive(Clone, Copy)]
pub struct Progress {
    quiet: bool,
}

impl Progress {
    pub fn new(quiet: bool) -> Progress {
        Progress { quiet }
    }

    /// Issuing and activating `cards` cards.
    pub fn setup(&self, cards: u64) -> ProgressBar {
        self.bar(
            cards,
            "{prefix} [{bar:25}] {human_pos}/{human_len} cards, {eta} left",
            "setup".to_string(),
        )
    }

    /// One run of `duration`; the bar counts milliseconds.
    pub fn run(&self, label: &str, duration: Duration) -> ProgressBar {
        self.bar(
            duration.as_millis() as u64,
            "{prefix} [{bar:25}] {elapsed}  {msg}",
            format!("{label} ({}s)", duration.as_secs()),
        )
    }

    fn bar(&self, len: u64, template: &str, prefix: String) -> ProgressBar {
        // ProgressDrawTarget::stderr() is itself hidden when stderr is not
        // a terminal (or TERM=dumb).
        let target = if self.quiet {
            ProgressDrawTarget::hidden()
        } else {
            ProgressDrawTarget::stderr()
        };
        let bar = ProgressBar::with_draw_target(Some(len), target);
        // A template mistake must not stop a load run: fall back to the
        // plain bar.
        let style = ProgressStyle::with_template(template)
            .map(|s| s.progress_chars("=> "))
            .unwrap_or_else(|_| ProgressStyle::default_bar());
        bar.set_style(style);
        bar.set_prefix(prefix);
        bar
    }
}

/// The recorder, even if a lane panicked while holding it: what the other
/// lanes recorded is still worth reporting.
pub fn lock(recorder: &Mutex<Recorder>) -> MutexGuard<'_, Recorder> {
    recorder.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Moves `bar` along until `end`, showing payments/s so far, then clears
/// it. `started` is when the run's clock started.
pub async fn watch(
    bar: &ProgressBar,
    recorder: &Mutex<Recorder>,
    started: Instant,
    end: Instant,
    extra: &str,
) {
    loop {
        let now = Instant::now();
        if now >= end {
            break;
        }
        let elapsed = now.saturating_duration_since(started);
        if !elapsed.is_zero() {
            let payments = lock(recorder).payments_answered();
            bar.set_position(elapsed.as_millis() as u64);
            bar.set_message(format!(
                "{:.0} payments/s{extra}",
                payments as f64 / elapsed.as_secs_f64()
            ));
        }
        tokio::time::sleep(TICK.min(end - now)).await;
    }
    bar.finish_and_clear();
}

/// Waits for every lane of a run, then takes what they recorded and how
/// long the run took (the lanes' last answers included).
pub async fn collect(
    lanes: Vec<tokio::task::JoinHandle<()>>,
    recorder: &Mutex<Recorder>,
    started: Instant,
) -> (Recorder, Duration) {
    for lane in lanes {
        if let Err(error) = lane.await {
            eprintln!("kessai-load: a lane stopped early: {error}");
        }
    }
    let elapsed = started.elapsed();
    let mut recorder = lock(recorder);
    let taken = std::mem::replace(&mut *recorder, Recorder::new(started, 0));
    (taken, elapsed)
}
