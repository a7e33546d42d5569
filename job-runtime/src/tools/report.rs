//! The HTML report of a local run (`demo`, `replay`): the summary numbers and
//! plots of the job watermark, live entries, entries inserted vs evicted per
//! interval and throughput, from samples taken about once per engine tick.
//!
//! One self-contained file: inline CSS and SVG drawn here, no scripts, nothing
//! fetched when it is viewed. Every plotted series also carries its values in a
//! `data-values` attribute, and all samples are listed in a table.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::engine::runner::EngineProgress;
use crate::time::watermark::{MAX_WM, MIN_WM};
use crate::tools::summary::Summary;

/// Written next to the run's output; the leading underscore keeps tools that
/// read every other file of the directory as entries away from it.
pub const REPORT_FILE: &str = "_report.html";

/// Samples kept in memory; past this every other one is dropped, which widens
/// the intervals but keeps every cumulative value exact.
const MAX_SAMPLES: usize = 2048;

/// Vertices beyond which a series is drawn as a line without point markers.
const MARKERS_UP_TO: usize = 60;

/// The engine's state at one moment of the run.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sample {
    pub elapsed_seconds: f64,
    pub records_read: u64,
    /// The job watermark (Unix milliseconds) while it is a finite event time.
    pub watermark_ms: Option<i64>,
    pub live_entries: u64,
    /// Cumulative.
    pub entries_inserted: u64,
    /// Cumulative.
    pub entries_evicted: u64,
}

impl Sample {
    pub fn from_progress(elapsed: Duration, p: &EngineProgress) -> Self {
        Self {
            elapsed_seconds: elapsed.as_secs_f64(),
            records_read: p.records_read,
            watermark_ms: (p.job_watermark != MIN_WM && p.job_watermark != MAX_WM)
                .then_some(p.job_watermark),
            live_entries: p.live_entries,
            entries_inserted: p.entries_inserted,
            entries_evicted: p.entries_evicted,
        }
    }
}

/// Collects samples from the engine's progress callback.
pub struct Recorder {
    started: Instant,
    samples: Vec<Sample>,
}

impl Recorder {
    /// A first, all-zero sample at `started`, the instant the run's summary
    /// measures its elapsed time from: nothing is read before.
    pub fn since(started: Instant) -> Self {
        Self {
            started,
            samples: vec![Sample {
                elapsed_seconds: 0.0,
                records_read: 0,
                watermark_ms: None,
                live_entries: 0,
                entries_inserted: 0,
                entries_evicted: 0,
            }],
        }
    }

    pub fn record(&mut self, p: &EngineProgress) {
        if self.samples.len() >= MAX_SAMPLES {
            let last = self.samples.len() - 1;
            let mut i = 0;
            self.samples.retain(|_| {
                let keep = i % 2 == 0 || i == last;
                i += 1;
                keep
            });
        }
        self.samples
            .push(Sample::from_progress(self.started.elapsed(), p));
    }

    pub fn samples(&self) -> &[Sample] {
        &self.samples
    }
}

/// What the report shows.
pub struct Report<'a> {
    /// The verb, as in "streamjoin demo".
    pub verb: &'a str,
    /// The output directory the report describes.
    pub output: &'a Path,
    pub summary: &'a Summary,
    pub samples: &'a [Sample],
}

#[derive(Debug, thiserror::Error)]
#[error("cannot write report {path}: {source}")]
pub struct ReportError {
    pub path: PathBuf,
    pub source: std::io::Error,
}

/// Writes the report to `REPORT_FILE` in `dir` and returns its path.
pub fn write(dir: &Path, report: &Report) -> Result<PathBuf, ReportError> {
    let path = dir.join(REPORT_FILE);
    std::fs::write(&path, render(report)).map_err(|source| ReportError {
        path: path.clone(),
        source,
    })?;
    Ok(path)
}

/// Rates over one interval between consecutive samples, placed at its end.
struct Interval {
    end: f64,
    records_per_second: f64,
    inserted_per_second: f64,
    evicted_per_second: f64,
}

fn intervals(samples: &[Sample]) -> Vec<Interval> {
    samples
        .windows(2)
        .filter_map(|w| {
            let dt = w[1].elapsed_seconds - w[0].elapsed_seconds;
            let rate = |a: u64, b: u64| b.saturating_sub(a) as f64 / dt;
            (dt > 0.0).then(|| Interval {
                end: w[1].elapsed_seconds,
                records_per_second: rate(w[0].records_read, w[1].records_read),
                inserted_per_second: rate(w[0].entries_inserted, w[1].entries_inserted),
                evicted_per_second: rate(w[0].entries_evicted, w[1].entries_evicted),
            })
        })
        .collect()
}

/// The whole HTML document.
pub fn render(r: &Report) -> String {
    let mut out = String::with_capacity(64 * 1024);
    render_head(&mut out, r);
    render_summary(&mut out, r.summary);
    render_plots(&mut out, r, &plots(r));
    render_samples(&mut out, r.samples);
    out.push_str("</body>\n</html>\n");
    out
}

/// The document's head, title and the line saying what it describes.
fn render_head(out: &mut String, r: &Report) {
    let title = format!("streamjoin {} report", r.verb);
    let _ = write!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>{}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n<h1>{}</h1>\n",
        esc(&title),
        esc(&title)
    );
    let _ = writeln!(
        out,
        "<p class=\"meta\">Output <code>{}</code> · written {} · {} samples, about one per engine tick</p>",
        esc(&r.output.display().to_string()),
        esc(&humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string()),
        r.samples.len()
    );
}

/// The table of summary numbers.
fn render_summary(out: &mut String, s: &Summary) {
    out.push_str("<section class=\"summary\">\n<table>\n");
    let mut row = |name: &str, value: String| {
        let _ = writeln!(
            out,
            "<tr><th>{}</th><td>{}</td></tr>",
            esc(name),
            esc(&value)
        );
    };
    row("records in", group(s.records));
    for (input, n) in &s.records_by_input {
        row(&format!("\u{a0}\u{a0}{input}"), group(*n));
    }
    row("malformed (dead-letter)", group(s.malformed));
    row("late", group(s.late));
    row("duplicates", group(s.duplicates));
    row("entries emitted", group(s.entries));
    row("live entries at end", group(s.live_entries_at_end));
    if let Some(tf) = s.take_fraction {
        row(
            "take fraction",
            format!(
                "{:.2}% ({} of {} entries with impressions had plays)",
                tf * 100.0,
                group(s.entries_joined),
                group(s.entries_with_impressions)
            ),
        );
    }
    row(
        "throughput",
        format!(
            "{} records/s ({:.2} s)",
            group(s.records_per_second.round() as u64),
            s.elapsed_seconds
        ),
    );
    row(
        "partitions, threads",
        format!("{}, {}", s.partitions, s.threads),
    );
    if let Some(rss) = s.peak_rss_bytes {
        row(
            "peak memory (RSS)",
            format!("{:.1} MiB", rss as f64 / 1_048_576.0),
        );
    }
    out.push_str("</table>\n</section>\n");
}

/// The four plots: watermark, live entries, inserted vs evicted, throughput.
fn plots<'a>(r: &'a Report) -> [Plot<'a>; 4] {
    let s = r.summary;
    let iv = intervals(r.samples);
    [
        Plot {
            title: "Watermark progression",
            y_label: "job watermark (event time, UTC)",
            y_axis: YAxis::Time,
            series: vec![Series::new(
                "job watermark",
                "#7c3aed",
                r.samples
                    .iter()
                    .filter_map(|x| x.watermark_ms.map(|w| (x.elapsed_seconds, w as f64)))
                    .collect(),
            )],
        },
        Plot {
            title: "Live entries",
            y_label: "open state entries",
            y_axis: YAxis::Count,
            series: vec![Series::new(
                "live entries",
                "#059669",
                r.samples
                    .iter()
                    .map(|x| (x.elapsed_seconds, x.live_entries as f64))
                    .collect(),
            )],
        },
        Plot {
            title: "Entries inserted vs evicted per interval",
            y_label: "entries/s over each interval",
            y_axis: YAxis::Count,
            series: vec![
                Series::new(
                    "inserted",
                    "#2563eb",
                    iv.iter().map(|i| (i.end, i.inserted_per_second)).collect(),
                ),
                Series::new(
                    "evicted",
                    "#ea580c",
                    iv.iter().map(|i| (i.end, i.evicted_per_second)).collect(),
                ),
            ],
        },
        Plot {
            title: "Throughput",
            y_label: "records/s over each interval",
            y_axis: YAxis::Count,
            series: vec![
                Series::new(
                    "records read",
                    "#0891b2",
                    iv.iter().map(|i| (i.end, i.records_per_second)).collect(),
                ),
                Series {
                    dashed: true,
                    ..Series::new(
                        "run average",
                        "#6b7280",
                        r.samples
                            .last()
                            .filter(|l| l.elapsed_seconds > 0.0)
                            .map(|l| {
                                let avg = s.records_per_second;
                                vec![(0.0, avg), (l.elapsed_seconds, avg)]
                            })
                            .unwrap_or_default(),
                    )
                },
            ],
        },
    ]
}

/// The plots on one time axis (the run's elapsed seconds), and a note on
/// how to read them.
fn render_plots(out: &mut String, r: &Report, plots: &[Plot]) {
    let x_max = r
        .samples
        .iter()
        .map(|x| x.elapsed_seconds)
        .fold(0.0, f64::max);
    out.push_str("<section class=\"plots\">\n");
    for p in plots {
        let _ = writeln!(
            out,
            "<figure>\n<figcaption>{}</figcaption>\n{}</figure>",
            esc(p.title),
            p.svg(x_max)
        );
    }
    out.push_str("</section>\n");
    out.push_str(
        "<p class=\"note\">Live, inserted and evicted entries are read from the counters the \
         shards publish to the metrics every few batches, so during the run they trail the \
         records by a little; the last sample is exact. At the end of a bounded input every \
         entry still open is evicted at once and the watermark becomes +∞, which is not \
         plotted.</p>\n",
    );
}

/// Every sample, in a table folded away.
fn render_samples(out: &mut String, samples: &[Sample]) {
    out.push_str(
        "<details>\n<summary>All samples</summary>\n<table class=\"samples\">\n<tr><th>elapsed (s)</th>\
         <th>records read</th><th>job watermark</th><th>live entries</th>\
         <th>inserted (total)</th><th>evicted (total)</th></tr>\n",
    );
    for x in samples {
        let _ = writeln!(
            out,
            "<tr><td>{:.3}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            x.elapsed_seconds,
            x.records_read,
            x.watermark_ms.map_or_else(|| "–".to_string(), format_time),
            x.live_entries,
            x.entries_inserted,
            x.entries_evicted
        );
    }
    out.push_str("</table>\n</details>\n");
}

const STYLE: &str = "\
body{font-family:system-ui,-apple-system,'Segoe UI',Roboto,'DejaVu Sans',sans-serif;margin:24px auto;\
max-width:1180px;padding:0 16px;color:#111827;background:#f9fafb}\
h1{font-size:22px;margin:0 0 4px}\
.meta,.note{color:#4b5563;font-size:13px}\
code{font-size:12px;background:#eef0f3;padding:1px 4px;border-radius:3px}\
table{border-collapse:collapse;font-size:14px}\
.summary table{background:#fff;border:1px solid #e5e7eb;border-radius:6px}\
th,td{padding:3px 12px;text-align:left}\
td{font-variant-numeric:tabular-nums}\
.summary th{font-weight:500;color:#374151;white-space:pre}\
.plots{display:grid;grid-template-columns:repeat(auto-fit,minmax(480px,1fr));gap:16px;margin-top:16px}\
figure{margin:0;background:#fff;border:1px solid #e5e7eb;border-radius:6px;padding:8px}\
figcaption{font-weight:600;font-size:15px;margin:2px 4px 0}\
svg{width:100%;height:auto;display:block}\
svg text{font-family:inherit;font-size:11px;fill:#374151}\
svg text.peak{font-weight:600}\
details{margin-top:16px}\
.samples td,.samples th{text-align:right;padding:1px 8px;font-size:12px}";

#[derive(Clone, Copy)]
enum YAxis {
    /// Non-negative quantities, from zero.
    Count,
    /// Unix milliseconds, labelled as UTC times.
    Time,
}

struct Series<'a> {
    name: &'a str,
    color: &'a str,
    dashed: bool,
    points: Vec<(f64, f64)>,
}

impl<'a> Series<'a> {
    fn new(name: &'a str, color: &'a str, points: Vec<(f64, f64)>) -> Self {
        Self {
            name,
            color,
            dashed: false,
            points,
        }
    }
}

struct Plot<'a> {
    title: &'a str,
    y_label: &'a str,
    y_axis: YAxis,
    series: Vec<Series<'a>>,
}

const W: f64 = 600.0;
const H: f64 = 300.0;
const LEFT: f64 = 84.0;
const RIGHT: f64 = 16.0;
const TOP: f64 = 30.0;
const BOTTOM: f64 = 42.0;

impl Plot<'_> {
    fn svg(&self, x_max: f64) -> String {
        let mut o = String::new();
        let _ = writeln!(
            o,
            "<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 {W} {H}\" role=\"img\" \
             aria-label=\"{}\">\n<title>{}</title>",
            esc(self.title),
            esc(self.title)
        );
        let f = self.frame(x_max);
        self.draw_axes(&mut o, &f);
        self.draw_legend(&mut o);
        if self.series.iter().all(|s| s.points.is_empty()) {
            let (x0, x1) = (LEFT, W - RIGHT);
            let (y0, y1) = (H - BOTTOM, TOP);
            let _ = writeln!(
                o,
                "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">no samples</text>",
                (x0 + x1) / 2.0,
                (y0 + y1) / 2.0
            );
        }
        for s in &self.series {
            draw_series(&mut o, s, &f);
        }
        o.push_str("</svg>\n");
        o
    }

    /// The scales: elapsed seconds across, the plot's values up, a count axis
    /// cut when a few peaks would flatten everything else.
    fn frame(&self, x_max: f64) -> Frame {
        let xs = Ticks::numeric(0.0, x_max.max(1e-3));
        let ys: Vec<f64> = self
            .series
            .iter()
            .flat_map(|s| s.points.iter().map(|p| p.1))
            .collect();
        // Measured series decide the cut; reference lines (dashed) stay visible.
        let measured: Vec<f64> = self
            .series
            .iter()
            .filter(|s| !s.dashed)
            .flat_map(|s| s.points.iter().map(|p| p.1))
            .collect();
        let y_max = ys.iter().copied().fold(0.0, f64::max);
        let cut = match self.y_axis {
            YAxis::Count => axis_cut(&measured).map(|c| {
                self.series
                    .iter()
                    .filter(|s| s.dashed)
                    .flat_map(|s| s.points.iter().map(|p| p.1))
                    .fold(c, f64::max)
            }),
            YAxis::Time => None,
        }
        .filter(|c| *c < y_max);
        let yt = match self.y_axis {
            YAxis::Count => Ticks::numeric(0.0, cut.unwrap_or(y_max)),
            YAxis::Time => Ticks::time(
                ys.iter().copied().fold(f64::INFINITY, f64::min),
                ys.iter().copied().fold(f64::NEG_INFINITY, f64::max),
            ),
        };
        Frame { xs, yt, cut }
    }

    /// Grid, tick labels, axes and their labels.
    fn draw_axes(&self, o: &mut String, f: &Frame) {
        let (x0, x1) = (LEFT, W - RIGHT);
        let (y0, y1) = (H - BOTTOM, TOP);
        // Grid and tick labels.
        for &t in &f.yt.at {
            let y = f.py(t);
            let _ = writeln!(
                o,
                "<line x1=\"{x0}\" x2=\"{x1}\" y1=\"{y:.1}\" y2=\"{y:.1}\" stroke=\"#e5e7eb\"/>\
                 <text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>",
                x0 - 6.0,
                y + 4.0,
                esc(&f.yt.label(t))
            );
        }
        for &t in &f.xs.at {
            let x = f.px(t);
            let _ = writeln!(
                o,
                "<line x1=\"{x:.1}\" x2=\"{x:.1}\" y1=\"{y1}\" y2=\"{y0}\" stroke=\"#f1f2f4\"/>\
                 <text x=\"{x:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{}</text>",
                y0 + 15.0,
                esc(&f.xs.label(t))
            );
        }
        let _ = writeln!(
            o,
            "<path d=\"M{x0} {y1}V{y0}H{x1}\" fill=\"none\" stroke=\"#9ca3af\"/>\
             <text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">elapsed (s)</text>\
             <text x=\"{x0}\" y=\"14\">{}{}</text>",
            (x0 + x1) / 2.0,
            H - 6.0,
            esc(self.y_label),
            if f.cut.is_some() {
                " · axis cut, peaks labelled"
            } else {
                ""
            }
        );
    }

    /// The legend, right-aligned in the top margin.
    fn draw_legend(&self, o: &mut String) {
        let x1 = W - RIGHT;
        let mut lx = x1;
        for s in self.series.iter().rev() {
            let w = 26.0 + 6.5 * s.name.chars().count() as f64;
            lx -= w;
            let _ = writeln!(
                o,
                "<line x1=\"{lx:.1}\" x2=\"{:.1}\" y1=\"10\" y2=\"10\" stroke=\"{}\" stroke-width=\"2.5\"{}/>\
                 <text x=\"{:.1}\" y=\"14\">{}</text>",
                lx + 16.0,
                s.color,
                if s.dashed {
                    " stroke-dasharray=\"5 4\""
                } else {
                    ""
                },
                lx + 20.0,
                esc(s.name)
            );
        }
    }
}

/// The plot area's scales.
struct Frame {
    xs: Ticks,
    yt: Ticks,
    /// Where a count axis is cut, values above it drawn at the top edge.
    cut: Option<f64>,
}

impl Frame {
    fn px(&self, x: f64) -> f64 {
        let (x0, x1) = (LEFT, W - RIGHT);
        x0 + (x - self.xs.lo) / (self.xs.hi - self.xs.lo) * (x1 - x0)
    }

    fn py(&self, y: f64) -> f64 {
        let (y0, y1) = (H - BOTTOM, TOP);
        y0 - (y.min(self.yt.hi) - self.yt.lo) / (self.yt.hi - self.yt.lo) * (y0 - y1)
    }
}

/// One series: its line (with its values for tests and tools), the label of
/// its highest value above a cut axis, and markers when it has few points.
fn draw_series(o: &mut String, s: &Series, f: &Frame) {
    let y1 = TOP;
    let pts: Vec<String> = s
        .points
        .iter()
        .map(|&(x, y)| format!("{:.1},{:.1}", f.px(x), f.py(y)))
        .collect();
    let values: Vec<String> = s
        .points
        .iter()
        .map(|&(_, y)| trim(&format!("{y:.3}")))
        .collect();
    let _ = writeln!(
        o,
        "<polyline class=\"series\" data-series=\"{}\" data-values=\"{}\" points=\"{}\" \
         fill=\"none\" stroke=\"{}\" stroke-width=\"2\" stroke-linejoin=\"round\"{}>\
         <title>{}</title></polyline>",
        esc(s.name),
        values.join(","),
        pts.join(" "),
        s.color,
        if s.dashed {
            " stroke-dasharray=\"5 4\""
        } else {
            ""
        },
        esc(s.name)
    );
    // Values above a cut axis: the highest one's value at the top edge.
    if let Some(&(x, y)) = s
        .points
        .iter()
        .filter(|p| p.1 > f.yt.hi)
        .max_by(|a, b| a.1.total_cmp(&b.1))
    {
        let _ = writeln!(
            o,
            "<text class=\"peak\" x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\" style=\"fill:{}\">↑ {}</text>",
            f.px(x) - 4.0,
            y1 + 10.0,
            s.color,
            si(y)
        );
    }
    if !s.dashed && s.points.len() <= MARKERS_UP_TO {
        for &(x, y) in &s.points {
            let _ = write!(
                o,
                "<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"2.5\" fill=\"{}\"/>",
                f.px(x),
                f.py(y),
                s.color
            );
        }
        o.push('\n');
    }
}

/// Where to cut a count axis so that a few peaks (such as the eviction of all
/// open entries at the end of a bounded input) do not flatten everything else:
/// 1.5 times the 95th percentile when the maximum is more than 4 times that.
fn axis_cut(values: &[f64]) -> Option<f64> {
    if values.len() < 10 {
        return None;
    }
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let p95 = sorted[(sorted.len() - 1) * 95 / 100];
    let max = sorted[sorted.len() - 1];
    (p95 > 0.0 && max > 4.0 * p95).then_some(1.5 * p95)
}

/// An axis range with tick positions.
struct Ticks {
    lo: f64,
    hi: f64,
    at: Vec<f64>,
    time: bool,
    step: f64,
}

impl Ticks {
    /// About five round ticks from `lo` (kept) to at least `hi`.
    fn numeric(lo: f64, hi: f64) -> Self {
        let hi = if hi > lo { hi } else { lo + 1.0 };
        let raw = (hi - lo) / 5.0;
        let mag = 10f64.powf(raw.log10().floor());
        let step = mag
            * [1.0, 2.0, 2.5, 5.0, 10.0]
                .into_iter()
                .find(|f| raw / mag <= *f)
                .unwrap_or(10.0);
        let top = (hi / step).ceil() * step;
        let at = (0..)
            .map(|i| lo + f64::from(i) * step)
            .take_while(|t| *t <= top + step / 2.0)
            .collect();
        Self {
            lo,
            hi: top,
            at,
            time: false,
            step,
        }
    }

    /// Ticks on round UTC times between `lo` and `hi` (milliseconds).
    fn time(lo: f64, hi: f64) -> Self {
        if !lo.is_finite() || !hi.is_finite() {
            return Self::numeric(0.0, 1.0);
        }
        const STEPS_S: [f64; 20] = [
            1.0, 2.0, 5.0, 10.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 900.0, 1800.0, 3600.0,
            7200.0, 10800.0, 21600.0, 43200.0, 86400.0, 172_800.0, 604_800.0,
        ];
        let span = (hi - lo).max(1.0);
        let step = STEPS_S
            .into_iter()
            .map(|s| s * 1000.0)
            .find(|s| span / s <= 6.0)
            .unwrap_or_else(|| (span / 5.0 / 86_400_000.0).ceil() * 86_400_000.0);
        let first = (lo / step).floor() * step;
        let mut last = (hi / step).ceil() * step;
        if last <= first {
            last = first + step;
        }
        let n = ((last - first) / step).round() as i64;
        Self {
            lo: first,
            hi: last,
            at: (0..=n).map(|i| first + i as f64 * step).collect(),
            time: true,
            step,
        }
    }

    fn label(&self, v: f64) -> String {
        if !self.time {
            return si(v);
        }
        let full = format_time(v as i64);
        // "2024-05-01T12:34:56Z": the date only when the axis spans days.
        let span_days = self.hi - self.lo >= 86_400_000.0;
        match (span_days, self.step < 60_000.0) {
            (true, _) => format!("{} {}", &full[5..10], &full[11..16]),
            (false, true) => full[11..19].to_string(),
            (false, false) => full[11..16].to_string(),
        }
    }
}

fn format_time(ms: i64) -> String {
    let t = std::time::UNIX_EPOCH + Duration::from_millis(ms.max(0) as u64);
    humantime::format_rfc3339_seconds(t).to_string()
}

/// Short numbers for tick labels: 1.5k, 2M.
fn si(v: f64) -> String {
    let a = v.abs();
    let (div, suffix) = if a >= 1e9 {
        (1e9, "G")
    } else if a >= 1e6 {
        (1e6, "M")
    } else if a >= 1e3 {
        (1e3, "k")
    } else {
        (1.0, "")
    };
    trim(&format!("{:.2}", v / div)) + suffix
}

fn trim(s: &str) -> String {
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s.to_string()
    }
}

/// Thousands separated by thin spaces: 1 234 567.
fn group(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3 * 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push('\u{202f}');
        }
        out.push(c);
    }
    out
}

/// Escapes text for HTML element content and quoted attribute values.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::counters::ShardCounters;

    const T: i64 = 1_700_000_000_000;

    fn sample(t: f64, records: u64, wm: Option<i64>, live: u64, ins: u64, ev: u64) -> Sample {
        Sample {
            elapsed_seconds: t,
            records_read: records,
            watermark_ms: wm,
            live_entries: live,
            entries_inserted: ins,
            entries_evicted: ev,
        }
    }

    fn summary() -> Summary {
        let c = ShardCounters {
            records: [600, 400],
            entries_opened: 40,
            entries_emitted: 40,
            ..ShardCounters::default()
        };
        Summary::new(&c, 0, 2, 1, Duration::from_secs(2))
    }

    fn samples() -> Vec<Sample> {
        vec![
            sample(0.0, 0, None, 0, 0, 0),
            sample(0.5, 300, Some(T), 12, 12, 0),
            sample(1.0, 700, Some(T + 60_000), 20, 30, 10),
            sample(2.0, 1000, None, 0, 40, 40),
        ]
    }

    fn values<'a>(html: &'a str, series: &str) -> &'a str {
        let key = format!("data-series=\"{series}\" data-values=\"");
        let start = html.find(&key).map(|i| i + key.len()).expect(&key);
        let len = html[start..].find('"').expect("closing quote");
        &html[start..start + len]
    }

    #[test]
    fn report_is_one_html_document_with_an_svg_per_plot() {
        let s = summary();
        let html = render(&Report {
            verb: "demo",
            output: Path::new("/tmp/out"),
            summary: &s,
            samples: &samples(),
        });
        assert!(html.starts_with("<!DOCTYPE html>"));
        assert!(html.trim_end().ends_with("</html>"));
        assert_eq!(html.matches("<svg ").count(), 4);
        assert_eq!(html.matches("</svg>").count(), 4);
        for tag in ["table", "figure", "section", "details", "polyline", "title"] {
            assert_eq!(
                html.matches(&format!("<{tag}")).count(),
                html.matches(&format!("</{tag}>")).count(),
                "unbalanced <{tag}>"
            );
        }
        for title in [
            "Watermark progression",
            "Live entries",
            "Entries inserted vs evicted per interval",
            "Throughput",
        ] {
            assert!(html.contains(&format!("<figcaption>{title}</figcaption>")));
        }
        // Nothing is fetched when the report is viewed.
        assert!(!html.contains("<script"));
        assert_eq!(
            html.matches("http://").count(),
            html.matches("xmlns=\"http://www.w3.org/2000/svg\"").count()
        );
        assert!(!html.contains("https://"));
    }

    #[test]
    fn series_carry_the_sampled_values_and_per_interval_rates() {
        let s = summary();
        let html = render(&Report {
            verb: "demo",
            output: Path::new("out"),
            summary: &s,
            samples: &samples(),
        });
        // The watermark only where it was a finite event time.
        assert_eq!(
            values(&html, "job watermark"),
            format!("{T},{}", T + 60_000)
        );
        assert_eq!(values(&html, "live entries"), "0,12,20,0");
        // Per interval, as rates: 12 in 0.5 s, 18 in 0.5 s, 10 in 1 s.
        assert_eq!(values(&html, "inserted"), "24,36,10");
        assert_eq!(values(&html, "evicted"), "0,20,30");
        assert_eq!(values(&html, "records read"), "600,800,300");
        assert_eq!(values(&html, "run average"), "500,500");
        // Summary numbers are shown.
        assert!(html.contains("<th>records in</th><td>1\u{202f}000</td>"));
        assert!(html.contains("<th>entries emitted</th><td>40</td>"));
        // And every sample is listed.
        assert!(html.contains("<td>1.000</td><td>700</td><td>2023-11-14T22:14:20Z</td>"));
    }

    #[test]
    fn text_from_the_run_is_escaped() {
        let s = summary();
        let html = render(&Report {
            verb: "demo <b>&",
            output: Path::new("/tmp/<script>alert('x')</script>&\"q\""),
            summary: &s,
            samples: &samples(),
        });
        assert!(!html.contains("<script>"));
        assert!(!html.contains("<b>"));
        assert!(
            html.contains("/tmp/&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;&amp;&quot;q&quot;")
        );
        assert!(html.contains("<h1>streamjoin demo &lt;b&gt;&amp; report</h1>"));
    }

    #[test]
    fn a_run_too_short_for_intervals_says_no_samples() {
        let s = summary();
        let html = render(&Report {
            verb: "replay",
            output: Path::new("out"),
            summary: &s,
            samples: &samples()[..1],
        });
        assert_eq!(html.matches("<svg ").count(), 4);
        // Watermark, inserted/evicted and throughput have nothing to draw.
        assert_eq!(html.matches(">no samples</text>").count(), 3);
        assert_eq!(values(&html, "live entries"), "0");
    }

    #[test]
    fn a_final_eviction_peak_cuts_the_axis_and_is_labelled() {
        let s = summary();
        let mut xs: Vec<Sample> = (0..=20u64)
            .map(|i| sample(i as f64, i * 100, Some(T), 10, i * 10, i * 10))
            .collect();
        xs.push(sample(20.5, 2_000, None, 0, 200, 50_200));
        let html = render(&Report {
            verb: "demo",
            output: Path::new("out"),
            summary: &s,
            samples: &xs,
        });
        assert_eq!(values(&html, "evicted").rsplit(',').next(), Some("100000"));
        assert!(html.contains("entries/s over each interval · axis cut, peaks labelled"));
        assert!(html.contains("style=\"fill:#ea580c\">↑ 100k</text>"));
        // Steady series keep an uncut axis.
        assert!(!html.contains("records/s over each interval · axis cut"));
    }

    #[test]
    fn recorder_starts_at_zero_and_thins_out_keeping_the_latest() {
        let mut r = Recorder::since(Instant::now());
        let progress = |n: u64| EngineProgress {
            records_read: n,
            job_watermark: if n == 0 { MIN_WM } else { T + n as i64 },
            idle_partitions: 0,
            live_entries: n / 2,
            entries_inserted: n,
            entries_evicted: n / 2,
            idle_nanos: 0,
        };
        for n in 1..=(3 * MAX_SAMPLES as u64) {
            r.record(&progress(n));
        }
        r.record(&EngineProgress {
            job_watermark: MAX_WM,
            ..progress(5 * MAX_SAMPLES as u64)
        });
        let s = r.samples();
        assert!(s.len() <= MAX_SAMPLES + 1, "{}", s.len());
        assert_eq!(s[0].records_read, 0);
        assert_eq!(s[0].watermark_ms, None);
        let last = s[s.len() - 1];
        assert_eq!(last.records_read, 5 * MAX_SAMPLES as u64);
        assert_eq!(
            last.watermark_ms, None,
            "the end-of-input watermark is not plotted"
        );
        assert_eq!(s[s.len() - 2].records_read, 3 * MAX_SAMPLES as u64);
        assert!(s.windows(2).all(|w| w[0].records_read < w[1].records_read));
        assert!(
            s.windows(2)
                .all(|w| w[0].elapsed_seconds <= w[1].elapsed_seconds)
        );
    }

    #[test]
    fn time_axis_ticks_fall_on_round_utc_times() {
        let t = Ticks::time(T as f64, (T + 26 * 3_600_000) as f64);
        assert!(t.at.len() >= 3 && t.at.len() <= 8, "{:?}", t.at);
        assert!(t.at.iter().all(|v| (*v as i64) % 3_600_000 == 0));
        assert!(t.lo <= T as f64 && t.hi >= (T + 26 * 3_600_000) as f64);
        // Spanning days: month-day and hour:minute.
        assert_eq!(t.label(1_700_006_400_000.0), "11-15 00:00");
        let short = Ticks::time(T as f64, (T + 40_000) as f64);
        assert_eq!(short.label(1_700_000_010_000.0), "22:13:30");
    }

    #[test]
    fn count_axis_starts_at_zero_and_covers_the_maximum() {
        let t = Ticks::numeric(0.0, 1234.0);
        assert_eq!(t.lo, 0.0);
        assert!(t.hi >= 1234.0);
        assert_eq!(t.label(t.at[1]), "250");
        assert_eq!(si(2_500_000.0), "2.5M");
        assert_eq!(group(1_234_567), "1\u{202f}234\u{202f}567");
    }
}
