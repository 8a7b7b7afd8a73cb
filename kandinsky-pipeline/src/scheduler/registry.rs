//! Schedulers by name: the diffusers class a `scheduler_config.json` names
//! ([`build_scheduler`], [`load_scheduler`]), and the samplers users pick by a short name
//! ([`Sampler`], [`SAMPLERS`]) built from a stage's own config as diffusers'
//! `Scheduler.from_config(pipe.scheduler.config)` does.

use std::path::Path;

use kandinsky_common::ConfigError;

use super::config::{AlgorithmType, SolverType};
use super::{
    DdimScheduler, DdpmScheduler, DeisMultistepScheduler, DpmSolverMultistepScheduler,
    DpmSolverSinglestepScheduler, EulerAncestralDiscreteScheduler, EulerDiscreteScheduler,
    HeunDiscreteScheduler, KDpm2AncestralDiscreteScheduler, KDpm2DiscreteScheduler,
    LmsDiscreteScheduler, PndmScheduler, Scheduler, SchedulerConfig, SchedulerError,
    UnclipScheduler, UniPcMultistepScheduler,
};

/// Builds the scheduler `config.class_name` names; `path` names the config in errors.
pub fn build_scheduler(
    config: SchedulerConfig,
    path: &Path,
) -> Result<Box<dyn Scheduler>, SchedulerError> {
    // Each class validates the config as it builds its schedule.
    Ok(match config.class_name.as_str() {
        "UnCLIPScheduler" => Box::new(UnclipScheduler::new(config, path)?),
        "DDIMScheduler" => Box::new(DdimScheduler::new(config, path)?),
        "DDPMScheduler" => Box::new(DdpmScheduler::new(config, path)?),
        "DPMSolverMultistepScheduler" => Box::new(DpmSolverMultistepScheduler::new(config, path)?),
        "EulerDiscreteScheduler" => Box::new(EulerDiscreteScheduler::new(config, path)?),
        "EulerAncestralDiscreteScheduler" => {
            Box::new(EulerAncestralDiscreteScheduler::new(config, path)?)
        }
        "HeunDiscreteScheduler" => Box::new(HeunDiscreteScheduler::new(config, path)?),
        "KDPM2DiscreteScheduler" => Box::new(KDpm2DiscreteScheduler::new(config, path)?),
        "KDPM2AncestralDiscreteScheduler" => {
            Box::new(KDpm2AncestralDiscreteScheduler::new(config, path)?)
        }
        "LMSDiscreteScheduler" => Box::new(LmsDiscreteScheduler::new(config, path)?),
        "DPMSolverSinglestepScheduler" => {
            Box::new(DpmSolverSinglestepScheduler::new(config, path)?)
        }
        "PNDMScheduler" => Box::new(PndmScheduler::new(config, path)?),
        "DEISMultistepScheduler" => Box::new(DeisMultistepScheduler::new(config, path)?),
        "UniPCMultistepScheduler" => Box::new(UniPcMultistepScheduler::new(config, path)?),
        other => {
            let mut classes: Vec<&str> = SAMPLERS.iter().map(|s| s.class).collect();
            classes.dedup();
            return Err(ConfigError::invalid(
                path,
                "_class_name",
                format!("expected one of {}, found {other:?}", classes.join(", ")),
            )
            .into());
        }
    })
}

/// Builds the scheduler a diffusers `scheduler_config.json` describes.
pub fn load_scheduler(path: &Path) -> Result<Box<dyn Scheduler>, SchedulerError> {
    build_scheduler(SchedulerConfig::from_file(path)?, path)
}

/// A sampler offered by name (the CLI's `--scheduler`, the server's `sampler`).
#[derive(Debug)]
pub struct Sampler {
    /// The short name, e.g. `dpm++2m`.
    pub name: &'static str,
    /// Other accepted names (the diffusers class name is always accepted too).
    pub aliases: &'static [&'static str],
    /// The diffusers class.
    pub class: &'static str,
    /// One line for `--help`.
    pub summary: &'static str,
    /// Whether it takes `--karras` (Karras sigmas).
    pub karras: bool,
    configure: fn(&mut SchedulerConfig),
}

fn nothing(_: &mut SchedulerConfig) {}

fn dpm(order: usize, algorithm: AlgorithmType) -> impl Fn(&mut SchedulerConfig) {
    move |c| {
        c.solver_order = Some(order);
        c.algorithm_type = Some(algorithm);
    }
}

/// Every sampler, in `--help` order.
pub static SAMPLERS: &[Sampler] = &[
    Sampler {
        name: "ddpm",
        aliases: &[],
        class: "DDPMScheduler",
        summary: "ancestral DDPM (the 2.2 decoder's default; 100 steps)",
        karras: false,
        configure: nothing,
    },
    Sampler {
        name: "ddim",
        aliases: &[],
        class: "DDIMScheduler",
        summary: "deterministic DDIM, eta 0 (the 2.1 decoder's default)",
        karras: false,
        configure: nothing,
    },
    Sampler {
        name: "unclip",
        aliases: &[],
        class: "UnCLIPScheduler",
        summary: "the prior's sampler",
        karras: false,
        configure: nothing,
    },
    Sampler {
        name: "dpm++2m",
        aliases: &["dpmpp2m", "dpm++", "dpmsolver++"],
        class: "DPMSolverMultistepScheduler",
        summary: "DPM-Solver++ 2M, deterministic (recommended: 20-30 steps)",
        karras: true,
        configure: |c| dpm(2, AlgorithmType::DpmSolverPlusPlus)(c),
    },
    Sampler {
        name: "dpm++2m-sde",
        aliases: &["dpmpp2m-sde", "dpm++sde"],
        class: "DPMSolverMultistepScheduler",
        summary: "DPM-Solver++ 2M SDE, stochastic",
        karras: true,
        configure: |c| dpm(2, AlgorithmType::SdeDpmSolverPlusPlus)(c),
    },
    Sampler {
        name: "dpm++3m",
        aliases: &["dpmpp3m"],
        class: "DPMSolverMultistepScheduler",
        summary: "DPM-Solver++ 3M, deterministic",
        karras: true,
        configure: |c| dpm(3, AlgorithmType::DpmSolverPlusPlus)(c),
    },
    Sampler {
        name: "dpm++3m-sde",
        aliases: &["dpmpp3m-sde"],
        class: "DPMSolverMultistepScheduler",
        summary: "DPM-Solver++ 3M SDE, stochastic",
        karras: true,
        configure: |c| dpm(3, AlgorithmType::SdeDpmSolverPlusPlus)(c),
    },
    Sampler {
        name: "dpm++2s",
        aliases: &["dpmpp2s", "dpm++2s-single"],
        class: "DPMSolverSinglestepScheduler",
        summary: "DPM-Solver++ 2S singlestep, deterministic",
        karras: true,
        configure: |c| dpm(2, AlgorithmType::DpmSolverPlusPlus)(c),
    },
    Sampler {
        name: "unipc",
        aliases: &["unipc-bh2", "uni_pc"],
        class: "UniPCMultistepScheduler",
        summary: "UniPC (bh2), order 2, deterministic",
        karras: true,
        configure: nothing,
    },
    Sampler {
        name: "unipc-bh1",
        aliases: &[],
        class: "UniPCMultistepScheduler",
        summary: "UniPC (bh1), order 2, deterministic",
        karras: true,
        configure: |c| c.solver_type = Some(SolverType::Bh1),
    },
    Sampler {
        name: "deis",
        aliases: &[],
        class: "DEISMultistepScheduler",
        summary: "DEIS, order 2, deterministic",
        karras: true,
        configure: nothing,
    },
    Sampler {
        name: "pndm",
        aliases: &["plms"],
        class: "PNDMScheduler",
        summary: "PLMS (pseudo linear multistep, Heun first step), deterministic",
        karras: false,
        configure: |c| c.skip_prk_steps = Some(true),
    },
    Sampler {
        name: "euler",
        aliases: &["k_euler"],
        class: "EulerDiscreteScheduler",
        summary: "Euler, deterministic",
        karras: true,
        configure: nothing,
    },
    Sampler {
        name: "euler-a",
        aliases: &["euler_a", "euler-ancestral", "k_euler_a"],
        class: "EulerAncestralDiscreteScheduler",
        summary: "Euler ancestral, stochastic",
        karras: false,
        configure: nothing,
    },
    Sampler {
        name: "heun",
        aliases: &["k_heun"],
        class: "HeunDiscreteScheduler",
        summary: "Heun, 2 model evaluations per step",
        karras: true,
        configure: nothing,
    },
    Sampler {
        name: "dpm2",
        aliases: &["kdpm2", "k_dpm_2"],
        class: "KDPM2DiscreteScheduler",
        summary: "DPM2, 2 model evaluations per step",
        karras: true,
        configure: nothing,
    },
    Sampler {
        name: "dpm2-a",
        aliases: &["kdpm2-a", "dpm2_a", "k_dpm_2_a"],
        class: "KDPM2AncestralDiscreteScheduler",
        summary: "DPM2 ancestral, stochastic, 2 model evaluations per step",
        karras: true,
        configure: nothing,
    },
    Sampler {
        name: "lms",
        aliases: &["k_lms"],
        class: "LMSDiscreteScheduler",
        summary: "linear multistep (order 4), deterministic",
        karras: true,
        configure: nothing,
    },
];

impl PartialEq for Sampler {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name
    }
}

impl Eq for Sampler {}

impl Sampler {
    /// The sampler called `name` (its short name, an alias or its diffusers class name; case
    /// does not matter).
    pub fn find(name: &str) -> Option<&'static Sampler> {
        let name = name.trim();
        SAMPLERS
            .iter()
            .find(|s| {
                s.name.eq_ignore_ascii_case(name)
                    || s.aliases.iter().any(|a| a.eq_ignore_ascii_case(name))
            })
            .or_else(|| SAMPLERS.iter().find(|s| s.class.eq_ignore_ascii_case(name)))
    }

    /// The short names, comma-separated (for errors and help).
    pub fn names() -> String {
        SAMPLERS
            .iter()
            .map(|s| s.name)
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// This sampler's config built on `base` (a stage's own `scheduler_config.json`) as
    /// diffusers' `from_config` does: the base's training schedule (betas, timesteps,
    /// prediction type, spacing) carries over, then this sampler's settings, then Karras sigmas
    /// when asked for.
    pub fn config_from(&self, base: &SchedulerConfig, karras: bool) -> SchedulerConfig {
        let mut c = base.clone();
        c.class_name = self.class.to_string();
        (self.configure)(&mut c);
        if karras {
            c.use_karras_sigmas = Some(true);
            c.use_exponential_sigmas = None;
            c.use_beta_sigmas = None;
        }
        c
    }

    /// This sampler built on `base` (see [`config_from`](Self::config_from)); `path` names the
    /// base config in errors. Karras sigmas on a sampler without them is an error.
    pub fn build(
        &self,
        base: &SchedulerConfig,
        karras: bool,
        path: &Path,
    ) -> Result<Box<dyn Scheduler>, SchedulerError> {
        if karras && !self.karras {
            return Err(ConfigError::invalid(
                path,
                "use_karras_sigmas",
                format!("{} has no Karras sigmas", self.name),
            )
            .into());
        }
        build_scheduler(self.config_from(base, karras), path)
    }
}
