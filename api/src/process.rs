//! What the `cdp` and `cdp-bench` processes ask of the operating system before they start work.

/// Turns transparent huge pages off for this process (Linux; nothing elsewhere), unless
/// `CDP_TRANSPARENT_HUGE_PAGES=on`.
///
/// mimalloc asks for huge pages on its arenas (`madvise`), and the kernel then zeroes 2 MB at every
/// first touch of one, however little of it is used: `perf` of the resolver catching up showed 13 % of
/// the process in `clear_page_erms` under `mi_page_free_list_extend`. With 4 KB pages the live
/// resolver's catch-up runs ~8 % faster with a third of the system time (BENCHMARKS.md, the
/// seventeenth step). The flag is the process's (threads started before or after share it).
pub fn no_transparent_huge_pages() {
    let keep = std::env::var("CDP_TRANSPARENT_HUGE_PAGES").is_ok_and(|v| v == "on");
    #[cfg(target_os = "linux")]
    if !keep {
        if let Err(e) = rustix::thread::disable_transparent_huge_pages(true) {
            tracing::warn!(error = %e, "could not turn transparent huge pages off");
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = keep;
}

#[cfg(test)]
mod tests {
    #[cfg(target_os = "linux")]
    #[test]
    fn the_process_runs_without_transparent_huge_pages() {
        super::no_transparent_huge_pages();
        assert!(matches!(
            rustix::thread::transparent_huge_pages_are_disabled(),
            Ok(true)
        ));
    }
}
