//! Per-record costs of the hot path: parsing, folding into an entry, and the
//! canonical output encoding.

use criterion::{Criterion, criterion_group, criterion_main};
use std::hint::black_box;
use streamjoin_runtime::config::FieldNames;
use streamjoin_runtime::model::entry::Entry;
use streamjoin_runtime::model::output::{OutputNames, write_json};
use streamjoin_runtime::model::record::{Input, RecordParser};

const IMP: &[u8] = br#"{"type":"impression","event_id":"d8951adf4231ed80a139ad17a6cb813e","event_time":1700000001428,"profile_id":32642,"title_id":19707,"row":5,"rank":20,"device":"android"}"#;

fn bench(c: &mut Criterion) {
    let parser = RecordParser::new(Input::Impressions, FieldNames::default());
    c.bench_function("parse_impression", |b| {
        b.iter(|| parser.parse(black_box(IMP)))
    });
    let event = parser.parse(IMP).unwrap_or_else(|e| panic!("{e:?}"));
    c.bench_function("open_and_fold_entry", |b| {
        b.iter(|| {
            let mut e = Entry::open(black_box(&event), 14_400_000);
            e.fold(black_box(&event));
            e
        })
    });
    let entry = Entry::open(&event, 14_400_000);
    let mut out = Vec::with_capacity(512);
    let names = OutputNames::new("profile_id", "title_id");
    c.bench_function("write_entry_json", |b| {
        b.iter(|| {
            out.clear();
            write_json(&entry, event.key, &names, &mut out);
            out.len()
        })
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
