fn main() {
    std::process::exit(etl::cli::main());
}
