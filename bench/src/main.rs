//! The `cdp-bench` binary: a thin shell over `cdp_bench::cli`, run by `cdp bench` and `cdp demo`.

/// mimalloc, as in `cdp`: the service runs in this process, and its allocator is part of what is measured
/// (counting the live heap's growth for the scenarios that report it: `cdp_bench::heap`).
#[global_allocator]
static ALLOCATOR: cdp_bench::heap::Counting = cdp_bench::heap::Counting;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    cdp_api::process::no_transparent_huge_pages();
    cdp_bench::cli::run().await
}
