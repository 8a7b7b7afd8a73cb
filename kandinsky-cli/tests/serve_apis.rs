//! Every API of `kandinsky serve` end to end, on the small fixture pipeline with its
//! inpainting and ControlNet decoders: the job API (JSON and multipart, every decoder, live
//! previews), the OpenAI Images API and AUTOMATIC1111's, each with its error paths.

mod support;

use std::time::{Duration, Instant};

use base64::Engine;
use serde_json::{Value, json};
use support::{Served, fixture_b64, start, wait};

fn unb64(text: &str) -> Vec<u8> {
    base64::engine::general_purpose::STANDARD
        .decode(text)
        .unwrap()
}

/// A PNG's size and its text chunks.
fn png_info(bytes: &[u8]) -> (u32, u32, Vec<(String, String)>) {
    let reader = png::Decoder::new(std::io::Cursor::new(bytes.to_vec()))
        .read_info()
        .unwrap();
    let info = reader.info();
    let text = info
        .uncompressed_latin1_text
        .iter()
        .map(|t| (t.keyword.clone(), t.text.clone()))
        .collect();
    (info.width, info.height, text)
}

fn text<'a>(chunks: &'a [(String, String)], key: &str) -> &'a str {
    chunks
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
        .unwrap_or_else(|| panic!("no {key} in {chunks:?}"))
}

/// An RGBA PNG of `side`² whose centre square (half the side) is fully transparent.
fn rgba_png(side: u32, transparent_centre: bool) -> Vec<u8> {
    let mut out = Vec::new();
    let mut encoder = png::Encoder::new(&mut out, side, side);
    encoder.set_color(png::ColorType::Rgba);
    let mut writer = encoder.write_header().unwrap();
    let mut data = Vec::new();
    for y in 0..side {
        for x in 0..side {
            let inside =
                (side / 4..3 * side / 4).contains(&x) && (side / 4..3 * side / 4).contains(&y);
            let alpha = if transparent_centre && inside { 0 } else { 255 };
            data.extend_from_slice(&[(x * 4) as u8, (y * 4) as u8, 128, alpha]);
        }
    }
    writer.write_image_data(&data).unwrap();
    drop(writer);
    out
}

/// A `multipart/form-data` body: (name, file name, bytes) parts; its content type.
fn multipart(parts: &[(&str, Option<&str>, &[u8])]) -> (String, Vec<u8>) {
    let boundary = "kandinsky-test-boundary-7c1e";
    let mut body = Vec::new();
    for (name, file, bytes) in parts {
        body.extend_from_slice(format!("--{boundary}\r\n").as_bytes());
        match file {
            Some(file) => body.extend_from_slice(
                format!(
                    "Content-Disposition: form-data; name=\"{name}\"; filename=\"{file}\"\r\n\
                     Content-Type: image/png\r\n\r\n"
                )
                .as_bytes(),
            ),
            None => body.extend_from_slice(
                format!("Content-Disposition: form-data; name=\"{name}\"\r\n\r\n").as_bytes(),
            ),
        }
        body.extend_from_slice(bytes);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}

/// POSTs JSON; (status, body as JSON).
fn post(url: &str, body: Value) -> (u16, Value) {
    match ureq::post(url).send_json(body) {
        Ok(r) => (r.status(), r.into_json().unwrap()),
        Err(ureq::Error::Status(code, r)) => (code, r.into_json().unwrap()),
        Err(e) => panic!("{e}"),
    }
}

fn post_form(url: &str, parts: &[(&str, Option<&str>, &[u8])]) -> (u16, Value) {
    let (content_type, body) = multipart(parts);
    match ureq::post(url)
        .set("Content-Type", &content_type)
        .send_bytes(&body)
    {
        Ok(r) => (r.status(), r.into_json().unwrap()),
        Err(ureq::Error::Status(code, r)) => (code, r.into_json().unwrap()),
        Err(e) => panic!("{e}"),
    }
}

fn get_bytes(url: &str) -> Vec<u8> {
    let mut bytes = Vec::new();
    std::io::Read::read_to_end(
        &mut ureq::get(url).call().unwrap().into_reader(),
        &mut bytes,
    )
    .unwrap();
    bytes
}

const SMALL: [(&str, i64); 5] = [
    ("width", 64),
    ("height", 64),
    ("steps", 2),
    ("prior_steps", 2),
    ("seed", 5),
];

fn small(mut body: Value) -> Value {
    for (k, v) in SMALL {
        body.as_object_mut().unwrap().entry(k).or_insert(json!(v));
    }
    body
}

/// Submits a native job and waits for it; the final job.
fn job(s: &Served, body: Value) -> Value {
    let (status, job) = post(&format!("{}/v1/jobs", s.url), body);
    assert_eq!(status, 202, "{job}");
    wait(&s.url, job["id"].as_str().unwrap())
}

#[test]
fn the_job_api_serves_every_decoder_json_and_multipart_with_previews() {
    let s = start(&[]);
    let url = &s.url;

    // Text-to-image with enough steps to see previews while it runs.
    let (status, submitted) = post(
        &format!("{url}/v1/jobs"),
        json!({"prompt": "a red cat", "width": 64, "height": 64, "steps": 60,
               "prior_steps": 2, "seed": 1}),
    );
    assert_eq!(status, 202, "{submitted}");
    let id = submitted["id"].as_str().unwrap();
    let start_time = Instant::now();
    let mut preview = None;
    loop {
        let job: Value = ureq::get(&format!("{url}/v1/jobs/{id}"))
            .call()
            .unwrap()
            .into_json()
            .unwrap();
        if let Some(path) = job["preview"].as_str()
            && let Ok(r) = ureq::get(&format!("{url}{path}")).call()
        {
            assert_eq!(r.content_type(), "image/png");
            let mut bytes = Vec::new();
            std::io::Read::read_to_end(&mut r.into_reader(), &mut bytes).unwrap();
            preview = Some(bytes);
        }
        if job["state"] == "done" {
            break;
        }
        assert!(job["state"] != "failed", "{job}");
        assert!(start_time.elapsed() < Duration::from_secs(120));
        std::thread::sleep(Duration::from_millis(5));
    }
    let preview = preview.expect("a preview while the decoder ran");
    // The latent resolution: 64² pixels are 8² latents with the fixture MoVQ (factor 8).
    let (w, h, _) = png_info(&preview);
    assert_eq!((w, h), (8, 8), "the preview is the latents' size");
    // No preview once done.
    let gone = ureq::get(&format!("{url}/v1/jobs/{id}/preview")).call();
    assert!(matches!(gone, Err(ureq::Error::Status(404, _))));

    // Inpainting as multipart: the inpainting decoder is opened for it.
    let source = unb64(&fixture_b64("source.png"));
    let mask = unb64(&fixture_b64("mask.png"));
    let (content_type, body) = multipart(&[
        ("mode", None, b"inpaint"),
        ("prompt", None, b"a hat"),
        ("width", None, b"64"),
        ("height", None, b"64"),
        ("steps", None, b"2"),
        ("prior_steps", None, b"2"),
        ("seed", None, b"9"),
        ("image", Some("source.png"), &source),
        ("mask", Some("mask.png"), &mask),
    ]);
    let submitted: Value = ureq::post(&format!("{url}/v1/jobs"))
        .set("Content-Type", &content_type)
        .send_bytes(&body)
        .unwrap()
        .into_json()
        .unwrap();
    let done = wait(url, submitted["id"].as_str().unwrap());
    assert_eq!(done["state"], "done", "{done}");
    let png = get_bytes(&format!("{url}{}", done["images"][0].as_str().unwrap()));
    let (_, _, chunks) = png_info(&png);
    assert!(text(&chunks, "decoder").ends_with("inpaint"), "{chunks:?}");
    assert_eq!(text(&chunks, "mode"), "inpaint");

    // ControlNet-depth with a hint: the third decoder.
    let done = job(
        &s,
        small(json!({"mode": "controlnet", "prompt": "a room", "hint": fixture_b64("source.png")})),
    );
    assert_eq!(done["state"], "done", "{done}");
    let png = get_bytes(&format!("{url}{}", done["images"][0].as_str().unwrap()));
    assert!(text(&png_info(&png).2, "decoder").ends_with("controlnet"));

    // Back to the plain decoder; the other image modes.
    for body in [
        json!({"mode": "text2img", "prompt": "a red cat"}),
        json!({"mode": "img2img", "prompt": "a cat", "image": fixture_b64("source.png"), "strength": 0.5}),
        json!({"mode": "variation", "image": fixture_b64("source.png")}),
        json!({"mode": "fusion", "items": [{"text": "a cat", "weight": 0.5},
                                           {"image": fixture_b64("source.png"), "weight": 0.5}]}),
        json!({"mode": "emb2emb", "prompt": "a dog", "image": fixture_b64("source.png"), "strength": 0.5}),
        json!({"mode": "outpaint", "prompt": "more", "image": fixture_b64("source.png"),
               "extend": [64, 0, 0, 0]}),
    ] {
        let mode = body["mode"].clone();
        let done = job(&s, small(body));
        assert_eq!(done["state"], "done", "{mode}: {done}");
    }

    // A multipart form with an unknown field or a bad number is a 400 naming it.
    let (status, error) = post_form(
        &format!("{url}/v1/jobs"),
        &[("prompt", None, b"x"), ("colour", None, b"red")],
    );
    assert_eq!(status, 400, "{error}");
    assert!(
        error["error"]["message"]
            .as_str()
            .unwrap()
            .contains("colour"),
        "{error}"
    );
    let (status, error) = post_form(&format!("{url}/v1/jobs"), &[("steps", None, b"many")]);
    assert_eq!(status, 400, "{error}");
    // A bomb as a multipart upload: refused on its declared size.
    let bomb = bomb_png();
    let (status, error) = post_form(
        &format!("{url}/v1/jobs"),
        &[
            ("mode", None, b"img2img"),
            ("image", Some("bomb.png"), &bomb),
        ],
    );
    assert_eq!(status, 400, "{error}");
    let message = error["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("image") && message.contains("limit"),
        "{message}"
    );
}

/// A PNG declaring 20000 × 20000 pixels in a few bytes (its IDAT is cut short).
fn bomb_png() -> Vec<u8> {
    let mut out = Vec::new();
    let encoder = png::Encoder::new(&mut out, 20000, 20000);
    let mut writer = encoder.write_header().unwrap();
    let _ = writer.write_chunk(png::chunk::IEND, &[]);
    drop(writer);
    out
}

#[test]
fn the_openai_images_api() {
    let s = start(&[]);
    let url = &s.url;

    // generations: b64_json by default, n images of the size asked.
    let (status, answer) = post(
        &format!("{url}/v1/images/generations"),
        json!({"model": "dall-e-2", "prompt": "a red cat", "n": 2, "size": "64x64",
               "quality": "standard", "steps": 2, "prior_steps": 2, "seed": 4}),
    );
    assert_eq!(status, 200, "{answer}");
    assert!(answer["created"].as_u64().unwrap() > 1_700_000_000);
    let data = answer["data"].as_array().unwrap();
    assert_eq!(data.len(), 2);
    let png = unb64(data[0]["b64_json"].as_str().unwrap());
    let (w, h, chunks) = png_info(&png);
    assert_eq!((w, h), (64, 64));
    assert_eq!(text(&chunks, "seed"), "4");

    // response_format url: this server's image URL.
    let (status, answer) = post(
        &format!("{url}/v1/images/generations"),
        json!({"prompt": "a red cat", "size": "64x64", "response_format": "url",
               "steps": 2, "prior_steps": 2}),
    );
    assert_eq!(status, 200, "{answer}");
    let image_url = answer["data"][0]["url"].as_str().unwrap();
    assert!(image_url.starts_with(url.as_str()), "{image_url}");
    assert_eq!(png_info(&get_bytes(image_url)).0, 64);

    // Errors: no prompt, a bad size, a bad format, an unknown extra's bad value.
    for (body, words) in [
        (json!({"size": "64x64"}), "prompt"),
        (json!({"prompt": "x", "size": "big"}), "size"),
        (
            json!({"prompt": "x", "response_format": "jpeg"}),
            "response_format",
        ),
        (
            json!({"prompt": "x", "output_format": "webp"}),
            "output_format",
        ),
        (json!({"prompt": "x", "size": "4096x4096"}), "width"),
        (json!({"prompt": "x", "n": 99}), "num_images"),
        (json!({"prompt": "x", "sampler": "nonesuch"}), "nonesuch"),
    ] {
        let (status, error) = post(&format!("{url}/v1/images/generations"), body.clone());
        assert_eq!(status, 400, "{body}: {error}");
        let message = error["error"]["message"].as_str().unwrap();
        assert!(message.contains(words), "{body}: {message}");
        assert_eq!(error["error"]["type"], "invalid_request");
    }

    // edits: the mask's transparent centre is repainted by the inpainting decoder.
    let source = unb64(&fixture_b64("source.png"));
    let mask = rgba_png(64, true);
    let (status, answer) = post_form(
        &format!("{url}/v1/images/edits"),
        &[
            ("image", Some("source.png"), &source),
            ("mask", Some("mask.png"), &mask),
            ("prompt", None, b"a hat"),
            ("size", None, b"64x64"),
            ("steps", None, b"2"),
            ("prior_steps", None, b"2"),
        ],
    );
    assert_eq!(status, 200, "{answer}");
    let png = unb64(answer["data"][0]["b64_json"].as_str().unwrap());
    assert!(text(&png_info(&png).2, "decoder").ends_with("inpaint"));
    // The image's own alpha when there is no mask; none at all is a 400.
    let with_alpha = rgba_png(64, true);
    let (status, answer) = post_form(
        &format!("{url}/v1/images/edits"),
        &[
            ("image[]", Some("a.png"), &with_alpha),
            ("prompt", None, b"a hat"),
            ("size", None, b"64x64"),
            ("steps", None, b"2"),
            ("prior_steps", None, b"2"),
        ],
    );
    assert_eq!(status, 200, "{answer}");
    let (status, error) = post_form(
        &format!("{url}/v1/images/edits"),
        &[
            ("image", Some("source.png"), &source),
            ("prompt", None, b"a hat"),
        ],
    );
    assert_eq!(status, 400, "{error}");
    assert!(
        error["error"]["message"]
            .as_str()
            .unwrap()
            .contains("alpha"),
        "{error}"
    );
    let (status, error) = post_form(&format!("{url}/v1/images/edits"), &[("prompt", None, b"x")]);
    assert_eq!(status, 400, "{error}");
    assert!(
        error["error"]["message"]
            .as_str()
            .unwrap()
            .contains("image")
    );

    // variations: Kandinsky's own, from the image embedding.
    let (status, answer) = post_form(
        &format!("{url}/v1/images/variations"),
        &[
            ("image", Some("source.png"), &source),
            ("n", None, b"1"),
            ("size", None, b"64x64"),
            ("steps", None, b"2"),
            ("response_format", None, b"b64_json"),
        ],
    );
    assert_eq!(status, 200, "{answer}");
    let png = unb64(answer["data"][0]["b64_json"].as_str().unwrap());
    assert_eq!(text(&png_info(&png).2, "mode"), "variation");
}

#[test]
fn the_automatic1111_api() {
    let s = start(&[]);
    let url = &s.url;

    // What front-ends read first.
    let samplers: Value = ureq::get(&format!("{url}/sdapi/v1/samplers"))
        .call()
        .unwrap()
        .into_json()
        .unwrap();
    assert!(
        samplers
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["name"] == "euler-a")
    );
    let models: Value = ureq::get(&format!("{url}/sdapi/v1/sd-models"))
        .call()
        .unwrap()
        .into_json()
        .unwrap();
    assert_eq!(models[0]["model_name"], "kandinsky-2.2");
    let idle: Value = ureq::get(&format!("{url}/sdapi/v1/progress"))
        .call()
        .unwrap()
        .into_json()
        .unwrap();
    assert_eq!(idle["progress"], 0.0);
    assert_eq!(idle["state"]["job_count"], 0);

    // txt2img: A1111 names, batch_size × n_iter images, ignored fields accepted.
    let (status, answer) = post(
        &format!("{url}/sdapi/v1/txt2img"),
        json!({"prompt": "a red cat", "negative_prompt": "", "steps": 2, "cfg_scale": 4.5,
               "width": 64, "height": 64, "seed": 11, "batch_size": 2, "n_iter": 1,
               "sampler_name": "DPM++ 2M Karras", "restore_faces": false, "enable_hr": false,
               "override_settings": {}, "alwayson_scripts": {}}),
    );
    assert_eq!(status, 200, "{answer}");
    let images = answer["images"].as_array().unwrap();
    assert_eq!(images.len(), 2);
    let chunks = png_info(&unb64(images[0].as_str().unwrap())).2;
    assert_eq!(text(&chunks, "scheduler"), "dpm++2m+karras");
    assert_eq!(text(&chunks, "guidance"), "4.5");
    let info: Value = serde_json::from_str(answer["info"].as_str().unwrap()).unwrap();
    assert_eq!(info["seed"], 11);

    // img2img, and img2img with a mask (inpainting).
    let source = fixture_b64("source.png");
    let (status, answer) = post(
        &format!("{url}/sdapi/v1/img2img"),
        json!({"prompt": "a cat", "init_images": [source], "denoising_strength": 0.5,
               "steps": 4, "width": 64, "height": 64, "sampler_name": "Euler a"}),
    );
    assert_eq!(status, 200, "{answer}");
    let chunks = png_info(&unb64(answer["images"][0].as_str().unwrap())).2;
    assert_eq!(text(&chunks, "mode"), "img2img");
    let (status, answer) = post(
        &format!("{url}/sdapi/v1/img2img"),
        json!({"prompt": "a hat", "init_images": [source], "mask": fixture_b64("mask.png"),
               "inpainting_mask_invert": 1, "mask_blur": 4, "steps": 2, "width": 64,
               "height": 64}),
    );
    assert_eq!(status, 200, "{answer}");
    let chunks = png_info(&unb64(answer["images"][0].as_str().unwrap())).2;
    assert_eq!(text(&chunks, "mode"), "inpaint");

    // Errors.
    for (path, body, words) in [
        (
            "txt2img",
            json!({"prompt": "x", "sampler_name": "Restart"}),
            "restart",
        ),
        ("txt2img", json!({"prompt": "x", "seed": -7}), "seed"),
        (
            "txt2img",
            json!({"prompt": "x", "scheduler": "Exponential"}),
            "scheduler",
        ),
        (
            "txt2img",
            json!({"prompt": "x", "batch_size": 3, "n_iter": 3}),
            "num_images",
        ),
        ("img2img", json!({"prompt": "x"}), "init_images"),
        (
            "img2img",
            json!({"prompt": "x", "init_images": ["%%%"]}),
            "base64",
        ),
    ] {
        let (status, error) = post(&format!("{url}/sdapi/v1/{path}"), body.clone());
        assert_eq!(status, 400, "{body}: {error}");
        let message = error["error"]["message"].as_str().unwrap().to_lowercase();
        assert!(message.contains(words), "{body}: {message}");
    }

    // interrupt: a long job is cancelled at its next step; progress saw it running.
    let (status, submitted) = post(
        &format!("{url}/v1/jobs"),
        json!({"prompt": "slow", "width": 64, "height": 64, "steps": 200, "prior_steps": 200}),
    );
    assert_eq!(status, 202);
    let id = submitted["id"].as_str().unwrap();
    let started = Instant::now();
    loop {
        let p: Value = ureq::get(&format!("{url}/sdapi/v1/progress"))
            .call()
            .unwrap()
            .into_json()
            .unwrap();
        if p["state"]["job"] == id && p["state"]["sampling_step"].as_u64() > Some(0) {
            assert!(p["progress"].as_f64().unwrap() > 0.0, "{p}");
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "never running: {p}"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    ureq::post(&format!("{url}/sdapi/v1/interrupt"))
        .call()
        .unwrap();
    assert_eq!(wait(url, id)["state"], "cancelled");
}
