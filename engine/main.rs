// glibc's allocator spent a third of the mapping benchmark in malloc/free; mimalloc does not.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    without_huge_pages();
    std::process::exit(etl::cli::main());
}

/// mimalloc marks its arenas for transparent huge pages; each time it hands freed memory back
/// and touches it again, the kernel zeroes a whole 2 MiB page. In a 100,000-contact dry run that
/// was 1.5 s of kernel time (4.4 s in all; 0.4 s and 3.4 s without huge pages).
fn without_huge_pages() {
    #[cfg(target_os = "linux")]
    // SAFETY: PR_SET_THP_DISABLE takes plain integers and touches no memory of ours.
    unsafe {
        libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0);
    }
}
