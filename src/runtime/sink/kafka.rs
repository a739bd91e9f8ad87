//! A `kafka` sink: a record per outcome, produced by librdkafka from a
//! thread of its own. Every record sent is delivered (acknowledged by the
//! brokers as the producer's `acks` asks) before a checkpoint's barrier is
//! answered and before the run ends; a record that cannot be delivered
//! stops the run with the broker's reason.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use rdkafka::ClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::DeliveryResult;
use rdkafka::producer::{BaseRecord, Producer as _, ProducerContext, ThreadedProducer};
use rdkafka::util::Timeout;
use tokio::sync::{mpsc, oneshot};

use super::{Message, QUEUE, SinkThread, Written};
use crate::config::KafkaSink;
use crate::runtime::error::RunError;
use crate::runtime::returns::{Returns, Ways};
use crate::runtime::router::Router;

/// The most a producer queues for the brokers, in KiB, unless the sink's
/// properties say otherwise: 16 MiB.
const QUEUE_KBYTES: u32 = 16 * 1024;

/// Records that could not be delivered: how many, and the first reason;
/// and whether a broker problem was told.
#[derive(Default)]
struct Deliveries {
    sink: String,
    failed: Mutex<(u64, Option<String>)>,
    told: AtomicBool,
}

impl ClientContext for Deliveries {
    /// The first problem with the brokers (none reachable, say) is told at
    /// once: until the message timeout fails the records, the run would
    /// seem to hang. librdkafka retries, and repeats itself; the rest is
    /// left out.
    fn error(&self, error: KafkaError, reason: &str) {
        if !self.told.swap(true, Ordering::Relaxed) {
            eprintln!(
                "warning: kafka sink `{}`: {error}: {reason} (records are kept and retried \
                 until the producer's message.timeout.ms)",
                self.sink
            );
        }
    }
}

impl ProducerContext for Deliveries {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, (): ()) {
        if let Err((error, _)) = result {
            let mut failed = self.failed.lock().unwrap_or_else(PoisonError::into_inner);
            failed.0 += 1;
            failed.1.get_or_insert_with(|| error.to_string());
        }
    }
}

/// A sink's producer and topic, ready for its thread.
pub(crate) struct Producer {
    sink: String,
    topic: String,
    client: ThreadedProducer<Deliveries>,
}

impl Producer {
    /// A producer for sink `sink`, as `config` says. Nothing is sent yet,
    /// so brokers that cannot be reached show when records are delivered.
    ///
    /// # Errors
    ///
    /// A client property librdkafka does not take, located at it.
    pub(crate) fn open(sink: &str, config: &KafkaSink) -> Result<Self, RunError> {
        let mut client = ClientConfig::new();
        client.set("bootstrap.servers", &config.brokers.value);
        // librdkafka queues up to 1 GiB for slow brokers before it pushes
        // back; the run's memory is bounded by what is pending instead
        // (the properties may say otherwise).
        client.set("queue.buffering.max.kbytes", QUEUE_KBYTES.to_string());
        // A batch sent again after a lost answer is not written twice, and
        // records stay in order within a partition.
        client.set("enable.idempotence", "true");
        for (name, value) in &config.properties {
            client.set(&name.value, &value.value);
        }
        let producer = client
            .create_with_context(Deliveries {
                sink: sink.to_string(),
                ..Deliveries::default()
            })
            .map_err(|error| {
                RunError::kafka_client(
                    &error,
                    &config.topic.value,
                    &config.brokers,
                    &config.properties,
                )
            })?;
        Ok(Self {
            sink: sink.to_string(),
            topic: config.topic.value.clone(),
            client: producer,
        })
    }

    /// The sink and what its barriers name in messages.
    pub(crate) fn barrier_names(&self) -> (String, String) {
        (self.sink.clone(), format!("kafka topic {}", self.topic))
    }

    /// Sends one record, waiting while librdkafka's queue is full.
    fn send(&self, key: Option<&str>, value: &[u8]) -> Result<(), KafkaError> {
        let mut record = BaseRecord::to(&self.topic).payload(value);
        if let Some(key) = key {
            record = record.key(key);
        }
        loop {
            match self.client.send(record) {
                Ok(()) => return Ok(()),
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), again)) => {
                    // The brokers are behind: this holds the driver back,
                    // as a slow file does.
                    record = again;
                    self.client.poll(Duration::from_millis(10));
                }
                Err((error, _)) => return Err(error),
            }
        }
    }

    /// Waits until every record sent is delivered or has failed (after
    /// the producer's `message.timeout.ms`); what failed, and why.
    fn deliver(&self) -> Result<(), String> {
        self.client
            .flush(Timeout::Never)
            .map_err(|error| format!("records were not delivered: {error}"))?;
        let failed = self
            .client
            .context()
            .failed
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        match failed {
            (0, _) => Ok(()),
            (count, reason) => Err(format!(
                "{count} record{} could not be delivered to topic `{}`: {}",
                if count == 1 { "" } else { "s" },
                self.topic,
                reason.unwrap_or_default()
            )),
        }
    }
}

/// Starts the thread that renders outcomes by `router` into records of
/// `producer`'s topic; `name` names the target in errors.
///
/// # Errors
///
/// A thread that cannot be started.
pub(super) fn spawn(
    name: &str,
    producer: Producer,
    router: std::sync::Arc<Router>,
    ways: Ways,
) -> std::io::Result<SinkThread> {
    let (messages, mut receiver) = mpsc::channel::<Message>(QUEUE);
    let (give_back, spare) = std::sync::mpsc::sync_channel(QUEUE);
    let (report, done) = oneshot::channel();
    std::thread::Builder::new()
        .name(format!("sink {name}"))
        .spawn(move || {
            let failed = |message: String| RunError::Write {
                sink: producer.sink.clone(),
                source: std::io::Error::other(message),
            };
            let (mut key, mut value) = (String::new(), Vec::new());
            let mut returns = Returns::new(ways);
            let mut produce = || -> Result<(), RunError> {
                while let Some(message) = receiver.blocking_recv() {
                    let mut batch = match message {
                        Message::Outcomes(batch) => batch,
                        Message::Barrier(answer) => {
                            let delivered = producer.deliver().map_err(failed);
                            let stop = delivered.is_err();
                            let _ = answer.send(delivered.map(|()| Written {
                                length: 0,
                                file: None,
                            }));
                            if stop {
                                return Ok(());
                            }
                            continue;
                        }
                    };
                    for (route, mut outcome) in batch.drain(..) {
                        key.clear();
                        value.clear();
                        let keyed = router.record_key(route, &outcome, &mut key)?;
                        router.render(route, &outcome, &mut value)?;
                        // The line's break is not part of the record.
                        value.pop();
                        producer
                            .send(keyed.then_some(key.as_str()), &value)
                            .map_err(|error| failed(error.to_string()))?;
                        returns.take(&mut outcome);
                    }
                    let _ = give_back.try_send(batch);
                }
                producer.deliver().map_err(failed)
            };
            let _ = report.send(produce());
        })?;
    Ok(SinkThread {
        messages,
        spare,
        done,
    })
}
