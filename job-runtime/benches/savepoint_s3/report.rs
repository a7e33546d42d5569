//! The figures of each round and their medians, as a table.

use std::time::Duration;

/// One round's figures.
pub struct Row {
    pub staging: f64,
    pub upload: f64,
    pub savepoint: f64,
    pub recorded: f64,
    pub objects: u64,
    pub multipart: u64,
    pub parts: u64,
    pub mib: f64,
    pub download: f64,
    pub open: f64,
    pub restore: f64,
}

pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

pub fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n == 0 {
        f64::NAN
    } else if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

pub const HEADER: &str = "round   | staging ms | upload ms | savepoint ms (runtime's) | objects (multipart, parts) |    MiB | download ms | open ms | restore ms";

pub fn print_row(name: &str, r: &Row) {
    println!(
        "{name:<7} | {:>10.0} | {:>9.0} | {:>12.0} ({:>9.0}) | {:>9} ({:>2}, {:>2} parts)     | {:>6.1} | {:>11.0} | {:>7.0} | {:>10.0}",
        r.staging,
        r.upload,
        r.savepoint,
        r.recorded,
        r.objects,
        r.multipart,
        r.parts,
        r.mib,
        r.download,
        r.open,
        r.restore
    );
}

pub fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

pub fn medians(rows: &[Row]) -> Row {
    let med = |f: fn(&Row) -> f64| median(rows.iter().map(f).collect());
    Row {
        staging: med(|r| r.staging),
        upload: med(|r| r.upload),
        savepoint: med(|r| r.savepoint),
        recorded: med(|r| r.recorded),
        objects: med(|r| r.objects as f64) as u64,
        multipart: med(|r| r.multipart as f64) as u64,
        parts: med(|r| r.parts as f64) as u64,
        mib: med(|r| r.mib),
        download: med(|r| r.download),
        open: med(|r| r.open),
        restore: med(|r| r.restore),
    }
}
