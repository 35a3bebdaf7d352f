//! Benchmark figures in a machine-readable form: with `BENCH_RESULTS=FILE` set, each
//! benchmark appends one tab-separated line per figure and runtime
//! (`benchmark figure runtime value unit`), which `bench-report` turns into
//! docs/benchmarks.md and its plots.

use std::io::Write;

/// One measured value.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub benchmark: String,
    pub figure: String,
    /// `runc`, `youki`, `go` (our daemon with that handler), `crio` (the daemon
    /// itself), or `containerd` (the reference).
    pub runtime: String,
    pub value: f64,
    pub unit: String,
}

impl Row {
    fn line(&self) -> String {
        format!(
            "{}\t{}\t{}\t{}\t{}\n",
            self.benchmark, self.figure, self.runtime, self.value, self.unit
        )
    }

    /// A line as [`record`] wrote it.
    pub fn parse(line: &str) -> Option<Row> {
        let mut f = line.split('\t');
        let row = Row {
            benchmark: f.next()?.to_string(),
            figure: f.next()?.to_string(),
            runtime: f.next()?.to_string(),
            value: f.next()?.parse().ok()?,
            unit: f.next()?.trim_end().to_string(),
        };
        f.next().is_none().then_some(row)
    }
}

/// Appends a figure to `$BENCH_RESULTS`, if set (no-op otherwise).
pub fn record(benchmark: &str, figure: &str, runtime: &str, value: f64, unit: &str) {
    let Some(path) = std::env::var_os("BENCH_RESULTS") else {
        return;
    };
    let row = Row {
        benchmark: benchmark.into(),
        figure: figure.into(),
        runtime: runtime.into(),
        value,
        unit: unit.into(),
    };
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .unwrap_or_else(|e| panic!("BENCH_RESULTS {}: {e}", path.to_string_lossy()));
    file.write_all(row.line().as_bytes())
        .expect("write BENCH_RESULTS");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_row_reads_back_as_written() {
        let row = Row {
            benchmark: "pods".into(),
            figure: "pod start p50".into(),
            runtime: "runc".into(),
            value: 61.25,
            unit: "ms".into(),
        };
        assert_eq!(Row::parse(&row.line()), Some(row));
        assert_eq!(Row::parse("a\tb\tc\tnot-a-number\tms"), None);
    }
}
