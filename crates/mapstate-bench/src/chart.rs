//! The rows drawn as SVG charts: throughput per workload and system, commit
//! latency and notification latency, each a grouped bar chart on a log
//! scale (the systems differ by 1000× and more).
//!
//! The SVG is written by hand: plain `<svg>` with `<rect>`, `<line>` and
//! `<text>` (and a `<title>` per bar, a browser's tooltip), no scripts, no
//! fonts but the reader's `sans-serif`, on a white background so that it
//! reads on a dark page too. Every figure is one a [`Row`] carries (the
//! median of the runs); a system without a figure for a workload gets no
//! bar but an "n/a" in its place, never a bar of zero. A system keeps its
//! colour in every chart (the colours follow the order of the rows), and
//! a variant (`mapstate:VARIANT`) is drawn in its system's colour, pale.

use std::fmt::Write as _;
use std::io;
use std::path::{Path, PathBuf};

use crate::report::{Row, duration_ns, key, si};

/// One chart: its file name and its SVG text.
pub(crate) struct Chart {
    /// `throughput.svg`, `commit-latency.svg` or `notify-latency.svg`.
    pub(crate) file: &'static str,
    /// The whole SVG document.
    pub(crate) svg: String,
}

/// Writes the charts of `rows` into `dir` (created if missing) and returns
/// the files written. A chart with no figure in `rows` is not written.
pub(crate) fn write(dir: &Path, rows: &[Row], caption: &str) -> io::Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir)?;
    charts(rows, caption)
        .into_iter()
        .map(|c| {
            let path = dir.join(c.file);
            std::fs::write(&path, c.svg)?;
            Ok(path)
        })
        .collect()
}

/// The charts of `rows` that have at least one figure, each with `caption`
/// (how the figures were made: runs, machine) at its foot.
pub(crate) fn charts(rows: &[Row], caption: &str) -> Vec<Chart> {
    let palette = Palette::of(rows);
    [throughput(rows), commit_latency(rows), notify_latency(rows)]
        .into_iter()
        .filter(|spec| !spec.groups.is_empty())
        .map(|spec| Chart {
            file: spec.file,
            svg: render(&spec, &palette, caption),
        })
        .collect()
}

/// The throughput chart's workloads and what their ops/s count.
const THROUGHPUT: [(&str, &str); 8] = [
    ("w1", "commits/s, no sync"),
    ("w2", "durable commits/s"),
    ("w2x8", "durable commits/s, 8 threads"),
    ("w3", "1,000-slot transactions/s"),
    ("w4", "reads/s"),
    ("w5", "reads/s, writer in another process"),
    ("w6", "4 KiB appends/s"),
    ("grow", "pages first touched/s"),
];

/// The commit-latency chart's workloads (w5 apart: see [`commit_latency`]).
const COMMITS: [(&str, &str); 4] = [
    ("w1", "commit, no sync"),
    ("w2", "durable commit"),
    ("w2x8", "durable commit, 8 threads"),
    ("w3", "1,000-slot transaction"),
];

/// (a) ops/s per workload and system.
fn throughput(rows: &[Row]) -> Spec {
    let groups = THROUGHPUT
        .iter()
        .map(|&(w, what)| {
            group(rows, w, what, |r| {
                r.ops_per_sec.map(|v| Figure {
                    low: v,
                    high: None,
                    top: None,
                })
            })
        })
        .collect();
    Spec {
        file: "throughput.svg",
        title: "Throughput per workload and system",
        measures: "Operations per second (log scale: each gridline is 10×), higher is \
                   better; one group per workload, one bar per system.",
        scale: Scale::Rate,
        groups: keep_measured(groups),
        notes: vec![
            "w5 counts the reader's reads while a writer process commits flat out; w6 and \
             grow count 4 KiB records and pages. What each system guarantees as configured \
             is in the table's notes.",
        ],
    }
}

/// (b) per-commit latency: p50 and p99 of w1, w2, w2x8 and w3; and w5's
/// writer (every commit timed): p99, p99.9 and the longest commit.
fn commit_latency(rows: &[Row]) -> Spec {
    let mut groups: Vec<Group> = COMMITS
        .iter()
        .map(|&(w, what)| {
            group(rows, w, what, |r| {
                r.p50_ns.map(|p50| Figure {
                    low: p50,
                    high: r.p99_ns,
                    top: None,
                })
            })
        })
        .collect();
    groups.push(group(
        rows,
        "w5",
        "writer flat out: p99, p99.9, longest",
        |r| {
            r.get(key::COMMIT_P99_US).map(|p99| Figure {
                low: p99 * 1e3,
                high: r.get(key::COMMIT_P999_US).map(|x| x * 1e3),
                top: r.get(key::COMMIT_MAX_US).map(|x| x * 1e3),
            })
        },
    ));
    Spec {
        file: "commit-latency.svg",
        title: "Commit latency per workload and system",
        measures: "Time per commit (log scale: each gridline is 10×), lower is better. \
                   Bar: p50; whisker: p99. w5 (a reader process reads meanwhile): bar p99, \
                   whisker p99.9, dotted to the longest commit.",
        scale: Scale::Nanos,
        groups: keep_measured(groups),
        notes: vec![
            "Each commit timed one by one after the throughput loop (w5: every commit of \
             the writer timed in its loop; see the table's notes for how each writer was \
             timed).",
        ],
    }
}

/// (c) commit-to-wake latency of a waiter in another process.
fn notify_latency(rows: &[Row]) -> Spec {
    let groups = vec![group(
        rows,
        "notify",
        "commit to wake, another process",
        |r| {
            r.p50_ns.map(|p50| Figure {
                low: p50,
                high: r.p99_ns,
                top: None,
            })
        },
    )];
    Spec {
        file: "notify-latency.svg",
        title: "Notification latency per system",
        measures: "From just before a commit to a waiter in another process holding the new \
                   value (log scale: each gridline is 10×), lower is better. Bar: p50; \
                   whisker: p99.",
        scale: Scale::Nanos,
        groups: keep_measured(groups),
        notes: vec!["Systems without push notification are polled every 1 ms, as their users do."],
    }
}

/// The groups that have at least one figure.
fn keep_measured(groups: Vec<Group>) -> Vec<Group> {
    groups
        .into_iter()
        .filter(|g| g.bars.iter().any(|(_, f)| f.is_some()))
        .collect()
}

/// The group of `workload`: one entry per row of it, in the rows' order,
/// with the figure `fig` finds in the row (`None`: drawn as absent).
fn group(rows: &[Row], workload: &str, what: &str, fig: impl Fn(&Row) -> Option<Figure>) -> Group {
    Group {
        workload: workload.to_owned(),
        what: what.to_owned(),
        bars: rows
            .iter()
            .filter(|r| r.workload == workload)
            .map(|r| (r.system.clone(), fig(r).filter(Figure::is_finite)))
            .collect(),
    }
}

/// What one chart shows.
struct Spec {
    file: &'static str,
    title: &'static str,
    /// What the figures are, in which unit, and how to read the bars.
    measures: &'static str,
    scale: Scale,
    groups: Vec<Group>,
    /// Under the chart, before the caption.
    notes: Vec<&'static str>,
}

/// One workload's bars.
struct Group {
    workload: String,
    /// Under the workload's name.
    what: String,
    /// Each system's figure, `None` where it has none.
    bars: Vec<(String, Option<Figure>)>,
}

/// One bar: its height, and optionally a whisker above it and a dotted
/// line above that.
#[derive(Clone, Copy, Debug)]
struct Figure {
    low: f64,
    high: Option<f64>,
    top: Option<f64>,
}

impl Figure {
    fn is_finite(&self) -> bool {
        [Some(self.low), self.high, self.top]
            .into_iter()
            .flatten()
            .all(f64::is_finite)
    }

    fn values(&self) -> impl Iterator<Item = f64> {
        [Some(self.low), self.high, self.top].into_iter().flatten()
    }
}

/// The unit of a chart's figures.
#[derive(Clone, Copy)]
enum Scale {
    /// Operations per second.
    Rate,
    /// Nanoseconds.
    Nanos,
}

impl Scale {
    fn format(self, x: f64) -> String {
        match self {
            Self::Rate => si(x),
            Self::Nanos => duration_ns(x),
        }
    }

    /// The label of the gridline at 10^`d`: `1 k`, `100 µs`.
    fn decade(self, d: i32) -> String {
        let units: &[&str] = match self {
            Self::Rate => &["", " k", " M", " G", " T"],
            Self::Nanos => &[" ns", " µs", " ms", " s"],
        };
        match usize::try_from(d.div_euclid(3))
            .ok()
            .filter(|&i| i < units.len())
        {
            Some(i) => format!("{}{}", 10_u32.pow(d.rem_euclid(3) as u32), units[i]),
            None => self.format(10_f64.powi(d)),
        }
    }
}

/// The systems' colours: one per system, in the order the rows name them;
/// a variant (`mapstate:VARIANT`) takes its system's, pale and outlined
/// (the second of a system's variants paler, its outline dashed).
struct Palette {
    /// The systems, variants apart.
    systems: Vec<String>,
    /// The variants, in the order the rows name them.
    variants: Vec<String>,
}

/// Tableau 10: distinct hues that stay apart for most colour blindness.
const COLOURS: [&str; 10] = [
    "#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1", "#ff9da7",
    "#9c755f", "#bab0ac",
];

impl Palette {
    fn of(rows: &[Row]) -> Self {
        let mut systems: Vec<String> = Vec::new();
        let mut variants: Vec<String> = Vec::new();
        for r in rows {
            let base = base(&r.system);
            if !systems.iter().any(|s| s == base) {
                systems.push(base.to_owned());
            }
            if base != r.system && !variants.contains(&r.system) {
                variants.push(r.system.clone());
            }
        }
        Self { systems, variants }
    }

    /// The fill (and stroke) attributes of `system`'s bars.
    fn style(&self, system: &str) -> String {
        let i = self
            .systems
            .iter()
            .position(|s| s == base(system))
            .unwrap_or(0);
        let colour = COLOURS[i % COLOURS.len()];
        // Which of its system's variants this is.
        let nth = self
            .variants
            .iter()
            .filter(|v| base(v) == base(system))
            .position(|v| v == system);
        match nth {
            None => format!(r#"fill="{colour}""#),
            Some(k) if k % 2 == 0 => {
                format!(r#"fill="{colour}" fill-opacity="0.55" stroke="{colour}""#)
            }
            Some(_) => format!(
                r#"fill="{colour}" fill-opacity="0.2" stroke="{colour}" stroke-dasharray="3 2""#
            ),
        }
    }
}

/// `mapstate` of `mapstate:VARIANT`.
fn base(system: &str) -> &str {
    system.split(':').next().unwrap_or(system)
}

// Layout, in px.
const WIDTH_MIN: f64 = 680.0;
const LEFT: f64 = 70.0;
/// Left and right of the text.
const MARGIN: f64 = 12.0;
const RIGHT: f64 = 20.0;
const PLOT_H: f64 = 280.0;
const GROUP_GAP: f64 = 26.0;
const SLOT_MIN: f64 = 18.0;
const SLOT_MAX: f64 = 60.0;
/// The width of a character of `size` px, roughly (sans-serif), for the
/// room a label takes.
const CHAR_W: f64 = 0.58;

/// The chart `spec` as an SVG document.
fn render(spec: &Spec, palette: &Palette, caption: &str) -> String {
    let plan = Plan::of(spec);
    let (head, y) = header(spec, palette, &plan);
    let axis = Axis::of(&plan, y);
    let mut body = axis.grid(spec.scale);
    let below = bars(spec, palette, &plan, &axis, &mut body);
    let (foot, y) = footer(spec, caption, plan.width, below);
    let (width, height) = (plan.width, (y + 12.0).ceil());
    let mut out = String::new();
    let _ = writeln!(
        out,
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}" font-family="sans-serif" fill="#222">"##
    );
    let _ = writeln!(out, "<title>{}</title>", escape(spec.title));
    let _ = writeln!(
        out,
        r#"<rect x="0" y="0" width="{width}" height="{height}" fill="white"/>"#
    );
    out.push_str(&head);
    out.push_str(&body);
    out.push_str(&foot);
    out.push_str("</svg>\n");
    out
}

/// Which systems a chart shows and how wide everything is.
struct Plan<'a> {
    /// Every system with a figure in the chart, in the rows' order.
    systems: Vec<&'a str>,
    /// Per group, its slots: every system of `systems` that has a row of
    /// the workload (an "n/a" where it has no figure), a variant only
    /// where it has a figure.
    slots: Vec<Vec<(&'a str, Option<Figure>)>>,
    /// Per slot, the bar's value label.
    labels: Vec<Vec<Option<String>>>,
    /// A slot's width, in px.
    slot: f64,
    /// The plot's width.
    plot_w: f64,
    /// The document's width.
    width: f64,
}

impl<'a> Plan<'a> {
    fn of(spec: &'a Spec) -> Self {
        let mut systems: Vec<&str> = Vec::new();
        for g in &spec.groups {
            for (s, f) in &g.bars {
                if f.is_some() && !systems.contains(&s.as_str()) {
                    systems.push(s);
                }
            }
        }
        let slots: Vec<Vec<(&str, Option<Figure>)>> = spec
            .groups
            .iter()
            .map(|g| {
                g.bars
                    .iter()
                    .filter(|(s, f)| systems.contains(&s.as_str()) && (f.is_some() || base(s) == s))
                    .map(|(s, f)| (s.as_str(), *f))
                    .collect()
            })
            .collect();
        let labels = slots
            .iter()
            .map(|g| {
                g.iter()
                    .map(|(_, f)| f.map(|f| bar_label(spec.scale, &f)))
                    .collect()
            })
            .collect();
        let n_slots: usize = slots.iter().map(Vec::len).sum();
        let gaps = GROUP_GAP * spec.groups.len() as f64;
        let slot =
            ((WIDTH_MIN - LEFT - RIGHT - gaps) / n_slots.max(1) as f64).clamp(SLOT_MIN, SLOT_MAX);
        let plot_w = slot * n_slots as f64 + gaps;
        Self {
            systems,
            slots,
            labels,
            slot,
            plot_w,
            width: (LEFT + plot_w + RIGHT).max(WIDTH_MIN).ceil(),
        }
    }

    /// The width text may take, in px.
    fn text_w(&self) -> f64 {
        self.width - 2.0 * MARGIN
    }
}

/// The title, what the chart measures, and the legend; returns them and
/// the height they take.
fn header(spec: &Spec, palette: &Palette, plan: &Plan) -> (String, f64) {
    let mut out = String::new();
    let mut y = 26.0;
    text(
        &mut out,
        MARGIN,
        y,
        17.0,
        "start",
        r#" font-weight="bold""#,
        spec.title,
    );
    for line in wrap(spec.measures, plan.text_w(), 12.0) {
        y += 17.0;
        text(&mut out, MARGIN, y, 12.0, "start", "", &line);
    }
    // A swatch and a name per system, wrapped to the width.
    y += 12.0;
    let mut x = MARGIN;
    for s in &plan.systems {
        let w = 18.0 + s.chars().count() as f64 * 12.0 * CHAR_W + 22.0;
        if x + w > plan.width - MARGIN && x > MARGIN {
            x = MARGIN;
            y += 18.0;
        }
        let _ = writeln!(
            out,
            r#"<rect x="{x:.1}" y="{y:.1}" width="12" height="12" {}/>"#,
            palette.style(s)
        );
        text(&mut out, x + 18.0, y + 10.5, 12.0, "start", "", s);
        x += w;
    }
    (out, y + 12.0)
}

/// The log axis: whole decades around every figure, and where it lies.
struct Axis {
    /// The lowest decade (10^lo at the baseline).
    lo: i32,
    /// The highest decade (10^hi at the top).
    hi: i32,
    /// The plot's top, in px.
    top: f64,
    /// The baseline.
    base: f64,
    /// The plot's width.
    plot_w: f64,
}

impl Axis {
    /// The axis for `plan`'s figures, the plot starting under `y` after
    /// room for the longest rotated value label.
    fn of(plan: &Plan, y: f64) -> Self {
        let values: Vec<f64> = plan
            .slots
            .iter()
            .flatten()
            .filter_map(|(_, f)| f.as_ref())
            .flat_map(Figure::values)
            .filter(|v| *v > 0.0)
            .collect();
        let (lo, hi) = if values.is_empty() {
            (0, 1)
        } else {
            let lo = values.iter().copied().fold(f64::INFINITY, f64::min);
            let hi = values.iter().copied().fold(0.0, f64::max);
            let lo = lo.log10().floor() as i32;
            (lo, (hi.log10().ceil() as i32).max(lo + 1))
        };
        let longest = plan
            .labels
            .iter()
            .flatten()
            .flatten()
            .map(|l| l.chars().count())
            .max()
            .unwrap_or(0);
        let top = y + 14.0 + longest as f64 * 10.0 * CHAR_W;
        Self {
            lo,
            hi,
            top,
            base: top + PLOT_H,
            plot_w: plan.plot_w,
        }
    }

    /// A bar's height for `v`: log10 of it over the decades, 0 for 0.
    fn height(&self, v: f64) -> f64 {
        if v > 0.0 {
            ((v.log10() - f64::from(self.lo)) / f64::from(self.hi - self.lo) * PLOT_H)
                .clamp(0.0, PLOT_H)
        } else {
            0.0
        }
    }

    /// The gridlines with their labels, and the axis line.
    fn grid(&self, scale: Scale) -> String {
        let mut out = String::new();
        for d in self.lo..=self.hi {
            let gy = self.base - self.height(10_f64.powi(d));
            let _ = writeln!(
                out,
                r#"<line x1="{LEFT}" y1="{gy:.1}" x2="{:.1}" y2="{gy:.1}" stroke="{}" stroke-width="1"/>"#,
                LEFT + self.plot_w,
                if d == self.lo { "#555" } else { "#ddd" }
            );
            text(
                &mut out,
                LEFT - 6.0,
                gy + 4.0,
                11.0,
                "end",
                "",
                &scale.decade(d),
            );
        }
        let _ = writeln!(
            out,
            r##"<line x1="{LEFT}" y1="{:.1}" x2="{LEFT}" y2="{:.1}" stroke="#555" stroke-width="1"/>"##,
            self.top, self.base
        );
        out
    }
}

/// Appends the groups: bars, whiskers, value labels, "n/a", and the
/// workloads' names below; returns the y of the lowest name.
fn bars(spec: &Spec, palette: &Palette, plan: &Plan, axis: &Axis, out: &mut String) -> f64 {
    let slot = plan.slot;
    let bw = (slot * 0.7).round();
    let mut x = LEFT + GROUP_GAP / 2.0;
    let mut below: f64 = 0.0;
    for ((g, slots), labels) in spec.groups.iter().zip(&plan.slots).zip(&plan.labels) {
        let gw = slot * slots.len() as f64;
        for (i, ((system, fig), label)) in slots.iter().zip(labels).enumerate() {
            let cx = x + slot * (i as f64 + 0.5);
            let Some(f) = fig else {
                rotated(out, cx + 3.5, axis.base - 4.0, r##" fill="#888""##, "n/a");
                continue;
            };
            let h = axis.height(f.low);
            let _ = writeln!(
                out,
                r#"<rect class="bar" x="{:.1}" y="{:.1}" width="{bw}" height="{h:.1}" {}><title>{}</title></rect>"#,
                cx - bw / 2.0,
                axis.base - h,
                palette.style(system),
                escape(&format!(
                    "{} · {system}: {}",
                    g.workload,
                    label.as_deref().unwrap_or_default()
                ))
            );
            // The whisker, then the dotted line, each with a cap.
            let mut tip = axis.base - h;
            for (v, dash) in [(f.high, ""), (f.top, r#" stroke-dasharray="2 2""#)] {
                if let Some(v) = v {
                    let vy = axis.base - axis.height(v);
                    let _ = writeln!(
                        out,
                        r##"<line x1="{cx:.1}" y1="{tip:.1}" x2="{cx:.1}" y2="{vy:.1}" stroke="#333" stroke-width="1.2"{dash}/>"##
                    );
                    let _ = writeln!(
                        out,
                        r##"<line x1="{:.1}" y1="{vy:.1}" x2="{:.1}" y2="{vy:.1}" stroke="#333" stroke-width="1.2"/>"##,
                        cx - bw / 3.0,
                        cx + bw / 3.0
                    );
                    tip = tip.min(vy);
                }
            }
            if let Some(l) = label {
                rotated(out, cx + 3.5, tip - 4.0, "", l);
            }
        }
        let mut ly = axis.base + 16.0;
        let bold = r#" font-weight="bold""#;
        text(out, x + gw / 2.0, ly, 12.0, "middle", bold, &g.workload);
        for line in wrap(&g.what, (gw + GROUP_GAP - 4.0).max(60.0), 10.0) {
            ly += 13.0;
            text(out, x + gw / 2.0, ly, 10.0, "middle", "", &line);
        }
        below = below.max(ly);
        x += gw + GROUP_GAP;
    }
    below
}

/// The notes and the caption under the chart, starting below `y`; returns
/// them and the y of their last line.
fn footer(spec: &Spec, caption: &str, width: f64, y: f64) -> (String, f64) {
    let mut out = String::new();
    let mut y = y + 10.0;
    let notes = spec.notes.iter().copied().chain([
        "n/a: no figure (the system cannot run this workload, or its runs failed: see \
         the table's notes).",
        caption,
    ]);
    for note in notes {
        for line in wrap(note, width - 2.0 * MARGIN, 11.0) {
            y += 15.0;
            text(
                &mut out,
                MARGIN,
                y,
                11.0,
                "start",
                r##" fill="#444""##,
                &line,
            );
        }
    }
    (out, y)
}

/// A bar's value label: `304 k`, `3.1 µs / 21 µs`.
fn bar_label(scale: Scale, f: &Figure) -> String {
    f.values()
        .map(|v| scale.format(v))
        .collect::<Vec<_>>()
        .join(" / ")
}

/// Appends a `<text>` at (`x`, `y`).
fn text(out: &mut String, x: f64, y: f64, size: f64, anchor: &str, attrs: &str, s: &str) {
    let _ = writeln!(
        out,
        r#"<text x="{x:.1}" y="{y:.1}" font-size="{size}" text-anchor="{anchor}"{attrs}>{}</text>"#,
        escape(s)
    );
}

/// Appends a 10 px `<text>` that reads upwards from (`x`, `y`).
fn rotated(out: &mut String, x: f64, y: f64, attrs: &str, s: &str) {
    let _ = writeln!(
        out,
        r#"<text x="{x:.1}" y="{y:.1}" font-size="10" transform="rotate(-90 {x:.1} {y:.1})"{attrs}>{}</text>"#,
        escape(s)
    );
}

/// `s` with the characters XML gives a meaning escaped, for text and for
/// attribute values.
fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c => out.push(c),
        }
    }
    out
}

/// `s` in lines of at most `width` px of `size` px text, broken at spaces.
fn wrap(s: &str, width: f64, size: f64) -> Vec<String> {
    let max = ((width / (size * CHAR_W)) as usize).max(8);
    let mut lines = Vec::new();
    let mut line = String::new();
    for word in s.split_whitespace() {
        if !line.is_empty() && line.chars().count() + 1 + word.chars().count() > max {
            lines.push(std::mem::take(&mut line));
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(word);
    }
    if !line.is_empty() {
        lines.push(line);
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::{Measurement, Outcome};

    /// A row of `system` on `workload` with the figures of `m`, or one
    /// that cannot run it (`None`).
    fn row(system: &str, workload: &str, m: Option<Measurement>) -> Row {
        let o = m.map_or_else(
            || Outcome::NotApplicable("cannot".into()),
            Outcome::Measured,
        );
        Row::combine(system, workload, &[o], &[])
    }

    fn ops(v: f64) -> Measurement {
        Measurement {
            ops_per_sec: Some(v),
            ..Measurement::default()
        }
    }

    fn lat(p50: f64, p99: f64) -> Measurement {
        Measurement {
            p50_ns: Some(p50),
            p99_ns: Some(p99),
            ..Measurement::default()
        }
    }

    /// A name XML would choke on unescaped.
    const ODD: &str = "odd<&>\"'";

    fn sample() -> Vec<Row> {
        let mut w5 = Measurement {
            ops_per_sec: Some(2e7),
            ..Measurement::default()
        };
        w5.set(key::COMMIT_P99_US, 1.5);
        w5.set(key::COMMIT_P999_US, 4.0);
        w5.set(key::COMMIT_MAX_US, 900.0);
        vec![
            row(
                "mapstate",
                "w1",
                Some(Measurement {
                    p50_ns: Some(170.0),
                    p99_ns: Some(430.0),
                    ..ops(7e6)
                }),
            ),
            row("lmdb", "w1", Some(ops(3e5))),
            row(ODD, "w1", Some(ops(700.0))),
            row("raw-futex", "w1", None),
            row("mapstate", "w2", Some(ops(1.1e4))),
            row("lmdb", "w2", Some(ops(5e3))),
            row(ODD, "w2", None),
            row("raw-futex", "w2", None),
            row("mapstate", "w5", Some(w5)),
            row("lmdb", "w5", Some(ops(2.5e6))),
            row("mapstate", "w6", Some(ops(4e5))),
            row("mapstate:variant", "w6", Some(ops(6e4))),
            row("lmdb", "w6", Some(ops(1.6e5))),
            row("mapstate", "notify", Some(lat(3_100.0, 21_000.0))),
            row("lmdb", "notify", Some(lat(524_000.0, 1_070_000.0))),
            row(ODD, "notify", None),
            row("raw-futex", "notify", Some(lat(1_900.0, 12_000.0))),
        ]
    }

    fn chart(rows: &[Row], file: &str) -> String {
        charts(rows, "caption <one machine> & one run")
            .into_iter()
            .find(|c| c.file == file)
            .unwrap_or_else(|| panic!("no {file}"))
            .svg
    }

    /// Checks that `s` is well-formed XML as this module writes it: one
    /// root element, every tag closed in order, attributes quoted and
    /// unique, no `<` or bare `&` in text or attribute values.
    fn well_formed(s: &str) -> Result<(), String> {
        fn chars(t: &str) -> Result<(), String> {
            if t.contains('<') {
                return Err(format!("'<' in {t:?}"));
            }
            for (i, _) in t.match_indices('&') {
                let entity = t[i..].split_inclusive(';').next().unwrap_or_default();
                let ok = ["&amp;", "&lt;", "&gt;", "&quot;", "&apos;"].contains(&entity)
                    || entity.strip_prefix("&#").is_some_and(|n| {
                        n.len() > 1 && n[..n.len() - 1].chars().all(|c| c.is_ascii_digit())
                    });
                if !ok {
                    return Err(format!("bare '&' in {t:?}"));
                }
            }
            Ok(())
        }
        fn attrs(mut a: &str) -> Result<(), String> {
            let mut names = Vec::new();
            loop {
                a = a.trim_start();
                if a.is_empty() {
                    return Ok(());
                }
                let (name, rest) = a.split_once("=\"").ok_or(format!("attribute {a:?}"))?;
                let (value, rest) = rest.split_once('"').ok_or(format!("unquoted {a:?}"))?;
                if name.is_empty()
                    || !name
                        .chars()
                        .all(|c| c.is_alphanumeric() || "-:_".contains(c))
                {
                    return Err(format!("attribute name {name:?}"));
                }
                if names.contains(&name) {
                    return Err(format!("attribute {name} twice"));
                }
                names.push(name);
                chars(value)?;
                a = rest;
            }
        }
        let mut open: Vec<&str> = Vec::new();
        let mut roots = 0;
        let mut rest = s;
        while let Some(i) = rest.find('<') {
            if open.is_empty() && !rest[..i].trim().is_empty() {
                return Err(format!("text outside the root: {:?}", &rest[..i]));
            }
            chars(&rest[..i])?;
            let end = i + rest[i..].find('>').ok_or("a tag is not closed")?;
            let tag = &rest[i + 1..end];
            rest = &rest[end + 1..];
            if let Some(name) = tag.strip_prefix('/') {
                match open.pop() {
                    Some(o) if o == name => {}
                    o => return Err(format!("</{name}> closes {o:?}")),
                }
                continue;
            }
            let body = tag.strip_suffix('/').unwrap_or(tag);
            let n = body.find(char::is_whitespace).unwrap_or(body.len());
            let name = &body[..n];
            if name.is_empty() || !name.chars().all(char::is_alphanumeric) {
                return Err(format!("element name {name:?}"));
            }
            attrs(&body[n..])?;
            if open.is_empty() {
                roots += 1;
            }
            if body.len() == tag.len() {
                open.push(name);
            }
        }
        if !rest.trim().is_empty() {
            return Err(format!("text after the root: {rest:?}"));
        }
        match (open.as_slice(), roots) {
            ([], 1) => Ok(()),
            ([], n) => Err(format!("{n} root elements")),
            (o, _) => Err(format!("not closed: {o:?}")),
        }
    }

    fn unescape(s: &str) -> String {
        s.replace("&lt;", "<")
            .replace("&gt;", ">")
            .replace("&quot;", "\"")
            .replace("&apos;", "'")
            .replace("&amp;", "&")
    }

    /// The bars of `svg`: (workload, system, height in px).
    fn bars(svg: &str) -> Vec<(String, String, f64)> {
        svg.split(r#"<rect class="bar""#)
            .skip(1)
            .map(|b| {
                let height = b.split(r#"height=""#).nth(1).unwrap();
                let height: f64 = height[..height.find('"').unwrap()].parse().unwrap();
                let title = b.split("<title>").nth(1).unwrap();
                let title = unescape(&title[..title.find("</title>").unwrap()]);
                let (workload, rest) = title.split_once(" · ").unwrap();
                let (system, _) = rest.rsplit_once(": ").unwrap();
                (workload.to_owned(), system.to_owned(), height)
            })
            .collect()
    }

    #[test]
    fn the_checker_rejects_what_is_not_xml() {
        assert_eq!(
            well_formed(r#"<svg a="1"><t>x &amp; y</t><r/></svg>"#),
            Ok(())
        );
        for bad in [
            "<svg><t></svg></t>",
            "<svg><t>a & b</t></svg>",
            r#"<svg a="<"></svg>"#,
            r#"<svg a="1" a="2"></svg>"#,
            "<svg>",
            "<svg/><svg/>",
            "x<svg/>",
        ] {
            assert!(well_formed(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn every_chart_is_well_formed_with_names_escaped() {
        let all = charts(&sample(), "caption <one machine> & one run");
        let files: Vec<&str> = all.iter().map(|c| c.file).collect();
        assert_eq!(
            files,
            ["throughput.svg", "commit-latency.svg", "notify-latency.svg"]
        );
        for c in &all {
            well_formed(&c.svg).unwrap_or_else(|e| panic!("{}: {e}", c.file));
            assert!(
                c.svg
                    .starts_with("<svg xmlns=\"http://www.w3.org/2000/svg\"")
            );
            assert!(!c.svg.contains("<script"));
            assert!(c.svg.contains("caption &lt;one machine&gt; &amp; one run"));
        }
        let throughput = chart(&sample(), "throughput.svg");
        assert!(!throughput.contains(ODD));
        // In the legend and in its w1 bar's title.
        assert_eq!(
            throughput.matches("odd&lt;&amp;&gt;&quot;&apos;").count(),
            2
        );
    }

    #[test]
    fn one_bar_per_figure_and_none_for_the_absent() {
        let svg = chart(&sample(), "throughput.svg");
        let mut got: Vec<(String, String)> =
            bars(&svg).into_iter().map(|(w, s, _)| (w, s)).collect();
        got.sort();
        let mut want: Vec<(String, String)> = [
            ("w1", "mapstate"),
            ("w1", "lmdb"),
            ("w1", ODD),
            ("w2", "mapstate"),
            ("w2", "lmdb"),
            ("w5", "mapstate"),
            ("w5", "lmdb"),
            ("w6", "mapstate"),
            ("w6", "mapstate:variant"),
            ("w6", "lmdb"),
        ]
        .iter()
        .map(|&(w, s)| (w.to_owned(), s.to_owned()))
        .collect();
        want.sort();
        assert_eq!(got, want);
        // ODD's w2 row has no figure: an "n/a" in its slot (it has a w1
        // figure, so a slot in the groups it has rows in); raw-futex has no
        // throughput at all, so no slot and no legend entry; the variant
        // only where it has a figure.
        assert_eq!(svg.matches(">n/a</text>").count(), 1);
        assert!(!svg.contains("raw-futex"));

        let commits = bars(&chart(&sample(), "commit-latency.svg"));
        let got: Vec<(&str, &str)> = commits
            .iter()
            .map(|(w, s, _)| (w.as_str(), s.as_str()))
            .collect();
        assert_eq!(got, [("w1", "mapstate"), ("w5", "mapstate")]);

        let notify = bars(&chart(&sample(), "notify-latency.svg"));
        let got: Vec<&str> = notify.iter().map(|(_, s, _)| s.as_str()).collect();
        assert_eq!(got, ["mapstate", "lmdb", "raw-futex"]);
    }

    /// The bars of `svg` of systems `s0`, `s1`, ... as (value, height),
    /// `values[i]` being `si`'s, sorted by value.
    fn heights(svg: &str, values: &[f64]) -> Vec<(f64, f64)> {
        let mut by_value: Vec<(f64, f64)> = bars(svg)
            .iter()
            .map(|(_, s, h)| (values[s[1..].parse::<usize>().unwrap()], *h))
            .collect();
        assert_eq!(by_value.len(), values.len());
        by_value.sort_by(|a, b| a.0.total_cmp(&b.0));
        by_value
    }

    #[test]
    fn a_larger_figure_draws_a_taller_bar() {
        let values = [3e4, 7.0, 2e8, 5e5, 123.0, 9e6, 5e5 + 1.0];
        let rows: Vec<Row> = values
            .iter()
            .enumerate()
            .map(|(i, &v)| row(&format!("s{i}"), "w4", Some(ops(v))))
            .collect();
        let by_value = heights(&chart(&rows, "throughput.svg"), &values);
        for pair in by_value.windows(2) {
            assert!(pair[0].1 <= pair[1].1, "{by_value:?}");
            if pair[1].0 >= pair[0].0 * 1.01 {
                assert!(pair[0].1 < pair[1].1, "{by_value:?}");
            }
        }

        // Latency: the same, on the p50.
        let rows: Vec<Row> = values
            .iter()
            .enumerate()
            .map(|(i, &v)| row(&format!("s{i}"), "notify", Some(lat(v, v * 2.0))))
            .collect();
        let by_value = heights(&chart(&rows, "notify-latency.svg"), &values);
        for pair in by_value.windows(2) {
            assert!(pair[0].1 <= pair[1].1, "{by_value:?}");
            if pair[1].0 >= pair[0].0 * 1.01 {
                assert!(pair[0].1 < pair[1].1, "{by_value:?}");
            }
        }
    }

    #[test]
    fn gridlines_are_labelled_by_decade() {
        assert_eq!(Scale::Rate.decade(0), "1");
        assert_eq!(Scale::Rate.decade(3), "1 k");
        assert_eq!(Scale::Rate.decade(8), "100 M");
        assert_eq!(Scale::Nanos.decade(2), "100 ns");
        assert_eq!(Scale::Nanos.decade(4), "10 µs");
        assert_eq!(Scale::Nanos.decade(9), "1 s");
    }
}
