//! The npm package the set-up builds (`.meridian/npm/meridian-collector`):
//! packed and installed with `npm` into a scratch project, imported by Node,
//! and used by a single-page app in Chromium, Firefox and WebKit through a
//! bare import, whose backend verifies the token over HTTP.

#![allow(clippy::unwrap_used, clippy::panic, reason = "tests fail by panicking")]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;

use axum::extract::{ConnectInfo, State};
use axum::response::Html;
use axum::routing::{get, post};
use axum::{Json, Router};
use meridian_tests::{
    BrowserOptions, Engine, meridian_home, site_listener, start_browser, start_verifier, verify,
};
use serde_json::{Value, json};

fn run(command: &mut Command) -> String {
    let output = command.output().unwrap_or_else(|e| panic!("{command:?}: {e} (scripts/setup installs npm)"));
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "{command:?} failed: {}\n{stdout}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

/// A scratch front-end project with the package installed from its path.
fn install_into_scratch_project() -> PathBuf {
    let package = meridian_home().join("npm/meridian-collector");
    assert!(package.join("package.json").exists(), "no package in {} (run scripts/setup)", package.display());
    let scratch = std::env::temp_dir().join(format!("meridian-npm-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&scratch);
    std::fs::create_dir_all(&scratch).unwrap();
    std::fs::write(
        scratch.join("package.json"),
        r#"{ "name": "scratch-shop", "private": true, "type": "module" }"#,
    )
    .unwrap();
    let tarball = run(Command::new("npm")
        .args(["pack", "--silent", "--pack-destination"])
        .arg(&scratch)
        .arg(&package)
        .current_dir(&scratch));
    let tarball = tarball.trim().lines().last().unwrap().to_owned();
    run(Command::new("npm")
        .args(["install", "--offline", "--no-audit", "--no-fund", "--silent"])
        .arg(format!("./{tarball}"))
        .current_dir(&scratch));
    scratch
}

fn installed(scratch: &Path) -> PathBuf {
    scratch.join("node_modules/meridian-collector")
}

#[derive(Clone)]
struct Spa {
    origin: String,
    verifier: String,
}

async fn app_page(State(spa): State<Spa>) -> Html<String> {
    Html(format!(
        r#"<!doctype html><meta charset="utf-8"><title>SPA</title>
<script type="importmap">{{ "imports": {{ "meridian-collector": "/node_modules/meridian-collector/meridian.js" }} }}</script>
<button id="sign-in">Sign in</button><output id="result"></output>
<script type="module">
  import {{ collect }} from 'meridian-collector';
  document.getElementById('sign-in').addEventListener('click', async () => {{
    const out = document.getElementById('result');
    try {{
      const token = await collect({{ action: 'login', challengeUrl: '{}/v1/challenge' }});
      const answer = await fetch('/api/login', {{
        method: 'POST', headers: {{ 'content-type': 'application/json' }},
        body: JSON.stringify({{ email: 'ada@example.com', token }}),
      }}).then((r) => r.json());
      out.dataset.success = String(answer.success);
      out.textContent = JSON.stringify(answer);
    }} catch (error) {{
      out.dataset.success = 'error';
      out.textContent = String(error);
    }}
  }});
</script>"#,
        spa.verifier
    ))
}

async fn api_login(
    State(spa): State<Spa>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Json(body): Json<Value>,
) -> Json<Value> {
    let (_, answer) = verify(
        &spa.verifier,
        json!({
            "token": body["token"],
            "remote_ip": peer.ip().to_string(),
            "expected_action": "login",
            "expected_origin": spa.origin,
        }),
    )
    .await;
    Json(answer)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_package_installs_imports_and_signs_in_a_single_page_app() {
    let scratch = install_into_scratch_project();
    let package = installed(&scratch);
    for file in ["package.json", "meridian.js", "meridian.d.ts", "meridian_collector_bg.wasm", "README.md"] {
        assert!(package.join(file).exists(), "the installed package lacks {file}");
    }
    let manifest: Value =
        serde_json::from_str(&std::fs::read_to_string(package.join("package.json")).unwrap()).unwrap();
    assert_eq!(manifest["type"], "module");
    assert_eq!(manifest["types"], "./meridian.d.ts");

    // Node resolves the bare name and the exports are there; with no
    // browser the wasm cannot load, and that is not an unhandled rejection.
    let exports = run(Command::new("node")
        .args(["--input-type=module", "-e"])
        .arg(
            "import * as m from 'meridian-collector';
             console.log(JSON.stringify({ collect: typeof m.collect, attach: typeof m.attach,
               keyId: typeof m.keyId, ready: m.ready instanceof Promise }));",
        )
        .current_dir(&scratch));
    assert_eq!(
        serde_json::from_str::<Value>(exports.trim()).unwrap(),
        json!({ "collect": "function", "attach": "function", "keyId": "function", "ready": true })
    );

    // A single-page app serves its node_modules and calls collect().
    let (listener, origin) = site_listener().await;
    let verifier = start_verifier(std::slice::from_ref(&origin)).await;
    let spa = Spa { origin: origin.clone(), verifier: verifier.origin.clone() };
    let app = Router::new()
        .route("/", get(app_page))
        .route("/api/login", post(api_login))
        .nest_service("/node_modules", tower_http::services::ServeDir::new(scratch.join("node_modules")))
        .with_state(spa);
    let task = tokio::spawn(meridian_tests::serve(listener, app));

    // The same app in every engine the suite drives.
    for engine in Engine::ALL {
        let browser = start_browser(BrowserOptions { engine, ..BrowserOptions::default() }).await;
        let client = &browser.client;
        client.goto(&format!("{origin}/")).await.unwrap();
        client.wait().for_element(fantoccini::Locator::Id("sign-in")).await.unwrap().click().await.unwrap();
        let result =
            client.wait().for_element(fantoccini::Locator::Css("#result[data-success]")).await.unwrap();
        let text = result.text().await.unwrap();
        assert_eq!(
            result.attr("data-success").await.ok().flatten().as_deref(),
            Some("true"),
            "{engine}: {text}"
        );
        let answer: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(answer["claims"]["origin"], json!(origin));
        assert_eq!(answer["claims"]["action"], json!("login"));
        let reasons: Vec<&str> =
            answer["reasons"].as_array().unwrap().iter().filter_map(|r| r["code"].as_str()).collect();
        for lie in ["tampered_api", "worker_scope_mismatch", "tz_internal_inconsistent"] {
            assert!(!reasons.contains(&lie), "{engine}: an honest browser raised {lie}: {text}");
        }
    }

    task.abort();
    let _ = std::fs::remove_dir_all(&scratch);
}
