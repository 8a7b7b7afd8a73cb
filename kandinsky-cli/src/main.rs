//! `kandinsky`: image generation with Kandinsky 2.1 and 2.2 (see the library target's docs
//! and `kandinsky --help`).

fn main() -> std::process::ExitCode {
    kandinsky_cli::main()
}
