//! What runs a job: a [`Generator`] (the resident pipeline, or a stand-in in tests) turning a
//! request into PNG images while reporting progress and honouring cancellation.

use std::ops::ControlFlow;

use kandinsky_pipeline::embed_cache::ZeroEmbedCache;
use kandinsky_pipeline::{Event, Hooks, Kandinsky, PipelineError, Request};

/// Progress of the running job.
#[derive(Debug, Clone, PartialEq)]
pub enum Progress {
    /// A component is being loaded (its folder name).
    Loading(&'static str),
    /// A step of a stage finished.
    Step {
        /// `prior` or `decoder`.
        stage: &'static str,
        /// Steps done, from 1.
        step: usize,
        /// Steps the stage runs.
        of: usize,
    },
    /// The latents are being decoded to pixels.
    Decoding,
}

/// Runs generations, one at a time, on the server's worker thread.
pub trait Generator: Send + 'static {
    /// The PNG files (with the generation's parameters as text chunks) of `request`, calling
    /// `progress` as it goes; when `progress` returns `Break` the generation stops with
    /// [`PipelineError::Cancelled`].
    fn generate(
        &mut self,
        request: &Request,
        progress: &mut dyn FnMut(Progress) -> ControlFlow<()>,
    ) -> Result<Vec<Vec<u8>>, PipelineError>;
}

/// The resident [`Kandinsky`] pipeline as a [`Generator`]: loaded once, kept between jobs.
pub struct PipelineGenerator {
    pipeline: Kandinsky,
    /// Text chunks written into every PNG besides the request's parameters (model, prior,
    /// decoder, dtype…).
    about: Vec<(&'static str, String)>,
    /// Where to keep the zero-image embedding once a job has computed it.
    zero_cache: Option<ZeroEmbedCache>,
}

impl PipelineGenerator {
    /// Serves `pipeline`; `about` is added to every PNG's metadata (e.g. `("prior", id)`).
    pub fn new(pipeline: Kandinsky, about: Vec<(&'static str, String)>) -> Self {
        Self {
            pipeline,
            about,
            zero_cache: None,
        }
    }

    /// Keeps the zero-image embedding in `cache` once a job has computed it (so the next
    /// start needs no image encoder for it).
    pub fn with_zero_cache(mut self, cache: ZeroEmbedCache) -> Self {
        self.zero_cache = Some(cache);
        self
    }

    /// Writes the zero-image embedding to the cache the first time there is one.
    fn keep_zero_embedding(&mut self) {
        let computed = self.pipeline.prior().and_then(|p| p.zero_image_embeds());
        if let (Some(zero), Some(cache)) = (computed, self.zero_cache.take())
            && let Err(e) = cache.save(zero)
        {
            eprintln!("warning: cannot cache the zero-image embedding: {e}");
        }
    }
}

impl Generator for PipelineGenerator {
    fn generate(
        &mut self,
        request: &Request,
        progress: &mut dyn FnMut(Progress) -> ControlFlow<()>,
    ) -> Result<Vec<Vec<u8>>, PipelineError> {
        let mut on_event = |event: Event<'_>| match event {
            Event::Loading(what) => progress(Progress::Loading(what)),
            Event::PriorStep(s) => progress(Progress::Step {
                stage: "prior",
                step: s.step,
                of: s.of,
            }),
            Event::DecoderStep(s) => progress(Progress::Step {
                stage: "decoder",
                step: s.step,
                of: s.of,
            }),
            Event::Decoding => progress(Progress::Decoding),
            Event::Loaded(_) => ControlFlow::Continue(()),
        };
        let images = self
            .pipeline
            .generate_with(request, Hooks::default().on_event(&mut on_event))?
            .images()?;
        self.keep_zero_embedding();
        let version = self.pipeline.version().expect("a pipeline with a decoder");
        let mut text = vec![("model", format!("kandinsky-{version}"))];
        text.extend(self.about.iter().cloned());
        text.extend(request.parameters(version));
        images.iter().map(|image| image.to_png(&text)).collect()
    }
}
