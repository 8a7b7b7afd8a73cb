//! `kandinsky serve`: the pipeline loaded once behind the HTTP job API
//! (`kandinsky-server`), until SIGINT or SIGTERM.

use anyhow::anyhow;
use kandinsky_pipeline::hub::NoProgress;
use kandinsky_pipeline::{DecoderKind, DecoderStage, Residency, layout};
use kandinsky_server::{PipelineGenerator, Server, ServerConfig, shutdown_signal};

use crate::args::Serve;
use crate::progress::Reporter;
use crate::run::{Failure, usage};

/// Runs the server; returns when it has shut down.
pub fn run(a: Serve) -> Result<(), Failure> {
    let config = ServerConfig {
        addr: std::net::SocketAddr::new(a.host, a.port),
        api_key: a.api_key,
        allow_unauthenticated: a.insecure_no_api_key,
        queue_capacity: a.queue.into(),
        log_requests: !a.quiet,
        ..ServerConfig::default()
    };
    // The settings are checked before minutes of loading.
    config.check().map_err(usage)?;
    let mut reporter = Reporter::new(a.quiet);
    // The text-to-image decoder, resident; the image encoder for image inputs and the
    // zero-image embedding.
    let opened = a.models.open(
        DecoderKind::Plain,
        true,
        true,
        Residency::Resident,
        &mut reporter,
    )?;
    let about = vec![
        ("prior", opened.prior.clone()),
        ("dtype", opened.dtype.clone()),
    ];
    let zero_cache = opened.zero_cache_to_fill();
    let version = a.models.version();
    let mut others = Vec::new();
    for (kind, given) in [
        (DecoderKind::Inpaint, &a.inpaint_decoder),
        (DecoderKind::ControlNetDepth, &a.controlnet_decoder),
    ] {
        let spec = match given.as_deref() {
            Some("none") => continue,
            Some(spec) => spec.to_string(),
            None => match layout::default_repos(version, kind) {
                Some((_, decoder)) => decoder.to_string(),
                None => continue,
            },
        };
        reporter.line(&format!(
            "{kind:?} requests: {spec}, opened when the first comes"
        ));
        let (device, options) = (opened.device.clone(), opened.options.clone());
        let open = move || DecoderStage::from_pretrained(&spec, &device, &options, &mut NoProgress);
        others.push((kind, open));
    }
    let mut generator = PipelineGenerator::new(opened.pipeline, about);
    for (kind, open) in others {
        generator = generator.with_decoder(kind, Box::new(open));
    }
    if let Some(cache) = zero_cache {
        generator = generator.with_zero_cache(cache);
    }
    let runtime = tokio::runtime::Runtime::new().map_err(|e| Failure(1, e.into()))?;
    runtime.block_on(async {
        let server = Server::bind(config, Box::new(generator))
            .await
            .map_err(|e| Failure(1, anyhow!(e)))?;
        println!("listening on http://{}", server.local_addr());
        server
            .run(shutdown_signal())
            .await
            .map_err(|e| Failure(1, anyhow!(e)))
    })?;
    reporter.line("stopped");
    Ok(())
}
