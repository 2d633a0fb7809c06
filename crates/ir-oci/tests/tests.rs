//! ir-oci's integration tests: layouts, loading and rejections. One test binary per
//! crate (each module was a binary of its own, each linking the whole
//! stack); run one module with `cargo test -p ir-oci --test tests MODULE::`.

mod util;

mod example_registry;
mod hostile_layouts;
mod loader;
mod real_tools;
