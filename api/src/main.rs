//! The `cdp` binary: a thin shell over `cdp_api::cli`.

/// mimalloc instead of the system allocator: the resolver allocates and frees many small documents per
/// batch, and glibc's malloc spent a third of the service's CPU on it (perf, `cdp bench`).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    cdp_api::process::no_transparent_huge_pages();
    cdp_api::cli::run().await
}
