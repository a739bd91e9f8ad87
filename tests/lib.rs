//! Integration tests: one test binary, one module per feature.
#![allow(missing_docs)]

mod accounting;
mod backpressure;
mod cases;
mod cli;
mod event_time;
mod harness;
mod kafka;
mod kafka_instances;
mod kafka_source;
mod kafka_state;
mod kafka_tls;
mod live;
mod locations;
mod pipelines;
mod readme;
mod recovery;
mod robustness;
mod schema;
mod sources;
mod testing;
mod validate;
