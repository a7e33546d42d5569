//! The counters of one shard: records, malformed, late and duplicate records
//! per input, events applied and entries opened and emitted. Kept in every
//! checkpoint and summed into the run summary.

/// Counters of one shard, summed into the run summary.
#[derive(Debug, Default, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ShardCounters {
    pub records: [u64; 2],
    pub malformed: [[u64; 5]; 2],
    pub late: [u64; 2],
    pub duplicates: [u64; 2],
    /// Distinct on-time events applied to state.
    pub events: u64,
    pub entries_opened: u64,
    pub entries_emitted: u64,
    pub entries_with_impressions: u64,
    pub entries_with_plays: u64,
    /// Entries with both impressions and plays.
    pub entries_joined: u64,
}

impl ShardCounters {
    pub fn add(&mut self, o: &ShardCounters) {
        for i in 0..2 {
            self.records[i] += o.records[i];
            self.late[i] += o.late[i];
            self.duplicates[i] += o.duplicates[i];
            for m in 0..5 {
                self.malformed[i][m] += o.malformed[i][m];
            }
        }
        self.events += o.events;
        self.entries_opened += o.entries_opened;
        self.entries_emitted += o.entries_emitted;
        self.entries_with_impressions += o.entries_with_impressions;
        self.entries_with_plays += o.entries_with_plays;
        self.entries_joined += o.entries_joined;
    }

    pub fn malformed_total(&self) -> u64 {
        self.malformed.iter().flatten().sum()
    }
}
