//! The portal's single-page app (Yew, wasm32).
#![cfg(target_arch = "wasm32")]
