//! `meridian-eval`: generate the corpus, run it, write docs/EVALUATION.md.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use meridian_eval::{browser, corpus, evaluate};

#[derive(Parser)]
#[command(about = "Meridian's detection-quality evaluation")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Writes the corpus from the generator (fixed seed).
    Generate {
        /// Where the corpus lives.
        #[arg(long, default_value = "eval/corpus.jsonl")]
        corpus: PathBuf,
        /// Only check that the file is what the generator makes.
        #[arg(long)]
        check: bool,
    },
    /// Runs every case through the library (and a sample through Chromium)
    /// and writes the report.
    Run {
        /// The corpus.
        #[arg(long, default_value = "eval/corpus.jsonl")]
        corpus: PathBuf,
        /// The report to write (its marked sections are replaced).
        #[arg(long, default_value = "docs/EVALUATION.md")]
        report: PathBuf,
        /// Cases to also run through real Chromium and the HTTP API (0: none).
        #[arg(long, default_value_t = 0)]
        browser: usize,
        /// Only check that the report's library section is current.
        #[arg(long)]
        check: bool,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Generate { corpus, check } => generate(&corpus, check),
        Command::Run { corpus, report, browser, check } => tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .map_err(|e| e.to_string())
            .and_then(|rt| rt.block_on(run(&corpus, &report, browser, check))),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("meridian-eval: {message}");
            ExitCode::FAILURE
        }
    }
}

fn generate(path: &PathBuf, check: bool) -> Result<(), String> {
    let text = corpus::to_jsonl(&corpus::generate());
    if check {
        let committed = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        if committed != text {
            return Err(format!(
                "{} is not what the generator makes; cases may only be added by changing the generator \
                 (run `cargo run -p meridian-eval -- generate`)",
                path.display()
            ));
        }
        println!("{}: up to date ({} cases)", path.display(), text.lines().count());
        return Ok(());
    }
    std::fs::write(path, &text).map_err(|e| format!("{}: {e}", path.display()))?;
    println!("wrote {} cases to {}", text.lines().count(), path.display());
    Ok(())
}

const LIBRARY_BEGIN: &str = "<!-- library:begin -->\n";
const LIBRARY_END: &str = "<!-- library:end -->";
const BROWSER_BEGIN: &str = "<!-- browser:begin -->\n";
const BROWSER_END: &str = "<!-- browser:end -->";

/// Replaces the text between `begin` and `end` in `document`.
fn splice(document: &str, begin: &str, end: &str, body: &str) -> Result<String, String> {
    let start =
        document.find(begin).ok_or_else(|| format!("the report has no {begin:?} marker"))? + begin.len();
    let stop =
        document[start..].find(end).ok_or_else(|| format!("the report has no {end:?} marker"))? + start;
    Ok(format!("{}{body}{}", &document[..start], &document[stop..]))
}

async fn run(corpus_path: &PathBuf, report: &PathBuf, sample: usize, check: bool) -> Result<(), String> {
    let text = std::fs::read_to_string(corpus_path).map_err(|e| format!("{}: {e}", corpus_path.display()))?;
    let cases = corpus::from_jsonl(&text).map_err(|e| format!("{}: {e}", corpus_path.display()))?;
    eprintln!("running {} cases through the library…", cases.len());
    let outcomes = evaluate::library(&cases, true).await?;
    let without = evaluate::library(&cases, false).await?;
    let library = evaluate::library_report(&cases, &outcomes, &without);
    let document = std::fs::read_to_string(report).map_err(|e| format!("{}: {e}", report.display()))?;
    let mut updated = splice(&document, LIBRARY_BEGIN, LIBRARY_END, &library)?;
    if check {
        if updated != document {
            return Err(format!(
                "{}'s library section is out of date; run scripts/evaluate (weights, checks or corpus changed)",
                report.display()
            ));
        }
        println!("{}: library section up to date", report.display());
    }
    if sample > 0 {
        eprintln!("running {sample} cases through Chromium and the HTTP API…");
        let results = browser::sample(&cases, sample).await?;
        let section = browser::report(&results);
        updated = splice(&updated, BROWSER_BEGIN, BROWSER_END, &section)?;
        let disagreements = results.iter().filter(|r| !r.agrees()).count();
        if disagreements > 0 {
            eprintln!("{section}");
            return Err(format!(
                "{disagreements} of {} browser cases disagree with the library",
                results.len()
            ));
        }
    }
    if !check {
        std::fs::write(report, &updated).map_err(|e| format!("{}: {e}", report.display()))?;
        println!("wrote {}", report.display());
    }
    let summary = evaluate::Summary::of(&outcomes);
    println!(
        "evasion caught {:.1} %, honest denied {:.1} %, honest reviewed {:.1} %",
        summary.evasion_caught(),
        summary.honest_denied(),
        summary.honest_reviewed()
    );
    Ok(())
}
