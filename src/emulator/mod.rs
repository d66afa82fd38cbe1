//! A built-in Sugar server (axum) for tests, the demo and standalone use.
//! Written from the protocol reference, sharing no types with the client in `sugar`.
