//! Rebuild when the dashboard is rebuilt: `src/http/web.rs` embeds `web/dist` at compile
//! time, and cargo only notices a changed, added or removed file there through this.
fn main() {
    println!("cargo::rerun-if-changed=../../web/dist");
}
