//! The web app of `kandinsky serve`, driven end to end in a real headless browser (Debian's
//! `chromium` and `chromium-driver`, over WebDriver): every mode's panel (a screenshot of
//! each under `target/web-screenshots/`), a text-to-image generation into the gallery, a mask
//! painted with the pointer and inpainted, a job's live preview, the job cancelled, the keyboard
//! shortcut, "use these settings again", and a phone-width layout.
//!
//! Without chromedriver the test says so and passes, unless `KANDINSKY_REQUIRE_BROWSER=1`
//! (set by `.ci/run`, which installs the packages).

mod support;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::actions::{InputSource, MOUSE_BUTTON_LEFT, MouseActions, PointerAction};
use fantoccini::key::Key;
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{Value, json};

const MODES: [&str; 8] = [
    "text2img",
    "img2img",
    "inpaint",
    "outpaint",
    "fusion",
    "variation",
    "controlnet",
    "emb2emb",
];

fn find_program(names: &[&str]) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .flat_map(|dir| names.iter().map(move |n| dir.join(n)))
        .find(|p| p.is_file())
}

/// chromedriver on a free loopback port; killed on drop.
struct Driver {
    child: Child,
    url: String,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn start_driver(program: &Path) -> Driver {
    let port = free_port();
    let child = Command::new(program)
        .arg(format!("--port={port}"))
        .arg("--allowed-ips=127.0.0.1")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let url = format!("http://127.0.0.1:{port}");
    let start = Instant::now();
    while ureq::get(&format!("{url}/status")).call().is_err() {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "chromedriver did not start"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    Driver { child, url }
}

async fn connect(driver: &Driver, profile: &Path) -> Client {
    let mut capabilities = serde_json::Map::new();
    capabilities.insert(
        "goog:chromeOptions".into(),
        json!({"args": [
            "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
            "--disable-component-update", "--no-first-run", "--disable-dev-shm-usage",
            format!("--user-data-dir={}", profile.display()), "--window-size=1280,1600",
        ]}),
    );
    let connector = hyper_util::client::legacy::connect::HttpConnector::new();
    ClientBuilder::new(connector)
        .capabilities(capabilities)
        .connect(&driver.url)
        .await
        .expect("a browser session")
}

fn screenshots() -> PathBuf {
    // target/ of this workspace (CARGO_TARGET_DIR when set).
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"));
    let dir = target.join("web-screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

async fn shot(client: &Client, name: &str) {
    let png = client.screenshot().await.unwrap();
    std::fs::write(screenshots().join(format!("{name}.png")), png).unwrap();
}

async fn js(client: &Client, script: &str) -> Value {
    client.execute(script, vec![]).await.unwrap()
}

/// Waits (up to 60 s) until `script` returns true.
async fn until(client: &Client, script: &str, what: &str) {
    let start = Instant::now();
    loop {
        if js(client, script).await == Value::Bool(true) {
            return;
        }
        if start.elapsed() > Duration::from_secs(60) {
            let status = js(
                client,
                "return document.getElementById('status').textContent",
            )
            .await;
            panic!("timed out waiting for {what}; status: {status}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn set(client: &Client, id: &str, value: &str) {
    let field = client.find(Locator::Id(id)).await.unwrap();
    field.clear().await.unwrap();
    field.send_keys(value).await.unwrap();
}

async fn choose_mode(client: &Client, mode: &str) {
    client
        .find(Locator::Id(&format!("mode-{mode}")))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
}

const GALLERY_COUNT: &str = "return document.querySelectorAll('#gallery li img').length";

async fn gallery(client: &Client) -> u64 {
    js(client, GALLERY_COUNT).await.as_u64().unwrap()
}

/// Waits for the gallery to hold `n` loaded images.
async fn gallery_reaches(client: &Client, n: u64) {
    until(
        client,
        &format!(
            "const imgs = [...document.querySelectorAll('#gallery li img')]; \
             return imgs.length === {n} && imgs.every(i => i.complete && i.naturalWidth > 0)"
        ),
        &format!("{n} images in the gallery"),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_web_app_in_a_headless_browser() {
    let Some(chromedriver) = find_program(&["chromedriver", "chromium-driver"]) else {
        assert!(
            std::env::var("KANDINSKY_REQUIRE_BROWSER").as_deref() != Ok("1"),
            "KANDINSKY_REQUIRE_BROWSER=1 but no chromedriver: apt-get install chromium chromium-driver"
        );
        eprintln!("skipped: no chromedriver (apt-get install chromium chromium-driver)");
        return;
    };
    let served = support::start(&[]);
    let driver = start_driver(&chromedriver);
    let profile = tempfile::tempdir().unwrap();
    let client = connect(&driver, profile.path()).await;
    let fixtures = kandinsky_testing::fixtures_dir().join("modes");
    let source = fixtures.join("source.png").canonicalize().unwrap();

    client.goto(&served.url).await.unwrap();
    assert_eq!(client.title().await.unwrap(), "Kandinsky");

    // Every mode's panel shows its own fields; a screenshot of each.
    for mode in MODES {
        choose_mode(&client, mode).await;
        let visible = js(
            &client,
            "return [...document.querySelectorAll('[data-modes]')].filter(e => !e.hidden).length",
        )
        .await;
        assert!(visible.as_u64().unwrap() >= 1, "{mode}");
        shot(&client, &format!("mode-{mode}")).await;
    }
    let inpaint_only = js(
        &client,
        "return document.querySelector('#mask-stage').closest('.field').hidden",
    )
    .await;
    assert_eq!(
        inpaint_only,
        Value::Bool(true),
        "the mask is shown only for inpainting"
    );

    // Text to image: type a prompt, generate, see the image in the gallery.
    choose_mode(&client, "text2img").await;
    set(&client, "prompt", "a red cat").await;
    for (id, value) in [
        ("width", "64"),
        ("height", "64"),
        ("steps", "2"),
        ("prior-steps", "2"),
        ("seed", "3"),
    ] {
        set(&client, id, value).await;
    }
    client
        .find(Locator::Id("generate"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    gallery_reaches(&client, 1).await;
    let params = js(
        &client,
        "return document.querySelector('#gallery .params').textContent",
    )
    .await;
    assert!(params.as_str().unwrap().contains("a red cat"), "{params}");
    shot(&client, "gallery-text2img").await;

    // Inpainting: upload an image, paint a mask with the pointer, generate.
    choose_mode(&client, "inpaint").await;
    set(&client, "prompt", "a hat").await;
    client
        .find(Locator::Id("image-file"))
        .await
        .unwrap()
        .send_keys(source.to_str().unwrap())
        .await
        .unwrap();
    until(
        &client,
        "const i = document.getElementById('mask-image'); return i.complete && i.naturalWidth === 64",
        "the image under the mask",
    )
    .await;
    let canvas = client.find(Locator::Id("mask-canvas")).await.unwrap();
    let stroke = MouseActions::new("mouse".into())
        .then(PointerAction::MoveToElement {
            element: canvas.clone(),
            duration: None,
            x: -20.0,
            y: 0.0,
        })
        .then(PointerAction::Down {
            button: MOUSE_BUTTON_LEFT,
        })
        .then(PointerAction::MoveBy {
            duration: Some(Duration::from_millis(100)),
            x: 40.0,
            y: 10.0,
        })
        .then(PointerAction::Up {
            button: MOUSE_BUTTON_LEFT,
        });
    client.perform_actions(stroke).await.unwrap();
    // The stroke is white on the mask, the rest black.
    let painted = js(
        &client,
        "const c = document.getElementById('mask-canvas'); \
         const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data; \
         let white = 0; for (let i = 0; i < d.length; i += 4) if (d[i] > 128) white++; \
         return [white, c.width * c.height]",
    )
    .await;
    let (white, all) = (painted[0].as_u64().unwrap(), painted[1].as_u64().unwrap());
    assert!(white > 0 && white < all, "painted {white} of {all} pixels");
    shot(&client, "inpaint-mask").await;
    client
        .find(Locator::Id("generate"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    gallery_reaches(&client, 2).await;
    let params = js(
        &client,
        "return document.querySelector('#gallery .params').textContent",
    )
    .await;
    assert!(params.as_str().unwrap().starts_with("inpaint"), "{params}");

    // Start a long job, see its live preview, cancel it: the status says so and the gallery
    // is unchanged.
    choose_mode(&client, "text2img").await;
    for (id, value) in [("width", "512"), ("height", "512"), ("steps", "200")] {
        set(&client, id, value).await;
    }
    client
        .find(Locator::Id("generate"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    until(
        &client,
        "const p = document.getElementById('preview'); \
         return !p.hidden && p.complete && p.naturalWidth === 64 && \
                /Decoder step \\d+ of 200/.test(document.getElementById('status').textContent)",
        "the live preview of the decoder",
    )
    .await;
    shot(&client, "running-preview").await;
    client
        .find(Locator::Id("cancel"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    until(
        &client,
        "return document.getElementById('status').textContent === 'Cancelled.'",
        "the cancellation",
    )
    .await;
    assert_eq!(gallery(&client).await, 2);
    let generate_enabled = js(
        &client,
        "return !document.getElementById('generate').disabled",
    )
    .await;
    assert_eq!(generate_enabled, Value::Bool(true));

    // The keyboard: Ctrl+Enter in the prompt generates.
    set(&client, "width", "64").await;
    set(&client, "height", "64").await;
    set(&client, "steps", "2").await;
    set(&client, "prior-steps", "2").await;
    let prompt = client.find(Locator::Id("prompt")).await.unwrap();
    prompt.clear().await.unwrap();
    prompt.send_keys("a blue dog").await.unwrap();
    prompt
        .send_keys(&(Key::Control + &Key::Enter.to_string()))
        .await
        .unwrap();
    gallery_reaches(&client, 3).await;

    // "Use these settings again" on the inpainting result restores its mode and prompt.
    client
        .find(Locator::Css("#gallery li:nth-child(2) button.again"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let restored = js(
        &client,
        "return [document.querySelector('input[name=mode]:checked').value, \
                 document.getElementById('prompt').value]",
    )
    .await;
    assert_eq!(restored, json!(["inpaint", "a hat"]));

    // A phone-width screen: nothing wider than the viewport.
    client.set_window_size(390, 844).await.unwrap();
    choose_mode(&client, "fusion").await;
    let overflow = js(
        &client,
        "return document.documentElement.scrollWidth - document.documentElement.clientWidth",
    )
    .await;
    assert!(
        overflow.as_i64().unwrap() <= 0,
        "{overflow} px wider than a phone"
    );
    shot(&client, "phone-fusion").await;

    client.close().await.unwrap();
    drop(driver);
}
