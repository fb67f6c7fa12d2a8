//! SVG charts of a run, drawn with plotters' SVG backend from the report
//! alone: the latency percentile curves at the knee, and the sweep
//! (throughput and p50/p99 against concurrency). Text is written as SVG
//! `<text>` for the viewer to render, so no font is needed here.

use super::report::{BenchReport, LevelReport};
use super::BenchError;
use plotters::prelude::*;
use std::path::{Path, PathBuf};

/// The chart files [`write`] makes in its directory.
pub const LATENCY_SVG: &str = "latency.svg";
/// See [`LATENCY_SVG`].
pub const SWEEP_SVG: &str = "sweep.svg";

const SIZE: (u32, u32) = (900, 560);
const FONT: &str = "sans-serif";

/// The series colours: saga finished, saga confirmed, single command,
/// ping-pong, raw.
const FINISHED: RGBColor = RGBColor(200, 40, 40);
const CONFIRMED: RGBColor = RGBColor(230, 140, 20);
const COMMAND: RGBColor = RGBColor(30, 90, 200);
const PING_PONG: RGBColor = RGBColor(40, 150, 70);
const RAW: RGBColor = RGBColor(120, 120, 120);

/// The deepest quantile the percentile chart shows, in nines (99.99 %).
const MAX_NINES: f64 = 4.0;

fn failed(what: &str) -> impl Fn(String) -> BenchError + '_ {
    move |err| format!("cannot draw the {what} chart: {err}").into()
}

/// A quantile as "nines" (`-log10(1 - q)`: 90 % is 1, 99 % is 2), capped
/// at [`MAX_NINES`], so the tail gets as much room as the body.
fn nines(q: f64) -> f64 {
    if q >= 1.0 {
        return MAX_NINES;
    }
    (-(1.0 - q).log10()).min(MAX_NINES)
}

/// The label of a "nines" tick: 0 → 0 %, 2 → 99 %, 3 → 99.9 %.
fn nines_label(x: &f64) -> String {
    let pct = 100.0 - 100.0 / 10f64.powf(*x);
    let text = format!("{pct:.2}");
    format!("{}%", text.trim_end_matches('0').trim_end_matches('.'))
}

/// A log axis range around `values` (positive ones), padded a little.
fn log_range(values: impl Iterator<Item = f64>) -> Option<std::ops::Range<f64>> {
    let (low, high) =
        values
            .filter(|v| v.is_finite() && *v > 0.0)
            .fold(None, |acc: Option<(f64, f64)>, v| match acc {
                None => Some((v, v)),
                Some((l, h)) => Some((l.min(v), h.max(v))),
            })?;
    Some(low / 1.5..high * 1.5)
}

/// The level the percentile chart shows: the knee, or else the highest.
fn shown_level(report: &BenchReport) -> Option<&LevelReport> {
    let knee = report.knee.as_ref().map(|k| k.concurrency);
    report
        .levels
        .iter()
        .find(|l| Some(l.concurrency) == knee)
        .or(report.levels.last())
}

/// A named, coloured percentile curve.
type Curve<'a> = (&'a str, RGBColor, &'a Vec<(f64, f64)>);

/// The percentile curves (confirmed, finished, single command, ping-pong)
/// of the knee level, as an SVG document.
pub fn latency_svg(report: &BenchReport) -> Result<String, BenchError> {
    let level = shown_level(report).ok_or("no level was measured")?;
    let curves = &level.curves;
    let series: [Curve<'_>; 4] = [
        ("order confirmed", CONFIRMED, &curves.confirmed),
        ("saga finished", FINISHED, &curves.finished),
        ("single command", COMMAND, &curves.baseline),
        ("broker ping-pong", PING_PONG, &curves.ping_pong),
    ];
    let y = log_range(series.iter().flat_map(|(_, _, c)| c.iter().map(|p| p.1)))
        .ok_or("no latency was recorded")?;
    let mut svg = String::new();
    {
        let fail = failed("latency");
        let root = SVGBackend::with_string(&mut svg, SIZE).into_drawing_area();
        root.fill(&WHITE).map_err(|e| fail(e.to_string()))?;
        let caption = format!(
            "Latency percentiles at concurrency {} ({} orders)",
            level.concurrency, level.orders
        );
        let mut chart = ChartBuilder::on(&root)
            .caption(caption, (FONT, 22))
            .margin(15)
            .x_label_area_size(45)
            .y_label_area_size(70)
            .build_cartesian_2d(0f64..MAX_NINES, y.log_scale())
            .map_err(|e| fail(e.to_string()))?;
        chart
            .configure_mesh()
            .x_desc("percentile")
            .y_desc("latency, ms (log)")
            .x_labels(5)
            .x_label_formatter(&nines_label)
            .y_label_formatter(&|v| format!("{v:.0}"))
            .label_style((FONT, 14))
            .draw()
            .map_err(|e| fail(e.to_string()))?;
        for (name, colour, curve) in series {
            let points = curve.iter().map(|&(q, ms)| (nines(q), ms));
            chart
                .draw_series(LineSeries::new(points, colour.stroke_width(2)))
                .map_err(|e| fail(e.to_string()))?
                .label(name)
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 20, y)], colour.stroke_width(2))
                });
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperLeft)
            .label_font((FONT, 14))
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .draw()
            .map_err(|e| fail(e.to_string()))?;
        root.present().map_err(|e| fail(e.to_string()))?;
    }
    Ok(svg)
}

type Pick = fn(&LevelReport) -> f64;

/// Draws one panel of the sweep: `series` against concurrency, log-log.
fn sweep_panel<DB: DrawingBackend>(
    area: &DrawingArea<DB, plotters::coord::Shift>,
    report: &BenchReport,
    title: &str,
    y_desc: &str,
    series: &[(&str, RGBColor, Pick)],
) -> Result<(), BenchError> {
    let fail = failed("sweep");
    let levels = &report.levels;
    let x = log_range(levels.iter().map(|l| l.concurrency as f64)).ok_or("no level")?;
    let y = log_range(
        series
            .iter()
            .flat_map(|(_, _, pick)| levels.iter().map(pick)),
    )
    .ok_or("nothing was measured")?;
    let mut chart = ChartBuilder::on(area)
        .caption(title, (FONT, 18))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d(x.log_scale(), y.clone().log_scale())
        .map_err(|e| fail(e.to_string()))?;
    chart
        .configure_mesh()
        .x_desc("concurrency (log)")
        .y_desc(y_desc)
        .x_label_formatter(&|v| format!("{v:.0}"))
        .y_label_formatter(&|v| format!("{v:.0}"))
        .label_style((FONT, 13))
        .draw()
        .map_err(|e| fail(e.to_string()))?;
    for &(name, colour, pick) in series {
        let points: Vec<(f64, f64)> = levels
            .iter()
            .map(|l| (l.concurrency as f64, pick(l)))
            .filter(|p| p.1 > 0.0)
            .collect();
        let dashed = name.contains("p99");
        let style = if dashed {
            colour.mix(0.6).stroke_width(1)
        } else {
            colour.stroke_width(2)
        };
        chart
            .draw_series(LineSeries::new(points.clone(), style))
            .map_err(|e| fail(e.to_string()))?
            .label(name)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], style));
        chart
            .draw_series(
                points
                    .into_iter()
                    .map(|p| Circle::new(p, 3, colour.filled())),
            )
            .map_err(|e| fail(e.to_string()))?;
    }
    if let Some(knee) = &report.knee {
        let at = knee.concurrency as f64;
        chart
            .draw_series(std::iter::once(PathElement::new(
                vec![(at, y.start), (at, y.end)],
                BLACK.mix(0.4).stroke_width(1),
            )))
            .map_err(|e| fail(e.to_string()))?
            .label(if knee.reached {
                "saga knee"
            } else {
                "saga knee (not reached)"
            })
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BLACK.mix(0.4)));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .label_font((FONT, 12))
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()
        .map_err(|e| fail(e.to_string()))?;
    Ok(())
}

/// Throughput, and p50/p99, against concurrency for the saga, the single
/// command and the raw broker, as an SVG document.
pub fn sweep_svg(report: &BenchReport) -> Result<String, BenchError> {
    if report.levels.is_empty() {
        return Err("no level was measured".into());
    }
    let mut svg = String::new();
    {
        let fail = failed("sweep");
        let root = SVGBackend::with_string(&mut svg, (SIZE.0, SIZE.1 * 2)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| fail(e.to_string()))?;
        let (upper, lower) = root.split_vertically(SIZE.1);
        sweep_panel(
            &upper,
            report,
            "Throughput against concurrency",
            "per second (log)",
            &[
                ("saga orders/s", FINISHED, |l| l.saga.per_sec),
                ("single commands/s", COMMAND, |l| l.baseline.per_sec),
                ("broker ping-pongs/s", PING_PONG, |l| l.ping_pong.per_sec),
                ("raw records/s", RAW, |l| l.raw.per_sec),
            ],
        )?;
        sweep_panel(
            &lower,
            report,
            "Latency against concurrency",
            "ms (log)",
            &[
                ("saga finished p50", FINISHED, |l| l.saga.latency.p50_ms),
                ("saga finished p99", FINISHED, |l| l.saga.latency.p99_ms),
                ("order confirmed p50", CONFIRMED, |l| l.confirmed.p50_ms),
                ("single command p50", COMMAND, |l| l.baseline.latency.p50_ms),
                ("single command p99", COMMAND, |l| l.baseline.latency.p99_ms),
                ("broker ping-pong p50", PING_PONG, |l| {
                    l.ping_pong.latency.p50_ms
                }),
            ],
        )?;
        root.present().map_err(|e| fail(e.to_string()))?;
    }
    Ok(svg)
}

/// Writes [`LATENCY_SVG`] and [`SWEEP_SVG`] into `dir` (created if need
/// be); returns their paths.
pub fn write(report: &BenchReport, dir: &Path) -> Result<Vec<PathBuf>, BenchError> {
    std::fs::create_dir_all(dir)
        .map_err(|err| format!("cannot create {}: {err}", dir.display()))?;
    let mut written = Vec::new();
    for (name, svg) in [
        (LATENCY_SVG, latency_svg(report)?),
        (SWEEP_SVG, sweep_svg(report)?),
    ] {
        let path = dir.join(name);
        std::fs::write(&path, svg)
            .map_err(|err| format!("cannot write {}: {err}", path.display()))?;
        written.push(path);
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::knee::Knee;

    fn level(concurrency: usize, scale: f64) -> LevelReport {
        let curve: Vec<(f64, f64)> = crate::bench::latency::CURVE_QUANTILES
            .iter()
            .map(|&q| (q, scale * (1.0 + 10.0 * q)))
            .collect();
        let mut l = LevelReport {
            concurrency,
            orders: 100,
            ..LevelReport::default()
        };
        l.curves.confirmed = curve.clone();
        l.curves.finished = curve.iter().map(|p| (p.0, p.1 * 1.3)).collect();
        l.curves.baseline = curve.iter().map(|p| (p.0, p.1 / 5.0)).collect();
        l.curves.ping_pong = curve.iter().map(|p| (p.0, p.1 / 9.0)).collect();
        l.saga.per_sec = 10.0 * concurrency as f64 / scale;
        l.baseline.per_sec = 50.0 * concurrency as f64 / scale;
        l.raw.per_sec = 500.0 * concurrency as f64 / scale;
        l.ping_pong.per_sec = 80.0 * concurrency as f64 / scale;
        l.saga.latency.p50_ms = 100.0 * scale;
        l.saga.latency.p99_ms = 300.0 * scale;
        l
    }

    fn report() -> BenchReport {
        BenchReport {
            levels: vec![level(1, 1.0), level(16, 2.0), level(64, 8.0)],
            knee: Some(Knee {
                concurrency: 16,
                per_sec: 80.0,
                reached: true,
            }),
            ..BenchReport::default()
        }
    }

    #[test]
    fn given_a_report_when_charted_then_both_svgs_name_their_series() {
        let latency = latency_svg(&report()).unwrap();
        assert!(
            latency.starts_with("<svg"),
            "{}",
            &latency[..80.min(latency.len())]
        );
        for name in [
            "order confirmed",
            "saga finished",
            "single command",
            "broker ping-pong",
            "concurrency 16",
        ] {
            assert!(latency.contains(name), "latency chart lacks {name}");
        }
        let sweep = sweep_svg(&report()).unwrap();
        for name in [
            "saga orders/s",
            "raw records/s",
            "saga finished p99",
            "saga knee",
        ] {
            assert!(sweep.contains(name), "sweep chart lacks {name}");
        }
    }

    #[test]
    fn given_no_levels_when_charted_then_it_is_an_error_not_a_panic() {
        let empty = BenchReport::default();
        assert!(latency_svg(&empty).is_err());
        assert!(sweep_svg(&empty).is_err());
    }

    #[test]
    fn given_quantiles_when_mapped_to_nines_then_labels_read_as_percentiles() {
        assert_eq!(nines(0.0), 0.0);
        assert!((nines(0.99) - 2.0).abs() < 1e-9);
        assert_eq!(nines(1.0), MAX_NINES);
        assert_eq!(nines_label(&0.0), "0%");
        assert_eq!(nines_label(&2.0), "99%");
        assert_eq!(nines_label(&3.0), "99.9%");
    }
}
