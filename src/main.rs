fn main() {
    std::process::exit(sugar_sessions::cli::main());
}
