//! Meridian's detection-quality evaluation: a labelled corpus of honest and
//! evading logins, run through the real verifier (every case through the
//! library, a sample through real Chromium and the HTTP API), tallied into
//! the confusion matrix published in `docs/EVALUATION.md`.

pub mod browser;
pub mod corpus;
pub mod evaluate;
pub mod latency;
pub mod simulate;
pub mod world;
