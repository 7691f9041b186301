//! The portal's single-page app (Yew, wasm32). Empty until the portal issue builds it; it is
//! a workspace member now so that its dependency on `kopa-core` alone is fixed from the start.
