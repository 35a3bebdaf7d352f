//! A labelled summary (the prometheus crate has none): cumulative count and sum,
//! and the 0.5, 0.9 and 0.99 quantiles of the last 10 minutes' observations (at
//! most 500 kept per label), as client_golang's default summary reports them.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use prometheus::core::{Collector, Desc};
use prometheus::proto::{LabelPair, Metric, MetricFamily, MetricType, Quantile, Summary};

const QUANTILES: [f64; 3] = [0.5, 0.9, 0.99];
const MAX_AGE: Duration = Duration::from_secs(600);
const MAX_KEPT: usize = 500;

#[derive(Debug, Default)]
struct Series {
    count: u64,
    sum: f64,
    recent: VecDeque<(Instant, f64)>,
}

#[derive(Debug)]
pub(crate) struct SummaryVec {
    desc: Desc,
    label: String,
    series: Mutex<BTreeMap<String, Series>>,
}

impl SummaryVec {
    pub(crate) fn new(name: &str, help: &str, label: &str) -> Self {
        // The name and label are constants of ours.
        let desc = Desc::new(
            name.into(),
            help.into(),
            vec![label.into()],
            Default::default(),
        )
        .unwrap_or_else(|e| unreachable!("summary definition: {e}"));
        Self {
            desc,
            label: label.into(),
            series: Mutex::default(),
        }
    }

    pub(crate) fn observe(&self, value_of_label: &str, v: f64) {
        let Ok(mut series) = self.series.lock() else {
            return;
        };
        let s = series.entry(value_of_label.to_string()).or_default();
        s.count += 1;
        s.sum += v;
        s.recent.push_back((Instant::now(), v));
        if s.recent.len() > MAX_KEPT {
            s.recent.pop_front();
        }
    }

    fn family(&self) -> MetricFamily {
        let mut family = MetricFamily::default();
        family.set_name(self.desc.fq_name.clone());
        family.set_help(self.desc.help.clone());
        family.set_field_type(MetricType::SUMMARY);
        let Ok(mut series) = self.series.lock() else {
            return family;
        };
        let now = Instant::now();
        let mut metrics = Vec::new();
        for (value, s) in series.iter_mut() {
            while s
                .recent
                .front()
                .is_some_and(|(at, _)| now.duration_since(*at) > MAX_AGE)
            {
                s.recent.pop_front();
            }
            let mut sorted: Vec<f64> = s.recent.iter().map(|(_, v)| *v).collect();
            sorted.sort_by(f64::total_cmp);
            let quantiles = QUANTILES
                .iter()
                .map(|q| {
                    let mut quantile = Quantile::default();
                    quantile.set_quantile(*q);
                    quantile.set_value(rank(&sorted, *q));
                    quantile
                })
                .collect::<Vec<_>>();
            let mut summary = Summary::default();
            summary.set_sample_count(s.count);
            summary.set_sample_sum(s.sum);
            summary.set_quantile(quantiles);
            let mut label = LabelPair::default();
            label.set_name(self.label.clone());
            label.set_value(value.clone());
            let mut metric = Metric::default();
            metric.set_label(vec![label]);
            metric.set_summary(summary);
            metrics.push(metric);
        }
        family.set_metric(metrics);
        family
    }
}

/// The `q` quantile of sorted values (NaN when there are none, as Go reports it).
fn rank(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i]
}

/// The summary as a registry collector.
#[derive(Debug, Clone)]
pub(crate) struct Registered(pub Arc<SummaryVec>);

impl Collector for Registered {
    fn desc(&self) -> Vec<&Desc> {
        vec![&self.0.desc]
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let family = self.0.family();
        if family.get_metric().is_empty() {
            return Vec::new();
        }
        vec![family]
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn quantiles_are_ranks_of_the_window() {
        let values: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(super::rank(&values, 0.5), 50.0);
        assert_eq!(super::rank(&values, 0.9), 90.0);
        assert_eq!(super::rank(&values, 0.99), 99.0);
        assert!(super::rank(&[], 0.5).is_nan());
    }
}
