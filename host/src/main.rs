/// glibc's allocator spent about a sixth of a busy server's CPU time
/// (docs/benchmarks.md, "The allocator"); mimalloc's per-thread heaps do not.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    weft::cli::main()
}
