//! The connect flow in a real headless browser (Debian `chromium`): redirects, cookies,
//! the provider's consent page and the gateway's success page, as a user's browser runs them.
//! The screenshot of the success page is kept in target/e2e/artefacts/.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::process::Command;

use common::*;

fn chromium() -> String {
    let found = ["chromium", "chromium-browser", "google-chrome"]
        .into_iter()
        .find(|b| {
            Command::new(b)
                .arg("--version")
                .output()
                .is_ok_and(|o| o.status.success())
        });
    found
        .expect("chromium is required: `make setup` installs it (apt-get install chromium)")
        .to_string()
}

#[test]
fn chromium_connects_bobs_account_from_the_agents_link() {
    let stack = Stack::with(Options {
        public_base_is_stack: true,
        ..Options::default()
    });
    // The browser cannot type or click: bob has a single sign-on session at the sim's Auth0
    // and its consent page approves by itself once loaded.
    stack.sim.set_auto_login(Some("bob"));
    stack.sim.set_auto_consent(true);
    let token = stack.token("github", "bob");
    let r = stack.call("GET", "/github/user", &token);
    assert_eq!(r.status, 403);
    let link = r.json()["connect_uri"].as_str().unwrap().to_string();

    let artefacts = root().join("target/e2e/artefacts");
    std::fs::create_dir_all(&artefacts).unwrap();
    let screenshot = artefacts.join("connect-success.png");
    let _ = std::fs::remove_file(&screenshot);
    let profile = root().join(format!("target/e2e/chromium-{}", stack.port));
    let out = Command::new(chromium())
        .args([
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--window-size=900,500",
            "--virtual-time-budget=15000",
            &format!("--user-data-dir={}", profile.display()),
            &format!("--screenshot={}", screenshot.display()),
            "--dump-dom",
            &link,
        ])
        .output()
        .expect("chromium runs");
    let dom = String::from_utf8_lossy(&out.stdout);
    assert!(
        dom.contains("Your github account is connected"),
        "final page:\n{dom}\nstderr:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let png = std::fs::read(&screenshot).expect("screenshot written");
    assert!(png.starts_with(b"\x89PNG") && png.len() > 2000);
    assert!(stack.sim.is_connected("bob", "github"));
    assert_eq!(stack.call("GET", "/github/user", &token).status, 200);
    let _ = std::fs::remove_dir_all(&profile);
}
