//! The figures of the bench runs: their medians, and the table or JSON they are printed as.

use serde::Serialize;

/// One measured quantity of one run.
#[derive(Clone, Serialize)]
pub struct Figure {
    /// What was measured, as the table and the JSON name it.
    pub name: String,
    /// Its unit.
    pub unit: &'static str,
    /// The measured value.
    pub value: f64,
    /// The seed's figure for the same quantity, where it has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seed: Option<f64>,
}

/// What `--json` prints.
#[derive(Serialize)]
pub struct Report {
    /// Validators per run.
    pub validators: usize,
    /// Length of each measurement window.
    pub seconds: u64,
    /// The one-way latency injected on every node (`--latency-ms`), if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub latency_ms: Option<u64>,
    /// Its jitter (`--jitter-ms`), if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub jitter_ms: Option<u64>,
    /// CPUs of the machine.
    pub cpus: usize,
    /// `/proc/loadavg` before the first run.
    pub load_average_before: String,
    /// `/proc/loadavg` after the last run.
    pub load_average_after: String,
    /// The figures of every run, in the same order.
    pub runs: Vec<Vec<Figure>>,
    /// Per figure, the median over the runs.
    pub median: Vec<Figure>,
}

/// Per figure, the median over the runs.
pub fn medians(runs: &[Vec<Figure>]) -> Vec<Figure> {
    runs[0]
        .iter()
        .enumerate()
        .map(|(i, first)| {
            let mut values: Vec<f64> = runs.iter().map(|r| r[i].value).collect();
            values.sort_by(f64::total_cmp);
            let mid = values.len() / 2;
            let value = if values.len() % 2 == 1 {
                values[mid]
            } else {
                (values[mid - 1] + values[mid]) / 2.0
            };
            Figure {
                value,
                ..first.clone()
            }
        })
        .collect()
}

/// The human-readable table: one line per figure, a column per run, the median and the seed.
pub fn print_table(report: &Report) {
    let network = match report.latency_ms {
        Some(ms) => format!(
            "loopback + {ms} ms one way (+ 0..={} ms jitter)",
            report.jitter_ms.unwrap_or(0)
        ),
        None => "loopback".to_string(),
    };
    println!(
        "timed bench: {} validators on {network}, back-to-back blocks, {} s per phase, {} CPUs, load average {} before / {} after",
        report.validators,
        report.seconds,
        report.cpus,
        report.load_average_before,
        report.load_average_after
    );
    let mut header = format!("{:<40}", "figure");
    for i in 0..report.runs.len() {
        header.push_str(&format!("{:>11}", format!("run {}", i + 1)));
    }
    header.push_str(&format!("{:>11}{:>11}", "median", "seed"));
    println!("{header}");
    for (i, median) in report.median.iter().enumerate() {
        let mut line = format!("{:<40}", format!("{} ({})", median.name, median.unit));
        for run in &report.runs {
            line.push_str(&format!("{:>11}", format_value(run[i].value)));
        }
        line.push_str(&format!(
            "{:>11}{:>11}",
            format_value(median.value),
            median.seed.map_or_else(|| "-".to_string(), format_value)
        ));
        println!("{line}");
    }
}

fn format_value(value: f64) -> String {
    if value.abs() >= 100.0 {
        format!("{value:.0}")
    } else {
        format!("{value:.1}")
    }
}

/// `/proc/loadavg`'s first three fields, to say how busy the machine was.
pub fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|text| {
            text.split_whitespace()
                .take(3)
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_else(|_| "unknown".into())
}

/// A figure the seed has no counterpart for.
pub fn figure(name: &str, unit: &'static str, value: f64) -> Figure {
    Figure {
        name: name.to_string(),
        unit,
        value,
        seed: None,
    }
}

/// A figure compared with the seed's `seed`.
pub fn seed_figure(name: &str, unit: &'static str, value: f64, seed: f64) -> Figure {
    Figure {
        seed: Some(seed),
        ..figure(name, unit, value)
    }
}
