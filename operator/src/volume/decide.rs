//! The expansion decision for one checkpoint volume, a pure function of what the
//! runtime reports (usage), what the claim says (requested and provisioned size,
//! a resize under way) and whether its StorageClass allows expansion.
//!
//! The rule: when `used ≥ thresholdPercent` of the filesystem, the claim grows to
//! 1.5 × its current size (the larger of requested and provisioned), rounded up to a
//! whole GiB (a whole MiB below 1 GiB), and never above `maxSize`. A resize under way
//! (requested above provisioned, or a `Resizing`/`FileSystemResizePending` condition)
//! is waited for, so one full volume is grown once, not once per reconcile.

use streamjoin_api::AutoExpandSpec;

use super::quantity::{GIB, MIB, format_bytes, human, parse_bytes};
use crate::admin::CheckpointVolume;

/// Whether the volume is filled past the threshold (a volume reporting no capacity is not).
pub fn over_threshold(u: &CheckpointVolume, threshold_percent: u8) -> bool {
    u.capacity_bytes > 0
        && u128::from(u.used_bytes) * 100
            >= u128::from(threshold_percent) * u128::from(u.capacity_bytes)
}

/// Whether the claim's StorageClass allows expansion.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Expandable {
    Yes,
    /// `allowVolumeExpansion` is not true on this class.
    No {
        class: String,
    },
    /// The class could not be told (no class name on the claim, class not found).
    Unknown {
        why: String,
    },
}

/// What the claim says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Claim {
    /// `spec.resources.requests.storage`.
    pub requested: Option<String>,
    /// `status.capacity.storage`.
    pub provisioned: Option<String>,
    /// A `Resizing` or `FileSystemResizePending` condition is True.
    pub resizing: bool,
    pub expandable: Expandable,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Patch `spec.resources.requests.storage` from `from` to `to`.
    Expand { from: String, to: String },
    /// A resize asked for earlier is still under way.
    Wait { why: String },
    /// Full, and already at `maxSize`.
    AtMaxSize { size: String, max: String },
    /// Full, and the StorageClass does not allow expansion (or cannot be read).
    NotExpandable { why: String },
    /// The claim or `maxSize` cannot be read as a quantity.
    Invalid { why: String },
}

/// 1.5 × `base`, rounded up to a whole GiB (a whole MiB below 1 GiB).
pub fn grown(base: u128) -> u128 {
    let want = base.saturating_mul(3).div_ceil(2);
    let unit = if base >= GIB { GIB } else { MIB };
    want.div_ceil(unit).saturating_mul(unit)
}

/// The decision for a volume already past its threshold.
pub fn decide(claim: &Claim, spec: &AutoExpandSpec) -> Decision {
    let Some(requested_text) = claim.requested.as_deref() else {
        return Decision::Invalid {
            why: "the claim requests no storage size".into(),
        };
    };
    let Some(requested) = parse_bytes(requested_text) else {
        return Decision::Invalid {
            why: format!("the claim's size {requested_text:?} is not a quantity"),
        };
    };
    let Some(max) = parse_bytes(&spec.max_size) else {
        return Decision::Invalid {
            why: format!(
                "checkpoints.volume.autoExpand.maxSize {:?} is not a quantity",
                spec.max_size
            ),
        };
    };
    let provisioned = claim.provisioned.as_deref().and_then(parse_bytes);
    if claim.resizing || provisioned.is_some_and(|p| requested > p) {
        return Decision::Wait {
            why: format!(
                "resize to {requested_text} under way (provisioned {})",
                claim.provisioned.as_deref().unwrap_or("unknown")
            ),
        };
    }
    let base = provisioned.map_or(requested, |p| p.max(requested));
    if base >= max {
        return Decision::AtMaxSize {
            size: format_bytes(base),
            max: spec.max_size.clone(),
        };
    }
    match &claim.expandable {
        Expandable::Yes => {}
        Expandable::No { class } => {
            return Decision::NotExpandable {
                why: format!("StorageClass {class} does not allow volume expansion"),
            };
        }
        Expandable::Unknown { why } => {
            return Decision::NotExpandable { why: why.clone() };
        }
    }
    let next = grown(base);
    let to = if next >= max {
        spec.max_size.clone()
    } else {
        format_bytes(next)
    };
    Decision::Expand {
        from: requested_text.to_owned(),
        to,
    }
}

/// `8.6Gi of 10Gi (86%)`, for messages.
pub fn usage_words(u: &CheckpointVolume) -> String {
    let pct = if u.capacity_bytes == 0 {
        0
    } else {
        u128::from(u.used_bytes) * 100 / u128::from(u.capacity_bytes)
    };
    format!(
        "{} of {} ({pct}%)",
        human(u128::from(u.used_bytes)),
        human(u128::from(u.capacity_bytes))
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(max: &str) -> AutoExpandSpec {
        AutoExpandSpec {
            threshold_percent: 80,
            max_size: max.into(),
        }
    }

    fn claim(requested: &str, provisioned: &str) -> Claim {
        Claim {
            requested: Some(requested.into()),
            provisioned: Some(provisioned.into()),
            resizing: false,
            expandable: Expandable::Yes,
        }
    }

    fn usage(used: u64, capacity: u64) -> CheckpointVolume {
        CheckpointVolume {
            used_bytes: used,
            capacity_bytes: capacity,
        }
    }

    #[test]
    fn the_threshold_is_a_percentage_of_the_filesystem() {
        let gib = 1u64 << 30;
        assert!(!over_threshold(&usage(7 * gib, 10 * gib), 80));
        assert!(over_threshold(&usage(8 * gib, 10 * gib), 80));
        assert!(over_threshold(&usage(9 * gib, 10 * gib), 80));
        assert!(!over_threshold(&usage(5, 0), 80), "no capacity reported");
        assert_eq!(
            usage_words(&usage(17 * gib / 2, 10 * gib)),
            "8.5Gi of 10Gi (85%)"
        );
    }

    #[test]
    fn a_full_volume_grows_by_half_rounded_up_to_a_whole_gib() {
        assert_eq!(
            decide(&claim("10Gi", "10Gi"), &spec("100Gi")),
            Decision::Expand {
                from: "10Gi".into(),
                to: "15Gi".into()
            }
        );
        // 1.5 × 5 GiB = 7.5 GiB → 8Gi; decimal sizes are handled the same way.
        assert_eq!(
            decide(&claim("5Gi", "5Gi"), &spec("1Ti")),
            Decision::Expand {
                from: "5Gi".into(),
                to: "8Gi".into()
            }
        );
        assert_eq!(
            decide(&claim("10G", "10G"), &spec("100G")),
            Decision::Expand {
                from: "10G".into(),
                to: "14Gi".into()
            }
        );
        // Below 1 GiB: whole MiB.
        assert_eq!(
            decide(&claim("500Mi", "500Mi"), &spec("10Gi")),
            Decision::Expand {
                from: "500Mi".into(),
                to: "750Mi".into()
            }
        );
        // A provisioner that gave more than asked: grow from what is there.
        assert_eq!(
            decide(&claim("10Gi", "16Gi"), &spec("100Gi")),
            Decision::Expand {
                from: "10Gi".into(),
                to: "24Gi".into()
            }
        );
    }

    #[test]
    fn growth_stops_at_max_size() {
        assert_eq!(
            decide(&claim("40Gi", "40Gi"), &spec("50Gi")),
            Decision::Expand {
                from: "40Gi".into(),
                to: "50Gi".into()
            }
        );
        assert_eq!(
            decide(&claim("50Gi", "50Gi"), &spec("50Gi")),
            Decision::AtMaxSize {
                size: "50Gi".into(),
                max: "50Gi".into()
            }
        );
        // maxSize in other units compares by bytes.
        assert!(matches!(
            decide(&claim("50Gi", "50Gi"), &spec("51200Mi")),
            Decision::AtMaxSize { .. }
        ));
    }

    #[test]
    fn a_class_without_expansion_or_an_unknown_class_is_never_patched() {
        let mut c = claim("10Gi", "10Gi");
        c.expandable = Expandable::No {
            class: "standard".into(),
        };
        assert_eq!(
            decide(&c, &spec("100Gi")),
            Decision::NotExpandable {
                why: "StorageClass standard does not allow volume expansion".into()
            }
        );
        c.expandable = Expandable::Unknown {
            why: "no class".into(),
        };
        assert!(matches!(
            decide(&c, &spec("100Gi")),
            Decision::NotExpandable { .. }
        ));
    }

    #[test]
    fn a_resize_under_way_is_waited_for() {
        assert!(matches!(
            decide(&claim("15Gi", "10Gi"), &spec("100Gi")),
            Decision::Wait { .. }
        ));
        let mut c = claim("15Gi", "15Gi");
        c.resizing = true;
        assert!(matches!(decide(&c, &spec("100Gi")), Decision::Wait { .. }));
    }

    #[test]
    fn unreadable_sizes_are_reported_not_guessed() {
        assert!(matches!(
            decide(&claim("10Gi", "10Gi"), &spec("lots")),
            Decision::Invalid { .. }
        ));
        let mut c = claim("10Gi", "10Gi");
        c.requested = None;
        assert!(matches!(
            decide(&c, &spec("100Gi")),
            Decision::Invalid { .. }
        ));
    }
}
