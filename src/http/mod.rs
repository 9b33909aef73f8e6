//! HTTP/1.1 adapter (being built).
