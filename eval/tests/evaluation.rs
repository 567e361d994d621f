//! The evaluation is part of the suite: the committed corpus is what the
//! generator makes, docs/EVALUATION.md's library figures are what the
//! current verifier produces, and real Chromium agrees with the library on
//! a sample of cases.
#![allow(clippy::unwrap_used, clippy::panic, reason = "tests fail by panicking")]

use std::path::PathBuf;

use meridian_eval::corpus::{self, Class};
use meridian_eval::{browser, evaluate};
use meridian_verifier::verdict::Verdict;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn committed() -> Vec<corpus::Case> {
    let text = std::fs::read_to_string(root().join("eval/corpus.jsonl")).unwrap();
    corpus::from_jsonl(&text).unwrap()
}

#[test]
fn corpus_is_what_the_generator_makes() {
    let text = std::fs::read_to_string(root().join("eval/corpus.jsonl")).unwrap();
    assert!(
        text == corpus::to_jsonl(&corpus::generate()),
        "eval/corpus.jsonl differs from the generator: cases are only added through the generator \
         (cargo run -p meridian-eval -- generate)"
    );
    let cases = committed();
    assert!(cases.len() >= 300, "{} cases", cases.len());
    let mut ids: Vec<&str> = cases.iter().map(|c| c.id.as_str()).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), cases.len(), "case ids are unique");
    for class in [Class::Honest, Class::Evasion] {
        assert!(cases.iter().filter(|c| c.class == class).count() >= 100, "{class:?} cases");
    }
}

#[tokio::test]
async fn report_figures_are_current_and_anchors_hold() {
    let cases = committed();
    let outcomes = evaluate::library(&cases, true).await.unwrap();
    let without = evaluate::library(&cases, false).await.unwrap();
    let verdict = |id: &str| outcomes.iter().find(|o| o.id == id).unwrap().verdict;
    assert_eq!(verdict("anchor-motivating"), Some(Verdict::Deny));
    assert_eq!(verdict("anchor-german-in-tokyo"), Some(Verdict::Allow));
    assert!(outcomes.iter().all(|o| o.verdict.is_some()), "every token verifies");

    let report = std::fs::read_to_string(root().join("docs/EVALUATION.md")).unwrap();
    let section = evaluate::library_report(&cases, &outcomes, &without);
    assert!(
        report.contains(&section),
        "docs/EVALUATION.md's library section is out of date (weights, checks or corpus changed): \
         run scripts/evaluate. Current figures:\n{section}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_agrees_with_the_library_on_a_sample() {
    let cases = committed();
    let results = browser::sample(&cases, 30).await.unwrap();
    assert_eq!(results.len(), 30);
    let disagreements: Vec<String> = results
        .iter()
        .filter(|r| !r.agrees())
        .map(|r| {
            format!(
                "{}: Chromium {} {:?}, library {} {:?}",
                r.id, r.browser_verdict, r.browser_reasons, r.library_verdict, r.library_reasons
            )
        })
        .collect();
    assert!(disagreements.is_empty(), "{}", disagreements.join("\n"));
}
