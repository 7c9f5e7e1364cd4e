//! The `cdp-bench` binary: a thin shell over `cdp_bench::cli`, run by `cdp bench` and `cdp demo`.

/// mimalloc, as in `cdp`: the service runs in this process, and its allocator is part of what is measured.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    cdp_bench::cli::run().await
}
