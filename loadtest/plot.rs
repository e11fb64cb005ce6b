//! `--plot FILE.png`: payment latency percentiles (p50, p99, p99.9),
//! payments/s and, when it was sampled, RSS (MiB), per second of load, for
//! one engine's runs laid end to end. With `--soak`, dashed lines show its
//! limits: ±10% of the first minute's payments/s, and the RSS ceiling
//! from the end of the warm-up.
//!
//! plotters draws text through ab_glyph from a font compiled into the
//! binary (DejaVu Sans, `loadtest/fonts/`, Bitstream Vera license), not
//! through font-kit: font-kit needs fontconfig and FreeType from system
//! packages, and a fresh machine must build the harness with none.

use crate::report::{RunReport, SecondReport};
use crate::soak::{self, SoakVerdict};
use plotters::coord::types::RangedCoordf64;
use plotters::element::DashedPathElement;
use plotters::prelude::*;
use plotters::style::{FontStyle, register_font};
use std::path::Path;

/// DejaVu Sans 2.37, unmodified; its license is `loadtest/fonts/LICENSE`.
const FONT: &[u8] = include_bytes!("fonts/DejaVuSans.ttf");

/// The smallest image that still has room for the labels.
pub const SIZE_MIN: (u32, u32) = (320, 240);
/// The largest: a bigger bitmap is only memory (w x h x 3 bytes).
pub const SIZE_MAX: (u32, u32) = (8000, 8000);

const P50: RGBColor = RGBColor(31, 119, 180);
const P99: RGBColor = RGBColor(255, 127, 14);
const P999: RGBColor = RGBColor(214, 39, 40);
const THROUGHPUT: RGBColor = RGBColor(44, 160, 44);
const RSS: RGBColor = RGBColor(148, 103, 189);
const RUN_EDGE: RGBColor = RGBColor(90, 90, 90);

/// What to draw: the runs of one engine, each `duration_s` long.
pub struct PlotInput<'a> {
    pub title: String,
    pub runs: &'a [RunReport],
    pub duration_s: u64,
    /// Open loop: payments/s due (the rate times the mix's payment share).
    pub offered_payments_per_s: Option<f64>,
    /// Whose RSS was sampled, for the axis: "engine", or "engine and load
    /// generator" (`--spawn`, one process).
    pub rss_of: &'static str,
    pub soak: Option<SoakLines>,
}

/// `--soak`'s limits, drawn as dashed lines.
pub struct SoakLines {
    /// The first minute's median payments/s, ±10%.
    pub payments_per_s_low: f64,
    pub payments_per_s_high: f64,
    /// The RSS ceiling (MiB) and the second of load it holds from (the
    /// end of the warm-up).
    pub rss_limit_mib: Option<f64>,
    pub rss_limit_from_s: f64,
}

impl SoakLines {
    pub fn of(verdict: &SoakVerdict) -> SoakLines {
        let first = verdict.minutes.first().map_or(0.0, |m| m.payments_per_s);
        SoakLines {
            payments_per_s_low: first * (1.0 - soak::THROUGHPUT_TOLERANCE),
            payments_per_s_high: first * (1.0 + soak::THROUGHPUT_TOLERANCE),
            rss_limit_mib: verdict.rss_limit_kib.map(|kib| kib as f64 / 1024.0),
            rss_limit_from_s: (verdict.warmup_minutes * soak::MINUTE_S as u64) as f64,
        }
    }
}

/// Parses `WIDTHxHEIGHT` (pixels) within [`SIZE_MIN`]..=[`SIZE_MAX`].
pub fn parse_size(text: &str) -> Result<(u32, u32), String> {
    let (w, h) = text
        .split_once(['x', 'X'])
        .ok_or_else(|| format!("`{text}` is not WIDTHxHEIGHT (e.g. 1200x800)"))?;
    let w: u32 = w
        .trim()
        .parse()
        .map_err(|_| format!("`{w}` is not a width in pixels"))?;
    let h: u32 = h
        .trim()
        .parse()
        .map_err(|_| format!("`{h}` is not a height in pixels"))?;
    if w < SIZE_MIN.0 || h < SIZE_MIN.1 || w > SIZE_MAX.0 || h > SIZE_MAX.1 {
        return Err(format!(
            "{w}x{h} is outside {}x{} to {}x{}",
            SIZE_MIN.0, SIZE_MIN.1, SIZE_MAX.0, SIZE_MAX.1
        ));
    }
    Ok((w, h))
}

/// Writes the PNG to `path`.
pub fn draw(path: &Path, size: (u32, u32), input: &PlotInput<'_>) -> Result<(), String> {
    register_font("sans-serif", FontStyle::Normal, FONT)
        .map_err(|_| "the bundled font does not load".to_string())?;
    let root = BitMapBackend::new(path, size).into_drawing_area();
    root.fill(&WHITE).map_err(|e| e.to_string())?;
    let text_px = (size.1 / 45).clamp(12, 40);
    let root = root
        .titled(&input.title, ("sans-serif", text_px + 4))
        .map_err(|e| e.to_string())?;
    let x_max = (input.duration_s.max(1) * input.runs.len().max(1) as u64) as f64;
    let height = root.dim_in_pixel().1;
    let sampled = input
        .runs
        .iter()
        .flat_map(|r| &r.timeline)
        .any(|s| s.rss_kib.is_some());
    if sampled {
        let (top, rest) = root.split_vertically(height * 45 / 100);
        let (middle, bottom) = rest.split_vertically(height * 27 / 100);
        latency_chart(&top, input, x_max, text_px)?;
        throughput_chart(&middle, input, x_max, text_px, false)?;
        rss_chart(&bottom, input, x_max, text_px)?;
    } else {
        let (top, bottom) = root.split_vertically(height * 55 / 100);
        latency_chart(&top, input, x_max, text_px)?;
        throughput_chart(&bottom, input, x_max, text_px, true)?;
    }
    root.present()
        .map_err(|e| format!("cannot write {}: {e}", path.display()))
}

/// One series' points, `(second of load, value)`, split where a second had
/// no answers so that a stall shows as a gap rather than a straight line.
fn segments(
    input: &PlotInput<'_>,
    value: impl Fn(&SecondReport) -> Option<f64>,
) -> Vec<Vec<(f64, f64)>> {
    let mut all = Vec::new();
    for (index, run) in input.runs.iter().enumerate() {
        let offset = (index as u64 * input.duration_s) as f64;
        let mut current = Vec::new();
        for second in &run.timeline {
            match value(second) {
                Some(v) => current.push((offset + second.second as f64 + 0.5, v)),
                None if !current.is_empty() => all.push(std::mem::take(&mut current)),
                None => {}
            }
        }
        if !current.is_empty() {
            all.push(current);
        }
    }
    all
}

/// Picks one figure (µs) of a second.
type PickUs = fn(&SecondReport) -> u64;

fn ms(us: u64) -> f64 {
    us as f64 / 1000.0
}

fn latency_chart<DB: DrawingBackend>(
    area: &DrawingArea<DB, plotters::coord::Shift>,
    input: &PlotInput<'_>,
    x_max: f64,
    text_px: u32,
) -> Result<(), String> {
    let series: [(&str, RGBColor, PickUs); 3] = [
        ("p50", P50, |s| s.p50_us),
        ("p99", P99, |s| s.p99_us),
        ("p99.9", P999, |s| s.p999_us),
    ];
    let (low, high) = latency_range(input);
    let mut chart = ChartBuilder::on(area)
        .margin(text_px / 2)
        .margin_right(text_px * 2)
        .x_label_area_size(text_px * 3)
        .y_label_area_size(text_px * 4)
        .build_cartesian_2d(
            0f64..x_max,
            (low..high)
                .log_scale()
                .with_key_points(decades(low, high, &[1.0, 2.0, 5.0]))
                .with_light_points(decades(
                    low,
                    high,
                    &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0],
                )),
        )
        .map_err(|e| e.to_string())?;
    chart
        .configure_mesh()
        .y_desc("payment latency, ms (log scale)")
        .x_label_formatter(&|v| seconds_label(*v))
        .y_label_formatter(&|v| ms_label(*v))
        .label_style(("sans-serif", text_px))
        .axis_desc_style(("sans-serif", text_px))
        .draw()
        .map_err(|e| e.to_string())?;
    draw_run_edges(&mut chart, input, low, high)?;
    for (name, color, value) in series {
        let parts = segments(input, |s| answered(s).then(|| ms(value(s)).max(low)));
        draw_segments(&mut chart, parts, color, name)?;
    }
    draw_legend(&mut chart, SeriesLabelPosition::UpperRight, text_px)
}

/// Whether a second had payments answered (else it has no latencies).
fn answered(second: &SecondReport) -> bool {
    second.payments > 0
}

/// The latency axis's range, ms.
fn latency_range(input: &PlotInput<'_>) -> (f64, f64) {
    let seconds = input.runs.iter().flat_map(|r| &r.timeline);
    let low = seconds
        .clone()
        .filter(|s| answered(s))
        .map(|s| ms(s.p50_us))
        .fold(f64::INFINITY, f64::min);
    let high = seconds
        .filter(|s| answered(s))
        .map(|s| ms(s.p999_us))
        .fold(0.0, f64::max);
    // A log axis from a decade below the lowest p50 to a bit above the
    // highest p99.9 (0.01..100 ms when nothing was answered).
    if low.is_finite() && high > 0.0 {
        ((low / 2.0).max(0.001), high * 2.0)
    } else {
        (0.01, 100.0)
    }
}

/// The x axis's description, under the lowest chart.
const X_DESC: &str = "seconds of load (runs end to end, a dark line where each run starts)";

fn throughput_chart<DB: DrawingBackend>(
    area: &DrawingArea<DB, plotters::coord::Shift>,
    input: &PlotInput<'_>,
    x_max: f64,
    text_px: u32,
    lowest: bool,
) -> Result<(), String> {
    let soak_high = input.soak.as_ref().map_or(0.0, |s| s.payments_per_s_high);
    let peak = input
        .runs
        .iter()
        .flat_map(|r| &r.timeline)
        .map(|s| s.payments as f64)
        .fold(input.offered_payments_per_s.unwrap_or(0.0), f64::max)
        .max(soak_high);
    let y_max = if peak > 0.0 { peak * 1.15 } else { 1.0 };
    let mut chart = ChartBuilder::on(area)
        .margin(text_px / 2)
        .margin_right(text_px * 2)
        .x_label_area_size(text_px * 3)
        .y_label_area_size(text_px * 4)
        .build_cartesian_2d(0f64..x_max, 0f64..y_max)
        .map_err(|e| e.to_string())?;
    chart
        .configure_mesh()
        .x_desc(if lowest { X_DESC } else { "" })
        // Short in the middle panel, where the height is small.
        .y_desc(if lowest {
            "payments answered per second"
        } else {
            "payments/s"
        })
        .x_label_formatter(&|v| seconds_label(*v))
        .y_label_formatter(&|v| format!("{v:.0}"))
        .label_style(("sans-serif", text_px))
        .axis_desc_style(("sans-serif", text_px))
        .draw()
        .map_err(|e| e.to_string())?;
    draw_run_edges(&mut chart, input, 0.0, y_max)?;
    let parts = segments(input, |s| Some(s.payments as f64));
    draw_segments(&mut chart, parts, THROUGHPUT, "answered")?;
    draw_throughput_limits(&mut chart, input, x_max)?;
    draw_legend(&mut chart, SeriesLabelPosition::LowerRight, text_px)
}

/// Dashed: `--soak`'s band around the first minute's payments/s, and the
/// open loop's offered payments/s.
fn draw_throughput_limits<DB: DrawingBackend>(
    chart: &mut ChartContext<'_, DB, Cartesian2d<RangedCoordf64, RangedCoordf64>>,
    input: &PlotInput<'_>,
    x_max: f64,
) -> Result<(), String> {
    if let Some(soak) = &input.soak {
        for (i, y) in [soak.payments_per_s_low, soak.payments_per_s_high]
            .into_iter()
            .enumerate()
        {
            let drawn = chart
                .draw_series(dashed((0.0, y), (x_max, y), THROUGHPUT))
                .map_err(|e| e.to_string())?;
            if i == 0 {
                drawn
                    .label("first minute ±10%")
                    .legend(|(x, y)| dashed_legend(x, y, THROUGHPUT));
            }
        }
    }
    if let Some(offered) = input.offered_payments_per_s {
        chart
            .draw_series(DashedLineSeries::new(
                [(0.0, offered), (x_max, offered)],
                8,
                6,
                BLACK.stroke_width(1),
            ))
            .map_err(|e| e.to_string())?
            .label("offered")
            .legend(|(x, y)| {
                DashedPathElement::new(vec![(x, y), (x + 20, y)], 5, 3, BLACK.stroke_width(1))
            });
    }
    Ok(())
}

fn rss_chart<DB: DrawingBackend>(
    area: &DrawingArea<DB, plotters::coord::Shift>,
    input: &PlotInput<'_>,
    x_max: f64,
    text_px: u32,
) -> Result<(), String> {
    let mib = |s: &SecondReport| s.rss_kib.map(|kib| kib as f64 / 1024.0);
    let limit = input.soak.as_ref().and_then(|s| s.rss_limit_mib);
    let peak = input
        .runs
        .iter()
        .flat_map(|r| &r.timeline)
        .filter_map(mib)
        .fold(limit.unwrap_or(0.0), f64::max);
    // From zero: growth shows at its true size against the whole.
    let y_max = if peak > 0.0 { peak * 1.15 } else { 1.0 };
    let mut chart = ChartBuilder::on(area)
        .margin(text_px / 2)
        .margin_right(text_px * 2)
        .x_label_area_size(text_px * 3)
        .y_label_area_size(text_px * 4)
        .build_cartesian_2d(0f64..x_max, 0f64..y_max)
        .map_err(|e| e.to_string())?;
    chart
        .configure_mesh()
        .x_desc(X_DESC)
        .y_desc("RSS, MiB")
        .x_label_formatter(&|v| seconds_label(*v))
        .y_label_formatter(&|v| format!("{v:.0}"))
        .label_style(("sans-serif", text_px))
        .axis_desc_style(("sans-serif", text_px))
        .draw()
        .map_err(|e| e.to_string())?;
    draw_run_edges(&mut chart, input, 0.0, y_max)?;
    let parts = segments(input, mib);
    draw_segments(
        &mut chart,
        parts,
        RSS,
        &format!("RSS of the {}", input.rss_of),
    )?;
    if let (Some(soak), Some(limit)) = (&input.soak, limit) {
        chart
            .draw_series(dashed((soak.rss_limit_from_s, limit), (x_max, limit), RSS))
            .map_err(|e| e.to_string())?
            .label("soak limit after warm-up")
            .legend(|(x, y)| dashed_legend(x, y, RSS));
    }
    draw_legend(&mut chart, SeriesLabelPosition::LowerRight, text_px)
}

/// One series' `parts` (see [`segments`]) as lines in `color`, with one
/// legend entry, `label`.
fn draw_segments<DB, Y>(
    chart: &mut ChartContext<'_, DB, Cartesian2d<RangedCoordf64, Y>>,
    parts: Vec<Vec<(f64, f64)>>,
    color: RGBColor,
    label: &str,
) -> Result<(), String>
where
    DB: DrawingBackend,
    Y: Ranged<ValueType = f64>,
{
    for (i, points) in parts.into_iter().enumerate() {
        let drawn = chart
            .draw_series(LineSeries::new(points, color.stroke_width(2)).point_size(2))
            .map_err(|e| e.to_string())?;
        if i == 0 {
            drawn.label(label).legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
            });
        }
    }
    Ok(())
}

/// The legend box, at `position`.
fn draw_legend<'a, DB, Y>(
    chart: &mut ChartContext<'a, DB, Cartesian2d<RangedCoordf64, Y>>,
    position: SeriesLabelPosition,
    text_px: u32,
) -> Result<(), String>
where
    DB: DrawingBackend + 'a,
    Y: Ranged<ValueType = f64>,
{
    chart
        .configure_series_labels()
        .position(position)
        .label_font(("sans-serif", text_px))
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()
        .map_err(|e| e.to_string())
}

/// A dashed line from `from` to `to`.
fn dashed(
    from: (f64, f64),
    to: (f64, f64),
    color: RGBColor,
) -> DashedLineSeries<std::array::IntoIter<(f64, f64), 2>, i32> {
    DashedLineSeries::new([from, to], 8, 6, color.stroke_width(1))
}

fn dashed_legend(
    x: i32,
    y: i32,
    color: RGBColor,
) -> DashedPathElement<std::vec::IntoIter<(i32, i32)>, i32> {
    DashedPathElement::new(vec![(x, y), (x + 20, y)], 5, 3, color.stroke_width(1))
}

/// A thin vertical line where each run after the first begins.
fn draw_run_edges<DB, Y>(
    chart: &mut ChartContext<'_, DB, Cartesian2d<RangedCoordf64, Y>>,
    input: &PlotInput<'_>,
    low: f64,
    high: f64,
) -> Result<(), String>
where
    DB: DrawingBackend,
    Y: Ranged<ValueType = f64>,
{
    let edges = (1..input.runs.len()).map(|i| {
        let x = (i as u64 * input.duration_s) as f64;
        PathElement::new(vec![(x, low), (x, high)], RUN_EDGE.stroke_width(2))
    });
    chart.draw_series(edges).map_err(|e| e.to_string())?;
    Ok(())
}

/// `steps` times each power of ten, from `low` to `high`: labels a log
/// axis at 1-2-5 however few decades it spans (plotters' own choice can
/// leave a short range with one label or none).
fn decades(low: f64, high: f64, steps: &[f64]) -> Vec<f64> {
    let mut points = Vec::new();
    for exponent in low.log10().floor() as i32..=high.log10().ceil() as i32 {
        let power = 10f64.powi(exponent);
        for step in steps {
            let value = step * power;
            if value >= low && value <= high {
                points.push(value);
            }
        }
    }
    points
}

/// Whole seconds without a decimal; tenths when the axis is that short.
fn seconds_label(value: f64) -> String {
    // Tick values are sums of float steps: 2.0 may arrive as 1.9999999.
    if (value - value.round()).abs() < 1e-6 {
        format!("{:.0}", value.round())
    } else {
        format!("{value:.1}")
    }
}

/// Axis labels in ms: whole numbers from 1 ms up, two decimals below.
fn ms_label(value: f64) -> String {
    if value >= 1.0 {
        format!("{value:.0}")
    } else {
        format!("{value:.2}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_axis_labels_run_one_two_five() {
        assert_eq!(
            decades(0.3, 60.0, &[1.0, 2.0, 5.0]),
            [0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 50.0]
        );
    }

    #[test]
    fn sizes_parse_within_bounds() {
        assert_eq!(parse_size("900x600"), Ok((900, 600)));
        assert_eq!(parse_size("1200X800"), Ok((1200, 800)));
        assert!(parse_size("900").is_err());
        assert!(parse_size("10x10").is_err());
        assert!(parse_size("900x-1").is_err());
        assert!(parse_size("90000x600").is_err());
    }
}
