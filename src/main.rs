use std::process::ExitCode;

/// mimalloc instead of the platform allocator: a run allocates and frees small blocks on every
/// row, from several threads, where glibc's malloc took about a fifth of `confirm`'s CPU (and
/// musl's, in the static build, is slower still).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    mca_attest::main_from_args()
}
