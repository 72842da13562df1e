//! The UniFFI binding generator, pinned to the same UniFFI version as the core crate.
//! `bindings/generate.sh` runs it on the unstripped cdylib (library mode).
fn main() {
    uniffi::uniffi_bindgen_main()
}
