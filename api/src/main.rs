//! The `cdp` binary: a thin shell over `cdp_api::cli`.

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    cdp_api::cli::run().await
}
