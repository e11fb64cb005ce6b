//! The load harness, end to end: the debug `kessai-load` binary spawns a
//! real engine (real RocksDB in a temp dir, real TCP on 127.0.0.1), drives
//! it for a second or two with a few thousand cards, and the tests check
//! what it wrote: the JSON report, the open-loop figures, the PNG, the
//! counts per kind of the mix, the progress bar.
//!
//! No test asserts speed: the machine may be loaded. Where a count depends
//! on time, the bound is loose, or follows from how the harness works
//! (request kinds follow consecutive request ids, so the counts per kind
//! follow the mix to within one block of 100 ids).

mod common;

use common::{Server, ServerOptions};
use serde_json::Value;
use std::io::Read;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// A run that takes longer than this is hung: kill it and fail.
const RUN_TIMEOUT: Duration = Duration::from_secs(120);

fn harness() -> &'static str {
    env!("CARGO_BIN_EXE_kessai-load")
}

/// Small, short, light: few cards and few lanes, so that the tests of this
/// file together stay well under a minute on a busy 2-core machine.
const SMALL: [&str; 7] = [
    "--spawn",
    "--cards",
    "2000",
    "--connections",
    "2",
    "--pipeline",
    "8",
];

/// Runs `program args`, with a deadline; returns its output.
fn run(program: &str, args: &[&str]) -> Output {
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("start {program}: {e}"));
    // Read both pipes while waiting, so a chatty child never blocks on a
    // full pipe.
    let mut stdout = child.stdout.take().expect("piped");
    let mut stderr = child.stderr.take().expect("piped");
    let out = std::thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = stdout.read_to_end(&mut bytes);
        bytes
    });
    let err = std::thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = stderr.read_to_end(&mut bytes);
        bytes
    });
    let deadline = Instant::now() + RUN_TIMEOUT;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{program} {args:?} ran over {RUN_TIMEOUT:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    Output {
        status,
        stdout: out.join().expect("stdout reader"),
        stderr: err.join().expect("stderr reader"),
    }
}

/// Runs the harness with the small setup plus `args`; it must succeed.
fn load(args: &[&str]) -> String {
    let all: Vec<&str> = SMALL.iter().chain(args).copied().collect();
    load_exactly(&all)
}

/// Runs the harness with `all` as its arguments; it must succeed.
fn load_exactly(all: &[&str]) -> String {
    let output = run(harness(), all);
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "kessai-load {all:?} failed: {}\nstdout:\n{stdout}\nstderr:\n{stderr}",
        output.status
    );
    // stderr is not a terminal here: no progress bar, no escape codes.
    assert!(
        !stderr.contains('\u{1b}') && !stderr.contains('\r'),
        "progress bar drawn on a pipe: {stderr:?}"
    );
    stdout
}

fn read_json(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).expect("the JSON report was written");
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("report is not JSON: {e}\n{text}"))
}

fn u(value: &Value) -> u64 {
    value
        .as_u64()
        .unwrap_or_else(|| panic!("not a count: {value}"))
}

fn f(value: &Value) -> f64 {
    value
        .as_f64()
        .unwrap_or_else(|| panic!("not a number: {value}"))
}

#[test]
fn json_report_holds_runs_percentiles_group_commits_and_an_ok_audit() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("report.json");
    let stdout = load(&[
        "--duration-s",
        "1",
        "--runs",
        "2",
        "--multi-card-percent",
        "20",
        "--json",
        path.to_str().expect("utf-8 path"),
    ]);
    assert!(stdout.contains("audit: ok"), "{stdout}");
    let report = read_json(&path);

    assert!(f(&report["median_payments_per_s"]) > 0.0, "{report}");
    assert_eq!(report["ok"], true);
    assert_eq!(report["config"]["mode"], "closed");
    assert_eq!(u(&report["config"]["cards"]), 2000);
    // --multi-card-percent is a mix of pay and pay2.
    let mix = &report["config"]["mix"];
    assert_eq!(
        (u(&mix["pay"]), u(&mix["pay2"]), u(&mix["balance"])),
        (80, 20, 0)
    );

    let engines = report["engines"].as_array().expect("engines");
    assert_eq!(engines.len(), 1);
    let engine = &engines[0];
    assert_eq!(u(&engine["setup"]["cards"]), 2000);
    let runs = engine["runs"].as_array().expect("runs");
    assert_eq!(runs.len(), 2);
    for run in runs {
        assert!(f(&run["payments_per_s"]) > 0.0, "{run}");
        let counts = &run["payments"];
        let answered = u(&counts["approved"]) + u(&counts["declined"]);
        let latency = &run["latency_us"];
        assert_eq!(u(&latency["count"]), answered, "every answer is timed");
        let order = ["min", "p50", "p90", "p99", "p999", "max"].map(|p| u(&latency[p]));
        assert!(order[0] > 0, "{latency}");
        assert!(order.windows(2).all(|w| w[0] <= w[1]), "{latency}");
        assert!(
            u(&run["by_kind"]["pay2"]["count"]) > 0,
            "two-card payments ran"
        );
        // Every second of the run, with the RSS of the harness's process,
        // where the spawned engine runs.
        let timeline = run["timeline"].as_array().expect("timeline");
        assert_eq!(timeline.len(), 1, "{timeline:?}");
        assert!(
            timeline.iter().all(|s| u(&s["rss_kib"]) > 0),
            "{timeline:?}"
        );
    }
    assert!(report.get("soak").is_none(), "no verdict without --soak");
    let median = f(&engine["median_payments_per_s"]);
    assert_eq!(f(&report["median_payments_per_s"]), median);

    let shards = engine["group_commit"].as_array().expect("group commits");
    assert_eq!(shards.len(), 4);
    assert!(shards.iter().all(|s| u(&s["batches"]) > 0), "{shards:?}");

    let audit = &engine["audit"];
    assert_eq!(audit["ok"], true, "{audit}");
    let totals = &audit["totals"];
    assert_eq!(
        u(&totals["activated_minor"]),
        u(&totals["balance_minor"]) + u(&totals["merchant_owed_minor"])
    );
    assert_eq!(u(&totals["activated_minor"]), 2000 * 3000);
}

#[test]
fn open_loop_sends_the_rate_it_is_given_and_records_it() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("open.json");
    let stdout = load(&[
        "--rate",
        "200",
        "--duration-s",
        "2",
        "--json",
        path.to_str().expect("utf-8 path"),
    ]);
    assert!(stdout.contains("open loop: offered 200/s"), "{stdout}");
    let report = read_json(&path);
    assert_eq!(report["config"]["mode"], "open");
    assert_eq!(u(&report["config"]["rate_per_s"]), 200);
    let run = &report["engines"][0]["runs"][0];
    assert_eq!(run["mode"], "open");
    let open = &run["open_loop"];
    assert_eq!(u(&open["offered_per_s"]), 200);
    // 200/s for 2 s: exactly 400 due, each either sent or not.
    assert_eq!(u(&open["scheduled"]), 400);
    assert_eq!(u(&open["sent"]) + u(&open["unsent"]), 400, "{open}");
    assert!(open["kept_up"].is_boolean());
    // Every payment sent was answered or failed; at this low rate nearly
    // all should go out (the bound is loose: the machine may be loaded).
    let counts = &run["payments"];
    let answered = u(&counts["approved"]) + u(&counts["declined"]);
    assert_eq!(answered + u(&counts["errors"]), u(&open["sent"]));
    assert!((200..=400).contains(&answered), "{answered} of 400: {open}");
}

#[test]
fn open_loop_reports_an_engine_that_cannot_keep_up() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("overload.json");
    // A million per second through a single request in flight: no engine
    // answers in a microsecond, so nearly all of them are never sent.
    let stdout = load_exactly(&[
        "--spawn",
        "--cards",
        "2000",
        "--rate",
        "1000000",
        "--connections",
        "1",
        "--pipeline",
        "1",
        "--duration-s",
        "1",
        "--json",
        path.to_str().expect("utf-8 path"),
    ]);
    assert!(
        stdout.contains("did NOT keep up with 1000000/s"),
        "{stdout}"
    );
    let open = &read_json(&path)["engines"][0]["runs"][0]["open_loop"];
    assert_eq!(open["kept_up"], false, "{open}");
    assert!(u(&open["unsent"]) > 0, "{open}");
    assert!(f(&open["achieved_per_s"]) < 1_000_000.0, "{open}");
}

#[test]
fn plot_writes_one_png_per_engine_of_the_size_asked() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("latency.png");
    let json = dir.path().join("sweep.json");
    let stdout = load(&[
        "--shards",
        "1,2",
        "--duration-s",
        "1",
        "--plot",
        path.to_str().expect("utf-8 path"),
        "--plot-size",
        "900x600",
        "--json",
        json.to_str().expect("utf-8 path"),
    ]);
    assert!(
        stdout.contains("shards  median payments/s  vs best"),
        "{stdout}"
    );
    // With two shard counts, one PNG each, named after it.
    for shards in [1, 2] {
        let file = dir.path().join(format!("latency-{shards}shards.png"));
        assert!(
            stdout.contains(&format!("plot: {}", file.display())),
            "{stdout}"
        );
        let png = std::fs::read(&file).expect("the PNG was written");
        assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n", "PNG signature");
        assert_eq!(&png[12..16], b"IHDR", "the first chunk is IHDR");
        let width = u32::from_be_bytes(png[16..20].try_into().expect("4 bytes"));
        let height = u32::from_be_bytes(png[20..24].try_into().expect("4 bytes"));
        assert_eq!((width, height), (900, 600));
        // A blank 900x600 compresses to a few KiB; text and lines add more.
        assert!(png.len() > 8 * 1024, "{} bytes: nothing drawn?", png.len());
    }
    // The headline is the better of the two engines' medians.
    let report = read_json(&json);
    let medians: Vec<f64> = report["engines"]
        .as_array()
        .expect("engines")
        .iter()
        .map(|e| f(&e["median_payments_per_s"]))
        .collect();
    assert_eq!(medians.len(), 2);
    assert_eq!(
        f(&report["median_payments_per_s"]),
        medians[0].max(medians[1])
    );
}

#[test]
fn mix_counts_follow_the_mix() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("mix.json");
    let stdout = load(&[
        "--mix",
        "pay=50,pay2=30,balance=20",
        "--duration-s",
        "2",
        "--json",
        path.to_str().expect("utf-8 path"),
    ]);
    assert!(stdout.contains("by kind: pay "), "{stdout}");
    let report = read_json(&path);
    let run = &report["engines"][0]["runs"][0];
    let kinds = &run["by_kind"];
    let count = |kind: &str| u(&kinds[kind]["count"]);
    let total = count("pay") + count("pay2") + count("balance");
    assert!(total >= 300, "too few operations to compare: {kinds}");
    // Kinds follow consecutive request ids, 100 to a block: off by at most
    // one block's share.
    for (kind, share) in [("pay", 50), ("pay2", 30), ("balance", 20)] {
        let expected = total * share / 100;
        assert!(
            count(kind).abs_diff(expected) <= 100,
            "{kind}: {} of {total}, expected about {expected}",
            count(kind)
        );
        assert_eq!(u(&kinds[kind]["share_percent"]), share);
        assert!(u(&kinds[kind]["latency_us"]["p50"]) > 0, "{kind}");
    }
    // Balance checks are not payments.
    let counts = &run["payments"];
    assert_eq!(
        u(&counts["approved"]) + u(&counts["declined"]) + u(&counts["errors"]),
        count("pay") + count("pay2")
    );
    assert_eq!(u(&kinds["balance"]["ok"]), count("balance"));
}

#[test]
fn a_bad_mix_exits_non_zero_and_says_why() {
    let cases: [(&[&str], &str); 6] = [
        (&["--mix", "pay=80,pay2=15"], "sum to 95"),
        (&["--mix", "pay=50,refund=50"], "unknown kind `refund`"),
        (&["--mix", "pay=50,pay=50"], "`pay` is given twice"),
        (&["--mix", "pay=x,pay2=100"], "a share is a whole percent"),
        (&["--mix", "pay"], "`pay` is not kind=percent"),
        (
            &["--mix", "pay=100", "--multi-card-percent", "20"],
            "cannot be used with",
        ),
    ];
    for (args, reason) in cases {
        let all: Vec<&str> = SMALL.iter().chain(args).copied().collect();
        let output = run(harness(), &all);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{args:?} was accepted");
        assert!(stderr.contains("--mix"), "{args:?}: {stderr}");
        assert!(stderr.contains(reason), "{args:?}: {stderr}");
        // Refused before any engine started.
        assert!(output.stdout.is_empty(), "{args:?}");
    }
}

#[test]
fn cards_default_to_a_million() {
    let output = run(harness(), &["--help"]);
    let help = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success());
    let cards = help
        .split("--cards <CARDS>")
        .nth(1)
        .expect("--cards in --help");
    let cards = cards.split("--").next().unwrap_or_default();
    assert!(cards.contains("[default: 1000000]"), "{cards}");
}

/// The progress bar needs a terminal: `script` (util-linux) gives the
/// harness one. Where there is no `script`, the test says so and passes.
#[test]
fn progress_bar_shows_on_a_terminal_unless_quiet() {
    if run("sh", &["-c", "command -v script"]).stdout.is_empty() {
        eprintln!("no `script` command (util-linux): progress bar not tested");
        return;
    }
    let on_terminal = |extra: &str| {
        let command = format!(
            "TERM=xterm {} {} --duration-s 2 {extra}",
            harness(),
            SMALL.join(" ")
        );
        let output = run("script", &["-qefc", &command, "/dev/null"]);
        let text = String::from_utf8_lossy(&output.stdout).into_owned();
        assert!(output.status.success(), "{command}: {text}");
        assert!(text.contains("audit: ok"), "{command}: {text}");
        text
    };
    let drawn = on_terminal("");
    assert!(drawn.contains("run 1/1 (2s)"), "no bar: {drawn:?}");
    let quiet = on_terminal("--quiet");
    assert!(
        !quiet.contains("run 1/1 (2s)"),
        "bar despite --quiet: {quiet:?}"
    );
}

#[test]
fn gathered_payments_go_in_batch_frames_and_add_up() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("report.json");
    let stdout = load(&[
        "--duration-s",
        "1",
        "--multi-card-percent",
        "20",
        "--gather",
        "64",
        "--json",
        path.to_str().expect("utf-8 path"),
    ]);
    assert!(
        stdout.contains("gathered in batches of up to 64"),
        "{stdout}"
    );
    let report = read_json(&path);
    assert_eq!(u(&report["config"]["gather"]), 64);
    assert_eq!(report["ok"], true, "{report}");
    let engine = &report["engines"][0];
    let run = &engine["runs"][0];
    let approved = u(&run["payments"]["approved"]);
    assert!(approved > 0, "{run}");
    assert_eq!(u(&run["payments"]["errors"]), 0, "{run}");
    // Every approved payment of one yen is a yen owed to the merchant (a
    // payment still in flight when the run ended may add one more).
    let totals = &engine["audit"]["totals"];
    assert!(u(&totals["merchant_owed_minor"]) >= approved, "{totals}");
    assert_eq!(
        u(&totals["activated_minor"]),
        u(&totals["balance_minor"]) + u(&totals["merchant_owed_minor"])
    );
}

#[test]
fn a_flood_run_measures_the_honest_load_alone_and_beside_the_flood() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("flood.json");
    let stdout = load_exactly(&[
        "--spawn",
        "--cards",
        "200",
        "--connections",
        "1",
        "--pipeline",
        "2",
        "--flood",
        "2",
        "--flood-pipeline",
        "16",
        "--duration-s",
        "1",
        "--json",
        path.to_str().expect("utf-8 path"),
    ]);
    for line in ["run 1 quiet: ", "run 1 flood: ", "flood p99 / quiet p99: "] {
        assert!(stdout.contains(line), "no `{line}`: {stdout}");
    }
    assert!(stdout.contains("audit: ok"), "{stdout}");
    let report = read_json(&path);
    assert_eq!(report["ok"], true, "{report}");
    let flood_load = &report["config"]["flood"];
    assert_eq!(
        (u(&flood_load["connections"]), u(&flood_load["pipeline"])),
        (2, 16)
    );
    let engine = &report["engines"][0];
    let flood = &engine["flood"];
    assert_eq!(u(&flood["cards"]), 200, "the flooder has cards of its own");
    let runs = flood["runs"].as_array().expect("flood runs");
    assert_eq!(runs.len(), 1);
    let run = &runs[0];
    for phase in ["quiet", "flood"] {
        let p = &run[phase];
        assert!(u(&p["approved"]) > 0, "{phase}: {p}");
        assert!(f(&p["payments_per_s"]) > 0.0, "{phase}: {p}");
        assert!(u(&p["latency_us"]["p99"]) > 0, "{phase}: {p}");
        assert!(p["busy"].is_u64() && p["errors"].is_u64(), "{phase}: {p}");
    }
    // The quiet phase is the engine's run, as without --flood; the flooded
    // one has its whole report beside it.
    assert_eq!(
        u(&engine["runs"][0]["payments"]["approved"]),
        u(&run["quiet"]["approved"])
    );
    let under_flood = flood["runs_under_flood"].as_array().expect("runs");
    assert_eq!(under_flood.len(), 1);
    assert_eq!(
        u(&under_flood[0]["payments"]["approved"]),
        u(&run["flood"]["approved"])
    );
    let flooder = &run["flooder"];
    assert!(u(&flooder["approved"]) > 0, "{flooder}");
    assert!(f(&flooder["payments_per_s"]) > 0.0, "{flooder}");
    assert!(flooder["busy"].is_u64(), "{flooder}");
    // serde_json reads floats back to within an ulp or so, not exactly.
    let close = |a: f64, b: f64| (a - b).abs() <= 1e-9 * b.abs();
    let ratio = f(&run["p99_ratio"]);
    let p99 = |phase: &str| u(&run[phase]["latency_us"]["p99"]) as f64;
    assert!(close(ratio, p99("flood") / p99("quiet")), "{run}");
    let median = f(&flood["median"]["p99_ratio"]);
    assert!(close(median, ratio), "one run: its own ratio, {median}");

    // Both merchants' payments are in the audit: a yen each.
    let audit = &engine["audit"];
    assert_eq!(audit["ok"], true, "{audit}");
    let totals = &audit["totals"];
    assert_eq!(u(&totals["activated_minor"]), 2 * 200 * 3000);
    let honest: u64 = [&engine["runs"][0], &under_flood[0]]
        .iter()
        .map(|r| u(&r["payments"]["approved"]))
        .sum();
    assert!(
        u(&totals["merchant_owed_minor"]) >= honest + u(&flooder["approved"]),
        "{totals}"
    );
}

/// `--iso`: both phases activate every card, and the audit passes.
#[test]
fn the_iso_comparison_activates_every_card_both_ways() {
    let output = run(
        harness(),
        &[SMALL.as_slice(), &["--iso", "--shards", "2"]].concat(),
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("binary:   2000 activations"), "{stdout}");
    assert!(stdout.contains("(2000 approved)"), "{stdout}");
    assert!(stdout.contains("iso8583:  2000 activations"), "{stdout}");
    assert!(stdout.contains("iso8583 / binary = "), "{stdout}");
    assert!(stdout.contains("audit: ok"), "{stdout}");
}

#[test]
fn engine_pid_samples_a_running_engines_rss_each_second() {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = Server::start(dir.path(), 2);
    let json = dir.path().join("report.json");
    let (addr, key) = (server.addr.to_string(), server.operator_key_path());
    load_exactly(&[
        "--addr",
        &addr,
        "--key",
        key.to_str().expect("utf-8 path"),
        "--engine-pid",
        &server.pid().to_string(),
        "--cards",
        "200",
        "--connections",
        "1",
        "--pipeline",
        "2",
        "--duration-s",
        "2",
        "--json",
        json.to_str().expect("utf-8 path"),
    ]);
    let report = read_json(&json);
    let timeline = report["engines"][0]["runs"][0]["timeline"]
        .as_array()
        .expect("timeline");
    assert_eq!(timeline.len(), 2, "{timeline:?}");
    // The engine's RSS, not the harness's: within a factor of the engine's
    // own figure read now.
    let engine_kib = server.rss_bytes() / 1024;
    for second in timeline {
        let kib = u(&second["rss_kib"]);
        assert!(
            kib > engine_kib / 4 && kib < engine_kib * 4,
            "{kib} vs {engine_kib}"
        );
    }
}

#[test]
fn soak_refuses_a_run_it_cannot_judge_and_says_why() {
    for (args, why) in [
        (&["--duration-s", "60"][..], "--duration-s 420 or more"),
        (
            &["--duration-s", "180", "--soak-warmup-min", "2"][..],
            "--duration-s 240",
        ),
        (
            &["--duration-s", "600", "--runs", "2"][..],
            "one run of one engine",
        ),
        (
            &["--duration-s", "600", "--shards", "1,2"][..],
            "one run of one engine",
        ),
    ] {
        let all: Vec<&str> = SMALL
            .iter()
            .chain(["--soak"].iter())
            .chain(args)
            .copied()
            .collect();
        let output = run(harness(), &all);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{all:?}");
        assert!(stderr.contains(why), "{all:?}: {stderr}");
    }
    // An open loop has no peak to hold.
    let output = run(harness(), &["--spawn", "--soak", "--rate", "100"]);
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("cannot be used with"));
}

#[test]
fn a_run_longer_than_the_idle_deadline_still_ends_with_stats_and_an_audit() {
    // The operator's setup connection sits unused through the run; an
    // engine whose idle deadline is shorter than the run closes it. The
    // harness must still end with the engine's stats and an audit.
    let dir = tempfile::tempdir().expect("temp dir");
    let server = Server::start_with(
        dir.path(),
        ServerOptions {
            limits: vec!["idle_timeout_ms = 1000".to_string()],
            ..ServerOptions::default()
        },
    );
    let (addr, key) = (server.addr.to_string(), server.operator_key_path());
    let stdout = load_exactly(&[
        "--addr",
        &addr,
        "--key",
        key.to_str().expect("utf-8 path"),
        "--cards",
        "200",
        "--connections",
        "1",
        "--pipeline",
        "2",
        "--duration-s",
        "3",
    ]);
    assert!(!stdout.contains("stats unavailable"), "{stdout}");
    assert!(stdout.contains("audit: ok"), "{stdout}");
}
