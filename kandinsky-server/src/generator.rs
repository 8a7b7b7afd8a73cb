//! What runs a job: a [`Generator`] (the resident pipeline, or a stand-in in tests) turning a
//! request into PNG images while reporting progress and honouring cancellation.

use std::ops::ControlFlow;

use kandinsky_pipeline::embed_cache::ZeroEmbedCache;
use kandinsky_pipeline::{
    DecoderKind, DecoderStage, Event, Hooks, Kandinsky, LatentPreview, PipelineError, Request,
};

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
    /// A low-cost preview of the decoder's current estimate of the image (a small PNG at the
    /// latent resolution, see [`LatentPreview`]), after a decoder step.
    Preview(Vec<u8>),
    /// The latents are being decoded to pixels.
    Decoding,
}

/// Opens a decoder when a request first needs it (on the worker thread: downloads and reads
/// folders, loads nothing yet).
pub type DecoderLoader = Box<dyn FnMut() -> Result<DecoderStage, PipelineError> + Send>;

/// A decoder of another kind than the one in the pipeline.
enum Other {
    /// Opened before (its weights released while another decoder runs).
    Open(Box<DecoderStage>),
    /// Not yet opened.
    Later(DecoderLoader),
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
///
/// Decoders of other kinds (inpainting, ControlNet-depth) given with
/// [`with_decoder`](Self::with_decoder) are opened when a request first needs one and swapped
/// in; the decoder swapped out releases its weights (they load again from disk when next
/// needed), so one decoder's weights are in memory at a time.
pub struct PipelineGenerator {
    pipeline: Kandinsky,
    /// Text chunks written into every PNG besides the request's parameters (prior, dtype…).
    about: Vec<(&'static str, String)>,
    /// Where to keep the zero-image embedding once a job has computed it.
    zero_cache: Option<ZeroEmbedCache>,
    others: Vec<(DecoderKind, Other)>,
    previews: bool,
}

impl PipelineGenerator {
    /// Serves `pipeline`; `about` is added to every PNG's metadata (e.g. `("prior", id)`;
    /// the decoder used is added by itself).
    pub fn new(pipeline: Kandinsky, about: Vec<(&'static str, String)>) -> Self {
        Self {
            pipeline,
            about,
            zero_cache: None,
            others: Vec::new(),
            previews: true,
        }
    }

    /// Keeps the zero-image embedding in `cache` once a job has computed it (so the next
    /// start needs no image encoder for it).
    pub fn with_zero_cache(mut self, cache: ZeroEmbedCache) -> Self {
        self.zero_cache = Some(cache);
        self
    }

    /// Serves requests needing a decoder of `kind` with the decoder `open` opens, the first
    /// time one comes.
    pub fn with_decoder(mut self, kind: DecoderKind, open: DecoderLoader) -> Self {
        self.others.retain(|(k, _)| *k != kind);
        self.others.push((kind, Other::Later(open)));
        self
    }

    /// Whether to report previews of the decoder's steps (default: yes; the first job of
    /// each decoder then fits its preview map, a decode of 2 × 16 × 16 latents).
    pub fn with_previews(mut self, previews: bool) -> Self {
        self.previews = previews;
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

    /// Puts the decoder `request` needs in the pipeline, when it is one of the others.
    fn select_decoder(
        &mut self,
        request: &Request,
        progress: &mut dyn FnMut(Progress) -> ControlFlow<()>,
    ) -> Result<(), PipelineError> {
        let wanted = request.decoder_kind();
        let current = self.pipeline.decoder().map(|d| d.layout().kind);
        if current == Some(wanted) {
            return Ok(());
        }
        let Some(index) = self.others.iter().position(|(k, _)| *k == wanted) else {
            // The pipeline's own check names what is missing.
            return Ok(());
        };
        let (_, other) = self.others.swap_remove(index);
        let stage = match other {
            Other::Open(stage) => *stage,
            Other::Later(mut open) => {
                let _ = progress(Progress::Loading("decoder"));
                match open() {
                    Ok(stage) => stage,
                    Err(e) => {
                        self.others.push((wanted, Other::Later(open)));
                        return Err(e);
                    }
                }
            }
        };
        if stage.layout().kind != wanted {
            let found = stage.layout().kind;
            self.others.push((found, Other::Open(Box::new(stage))));
            return Err(PipelineError::UnsupportedMode {
                mode: request.mode_name(),
                needs: format!("a {wanted:?} decoder"),
                found: format!("the decoder given for it is a {found:?} decoder"),
            });
        }
        if let Err(e) = self.pipeline.accepts(&stage) {
            self.others.push((wanted, Other::Open(Box::new(stage))));
            return Err(e);
        }
        if let Some(mut old) = self.pipeline.replace_decoder(stage)? {
            old.release();
            let kind = old.layout().kind;
            self.others.push((kind, Other::Open(Box::new(old))));
        }
        Ok(())
    }
}

impl Generator for PipelineGenerator {
    fn generate(
        &mut self,
        request: &Request,
        progress: &mut dyn FnMut(Progress) -> ControlFlow<()>,
    ) -> Result<Vec<Vec<u8>>, PipelineError> {
        request.validate()?;
        self.select_decoder(request, progress)?;
        let preview: Option<LatentPreview> = match (self.previews, self.pipeline.decoder_mut()) {
            (true, Some(decoder)) => Some(decoder.latent_preview()?),
            _ => None,
        };
        let mut on_event = |event: Event<'_>| match event {
            Event::Loading(what) => progress(Progress::Loading(what)),
            Event::PriorStep(s) => progress(Progress::Step {
                stage: "prior",
                step: s.step,
                of: s.of,
            }),
            Event::DecoderStep(s) => {
                let flow = progress(Progress::Step {
                    stage: "decoder",
                    step: s.step,
                    of: s.of,
                });
                if flow.is_continue()
                    && let Some(preview) = &preview
                {
                    // A failed preview costs the client a picture, not the job.
                    if let Ok(png) = preview
                        .image(s.predicted_original)
                        .and_then(|image| image.to_png(&[]))
                    {
                        return progress(Progress::Preview(png));
                    }
                }
                flow
            }
            Event::Decoding => progress(Progress::Decoding),
            Event::Loaded(_) => ControlFlow::Continue(()),
        };
        let images = self
            .pipeline
            .generate_with(request, Hooks::default().on_event(&mut on_event))?
            .images()?;
        self.keep_zero_embedding();
        let decoder = self.pipeline.decoder().expect("a pipeline with a decoder");
        let version = decoder.layout().version;
        let mut text = vec![("model", format!("kandinsky-{version}"))];
        text.extend(self.about.iter().cloned());
        text.push(("decoder", decoder.source()));
        text.extend(request.parameters(version));
        images.iter().map(|image| image.to_png(&text)).collect()
    }
}
