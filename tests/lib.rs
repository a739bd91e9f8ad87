//! Integration tests: one test binary, one module per feature.
#![allow(missing_docs)]

mod cases;
mod cli;
mod event_time;
mod harness;
mod locations;
mod pipelines;
mod readme;
mod robustness;
mod schema;
mod testing;
mod validate;
