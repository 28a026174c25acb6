fn main() {
    cni::skel::main(&cni::bridge::Bridge)
}
