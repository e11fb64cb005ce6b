//! `--soak`: the verdict on one long run (issue #20: "30 minutes at the
//! closed-loop peak: throughput within 10% of the first minute's, RSS flat
//! after warm-up, and the audit ok at the end").
//!
//! The run's per-second timeline is cut into whole minutes (a partial last
//! minute is left out), and each minute is the median of its seconds: a
//! second or two of stall (a memtable flush, a compaction, a checkpoint)
//! is not a trend, and a median does not move for it where a mean would.
//!
//! * Throughput: every later minute's median payments/s is within
//!   [`THROUGHPUT_TOLERANCE`] (±10%) of the first minute's, either way.
//! * RSS: the minute right after [`WARMUP_MINUTES_DEFAULT`] minutes of
//!   warm-up is the baseline; the last minute may exceed it by at most
//!   [`RSS_GROWTH_MAX_PERCENT`] (10%) plus [`RSS_SLACK_MIB`].
//!   Why a warm-up: a fresh engine's memory grows for a while without
//!   leaking: RocksDB's memtables fill to their write-buffer size, its
//!   block cache to its capacity, its first table files open, and malloc's
//!   arenas reach the high-water mark of the requests in flight. Why a
//!   slack on top of the 10%: RSS moves in steps (a write buffer allocated
//!   or released, an arena trimmed), so a tenth of a small baseline alone
//!   would flag a step of noise; the slack is small against what a real
//!   leak adds over half an hour at the peak (100 MiB is under one byte per
//!   payment of some 150 million).
//! * The audit after the run is ok.
//!
//! `judge` is pure: the series in, the verdict out, so the rules are
//! tested on made-up series (below) rather than on half-hour runs.

use crate::report::{SecondReport, median};
use serde::Serialize;

/// Seconds in a minute of the verdict.
pub const MINUTE_S: usize = 60;
/// How far (either way, a fraction) a later minute's payments/s may be
/// from the first minute's.
pub const THROUGHPUT_TOLERANCE: f64 = 0.10;
/// Minutes of warm-up before the RSS baseline, unless `--soak-warmup-min`
/// says otherwise: a sixth of the 30-minute soak.
pub const WARMUP_MINUTES_DEFAULT: u64 = 5;
/// How much the last minute's RSS may exceed the baseline: this percent
/// of it, plus [`RSS_SLACK_MIB`].
pub const RSS_GROWTH_MAX_PERCENT: u64 = 10;
pub const RSS_SLACK_MIB: u64 = 32;

/// Whole minutes a run needs for a verdict: the warm-up, then a baseline
/// minute and at least one more to compare with it (two at least, for the
/// throughput rule).
pub fn minutes_needed(warmup_minutes: u64) -> u64 {
    warmup_minutes + 2
}

/// One whole minute of the run.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Minute {
    /// 1-based, as printed.
    pub minute: usize,
    /// The median of its seconds' payments answered.
    pub payments_per_s: f64,
    /// `payments_per_s` against the first minute's, as a fraction
    /// (-0.07: 7% fewer); 0 for the first minute.
    pub vs_first: f64,
    /// The median of its RSS samples, KiB; `None` if fewer than half of
    /// its seconds were sampled.
    pub rss_kib: Option<u64>,
}

#[derive(Debug, Serialize)]
pub struct SoakVerdict {
    /// Every rule held.
    pub pass: bool,
    pub warmup_minutes: u64,
    pub minutes: Vec<Minute>,
    pub throughput_ok: bool,
    /// The later minute furthest from the first (1-based), if any.
    pub throughput_furthest_minute: Option<usize>,
    pub rss_ok: bool,
    /// The minute after the warm-up (1-based), the RSS baseline.
    pub rss_baseline_minute: usize,
    pub rss_baseline_kib: Option<u64>,
    pub rss_last_kib: Option<u64>,
    /// The most the last minute's RSS may be.
    pub rss_limit_kib: Option<u64>,
    pub audit_ok: bool,
    /// One line per rule broken; empty when it passed.
    pub failures: Vec<String>,
}

/// The verdict on `timeline` (one run's seconds, in order) and the audit
/// after it, the RSS baseline taken after `warmup_minutes`.
pub fn judge(timeline: &[SecondReport], audit_ok: bool, warmup_minutes: u64) -> SoakVerdict {
    let minutes = whole_minutes(timeline);
    let whole = minutes.len();
    let mut failures = Vec::new();
    let needed = minutes_needed(warmup_minutes) as usize;
    if whole < needed {
        failures.push(format!(
            "{whole} whole minute(s) of load; a {warmup_minutes}-minute warm-up needs {needed}"
        ));
    }
    let (throughput_ok, furthest) = judge_throughput(&minutes, &mut failures);
    let rss = judge_rss(&minutes, warmup_minutes, &mut failures);
    if !audit_ok {
        failures.push("the audit after the run was not ok".to_string());
    }

    SoakVerdict {
        pass: failures.is_empty() && throughput_ok && rss.ok && audit_ok,
        warmup_minutes,
        throughput_ok,
        throughput_furthest_minute: furthest,
        rss_ok: rss.ok,
        rss_baseline_minute: warmup_minutes as usize + 1,
        rss_baseline_kib: rss.baseline,
        rss_last_kib: rss.last,
        rss_limit_kib: rss.limit,
        audit_ok,
        failures,
        minutes,
    }
}

/// The whole minutes of `timeline` (a partial last minute is left out),
/// each the median of its seconds.
fn whole_minutes(timeline: &[SecondReport]) -> Vec<Minute> {
    let whole = timeline.len() / MINUTE_S;
    let seconds = |m: usize| &timeline[m * MINUTE_S..(m + 1) * MINUTE_S];
    let rates: Vec<f64> = (0..whole)
        .map(|m| {
            median(
                &seconds(m)
                    .iter()
                    .map(|s| s.payments as f64)
                    .collect::<Vec<_>>(),
            )
        })
        .collect();
    let first = rates.first().copied().unwrap_or(0.0);
    (0..whole)
        .map(|m| Minute {
            minute: m + 1,
            payments_per_s: rates[m],
            vs_first: if first > 0.0 {
                rates[m] / first - 1.0
            } else {
                0.0
            },
            rss_kib: minute_rss_kib(seconds(m)),
        })
        .collect()
}

/// The throughput rule: whether every later minute is within
/// [`THROUGHPUT_TOLERANCE`] of the first, and which later minute is
/// furthest from it; adds to `failures` why the rule broke.
fn judge_throughput(minutes: &[Minute], failures: &mut Vec<String>) -> (bool, Option<usize>) {
    let whole = minutes.len();
    let first = minutes.first().map_or(0.0, |m| m.payments_per_s);
    let later = minutes.iter().skip(1);
    let furthest = later
        .clone()
        .max_by(|a, b| a.vs_first.abs().total_cmp(&b.vs_first.abs()));
    let outside: Vec<&Minute> = later
        .filter(|m| m.vs_first.abs() > THROUGHPUT_TOLERANCE)
        .collect();
    let throughput_ok = whole >= 2 && first > 0.0 && outside.is_empty();
    if whole >= 1 && first <= 0.0 {
        failures.push("no payment answered in the first minute".to_string());
    }
    if first > 0.0 && !outside.is_empty() {
        let listed: Vec<String> = outside
            .iter()
            .map(|m| format!("minute {} {}", m.minute, percent(m.vs_first)))
            .collect();
        failures.push(format!(
            "throughput outside ±{:.0}% of the first minute's {first:.0} payments/s: {}",
            THROUGHPUT_TOLERANCE * 100.0,
            listed.join(", ")
        ));
    }
    (throughput_ok, furthest.map(|m| m.minute))
}

/// The RSS rule's figures, KiB, and whether it held.
struct RssJudgement {
    ok: bool,
    /// The minute after the warm-up's.
    baseline: Option<u64>,
    last: Option<u64>,
    limit: Option<u64>,
}

/// The RSS rule: the last minute against the one after `warmup_minutes`
/// of warm-up; adds to `failures` why the rule broke.
fn judge_rss(minutes: &[Minute], warmup_minutes: u64, failures: &mut Vec<String>) -> RssJudgement {
    let whole = minutes.len();
    let needed = minutes_needed(warmup_minutes) as usize;
    let baseline_index = warmup_minutes as usize;
    let baseline = minutes.get(baseline_index).and_then(|m| m.rss_kib);
    let last = minutes
        .last()
        .filter(|m| m.minute > baseline_index + 1)
        .and_then(|m| m.rss_kib);
    let limit = baseline.map(|b| b + b * RSS_GROWTH_MAX_PERCENT / 100 + RSS_SLACK_MIB * 1024);
    let ok = matches!((last, limit), (Some(last), Some(limit)) if last <= limit);
    match (baseline, last, limit) {
        (Some(_), Some(last), Some(limit)) if last > limit => failures.push(format!(
            "RSS grew after the warm-up: last minute {} MiB, limit {} MiB",
            mib(last),
            mib(limit)
        )),
        (Some(_), Some(_), _) => {}
        _ if whole >= needed => {
            failures.push("RSS not sampled in the baseline or the last minute".to_string())
        }
        _ => {}
    }
    RssJudgement {
        ok,
        baseline,
        last,
        limit,
    }
}

/// The median RSS of a minute's samples; `None` if fewer than half of
/// its seconds have one.
fn minute_rss_kib(seconds: &[SecondReport]) -> Option<u64> {
    let samples: Vec<f64> = seconds
        .iter()
        .filter_map(|s| s.rss_kib)
        .map(|kib| kib as f64)
        .collect();
    (samples.len() * 2 >= seconds.len()).then(|| median(&samples).round() as u64)
}

fn mib(kib: u64) -> String {
    format!("{:.1}", kib as f64 / 1024.0)
}

fn percent(fraction: f64) -> String {
    format!("{:+.1}%", fraction * 100.0)
}

impl SoakVerdict {
    /// A line per minute, then a line per rule and the verdict.
    pub fn print(&self) {
        println!("soak: minute  payments/s  vs first  RSS MiB");
        for m in &self.minutes {
            let vs = if m.minute == 1 {
                "-".to_string()
            } else {
                percent(m.vs_first)
            };
            let rss = m.rss_kib.map_or("-".to_string(), mib);
            println!(
                "soak: {:>6}  {:>10.0}  {vs:>8}  {rss:>7}",
                m.minute, m.payments_per_s
            );
        }
        let first = self.minutes.first().map_or(0.0, |m| m.payments_per_s);
        let furthest = self
            .throughput_furthest_minute
            .and_then(|n| self.minutes.get(n - 1))
            .map_or(String::new(), |m| {
                format!(" (furthest: minute {}, {})", m.minute, percent(m.vs_first))
            });
        println!(
            "soak: throughput: later minutes within ±{:.0}% of the first minute's {first:.0} payments/s{furthest}: {}",
            THROUGHPUT_TOLERANCE * 100.0,
            ok(self.throughput_ok)
        );
        let show = |kib: Option<u64>| kib.map_or("-".to_string(), |k| format!("{} MiB", mib(k)));
        println!(
            "soak: RSS: last minute {} against {} in minute {} (after a {}-minute warm-up), limit {} (+{RSS_GROWTH_MAX_PERCENT}% +{RSS_SLACK_MIB} MiB): {}",
            show(self.rss_last_kib),
            show(self.rss_baseline_kib),
            self.rss_baseline_minute,
            self.warmup_minutes,
            show(self.rss_limit_kib),
            ok(self.rss_ok)
        );
        println!("soak: audit: {}", ok(self.audit_ok));
        if self.pass {
            println!("soak: PASS");
        } else {
            println!("soak: FAIL: {}", self.failures.join("; "));
        }
    }
}

fn ok(ok: bool) -> &'static str {
    if ok { "ok" } else { "FAILED" }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1024;

    /// A run's timeline: `payments(s)` answered and `rss_kib(s)` sampled
    /// in second `s`, for `seconds` seconds.
    fn series(
        seconds: usize,
        payments: impl Fn(usize) -> u64,
        rss_kib: impl Fn(usize) -> Option<u64>,
    ) -> Vec<SecondReport> {
        (0..seconds)
            .map(|s| SecondReport {
                second: s as u64,
                payments: payments(s),
                ops: payments(s),
                errors: 0,
                p50_us: 1000,
                p99_us: 5000,
                p999_us: 9000,
                max_us: 20000,
                rss_kib: rss_kib(s),
            })
            .collect()
    }

    /// 100 000 payments/s give or take 3%, a stall of two seconds each
    /// minute; RSS rises from 200 to 400 MiB over the first three minutes,
    /// then wobbles by 8 MiB.
    fn steady_payments(s: usize) -> u64 {
        match s % MINUTE_S {
            30 | 31 => 0,
            _ => 97_000 + (s as u64 * 7919) % 6_000,
        }
    }

    fn warming_rss(s: usize) -> Option<u64> {
        let warm = (200 * MIB + s as u64 * 200 * MIB / 180).min(400 * MIB);
        Some(warm + (s as u64 % 5) * 2 * MIB)
    }

    #[test]
    fn a_steady_run_passes() {
        let timeline = series(30 * MINUTE_S, steady_payments, warming_rss);
        let verdict = judge(&timeline, true, 5);
        assert!(verdict.pass, "{verdict:?}");
        assert_eq!(verdict.minutes.len(), 30);
        assert_eq!(verdict.rss_baseline_minute, 6);
        assert!(verdict.failures.is_empty());
        // The median drops the stall: the first minute is about 100 000.
        let first = verdict.minutes[0].payments_per_s;
        assert!((97_000.0..=103_000.0).contains(&first), "{first}");
    }

    #[test]
    fn one_slow_minute_fails_the_throughput_rule_and_is_named() {
        let slow = |s: usize| {
            let p = steady_payments(s);
            if s / MINUTE_S == 17 { p * 85 / 100 } else { p }
        };
        let verdict = judge(&series(30 * MINUTE_S, slow, warming_rss), true, 5);
        assert!(!verdict.pass);
        assert!(!verdict.throughput_ok);
        assert!(verdict.rss_ok && verdict.audit_ok);
        assert_eq!(verdict.throughput_furthest_minute, Some(18));
        assert_eq!(verdict.failures.len(), 1, "{:?}", verdict.failures);
        assert!(
            verdict.failures[0].contains("minute 18 -"),
            "{:?}",
            verdict.failures
        );
    }

    #[test]
    fn faster_by_more_than_a_tenth_is_outside_too() {
        let faster = |s: usize| if s >= 20 * MINUTE_S { 120_000 } else { 100_000 };
        let verdict = judge(&series(30 * MINUTE_S, faster, warming_rss), true, 5);
        assert!(!verdict.throughput_ok);
        assert!(
            verdict.failures[0].contains("minute 21 +20.0%"),
            "{:?}",
            verdict.failures
        );
    }

    #[test]
    fn a_leak_after_the_warm_up_fails_the_rss_rule() {
        // 400 MiB after warm-up, then 1 MiB more every 15 s: 100 MiB over
        // the last 25 minutes, past 400 + 40 + 32.
        let leaking = |s: usize| {
            let leak = (s.saturating_sub(5 * MINUTE_S) / 15) as u64 * MIB;
            warming_rss(s).map(|kib| kib + leak)
        };
        let verdict = judge(&series(30 * MINUTE_S, steady_payments, leaking), true, 5);
        assert!(!verdict.pass);
        assert!(verdict.throughput_ok && !verdict.rss_ok);
        let (baseline, limit) = (
            verdict.rss_baseline_kib.unwrap(),
            verdict.rss_limit_kib.unwrap(),
        );
        assert_eq!(limit, baseline + baseline / 10 + 32 * MIB);
        assert!(verdict.rss_last_kib.unwrap() > limit);
        assert!(
            verdict.failures[0].starts_with("RSS grew"),
            "{:?}",
            verdict.failures
        );

        // The same growth inside the warm-up is not a leak.
        let early =
            |s: usize| warming_rss(s).map(|kib| kib + (s.min(5 * MINUTE_S) / 15) as u64 * MIB);
        assert!(judge(&series(30 * MINUTE_S, steady_payments, early), true, 5).pass);
    }

    #[test]
    fn growth_within_a_tenth_and_the_slack_passes() {
        // About 401 MiB at the baseline (limit 473); the last minute 470.
        let growing = |s: usize| {
            let after = s.saturating_sub(5 * MINUTE_S) as u64;
            Some(400 * MIB + after * 70 * MIB / (25 * MINUTE_S as u64 - 30))
        };
        let verdict = judge(&series(30 * MINUTE_S, steady_payments, growing), true, 5);
        assert!(verdict.rss_ok, "{verdict:?}");
    }

    #[test]
    fn a_failed_audit_fails_the_soak() {
        let verdict = judge(
            &series(30 * MINUTE_S, steady_payments, warming_rss),
            false,
            5,
        );
        assert!(!verdict.pass && verdict.throughput_ok && verdict.rss_ok);
        assert_eq!(verdict.failures, ["the audit after the run was not ok"]);
    }

    #[test]
    fn a_run_too_short_or_unsampled_cannot_pass() {
        // 6 whole minutes and a half: a 5-minute warm-up needs 7.
        let short = series(6 * MINUTE_S + 30, steady_payments, warming_rss);
        let verdict = judge(&short, true, 5);
        assert_eq!(verdict.minutes.len(), 6, "the partial minute is left out");
        assert!(!verdict.pass && !verdict.rss_ok);
        assert!(
            verdict.failures[0].contains("needs 7"),
            "{:?}",
            verdict.failures
        );
        // Long enough, but RSS was sampled in only a third of the seconds.
        let sparse = |s: usize| s.is_multiple_of(3).then_some(300 * MIB);
        let verdict = judge(&series(8 * MINUTE_S, steady_payments, sparse), true, 5);
        assert!(!verdict.pass && verdict.throughput_ok && !verdict.rss_ok);
        assert!(
            verdict.failures[0].starts_with("RSS not sampled"),
            "{:?}",
            verdict.failures
        );
        // Nothing answered at all.
        let verdict = judge(&series(8 * MINUTE_S, |_| 0, warming_rss), true, 5);
        assert!(!verdict.pass && !verdict.throughput_ok);
    }

    #[test]
    fn without_a_warm_up_the_first_minute_is_the_baseline() {
        assert_eq!(minutes_needed(0), 2);
        let verdict = judge(
            &series(2 * MINUTE_S, steady_payments, |_| Some(300 * MIB)),
            true,
            0,
        );
        assert!(verdict.pass, "{verdict:?}");
        assert_eq!(verdict.rss_baseline_minute, 1);
    }
}
