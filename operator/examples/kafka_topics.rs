//! Creates Kafka topics, for `scripts/local-demo.sh` (the broker jars it runs have
//! no command-line tools): `kafka_topics BOOTSTRAP PARTITIONS TOPIC...`. A topic
//! that exists already is left as it is.

use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::types::RDKafkaErrorCode;

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [bootstrap, partitions, topics @ ..] = args.as_slice() else {
        anyhow::bail!("usage: kafka_topics BOOTSTRAP PARTITIONS TOPIC...");
    };
    let partitions: i32 = partitions
        .parse()
        .map_err(|e| anyhow::anyhow!("partitions {partitions:?}: {e}"))?;
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .map_err(|e| anyhow::anyhow!("a Kafka admin client for {bootstrap}: {e}"))?;
    let new: Vec<NewTopic> = topics
        .iter()
        .map(|t| NewTopic::new(t, partitions, TopicReplication::Fixed(1)))
        .collect();
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    let results = admin
        .create_topics(&new, &opts)
        .await
        .map_err(|e| anyhow::anyhow!("creating topics on {bootstrap}: {e}"))?;
    for r in results {
        match r {
            Ok(t) => println!("created {t} ({partitions} partitions)"),
            Err((t, RDKafkaErrorCode::TopicAlreadyExists)) => println!("{t} exists"),
            Err((t, e)) => anyhow::bail!("creating topic {t}: {e}"),
        }
    }
    Ok(())
}
