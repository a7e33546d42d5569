//! Static assignment of shards to runtime processes. No consumer-group
//! rebalancing: a process owns exactly the shards this function gives it, so a
//! restart, a rescale or a restore from a savepoint always knows which state to
//! load.
//!
//! Rule: shard `p` (input partition `p` of both topics) belongs to ordinal
//! `p mod replicas`. With 4 partitions and 2 replicas, ordinal 0 owns {0, 2} and
//! ordinal 1 owns {1, 3}; with 3 replicas, {0, 3}, {1}, {2}.

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AssignmentError {
    #[error("replicas must be at least 1")]
    NoReplicas,
    #[error("ordinal {ordinal} is not below replicas {replicas}")]
    OrdinalOutOfRange { ordinal: u32, replicas: u32 },
    #[error(
        "replicas {replicas} exceed the {partitions} input partitions: ordinal {ordinal} would own no shard"
    )]
    MoreReplicasThanPartitions {
        ordinal: u32,
        replicas: u32,
        partitions: u32,
    },
}

/// The shards (input partitions) owned by `ordinal` of `replicas` processes.
pub fn owned_shards(
    ordinal: u32,
    replicas: u32,
    partitions: u32,
) -> Result<Vec<u32>, AssignmentError> {
    if replicas == 0 {
        return Err(AssignmentError::NoReplicas);
    }
    if ordinal >= replicas {
        return Err(AssignmentError::OrdinalOutOfRange { ordinal, replicas });
    }
    if replicas > partitions {
        return Err(AssignmentError::MoreReplicasThanPartitions {
            ordinal,
            replicas,
            partitions,
        });
    }
    Ok((0..partitions)
        .filter(|p| p % replicas == ordinal)
        .collect())
}

/// The StatefulSet ordinal from a pod name (`<statefulset>-<ordinal>`).
pub fn ordinal_from_pod_name(name: &str) -> Option<u32> {
    name.rsplit_once('-')?.1.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn two_replicas_split_four_partitions() {
        assert_eq!(owned_shards(0, 2, 4), Ok(vec![0, 2]));
        assert_eq!(owned_shards(1, 2, 4), Ok(vec![1, 3]));
    }

    #[test]
    fn impossible_layouts_are_refused_with_a_reason() {
        assert_eq!(owned_shards(0, 0, 4), Err(AssignmentError::NoReplicas));
        assert!(matches!(
            owned_shards(2, 2, 4),
            Err(AssignmentError::OrdinalOutOfRange { .. })
        ));
        assert!(matches!(
            owned_shards(0, 5, 4),
            Err(AssignmentError::MoreReplicasThanPartitions { .. })
        ));
    }

    #[test]
    fn ordinal_comes_from_the_pod_name() {
        assert_eq!(ordinal_from_pod_name("impressions-plays-3"), Some(3));
        assert_eq!(ordinal_from_pod_name("nodash"), None);
        assert_eq!(ordinal_from_pod_name("job-x"), None);
    }

    proptest! {
        /// Every shard has exactly one owner, whatever the layout.
        #[test]
        fn every_shard_has_exactly_one_owner(partitions in 1u32..64, replicas_seed in 0u32..64) {
            let replicas = 1 + replicas_seed % partitions;
            let mut owners = vec![0u32; partitions as usize];
            for o in 0..replicas {
                let owned = owned_shards(o, replicas, partitions).expect("valid layout");
                prop_assert!(!owned.is_empty());
                for p in owned {
                    owners[p as usize] += 1;
                }
            }
            prop_assert!(owners.iter().all(|&n| n == 1));
        }
    }
}
