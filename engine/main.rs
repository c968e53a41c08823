// glibc's allocator spent a third of the mapping benchmark in malloc/free; mimalloc does not.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    std::process::exit(etl::cli::main());
}
