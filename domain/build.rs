//! Rebuilds `cdp-domain` when a migration is added: `sqlx::migrate!` embeds the migrations directory at
//! compile time, and cargo does not otherwise notice new files in it.

fn main() {
    println!("cargo:rerun-if-changed=migrations");
}
