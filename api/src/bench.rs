//! placeholder until the bench lands
#[derive(Debug, clap::Args)]
pub struct BenchArgs {}
pub async fn run(_args: BenchArgs) -> anyhow::Result<()> {
    anyhow::bail!("bench not yet written")
}
