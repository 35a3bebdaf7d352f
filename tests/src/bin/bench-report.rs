//! The benchmark dashboard: turns the figures the benchmarks recorded
//! (`BENCH_RESULTS`, see `crio_tests::bench_results`) into a Markdown page with
//! one table per benchmark (each figure: ours, containerd, their ratio, the goal
//! issue 18 sets) and one PNG plot per benchmark.
//!
//! `bench-report RESULTS.tsv OUT.md PLOT_DIR` (run by `tests/bench-dashboard.sh`).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use crio_tests::bench_results::Row;
use plotters::prelude::*;

/// The font the plots' text is drawn with (Debian's fonts-dejavu-core).
const FONT: &str = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf";

/// Runtimes in the order they are shown; the reference last.
const ORDER: &[&str] = &["runc", "youki", "go", "crio", "containerd"];
const REFERENCE: &str = "containerd";

/// Issue 18's goal for a figure, as the highest ratio to containerd that meets it.
fn goal(figure: &str) -> Option<f64> {
    let starts = |p: &str| figure.starts_with(p);
    if starts("pod start p50") || starts("create + start p50") {
        Some(0.5)
    } else if starts("shim memory per pod") && figure.ends_with("PSS") {
        Some(0.25)
    } else if starts("pod start p95")
        || starts("StopPodSandbox")
        || starts("RemovePodSandbox")
        || starts("StopContainer")
        || starts("RemoveContainer")
        || starts("PullImage")
    {
        Some(1.0)
    } else {
        None
    }
}

/// Issue 18's goal for the daemon's own memory: an absolute bound, in KiB.
fn absolute_goal(figure: &str) -> Option<f64> {
    figure.starts_with("daemon RSS").then_some(20.0 * 1024.0)
}

fn rank(runtime: &str) -> usize {
    ORDER
        .iter()
        .position(|r| *r == runtime)
        .unwrap_or(ORDER.len())
}

/// One benchmark's figures: figure -> runtime -> value, with the unit.
type Figures = BTreeMap<String, (String, BTreeMap<String, f64>)>;

/// Rows by benchmark, figures in the order first recorded.
fn group(rows: &[Row]) -> BTreeMap<String, (Vec<String>, Figures)> {
    let mut out: BTreeMap<String, (Vec<String>, Figures)> = BTreeMap::new();
    for row in rows {
        let (order, figures) = out.entry(row.benchmark.clone()).or_default();
        if !order.contains(&row.figure) {
            order.push(row.figure.clone());
        }
        let (unit, values) = figures
            .entry(row.figure.clone())
            .or_insert_with(|| (row.unit.clone(), BTreeMap::new()));
        *unit = row.unit.clone();
        values.insert(row.runtime.clone(), row.value);
    }
    out
}

fn runtimes_of(figures: &Figures) -> Vec<String> {
    let mut all: Vec<String> = figures
        .values()
        .flat_map(|(_, v)| v.keys().cloned())
        .collect();
    all.sort_by_key(|r| (rank(r), r.clone()));
    all.dedup();
    all
}

fn value_text(value: f64, unit: &str) -> String {
    if unit == "KiB" {
        format!("{value:.0} {unit}")
    } else {
        format!("{value:.1} {unit}")
    }
}

/// The page: where and when it was measured, then a table per benchmark.
fn markdown(rows: &[Row], machine: &str, date: &str, plot_dir: &str) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "# Benchmarks: crio-rs and containerd, side by side\n");
    let _ = writeln!(
        out,
        "Measured {date} on {machine}, in one run of `tests/bench-dashboard.sh`: each \
         benchmark runs our daemon (release build, the installed size-built shims) and \
         Debian's containerd (CRI, with its Go shim) interleaved, so a **ratio** is the \
         figure to read (below 1: crio-rs is faster or smaller); absolute figures move \
         between runs on these shared machines. The goal column is issue 18's \
         (the highest ratio that meets it). `runc` and `youki` are our shims, `go` is \
         containerd's Go shim as our drop-in handler, `crio` is our daemon itself.\n"
    );
    for (benchmark, (order, figures)) in group(rows) {
        let runtimes = runtimes_of(&figures);
        let ours: Vec<&String> = runtimes.iter().filter(|r| *r != REFERENCE).collect();
        let _ = writeln!(out, "## {benchmark}\n");
        let _ = writeln!(out, "![{benchmark}]({plot_dir}/{benchmark}.png)\n");
        let mut head = String::from("| figure |");
        let mut rule = String::from("|---|");
        for r in &runtimes {
            let _ = write!(head, " {r} |");
            rule.push_str("---|");
        }
        for r in &ours {
            let _ = write!(head, " {r} / {REFERENCE} |");
            rule.push_str("---|");
        }
        head.push_str(" goal |");
        rule.push_str("---|");
        let _ = writeln!(out, "{head}\n{rule}");
        for figure in &order {
            let (unit, values) = &figures[figure];
            let mut line = format!("| {figure} |");
            for r in &runtimes {
                let cell = values.get(r).map_or("—".into(), |v| value_text(*v, unit));
                let _ = write!(line, " {cell} |");
            }
            let reference = values.get(REFERENCE).copied().filter(|v| *v > 0.0);
            for r in &ours {
                let ratio = values.get(*r).zip(reference).map(|(v, c)| v / c);
                let absolute = absolute_goal(figure)
                    .zip(values.get(*r))
                    .map(|(bound, v)| *v <= bound);
                let cell = match (ratio, goal(figure)) {
                    (Some(ratio), None) if absolute.is_some() => {
                        let met = absolute == Some(true);
                        format!("{ratio:.2}× {}", if met { "✓" } else { "✗" })
                    }
                    (Some(ratio), Some(goal)) => {
                        let met = ratio <= goal;
                        format!("{ratio:.2}× {}", if met { "✓" } else { "✗" })
                    }
                    (Some(ratio), None) => format!("{ratio:.2}×"),
                    (None, _) => "—".into(),
                };
                let _ = write!(line, " {cell} |");
            }
            let goal_cell = match (goal(figure), absolute_goal(figure)) {
                (Some(g), _) => format!("≤ {g}×"),
                (None, Some(kib)) => format!("≤ {:.0} MiB", kib / 1024.0),
                _ => "—".into(),
            };
            let _ = writeln!(line, " {goal_cell} |");
            out.push_str(&line);
        }
        out.push('\n');
    }
    out
}

/// One PNG per benchmark: a bar chart per figure, a bar per runtime.
fn plot(benchmark: &str, order: &[String], figures: &Figures, path: &Path) -> anyhow::Result<()> {
    let runtimes = runtimes_of(figures);
    let row_height = 40 + 26 * runtimes.len() as u32;
    let height = 50 + row_height * order.len() as u32;
    let root = BitMapBackend::new(path, (900, height)).into_drawing_area();
    root.fill(&WHITE)?;
    let (title, body) = root.split_vertically(50);
    title.titled(
        &format!("{benchmark}: crio-rs and containerd (shorter is better)"),
        ("sans-serif", 22),
    )?;
    for (area, figure) in body.split_evenly((order.len(), 1)).iter().zip(order) {
        let (unit, values) = &figures[figure];
        let max = values.values().copied().fold(0.0, f64::max).max(1e-9) * 1.3;
        let mut chart = ChartBuilder::on(area)
            .caption(format!("{figure} ({unit})"), ("sans-serif", 15))
            .margin(6)
            .y_label_area_size(90)
            .x_label_area_size(0)
            .build_cartesian_2d(0.0..max, (0..runtimes.len()).into_segmented())?;
        let names = runtimes.clone();
        chart
            .configure_mesh()
            .disable_mesh()
            .disable_x_axis()
            .y_labels(runtimes.len())
            .y_label_style(("sans-serif", 14))
            .y_label_formatter(&move |v| match v {
                SegmentValue::CenterOf(i) => names.get(*i).cloned().unwrap_or_default(),
                _ => String::new(),
            })
            .draw()?;
        for (i, runtime) in runtimes.iter().enumerate() {
            let Some(value) = values.get(runtime).copied() else {
                continue;
            };
            let color = if runtime == REFERENCE {
                RGBColor(150, 150, 150)
            } else {
                RGBColor(40, 100, 190)
            };
            chart.draw_series(std::iter::once(Rectangle::new(
                [
                    (0.0, SegmentValue::Exact(i)),
                    (value, SegmentValue::Exact(i + 1)),
                ],
                color.filled(),
            )))?;
            chart.draw_series(std::iter::once(Text::new(
                format!(" {}", value_text(value, unit)),
                (value, SegmentValue::CenterOf(i)),
                ("sans-serif", 13).into_font(),
            )))?;
        }
    }
    root.present()?;
    Ok(())
}

/// Where it ran: CPUs, CPU model, memory, kernel, OS, cgroup version.
fn machine() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .map(|m| m.trim_start_matches([' ', '\t', ':']).to_string())
        .unwrap_or_else(|| "unknown CPU".into());
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    let mem_gib = std::fs::read_to_string("/proc/meminfo")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kib| kib / 1024.0 / 1024.0);
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let os = std::fs::read_to_string("/etc/os-release")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("PRETTY_NAME="))
        .map(|v| v.trim_matches('"').to_string())
        .unwrap_or_default();
    let cgroup = if Path::new("/sys/fs/cgroup/cgroup.controllers").exists() {
        "cgroup v2"
    } else {
        "cgroup v1"
    };
    format!(
        "{cpus} × {model}, {mem_gib:.1} GiB, {os}, Linux {}, {cgroup}",
        kernel.trim()
    )
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [results, out, plot_dir] = args.as_slice() else {
        anyhow::bail!("usage: bench-report RESULTS.tsv OUT.md PLOT_DIR");
    };
    let text = std::fs::read_to_string(results)?;
    let rows: Vec<Row> = text.lines().filter_map(Row::parse).collect();
    anyhow::ensure!(!rows.is_empty(), "{results}: no figures");
    let font: &'static [u8] = Box::leak(
        std::fs::read(FONT)
            .map_err(|e| anyhow::anyhow!("{FONT} (apt install fonts-dejavu-core): {e}"))?
            .into_boxed_slice(),
    );
    plotters::style::register_font("sans-serif", FontStyle::Normal, font)
        .map_err(|_| anyhow::anyhow!("{FONT}: not a font"))?;
    let plots = PathBuf::from(plot_dir);
    std::fs::create_dir_all(&plots)?;
    for (benchmark, (order, figures)) in group(&rows) {
        plot(
            &benchmark,
            &order,
            &figures,
            &plots.join(format!("{benchmark}.png")),
        )?;
    }
    let date = std::process::Command::new("date")
        .args(["-u", "+%Y-%m-%d %H:%M UTC"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    // The page links the plots relative to itself.
    let out_dir = Path::new(out).parent().unwrap_or(Path::new("."));
    let relative = plots
        .strip_prefix(out_dir)
        .unwrap_or(&plots)
        .display()
        .to_string();
    std::fs::write(out, markdown(&rows, &machine(), &date, &relative))?;
    println!(
        "wrote {out} and {} plot(s) in {plot_dir}",
        group(&rows).len()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(benchmark: &str, figure: &str, runtime: &str, value: f64) -> Row {
        Row {
            benchmark: benchmark.into(),
            figure: figure.into(),
            runtime: runtime.into(),
            value,
            unit: "ms".into(),
        }
    }

    #[test]
    fn the_table_gives_ratios_against_containerd_and_the_goal() {
        let rows = [
            row("pods", "pod start p50 (CNI bridge)", "containerd", 100.0),
            row("pods", "pod start p50 (CNI bridge)", "runc", 40.0),
            row("pods", "pod start p50 (CNI bridge)", "youki", 60.0),
            row("pods", "StopPodSandbox p50", "runc", 80.0),
            row("pods", "StopPodSandbox p50", "containerd", 100.0),
        ];
        let page = markdown(&rows, "a machine", "today", "benchmarks");
        assert!(page.contains("| figure | runc | youki | containerd | runc / containerd | youki / containerd | goal |"), "{page}");
        assert!(page.contains("| pod start p50 (CNI bridge) | 40.0 ms | 60.0 ms | 100.0 ms | 0.40× ✓ | 0.60× ✗ | ≤ 0.5× |"), "{page}");
        assert!(
            page.contains("| StopPodSandbox p50 | 80.0 ms | — | 100.0 ms | 0.80× ✓ | — | ≤ 1× |"),
            "{page}"
        );
        assert!(page.contains("![pods](benchmarks/pods.png)"));
    }
}
