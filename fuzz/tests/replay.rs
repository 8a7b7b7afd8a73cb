//! Every stored corpus file and regression case through its target, on stable (what CI runs
//! without libFuzzer): none may panic.

type Target = fn(&[u8]);

const TARGETS: [(&str, Target); 8] = [
    ("safetensors", kandinsky_fuzz::safetensors),
    ("configs", kandinsky_fuzz::configs),
    ("scheduler", kandinsky_fuzz::scheduler),
    ("tokenizer", kandinsky_fuzz::tokenizer),
    ("image", kandinsky_fuzz::image),
    ("cli_args", kandinsky_fuzz::cli_args),
    ("zero_cache", kandinsky_fuzz::zero_cache),
    ("server_request", kandinsky_fuzz::server_request),
];

#[test]
fn the_stored_corpus_replays() {
    for (target, run) in TARGETS {
        let files = kandinsky_fuzz::corpus(target);
        assert!(!files.is_empty(), "no corpus for {target}");
        for file in files {
            let data = std::fs::read(&file).unwrap();
            if std::panic::catch_unwind(|| run(&data)).is_err() {
                panic!("{target}: {} panics", file.display());
            }
        }
    }
}
