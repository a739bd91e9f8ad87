//! Processes that share a pipeline's Kafka partitions as a consumer group
//! deals them out (`--join`), as Kafka Streams applications do: one that
//! joins takes some over, one that leaves or dies gives its own up.
//!
//! Each process keeps one member in the group `<group>.members` (`<group>`
//! being its first Kafka source's): a consumer subscribed to every Kafka
//! source's topic that never reads a message (its partitions are paused).
//! The group's range assignor deals partition `p` of every topic to the
//! same member, so a process learns its partitions from its member and
//! runs the pipeline on them ([`Instance::dealt`]) in a *term*: a run with
//! a state directory and file sinks of its own for that range. When the
//! group deals again (a process joins, leaves, or is not heard from within
//! the session timeout), the member's revocation waits while the term
//! stops and saves its last checkpoint; the group's next dealing waits for
//! every member's revocation, so a partition's new owner starts after its
//! old one stopped, and takes its state over from the checkpoint that
//! holds it newest. Offsets are committed to `<group>` as before.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer as _, ConsumerContext, Rebalance};
use rdkafka::error::KafkaError;
use rdkafka::{ClientContext, TopicPartitionList};
use tokio::sync::watch;

use super::Instance;
use super::error::RunError;
use crate::config::KafkaSource;
use crate::plan::{Graph, Input};

/// How long to wait for the brokers' answer about a topic's partitions.
const ANSWER: Duration = Duration::from_secs(30);

/// How often the member is polled, which serves the group's dealings.
const POLL: Duration = Duration::from_millis(100);

/// What the group dealt this process, and whether a term runs on it.
#[derive(Default)]
struct Deal {
    /// Each topic's partitions dealt to this process, by the group's last
    /// dealing; `None` once they are taken back.
    dealt: Option<Vec<(String, Vec<i32>)>>,
    /// How many times partitions were taken back.
    revocations: u64,
    /// Whether a term runs on the partitions dealt.
    running: bool,
    /// Whether the process leaves the group: a revocation then waits for
    /// nothing.
    leaving: bool,
    /// A problem the member met, for the process to stop on.
    failed: Option<String>,
}

/// What the member and the process share.
struct Shared {
    deal: Mutex<Deal>,
    changed: Condvar,
    /// How many times partitions were taken back, for the term running.
    revoked: watch::Sender<u64>,
}

impl Shared {
    fn deal(&self) -> MutexGuard<'_, Deal> {
        self.deal.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The member's client context: it hears the group's dealings.
struct Dealer {
    shared: Arc<Shared>,
    group: String,
    /// Whether a problem was told on stderr.
    warned: AtomicBool,
}

impl ClientContext for Dealer {
    fn error(&self, error: KafkaError, reason: &str) {
        tracing::warn!(%error, reason, "kafka group member");
        if !self.warned.swap(true, Ordering::Relaxed) {
            let trying = if super::source::fatal(&error) {
                ""
            } else {
                " (the member keeps trying)"
            };
            eprintln!(
                "warning: consumer group `{}`: {error}: {reason}{trying}",
                self.group
            );
        }
    }
}

impl ConsumerContext for Dealer {
    fn pre_rebalance(&self, _: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(partitions) = rebalance {
            let mut deal = self.shared.deal();
            deal.dealt = None;
            deal.revocations += 1;
            self.shared.revoked.send_replace(deal.revocations);
            if partitions.count() > 0 {
                tracing::info!("kafka partitions taken back by the group");
            }
            // The group deals again once every member said it let go: the
            // term stops and saves its last checkpoint first.
            while deal.running && !deal.leaving {
                deal = (self.shared.changed.wait(deal)).unwrap_or_else(PoisonError::into_inner);
            }
        }
    }

    fn post_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Assign(partitions) => {
                // The member reads nothing; the term's sources do.
                if let Err(error) = consumer.pause(partitions) {
                    tracing::warn!(%error, "kafka group member: cannot pause its partitions");
                }
                let mut deal = self.shared.deal();
                deal.dealt = Some(by_topic(partitions));
                self.shared.changed.notify_all();
            }
            Rebalance::Revoke(_) => {}
            Rebalance::Error(error) => {
                tracing::warn!(%error, "kafka group member: dealing failed");
            }
        }
    }
}

/// Each topic's partitions in `list`, in order.
fn by_topic(list: &TopicPartitionList) -> Vec<(String, Vec<i32>)> {
    let mut topics: Vec<(String, Vec<i32>)> = Vec::new();
    for element in list.elements() {
        match topics
            .iter_mut()
            .find(|(topic, _)| topic == element.topic())
        {
            Some((_, partitions)) => partitions.push(element.partition()),
            None => topics.push((element.topic().to_string(), vec![element.partition()])),
        }
    }
    for (_, partitions) in &mut topics {
        partitions.sort_unstable();
    }
    topics
}

/// A run on the partitions the group dealt this process.
#[derive(Clone, Copy, Debug)]
pub struct Term {
    /// The partitions.
    pub instance: Instance,
    /// How many times partitions were taken back before it started.
    revocations: u64,
}

/// This process's member in its consumer group.
pub struct Membership {
    shared: Arc<Shared>,
    member: Option<Arc<BaseConsumer<Dealer>>>,
    poller: Option<JoinHandle<()>>,
    /// The group, `<group>.members`.
    group: String,
    /// The first topic, whose partition count the dealt ranges are of.
    topic: String,
}

impl Membership {
    /// Joins the consumer group `<group>.members` of `graph`'s first Kafka
    /// source, subscribed to every Kafka source's topic, with the first's
    /// brokers and client properties.
    ///
    /// # Errors
    ///
    /// A source does not read Kafka, or is bounded; the member cannot be
    /// made.
    pub fn join(graph: &Graph) -> Result<Self, RunError> {
        let kafka = shareable(graph)?;
        let first = kafka[0];
        let group = format!("{}.members", first.group.value);
        let mut config = ClientConfig::new();
        config
            .set("bootstrap.servers", &first.brokers.value)
            .set("group.id", &group)
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false");
        for (name, value) in &first.properties {
            config.set(&name.value, &value.value);
        }
        // Partition `p` of every topic to the same member.
        config.set("partition.assignment.strategy", "range");
        let (revoked, _) = watch::channel(0);
        let shared = Arc::new(Shared {
            deal: Mutex::default(),
            changed: Condvar::new(),
            revoked,
        });
        let member: BaseConsumer<Dealer> = config
            .create_with_context(Dealer {
                shared: shared.clone(),
                group: group.clone(),
                warned: AtomicBool::new(false),
            })
            .map_err(|error| {
                RunError::kafka_client(
                    &error,
                    &first.topic.value,
                    &first.brokers,
                    &first.properties,
                )
            })?;
        let mut topics: Vec<&str> = kafka.iter().map(|k| k.topic.value.as_str()).collect();
        topics.sort_unstable();
        topics.dedup();
        member
            .subscribe(&topics)
            .map_err(|error| RunError::Shared {
                message: format!("cannot join the consumer group `{group}`: {error}"),
                span: Some(first.group.span),
            })?;
        let member = Arc::new(member);
        let consumer = member.clone();
        let (leaving, named) = (shared.clone(), group.clone());
        let poller = std::thread::Builder::new()
            .name("group member".to_string())
            .spawn(move || {
                while !leaving.deal().leaving {
                    // Messages of partitions not yet paused are dropped.
                    let Some(Err(error)) = consumer.poll(POLL) else {
                        continue;
                    };
                    tracing::warn!(%error, "kafka group member");
                    if super::source::fatal(&error) {
                        // The run on the partitions stops, and the process
                        // with the reason.
                        let mut deal = leaving.deal();
                        deal.failed = Some(format!("consumer group `{named}`: {error}"));
                        deal.revocations += 1;
                        leaving.revoked.send_replace(deal.revocations);
                        leaving.changed.notify_all();
                        break;
                    }
                }
            })
            .map_err(RunError::Start)?;
        Ok(Self {
            shared,
            member: Some(member),
            poller: Some(poller),
            group,
            topic: first.topic.value.clone(),
        })
    }

    /// The consumer group the processes meet in.
    pub fn group(&self) -> &str {
        &self.group
    }

    /// Waits until the group deals this process partitions, and gives
    /// the term that runs on them; `None` once `stop` says so (checked
    /// every tenth of a second). Partitions dealt while none is are
    /// waited out (more processes than partitions).
    ///
    /// # Errors
    ///
    /// The topics were dealt differently (they are not co-partitioned),
    /// or their partitions cannot be counted.
    pub fn next(&self, stop: &watch::Receiver<bool>) -> Result<Option<Term>, RunError> {
        let mut deal = self.shared.deal();
        let mut told_idle = false;
        loop {
            if *stop.borrow() {
                return Ok(None);
            }
            if let Some(failed) = deal.failed.take() {
                return Err(RunError::Shared {
                    message: failed,
                    span: None,
                });
            }
            match &deal.dealt {
                Some(topics) if topics.iter().any(|(_, partitions)| !partitions.is_empty()) => {
                    let range = same_range(topics)?;
                    let revocations = deal.revocations;
                    deal.running = true;
                    drop(deal);
                    let term = self.term(range, revocations);
                    if term.is_err() {
                        self.done();
                    }
                    return term.map(Some);
                }
                Some(_) if !told_idle => {
                    told_idle = true;
                    tracing::info!(
                        group = %self.group,
                        "the group dealt this process no partitions: more processes than \
                         partitions; waiting"
                    );
                }
                _ => {}
            }
            deal = (self.shared.changed.wait_timeout(deal, POLL))
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }

    /// The term on partitions `range`, of as many as the topics have.
    fn term(&self, range: std::ops::Range<u32>, revocations: u64) -> Result<Term, RunError> {
        let Some(member) = &self.member else {
            return Err(RunError::Shared {
                message: format!("left the consumer group `{}`", self.group),
                span: None,
            });
        };
        let metadata = (member.fetch_metadata(Some(&self.topic), ANSWER)).map_err(|error| {
            RunError::Shared {
                message: format!(
                    "kafka topic `{}`: cannot read its partitions: {error}",
                    self.topic
                ),
                span: None,
            }
        })?;
        let of = (metadata.topics().iter())
            .find(|topic| topic.name() == self.topic)
            .map_or(0, |topic| topic.partitions().len());
        let of = u32::try_from(of).unwrap_or(u32::MAX);
        let instance = Instance::dealt(range.clone(), of).ok_or_else(|| RunError::Shared {
            message: format!(
                "kafka topic `{}` has {of} partitions, fewer than the group dealt ({}-{})",
                self.topic,
                range.start,
                range.end - 1
            ),
            span: None,
        })?;
        tracing::info!(group = %self.group, partitions = %instance, "kafka partitions dealt");
        Ok(Term {
            instance,
            revocations,
        })
    }

    /// Completes once the group takes `term`'s partitions back.
    pub fn taken_back(&self, term: Term) -> impl Future<Output = ()> + Send + 'static {
        let mut revoked = self.shared.revoked.subscribe();
        async move {
            // Ends with the membership only, which outlives its terms.
            let _ = revoked.wait_for(|&now| now > term.revocations).await;
        }
    }

    /// Says the term that ran stopped: the group may deal its partitions
    /// to others.
    pub fn done(&self) {
        self.shared.deal().running = false;
        self.shared.changed.notify_all();
    }

    /// Leaves the group: its partitions are dealt to the others.
    pub fn leave(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        self.shared.deal().leaving = true;
        self.shared.changed.notify_all();
        if let Some(poller) = self.poller.take() {
            let _ = poller.join();
        }
        if let Some(member) = self.member.take() {
            // Dropping it closes it, which tells the group it left.
            drop(member);
        }
    }
}

impl Drop for Membership {
    fn drop(&mut self) {
        self.stop();
    }
}

/// `graph`'s Kafka sources, the first at least, which processes of a
/// group may share.
///
/// # Errors
///
/// A source does not read Kafka, or is bounded.
fn shareable(graph: &Graph) -> Result<Vec<&KafkaSource>, RunError> {
    super::source::only_kafka(&graph.sources, "`--join`")?;
    let mut kafka: Vec<&KafkaSource> = Vec::new();
    for source in &graph.sources {
        let Input::Kafka(config) = &source.input else {
            continue;
        };
        if config.bounded {
            return Err(RunError::Shared {
                message: format!(
                    "kafka source `{}` is bounded: with `--join`, processes read on while \
                     their group deals the partitions out; replay without `--join`",
                    source.name
                ),
                span: Some(config.topic.span),
            });
        }
        kafka.push(config);
    }
    if kafka.is_empty() {
        return Err(RunError::Shared {
            message: "the pipeline reads no Kafka topic: with `--join`, processes share Kafka \
                      partitions only"
                .to_string(),
            span: None,
        });
    }
    Ok(kafka)
}

/// The range of partitions every topic in `topics` was dealt.
///
/// # Errors
///
/// Topics dealt different partitions, or partitions not in one range.
fn same_range(topics: &[(String, Vec<i32>)]) -> Result<std::ops::Range<u32>, RunError> {
    let (first_topic, first) = &topics[0];
    if let Some((topic, _)) = topics.iter().find(|(_, partitions)| partitions != first) {
        return Err(RunError::Shared {
            message: format!(
                "the consumer group dealt topics `{first_topic}` and `{topic}` different \
                 partitions: the connected topics must be co-partitioned (as many partitions \
                 each)"
            ),
            span: None,
        });
    }
    let number = |partition: i32| u32::try_from(partition).unwrap_or(0);
    let (low, high) = (number(first[0]), number(first[first.len() - 1]));
    if (high - low) as usize + 1 != first.len() {
        return Err(RunError::Shared {
            message: format!(
                "the consumer group dealt partitions {first:?} of `{first_topic}`, not one \
                 range: its members must use the range assignor"
            ),
            span: None,
        });
    }
    Ok(low..high + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn topics(lists: &[(&str, &[i32])]) -> Vec<(String, Vec<i32>)> {
        (lists.iter())
            .map(|(topic, partitions)| ((*topic).to_string(), partitions.to_vec()))
            .collect()
    }

    #[test]
    fn every_topic_dealt_one_range_is_a_term() {
        let dealt = topics(&[("orders", &[3, 4, 5]), ("payments", &[3, 4, 5])]);
        assert_eq!(same_range(&dealt).expect("a range"), 3..6);
        let apart = topics(&[("orders", &[3, 4]), ("payments", &[4, 5])]);
        let error = same_range(&apart).expect_err("refused").to_string();
        assert!(error.contains("co-partitioned"), "{error}");
        let gaps = topics(&[("orders", &[1, 3])]);
        let error = same_range(&gaps).expect_err("refused").to_string();
        assert!(error.contains("not one range"), "{error}");
    }
}
