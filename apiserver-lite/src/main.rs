fn main() {
    eprintln!("apiserver-lite: not yet serving");
    std::process::exit(1);
}
