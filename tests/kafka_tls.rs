//! Kafka over TLS, through the binary: tansu (the broker process of the
//! other end-to-end tests) behind a TLS endpoint of the test's own, which
//! the broker advertises to clients, so that every connection a client
//! makes is TLS, verified against a certificate the test makes.

use std::io::{ErrorKind, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use openssl::asn1::Asn1Time;
use openssl::bn::BigNum;
use openssl::hash::MessageDigest;
use openssl::pkey::{PKey, Private};
use openssl::rsa::Rsa;
use openssl::ssl::{SslAcceptor, SslMethod};
use openssl::x509::extension::{BasicConstraints, SubjectAlternativeName};
use openssl::x509::{X509, X509NameBuilder};

use crate::harness::{interrupt, run_in, scratch, start};
use crate::kafka::Broker;

/// A self-signed certificate for `127.0.0.1` and `localhost`, its own
/// authority, and its key.
fn certificate() -> (X509, PKey<Private>) {
    let key = PKey::from_rsa(Rsa::generate(2048).expect("a key")).expect("a key");
    let mut name = X509NameBuilder::new().expect("a name");
    name.append_entry_by_text("CN", "localhost")
        .expect("a name");
    let name = name.build();
    let mut builder = X509::builder().expect("a certificate");
    builder.set_version(2).expect("v3");
    let serial = BigNum::from_u32(1).and_then(|n| n.to_asn1_integer());
    builder
        .set_serial_number(&serial.expect("a serial number"))
        .expect("set");
    builder.set_subject_name(&name).expect("set");
    builder.set_issuer_name(&name).expect("set");
    builder.set_pubkey(&key).expect("set");
    let (from, to) = (Asn1Time::days_from_now(0), Asn1Time::days_from_now(1));
    builder.set_not_before(&from.expect("a time")).expect("set");
    builder.set_not_after(&to.expect("a time")).expect("set");
    let names = SubjectAlternativeName::new()
        .dns("localhost")
        .ip("127.0.0.1")
        .build(&builder.x509v3_context(None, None))
        .expect("names");
    builder.append_extension(names).expect("added");
    let authority = BasicConstraints::new().critical().ca().build();
    builder
        .append_extension(authority.expect("constraints"))
        .expect("added");
    builder.sign(&key, MessageDigest::sha256()).expect("signed");
    (builder.build(), key)
}

/// Accepts TLS connections on `listener`, each relayed to the broker at
/// `127.0.0.1:broker` in plain text, on threads of their own.
fn serve_tls(listener: TcpListener, broker: u16, certificate: &X509, key: &PKey<Private>) {
    let mut acceptor = SslAcceptor::mozilla_intermediate_v5(SslMethod::tls()).expect("TLS");
    acceptor.set_certificate(certificate).expect("set");
    acceptor.set_private_key(key).expect("set");
    let acceptor = Arc::new(acceptor.build());
    std::thread::spawn(move || {
        for client in listener.incoming().flatten() {
            let acceptor = acceptor.clone();
            std::thread::spawn(move || relay(&acceptor, client, broker));
        }
    });
}

/// Relays one client's decrypted bytes to the broker and back, until
/// either side closes.
fn relay(acceptor: &SslAcceptor, client: TcpStream, broker: u16) {
    let Ok(mut tls) = acceptor.accept(client) else {
        return;
    };
    let Ok(mut plain) = TcpStream::connect(("127.0.0.1", broker)) else {
        return;
    };
    let wait = Some(Duration::from_millis(2));
    if tls.get_ref().set_read_timeout(wait).is_err() || plain.set_read_timeout(wait).is_err() {
        return;
    }
    let quiet = |error: &std::io::Error| {
        matches!(error.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut)
    };
    let mut buffer = vec![0; 64 * 1024];
    loop {
        match tls.read(&mut buffer) {
            Ok(0) => return,
            Ok(n) => {
                if plain.write_all(&buffer[..n]).is_err() {
                    return;
                }
            }
            Err(error) if quiet(&error) => {}
            Err(_) => return,
        }
        match plain.read(&mut buffer) {
            Ok(0) => return,
            Ok(n) => {
                if tls.write_all(&buffer[..n]).is_err() {
                    return;
                }
            }
            Err(error) if quiet(&error) => {}
            Err(_) => return,
        }
    }
}

/// The bill check over `orders` and `payments`, reading and writing
/// through TLS with `ca` as the authority; matches to `out.jsonl` and to
/// the topic `matched`.
fn pipeline(dir: &Path, brokers: &str, ca: &Path) {
    let tls = format!(
        "    properties:\n      security.protocol: ssl\n      ssl.ca.location: {}\n",
        ca.display()
    );
    let source = |name: &str, topic: &str, fields: &str| {
        format!(
            "  {name}:\n    type: kafka\n    brokers: {brokers}\n    topic: {topic}\n    \
             group: g\n    format: jsonl\n    idle_timeout: 1s\n{tls}    schema: {{{fields}}}\n    \
             event_time: ts\n    watermark_lag: 1s\n"
        )
    };
    let text = format!(
        "sources:\n{}{}connect: {{app: id, bank: id}}\nmatch:\n  wait: 10s\nsinks:\n  \
         out: {{type: file, path: out.jsonl}}\n  bus:\n    type: kafka\n    \
         brokers: {brokers}\n    topic: matched\n{tls}outputs:\n  \
         - {{outcome: matched, sink: out}}\n  - {{outcome: matched, sink: bus}}\n  \
         - {{outcome: timed_out, sink: out}}\n",
        source("app", "orders", "id: string, ts: timestamp"),
        source("bank", "payments", "id: string, ts: timestamp"),
    );
    std::fs::write(dir.join("pipeline.yaml"), text).expect("written");
}

/// Sends `lines` to `topic` through TLS.
fn produce(brokers: &str, ca: &Path, topic: &str, lines: &[&str]) {
    use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer as _, ThreadedProducer};
    let producer: ThreadedProducer<DefaultProducerContext> = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("security.protocol", "ssl")
        .set("ssl.ca.location", ca.to_str().expect("UTF-8"))
        .create()
        .expect("a producer");
    for line in lines {
        producer
            .send(BaseRecord::<str, str>::to(topic).payload(line).key("k"))
            .map_err(|(error, _)| error)
            .expect("sent");
    }
    producer.flush(Duration::from_secs(10)).expect("delivered");
}

/// Reads `count` values of `topic`'s one partition through TLS, as a
/// client of the pipeline's topics would.
fn consume_tls(brokers: &str, ca: &Path, topic: &str, count: usize) -> Vec<String> {
    use rdkafka::Message as _;
    use rdkafka::consumer::{BaseConsumer, Consumer as _};
    let consumer: BaseConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", "reader")
        .set("security.protocol", "ssl")
        .set("ssl.ca.location", ca.to_str().expect("UTF-8"))
        .create()
        .expect("a consumer");
    let mut partitions = rdkafka::TopicPartitionList::new();
    partitions
        .add_partition_offset(topic, 0, rdkafka::Offset::Beginning)
        .expect("added");
    consumer.assign(&partitions).expect("assigned");
    let mut values = Vec::new();
    let start = Instant::now();
    while values.len() < count && start.elapsed() < Duration::from_secs(30) {
        if let Some(Ok(message)) = consumer.poll(Duration::from_millis(100)) {
            let value = message.payload_view::<str>().and_then(Result::ok);
            values.extend(value.map(str::to_string));
        }
    }
    values
}

#[test]
fn sources_and_sinks_speak_tls_to_the_brokers() {
    let (certificate, key) = certificate();
    let dir = scratch("kafka_tls");
    let ca = dir.join("ca.pem");
    std::fs::write(&ca, certificate.to_pem().expect("PEM")).expect("written");
    let listener = TcpListener::bind("127.0.0.1:0").expect("a port");
    let port = listener.local_addr().expect("an address").port();
    let broker = Broker::start_advertising(Some(port));
    for topic in ["orders", "payments", "matched"] {
        broker.create_topic(topic, 1);
    }
    let plain_port = broker
        .brokers
        .rsplit(':')
        .next()
        .and_then(|port| port.parse().ok())
        .expect("a port");
    serve_tls(listener, plain_port, &certificate, &key);
    let tls_brokers = format!("127.0.0.1:{port}");
    pipeline(&dir, &tls_brokers, &ca);
    let run = start(&dir, &[]);
    produce(
        &tls_brokers,
        &ca,
        "orders",
        &[
            r#"{"id": "a", "ts": "2026-03-01T10:00:00Z"}"#,
            r#"{"id": "b", "ts": "2026-03-01T10:00:01Z"}"#,
        ],
    );
    produce(
        &tls_brokers,
        &ca,
        "payments",
        &[
            r#"{"id": "b", "ts": "2026-03-01T10:00:02Z"}"#,
            r#"{"id": "a", "ts": "2026-03-01T10:00:03Z"}"#,
        ],
    );
    let written = consume_tls(&tls_brokers, &ca, "matched", 2);
    let (status, stderr) = interrupt(run);
    assert_eq!(status, Some(0), "{stderr}");
    let mut keys: Vec<&str> = written
        .iter()
        .filter_map(|value| value.split(r#""key":""#).nth(1)?.split('"').next())
        .collect();
    keys.sort_unstable();
    assert_eq!(keys, ["a", "b"], "{written:?}\n{stderr}");
    let out = std::fs::read_to_string(dir.join("out.jsonl")).expect("written");
    assert_eq!(out.lines().count(), 2, "{out}");
}

/// An authority file that cannot be read stops the run before it starts,
/// pointed at.
#[test]
fn a_missing_authority_file_is_pointed_at() {
    let dir = scratch("kafka_tls_no_ca");
    pipeline(&dir, "127.0.0.1:9", &dir.join("no-such-ca.pem"));
    let run = run_in(&dir, &[]);
    assert_eq!(run.status, 2, "{}", run.stderr);
    assert!(run.stderr.contains("error[E402]"), "{}", run.stderr);
    assert!(run.stderr.contains("ssl.ca.location"), "{}", run.stderr);
    assert!(
        run.stderr.contains("ssl.ca.location: ") && run.stderr.contains("^^^"),
        "{}",
        run.stderr
    );
}
