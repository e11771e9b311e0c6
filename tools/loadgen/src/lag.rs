//! Replication lag read off Weft's `/metrics`: the
//! `weft_replication_lag_seconds` histogram is scraped from every given
//! process before and after the measured phase, and the difference of the
//! buckets, summed over processes and writers, gives percentiles per stream.
//! A percentile is reported as the upper bound of the bucket it falls in, so
//! it never flatters.

use std::collections::BTreeMap;

/// Cumulative bucket counts per stream: `le` bound → observations.
#[derive(Default)]
pub struct LagSnapshot {
    streams: BTreeMap<String, BTreeMap<u64, f64>>,
}

/// `le` bounds are kept as nanoseconds so they can be ordered keys;
/// `+Inf` is `u64::MAX`.
fn bound_key(le: &str) -> Option<u64> {
    if le == "+Inf" {
        return Some(u64::MAX);
    }
    le.parse::<f64>().ok().map(|seconds| (seconds * 1e9).round() as u64)
}

fn label<'a>(labels: &'a str, name: &str) -> Option<&'a str> {
    let start = labels.find(&format!("{name}=\""))? + name.len() + 2;
    let end = labels[start..].find('"')?;
    Some(&labels[start..start + end])
}

impl LagSnapshot {
    pub async fn scrape(http: &reqwest::Client, urls: &[String]) -> anyhow::Result<Self> {
        let mut snapshot = Self::default();
        for url in urls {
            let text = http.get(url).send().await?.error_for_status()?.text().await?;
            snapshot.add(&text);
        }
        Ok(snapshot)
    }

    fn add(&mut self, exposition: &str) {
        for line in exposition.lines() {
            let Some(rest) = line.strip_prefix("weft_replication_lag_seconds_bucket{") else { continue };
            let Some((labels, value)) = rest.split_once("} ") else { continue };
            let (Some(stream), Some(bound), Ok(count)) = (label(labels, "stream"), label(labels, "le").and_then(bound_key), value.trim().parse::<f64>()) else {
                continue;
            };
            *self.streams.entry(stream.to_owned()).or_default().entry(bound).or_default() += count;
        }
    }

    /// Prints p50 and p99 per stream of what was observed between `before` and `self`.
    pub fn report_since(&self, before: &LagSnapshot) {
        if self.streams.is_empty() {
            println!("replication lag: no weft_replication_lag_seconds in the scraped metrics");
        }
        for (stream, buckets) in &self.streams {
            let earlier = before.streams.get(stream);
            let delta: Vec<(u64, f64)> =
                buckets.iter().map(|(bound, count)| (*bound, count - earlier.and_then(|e| e.get(bound)).copied().unwrap_or(0.0))).collect();
            let total = delta.last().map_or(0.0, |(_, count)| *count);
            if total <= 0.0 {
                continue;
            }
            let quantile = |q: f64| {
                let wanted = (total * q).ceil();
                let bound = delta.iter().find(|(_, count)| *count >= wanted).map_or(u64::MAX, |(bound, _)| *bound);
                if bound == u64::MAX { "> largest bucket".to_owned() } else { format!("≤ {:.2}ms", bound as f64 / 1e6) }
            };
            println!("replication lag ({stream}): n={total} p50 {} p99 {}", quantile(0.50), quantile(0.99));
        }
    }
}
